import CortadoCore
import Foundation

/// The prediction log: a sample of requests as JSON lines, one line per row — request id, time,
/// model, version, the row's inputs and its outputs — so that labels arriving later can be
/// joined by (request id, row). Requests hand lines to a bounded buffer and go on; one
/// background thread writes them. When the buffer is full the line is dropped and counted:
/// a slow disk never slows a request. The file `predictions.jsonl` rotates when it passes
/// `maxBytes` (renamed `predictions-<UTC time>-<n>.jsonl`; the newest `keep` are kept).
public final class PredictionLog: @unchecked Sendable {
    public let dir: String
    public let sampleRate: Double
    let maxBytes: Int
    let keep: Int
    let capacity: Int
    private let cond = NSCondition()
    private var pending = [String]()
    private var stopping = false
    private var exited = false
    private var written = 0, dropped = 0
    private var rotations = 0
    private var thread: Thread?

    public init(dir: String, sampleRate: Double, maxBytes: Int, keep: Int = 10, capacity: Int = 8192) throws {
        self.dir = dir
        self.sampleRate = min(max(sampleRate, 0), 1)
        self.maxBytes = max(4096, maxBytes)
        self.keep = max(1, keep)
        self.capacity = max(1, capacity)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // Fail at start, not at the first sampled request, when the folder is not writable.
        guard FileManager.default.isWritableFile(atPath: dir) else {
            throw CortadoError.usage("--prediction-log: \(dir) is not writable")
        }
        let t = Thread { [self] in writerLoop() }
        t.name = "cortado-prediction-log"
        thread = t
        t.start()
    }

    /// Whether to log this request (sampled at `sampleRate`).
    public func sample() -> Bool { sampleRate >= 1 || (sampleRate > 0 && Double.random(in: 0..<1) < sampleRate) }

    /// Queues lines without blocking on I/O; drops (and counts) them when the buffer is full.
    public func offer(_ lines: [String]) {
        cond.lock()
        if stopping || pending.count + lines.count > capacity {
            dropped += lines.count
        } else {
            pending += lines
            cond.signal()
        }
        cond.unlock()
    }

    public var counts: (written: Int, dropped: Int) {
        cond.lock()
        defer { cond.unlock() }
        return (written, dropped)
    }

    /// Writes what is queued, then stops the writer (shutdown).
    public func close() {
        cond.lock()
        stopping = true
        cond.broadcast()
        while !exited { cond.wait() }
        cond.unlock()
    }

    private var path: String { dir + "/predictions.jsonl" }

    private func writerLoop() {
        var handle = open()
        var size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        while true {
            cond.lock()
            while pending.isEmpty && !stopping { cond.wait() }
            let lines = pending
            pending.removeAll(keepingCapacity: true)
            let done = stopping && lines.isEmpty
            cond.unlock()
            if done { break }
            for line in lines {
                let bytes = Data((line + "\n").utf8)
                if size > 0 && size + bytes.count > maxBytes {
                    try? handle?.close()
                    rotate()
                    handle = open()
                    size = 0
                }
                handle?.write(bytes)
                size += bytes.count
            }
            cond.lock()
            written += lines.count
            cond.unlock()
        }
        try? handle?.synchronize()
        try? handle?.close()
        cond.lock()
        exited = true
        cond.broadcast()
        cond.unlock()
    }

    private func open() -> FileHandle? {
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
        let h = FileHandle(forWritingAtPath: path)
        _ = try? h?.seekToEnd()
        return h
    }

    private func rotate() {
        rotations += 1
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss"
        let name = "predictions-\(f.string(from: Date()))-\(rotations).jsonl"
        _ = rename(path, dir + "/" + name)
        let old = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [])
            .filter { $0.hasPrefix("predictions-") && $0.hasSuffix(".jsonl") }
            .sorted { a, b in
                let ma =
                    (try? FileManager.default.attributesOfItem(atPath: dir + "/" + a)[.modificationDate] as? Date)
                    ?? .distantPast
                let mb =
                    (try? FileManager.default.attributesOfItem(atPath: dir + "/" + b)[.modificationDate] as? Date)
                    ?? .distantPast
                return ma < mb || (ma == mb && a < b)
            }
        for f in old.dropLast(keep) { try? FileManager.default.removeItem(atPath: dir + "/" + f) }
    }
}
