import CortadoCore
import Foundation

/// Pass 3's output side for one rank and one input file: encoded rows collect in one block per
/// split (8 192 rows); a full block goes to the shard files it overlaps, at its global position.
final class ShardBlocks {
    static let blockRows = 8192

    /// One split's buffered rows.
    final class Block {
        var features: [Float] // (blockRows, featureCount), row-major
        var categorical: [Int64] // (blockRows, max(categoricalCount, 1)), row-major
        var labels: [Int64] // (blockRows)
        var targets: [Float] // (blockRows)
        var rows = 0, next: Int // rows buffered; global row index of the first
        init(_ rows: Int, _ f: Int, _ c: Int, next: Int) {
            features = [Float](repeating: 0, count: rows * f)
            categorical = [Int64](repeating: 0, count: rows * max(c, 1))
            labels = [Int64](repeating: 0, count: rows)
            targets = [Float](repeating: 0, count: rows)
            self.next = next
        }
    }

    let plan: [String: [CSVPreparer.Shard]]
    let folder: OutputFolder
    let encoder: RowEncoder
    let regression: Bool
    private let blocks: [Block] // per split
    private var open = [String: HDF5File]()

    /// `offsets[s]`: the global row index in split s of this rank's first row of the file.
    init(
        plan: [String: [CSVPreparer.Shard]], offsets: [Int], folder: OutputFolder, encoder: RowEncoder, regression: Bool
    ) {
        self.plan = plan
        self.folder = folder
        self.encoder = encoder
        self.regression = regression
        blocks = offsets.map { Block(Self.blockRows, encoder.featureCount, encoder.categoricalCount, next: $0) }
    }

    /// Encodes one row (`numbers` and final `ids` by column) into split s's block; writes the
    /// block when it is full. `target` counts for regression, `label` for classification.
    func append(split s: Int, numbers: [Double], ids: [Int32], target: Float, label: Int64) throws {
        let b = blocks[s]
        let i = b.rows
        numbers.withUnsafeBufferPointer { nums in
            ids.withUnsafeBufferPointer { cats in
                b.features.withUnsafeMutableBufferPointer { f in
                    b.categorical.withUnsafeMutableBufferPointer { c in
                        encoder.encode(
                            numbers: nums.baseAddress!, ids: cats.baseAddress!,
                            features: f.baseAddress! + i * encoder.featureCount,
                            categorical: c.baseAddress! + i * encoder.categoricalCount)
                    }
                }
            }
        }
        if regression { b.targets[i] = target } else { b.labels[i] = label }
        b.rows += 1
        if b.rows == Self.blockRows { try flush(s) }
    }

    /// Writes what is left in every block and flushes the files written to.
    func finish() throws {
        for s in 0..<3 { try flush(s) }
        for h5 in open.values { try h5.flush() }
    }

    /// Writes split s's buffered rows to each shard they overlap.
    private func flush(_ s: Int) throws {
        let b = blocks[s]
        guard b.rows > 0 else { return }
        var done = 0
        for shard in plan[CSVPreparer.splitNames[s]]! where shard.rows.overlaps(b.next..<(b.next + b.rows)) {
            let lo = max(shard.rows.lowerBound, b.next + done), hi = min(shard.rows.upperBound, b.next + b.rows)
            guard lo < hi else { continue }
            let h5 = try open[shard.file] ?? HDF5File.openForWriting(folder.file(shard.file))
            open[shard.file] = h5
            try write(b, rows: (lo - b.next)..<(hi - b.next), to: h5, at: lo - shard.rows.lowerBound)
            done += hi - lo
        }
        b.next += b.rows
        b.rows = 0
    }

    /// Writes rows `rows` of block b to the datasets of one shard, from its row `at`.
    private func write(_ b: Block, rows: Range<Int>, to h5: HDF5File, at: Int) throws {
        let k = rows.lowerBound, n = rows.count
        try b.features.withUnsafeBytes {
            try h5.writeRows(
                "features", start: at, count: n, dtype: .float32, from: $0.baseAddress! + k * encoder.featureCount * 4)
        }
        if regression {
            try b.targets.withUnsafeBytes {
                try h5.writeRows("targets", start: at, count: n, dtype: .float32, from: $0.baseAddress! + k * 4)
            }
        } else {
            try b.labels.withUnsafeBytes {
                try h5.writeRows("labels", start: at, count: n, dtype: .int64, from: $0.baseAddress! + k * 8)
            }
        }
        if encoder.categoricalCount > 0 {
            try b.categorical.withUnsafeBytes {
                try h5.writeRows(
                    "categorical", start: at, count: n, dtype: .int64,
                    from: $0.baseAddress! + k * encoder.categoricalCount * 8)
            }
        }
    }
}
