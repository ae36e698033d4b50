import Foundation
import XCTest

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A real `cortado-infer serve` process on a free loopback port (`--port 0`; the port is read
/// from its "listening on" line), and a small blocking HTTP client for it. Logs go to files in
/// the scratch folder so a chatty server never blocks on a pipe.
public final class ServeProcess: @unchecked Sendable {
    public let process = Process()
    public private(set) var port = 0
    public let stdoutPath: String, stderrPath: String
    public var token: String?
    let session: URLSession

    public struct Reply {
        public var status: Int
        public var headers: [String: String]
        public var body: Data
        public var text: String { String(decoding: body, as: UTF8.self) }
        public var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
        public func header(_ name: String) -> String? {
            headers.first { $0.key.lowercased() == name.lowercased() }?.value
        }
    }

    /// Starts the server and waits (≤ `timeout` s) until it listens.
    public init(models: String, args: [String] = [], scratch: String, timeout: Double = 120) throws {
        stdoutPath = scratch + "/serve.out"
        stderrPath = scratch + "/serve.err"
        guard FileManager.default.createFile(atPath: stdoutPath, contents: nil),
            FileManager.default.createFile(atPath: stderrPath, contents: nil)
        else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: stdoutPath]) }
        process.executableURL = URL(fileURLWithPath: Support.product("cortado-infer"))
        process.arguments = ["serve", "--models", models, "--port", "0"] + args
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle(forWritingAtPath: stdoutPath)
        process.standardError = FileHandle(forWritingAtPath: stderrPath)
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = 60
        config.httpMaximumConnectionsPerHost = 32
        session = URLSession(configuration: config)
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let out = (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? ""
            if let line = out.split(separator: "\n").first(where: { $0.hasPrefix("listening on http://") }),
                let p = Int(line.split(separator: ":").last ?? "")
            {
                port = p
                return
            }
            if !process.isRunning { break }
            usleep(50_000)
        }
        if process.isRunning { process.terminate() }
        throw NSError(
            domain: "ServeProcess", code: 1,
            userInfo: [NSLocalizedDescriptionKey: "server did not start: \(log)"])
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }

    public var log: String {
        ((try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "")
            + ((try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "")
    }

    /// One request; blocks until the reply (or throws on a transport error).
    public func request(
        _ method: String, _ path: String, body: Data? = nil, headers: [String: String] = [:], auth: Bool = true
    ) throws -> Reply {
        var r = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        r.httpMethod = method
        r.httpBody = body
        if body != nil { r.setValue("application/json", forHTTPHeaderField: "Content-Type") }
        if auth, let token { r.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        for (k, v) in headers { r.setValue(v, forHTTPHeaderField: k) }
        final class Box: @unchecked Sendable { var reply: Reply?; var error: Error? }
        let box = Box(), done = DispatchSemaphore(value: 0)
        session.dataTask(with: r) { data, response, error in
            if let h = response as? HTTPURLResponse {
                var headers = [String: String]()
                for (k, v) in h.allHeaderFields { headers["\(k)"] = "\(v)" }
                box.reply = Reply(status: h.statusCode, headers: headers, body: data ?? Data())
            }
            box.error = error
            done.signal()
        }.resume()
        done.wait()
        if let reply = box.reply { return reply }
        throw box.error ?? NSError(domain: "ServeProcess", code: 2)
    }

    public func get(_ path: String, auth: Bool = true) throws -> Reply { try request("GET", path, auth: auth) }

    public func post(_ path: String, json: Any) throws -> Reply {
        try request("POST", path, body: try JSONSerialization.data(withJSONObject: json))
    }

    public func post(_ path: String, text: String) throws -> Reply { try request("POST", path, body: Data(text.utf8)) }

    public func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

    /// SIGTERM, then the exit status (SIGKILL and -1 after `timeout` s).
    @discardableResult
    public func stop(timeout: Double = 30) -> Int32 {
        guard process.isRunning else { return process.terminationStatus }
        signal(SIGTERM)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return -1
        }
        return process.terminationStatus
    }
}
