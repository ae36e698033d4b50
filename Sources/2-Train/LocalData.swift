import CortadoCore
import CortadoData
import Foundation

/// The rows of one split that this rank owns, held in memory: features (rows, d) and labels
/// (rows). Loaded once before step 0; batches are gathered from it by index.
public final class LocalData {
    public let range: Range<Int>
    public let featureCount: Int
    /// (rows, featureCount), row-major.
    public let features: UnsafeMutableBufferPointer<Float>
    /// (rows).
    public let labels: UnsafeMutableBufferPointer<Int32>
    public var rows: Int { range.count }

    public init(reader: SplitReader, range: Range<Int>, verifyChecksums: Bool) throws {
        self.range = range
        featureCount = reader.featureCount
        features = .allocate(capacity: max(range.count * featureCount, 1))
        labels = .allocate(capacity: max(range.count, 1))
        if verifyChecksums { try reader.verifyChecksums(overlapping: range) }
        try reader.read(range, features: features.baseAddress!, labels: labels.baseAddress!)
    }

    deinit {
        features.deallocate()
        labels.deallocate()
    }

    /// Copies rows `order[0..<count]` into the batch buffers x (count, d) and y (count).
    @inline(__always)
    public func gather(_ order: UnsafePointer<Int32>, count: Int, x: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Int32>) {
        let d = featureCount
        for i in 0..<count {
            let r = Int(order[i])
            (x + i * d).update(from: features.baseAddress! + r * d, count: d)
            y[i] = labels[r]
        }
    }

    public var bytes: Int { range.count * (featureCount * 4 + 4) }
}
