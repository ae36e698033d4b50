import CortadoCore
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// File-system primitives of the registry: an exclusive lock per model, durable copies and
/// writes, and a crash-safe publish of a whole folder.
enum RegistryIO {
    /// Runs `body` holding an exclusive `flock` on `dir/.lock` (created if missing). Every
    /// writer of a model's versions and aliases takes it, so parallel pushes from several
    /// processes or hosts (NFS with lock support) get distinct version numbers.
    static func withLock<T>(_ dir: String, _ body: () throws -> T) throws -> T {
        let path = (dir as NSString).appendingPathComponent(".lock")
        let fd = open(path, O_RDWR | O_CREAT, 0o644)
        guard fd >= 0 else {
            throw CortadoError.io("\(path): cannot open lock file: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else {
                throw CortadoError.io("\(path): cannot lock: \(String(cString: strerror(errno)))")
            }
        }
        defer { flock(fd, LOCK_UN) }
        return try body()
    }

    static func fsync(_ path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw CortadoError.io("\(path): cannot open to fsync: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        guard Glibc.fsync(fd) == 0 else {
            throw CortadoError.io("\(path): fsync failed: \(String(cString: strerror(errno)))")
        }
    }

    /// Writes `data` to a new file and fsyncs it (inside a temporary folder: no rename needed).
    static func write(_ data: Data, to path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: data) else {
            throw CortadoError.io("\(path): cannot write")
        }
        try fsync(path)
    }

    /// Copies a file and fsyncs the copy; returns the copy's SHA-256 (of the bytes written).
    static func copy(_ from: String, to path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: from) else {
            throw CortadoError.io("\(from): cannot read")
        }
        try write(data, to: path)
        return SHA256.hex(data)
    }

    /// The names (numbers) of the published version folders of a model folder.
    static func versions(in modelDir: String) -> [Int] {
        ((try? FileManager.default.contentsOfDirectory(atPath: modelDir)) ?? []).compactMap { name in
            guard let v = Int(name), v >= 1, String(v) == name else { return nil }
            return v
        }.sorted()
    }

    static func readJSON<T: Decodable>(_ type: T.Type, _ path: String, what: String) throws -> T {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CortadoError.model("\(path): cannot read \(what)")
        }
        do { return try JSONDecoder().decode(type, from: data) } catch {
            throw CortadoError.model("\(path): not a valid \(what) (\(describe(error)))")
        }
    }

    static func user() -> String {
        let env = ProcessInfo.processInfo.environment
        if let u = env["USER"] ?? env["LOGNAME"], !u.isEmpty { return u }
        if let pw = getpwuid(getuid()), let name = pw.pointee.pw_name { return String(cString: name) }
        return String(getuid())
    }

    static func now() -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: Date())
    }

    /// The commit of the git checkout `dir` sits in, or nil (no git, not a checkout).
    static func gitCommit(_ dir: String) -> (commit: String, dirty: Bool)? {
        func git(_ args: [String]) -> String? {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["git", "-C", dir] + args
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle.nullDevice
            do { try p.run() } catch { return nil }
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            guard p.terminationStatus == 0 else { return nil }
            return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard let c = git(["rev-parse", "HEAD"]), c.count == 40 else { return nil }
        let dirty = !(git(["status", "--porcelain", "--untracked-files=no"]) ?? "").isEmpty
        return (c, dirty)
    }
}
