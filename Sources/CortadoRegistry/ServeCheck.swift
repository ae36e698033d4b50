import CortadoCore
import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The infrastructure check (TFX's InfraValidator): the candidate file really loads in the
/// serving binary, warms up, and answers requests with the classes the evaluation computed.
/// Runs `cortado-infer serve` on a temporary repository holding only the candidate, on a free
/// loopback port, sends rows, compares, and stops it with SIGTERM (it must exit 0).
public enum ServeCheck {
    /// Returns nil when the server answered every row as expected, else what went wrong.
    public static func run(binary: String, model: String, rows: [[Float]], expected: [Int], timeout: Double = 60)
        -> String?
    {
        let fm = FileManager.default
        let dir = NSTemporaryDirectory() + "cortado-serve-check-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? fm.removeItem(atPath: dir) }
        do {
            try fm.createDirectory(atPath: dir + "/candidate/1", withIntermediateDirectories: true)
            try fm.createSymbolicLink(
                atPath: dir + "/candidate/1/model.cmodel", withDestinationPath: URL(fileURLWithPath: model).path)
        } catch { return "cannot lay out a repository in \(dir): \(error)" }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["serve", "--models", dir, "--port", "0", "--cores", "1"]
        let out = dir + "/serve.out", err = dir + "/serve.err"
        guard fm.createFile(atPath: out, contents: nil), fm.createFile(atPath: err, contents: nil) else {
            return "cannot create \(out) or \(err)"
        }
        p.standardOutput = FileHandle(forWritingAtPath: out)
        p.standardError = FileHandle(forWritingAtPath: err)
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch { return "cannot start \(binary): \(error)" }
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        func logTail() -> String {
            let text = (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").suffix(3).joined(separator: " | ")
        }
        guard let port = waitForPort(out, process: p, timeout: timeout) else {
            return "cortado-infer serve did not start listening within \(Int(timeout)) s: \(logTail())"
        }
        let body: [String: Any] = [
            "id": "serve-check",
            "inputs": [
                [
                    "name": "input", "datatype": "FP32", "shape": [rows.count, rows.first?.count ?? 0],
                    "data": rows.flatMap { $0 }.map(Double.init)
                ]
            ]
        ]
        let reply = post("http://127.0.0.1:\(port)/v2/models/candidate/infer", body, timeout: timeout)
        kill(p.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        guard let (status, json) = reply else { return "no reply from cortado-infer serve: \(logTail())" }
        guard status == 200 else { return "cortado-infer serve answered HTTP \(status): \(json)" }
        guard let outputs = json["outputs"] as? [[String: Any]],
            let predicted = outputs.first(where: { $0["name"] as? String == "predicted" })?["data"] as? [Int]
        else { return "the reply has no 'predicted' output: \(json)" }
        guard predicted == expected else {
            return "served classes \(predicted) differ from the evaluation's \(expected)"
        }
        guard !p.isRunning, p.terminationStatus == 0 else {
            return "cortado-infer serve did not exit 0 on SIGTERM (status \(p.terminationStatus))"
        }
        return nil
    }

    static func waitForPort(_ path: String, process: Process, timeout: Double) -> Int? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("listening on http://") }),
                let port = Int(line.split(separator: ":").last ?? "")
            {
                return port
            }
            if !process.isRunning { return nil }
            usleep(20_000)
        }
        return nil
    }

    static func post(_ url: String, _ body: [String: Any], timeout: Double) -> (Int, [String: Any])? {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = "POST"
        request.httpBody = try? JSONSerialization.data(withJSONObject: body)
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.timeoutInterval = timeout
        final class Box: @unchecked Sendable { var value: (Int, [String: Any])? }
        let box = Box(), done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: request) { data, response, _ in
            if let http = response as? HTTPURLResponse {
                box.value = (
                    http.statusCode,
                    (data.flatMap { try? JSONSerialization.jsonObject(with: $0) } as? [String: Any]) ?? [:]
                )
            }
            done.signal()
        }.resume()
        _ = done.wait(timeout: .now() + timeout)
        return box.value
    }
}
