import CortadoCore
import Foundation

/// Rows parsed in the statistics pass, kept for the write pass as fixed-size binary records,
/// so each CSV byte is parsed twice (rows, statistics) instead of three times. A record is
/// `width` doubles: split, label, the numeric feature columns (NaN = missing), then the
/// categorical columns as provisional ids (rank-local, −1 = missing), which the write pass maps
/// to final vocabulary ids once the vocabularies are known. The file lives in the staging folder
/// and is deleted after the write pass; memory stays one 4 MiB buffer.
final class SpillFile {
    let path: String
    let width: Int
    private let fd: Int32
    private var buffer: UnsafeMutablePointer<Double>
    private let capacity: Int // records per buffer
    private var buffered = 0
    private(set) var records = 0

    init(path: String, width: Int) throws {
        self.path = path
        self.width = width
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else {
            throw CortadoError.io("\(path): cannot create spill file: \(String(cString: strerror(errno)))")
        }
        capacity = max(1, (4 << 20) / (8 * width))
        buffer = .allocate(capacity: capacity * width)
    }

    deinit {
        buffer.deallocate()
        close(fd)
        unlink(path)
    }

    /// Deletes the file (before the staging folder is published).
    func discard() { unlink(path) }

    /// The next record's slots, to fill before the following call.
    @inline(__always)
    func next() throws -> UnsafeMutablePointer<Double> {
        if buffered == capacity { try flush() }
        defer { buffered += 1; records += 1 }
        return buffer + buffered * width
    }

    func flush() throws {
        let bytes = buffered * width * 8
        var done = 0
        while done < bytes {
            let n = write(fd, UnsafeRawPointer(buffer) + done, bytes - done)
            guard n > 0 else {
                throw CortadoError.io("\(path): write failed (disk full?): \(String(cString: strerror(errno)))")
            }
            done += n
        }
        buffered = 0
    }

    /// Calls `body` with records [first, first + count) in order.
    func read(from first: Int, count: Int, _ body: (UnsafePointer<Double>) throws -> Void) throws {
        try flush()
        var at = first
        let end = first + count
        while at < end {
            let n = min(capacity, end - at)
            let bytes = n * width * 8
            var done = 0
            while done < bytes {
                let r = pread(fd, UnsafeMutableRawPointer(buffer) + done, bytes - done, off_t(at * width * 8 + done))
                guard r > 0 else { throw CortadoError.io("\(path): read failed") }
                done += r
            }
            for k in 0..<n { try body(buffer + k * width) }
            at += n
        }
    }
}

/// Rank-local ids for the distinct values of a categorical column, in order of appearance.
struct ProvisionalIds {
    var ids: [String: Int32] = [:]
    var values: [String] = []
    var trainCounts: [Int] = []
    var heldOutCounts: [Int] = [] // (values, 2): validation, test rows of each value

    @inline(__always)
    mutating func id(_ v: String) -> Int32 {
        if let i = ids[v] { return i }
        let i = Int32(values.count)
        ids[v] = i
        values.append(v)
        trainCounts.append(0)
        heldOutCounts += [0, 0]
        return i
    }

    /// Validation and test rows by value, for the values held out at all.
    var heldOut: [String: [Int]] {
        var out = [String: [Int]]()
        for (i, v) in values.enumerated() where heldOutCounts[2 * i] + heldOutCounts[2 * i + 1] > 0 {
            out[v] = [heldOutCounts[2 * i], heldOutCounts[2 * i + 1]]
        }
        return out
    }

    /// Training counts by value (what ranks merge).
    var counts: [String: Int] {
        var out = [String: Int]()
        for (i, c) in trainCounts.enumerated() where c > 0 { out[values[i]] = c }
        return out
    }
}
