import Foundation

/// Crash-safe file output: write to `path.tmp`, fsync, rename over `path`, fsync the folder.
///
/// Readers (a resuming trainer, cortado-infer, a user's h5py) then see either the old file or
/// the complete new one, never a half-written file under the final name.
public enum AtomicFile {
    /// Runs `write` against a temporary path next to `path`, then publishes it atomically.
    public static func publish(_ path: String, _ write: (String) throws -> Void) throws {
        let tmp = path + ".tmp"
        unlink(tmp)
        do {
            try write(tmp)
            try fsyncPath(tmp)
            guard rename(tmp, path) == 0 else {
                throw CortadoError.io("\(path): rename from \(tmp) failed: \(String(cString: strerror(errno)))")
            }
            try fsyncPath(
                (path as NSString).deletingLastPathComponent.isEmpty
                    ? "." : (path as NSString).deletingLastPathComponent)
        } catch {
            unlink(tmp)
            throw error
        }
    }

    /// Writes bytes atomically.
    public static func write(_ data: Data, to path: String) throws {
        try publish(path) { tmp in
            do { try data.write(to: URL(fileURLWithPath: tmp)) } catch {
                throw CortadoError.io("\(tmp): write failed: \(error.localizedDescription)")
            }
        }
    }

    private static func fsyncPath(_ path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw CortadoError.io("\(path): cannot open to fsync: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        guard fsync(fd) == 0 else {
            throw CortadoError.io("\(path): fsync failed: \(String(cString: strerror(errno)))")
        }
    }
}

/// Creates `dir` (and parents) and checks that a file can be created in it, so that a run
/// fails before step 0 rather than at its first checkpoint.
public func ensureWritableDirectory(_ dir: String) throws {
    do {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    } catch {
        throw CortadoError.io("\(dir): cannot create folder: \(error.localizedDescription)")
    }
    let probe = (dir as NSString).appendingPathComponent(".cortado-write-probe-\(getpid())")
    guard FileManager.default.createFile(atPath: probe, contents: Data("ok".utf8)) else {
        throw CortadoError.io("\(dir): folder is not writable")
    }
    unlink(probe)
}

/// Peak resident set size of this process in bytes (VmHWM), or 0 where /proc is absent.
public func peakRSSBytes() -> Int { procStatusBytes("VmHWM:") }

/// Resident set size of this process now, in bytes (VmRSS), or 0 where /proc is absent.
public func currentRSSBytes() -> Int { procStatusBytes("VmRSS:") }

/// A "kB" field of /proc/self/status, in bytes.
private func procStatusBytes(_ field: String) -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in s.split(separator: "\n") where line.hasPrefix(field) {
        let kb = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
        return kb * 1024
    }
    return 0
}

/// Seconds since an arbitrary fixed point, monotonic.
@inline(__always) public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// JSON encoding with sorted keys, so files and hashes are stable across runs.
public func stableJSON<T: Encodable>(_ value: T, pretty: Bool = true) throws -> Data {
    let enc = JSONEncoder()
    enc.outputFormatting =
        pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
    return try enc.encode(value)
}
