import CortadoCore
import CortadoData
import Foundation

/// The rows of one split that this rank owns, held in memory: features (rows, d), and labels
/// (classification) or targets (regression), and the id columns (rows, k) when the data has
/// them. Loaded once before step 0; batches are gathered from it by index.
public final class LocalData {
    public let range: Range<Int>
    public let featureCount: Int
    /// Width of `ids` (0 when the data has no id columns).
    public let idColumns: Int
    /// (rows, featureCount), row-major.
    public let features: UnsafeMutableBufferPointer<Float>
    /// (rows); all zero for regression data.
    public let labels: UnsafeMutableBufferPointer<Int32>
    /// (rows) for regression data, else empty.
    public let targets: UnsafeMutableBufferPointer<Float>
    /// (rows, idColumns), row-major.
    public let ids: UnsafeMutableBufferPointer<Int32>
    public var rows: Int { range.count }

    public init(reader: SplitReader, range: Range<Int>, verifyChecksums: Bool) throws {
        self.range = range
        featureCount = reader.featureCount
        idColumns = reader.idColumns
        let n = range.count
        // Checksums first, and the read buffers they and HDF5 leave in the heap go back after
        // each step: the resident set then holds the rows and no transient copy (the peak RSS
        // target is measured against the start-up breakdown).
        if verifyChecksums {
            try reader.verifyChecksums(overlapping: range)
            HDF5File.releaseFreeMemory()
        }
        features = .allocate(capacity: max(n * featureCount, 1))
        labels = .allocate(capacity: max(n, 1))
        labels.initialize(repeating: 0)
        targets = .allocate(capacity: reader.isRegression ? max(n, 1) : 1)
        ids = .allocate(capacity: max(n * idColumns, 1))
        try reader.read(
            range, features: features.baseAddress!, labels: reader.isRegression ? nil : labels.baseAddress!,
            targets: reader.isRegression ? targets.baseAddress! : nil, ids: idColumns > 0 ? ids.baseAddress! : nil)
        HDF5File.releaseFreeMemory()
    }

    deinit {
        features.deallocate()
        labels.deallocate()
        targets.deallocate()
        ids.deallocate()
    }

    /// Copies rows `order[0..<count]` into the batch buffers x (count, d) and y (count).
    @inline(__always)
    public func gather(
        _ order: UnsafePointer<Int32>, count: Int, x: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Int32>
    ) {
        let d = featureCount
        for i in 0..<count {
            let r = Int(order[i])
            (x + i * d).update(from: features.baseAddress! + r * d, count: d)
            y[i] = labels[r]
        }
    }

    public var bytes: Int { range.count * (featureCount * 4 + 4 + idColumns * 4) }
}
