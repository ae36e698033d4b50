import CortadoCore
import CortadoData
import Foundation

/// The rank's training rows read from the shards as training goes, for shares larger than
/// memory (`loader.chunk_rows`): only two chunks are held, the one being consumed and the next,
/// read ahead in pieces (HDF5 hyperslabs cut at the shards' own chunk boundaries) between batch
/// assemblies.
///
/// The rank's rows are split into `chunkCount` contiguous chunks of balanced size (they differ
/// by at most one row, each holds at least one batch, so a batch spans at most two). An epoch's
/// row stream is the chunks in an order shuffled by (seed, epoch, partition), each chunk's rows
/// shuffled by (seed, epoch, partition, chunk); step s takes positions s·B..<(s+1)·B of its
/// epoch's stream, and the tail (< B rows) is left out, like the in-memory order. The order
/// depends on nothing else, so a resumed run continues it exactly. Reads allocate inside HDF5,
/// on the loader thread; the main thread's step allocates nothing.
final class ChunkedRows: BatchSource {
    let reader: SplitReader
    /// This rank's rows of the split.
    let rows: Range<Int>
    let chunkCount: Int, batch: Int, stepsPerEpoch: Int, epochs: Int
    let seed: UInt64, partition: Int
    let featureCount: Int
    /// The largest chunk, the size of each buffer.
    let chunkCapacity: Int

    /// One chunk in memory: features (chunkCapacity, d), labels and the row shuffle
    /// (chunkCapacity); which chunk it holds, where it sits in its epoch's stream, how much is read.
    private struct Buffer {
        var features: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Int32>,
            shuffle: UnsafeMutableBufferPointer<Int32>
        var epoch = -1, chunk = 0, start = 0, count = 0, filled = 0
        var end: Int { start + count }
        var full: Bool { epoch >= 0 && filled == count }
    }
    private var buffers: (Buffer, Buffer)
    /// The chunk order of epoch `orderEpoch` (chunkCount), and each position's stream start
    /// (chunkCount + 1).
    private let chunkOrder: UnsafeMutableBufferPointer<Int32>, starts: UnsafeMutableBufferPointer<Int>
    private var orderEpoch = -1
    /// The next chunk to read: epoch · chunkCount + its place in the epoch's order; -1 before
    /// the first read (the first step fixes where reading starts).
    private var nextChunk = -1

    /// `chunkRows` is the most rows a chunk holds; the caller has checked `minChunk >= batch`.
    init(
        reader: SplitReader, rows: Range<Int>, chunkRows: Int, batch: Int, stepsPerEpoch: Int, epochs: Int,
        seed: UInt64, partition: Int
    ) {
        self.reader = reader
        self.rows = rows
        chunkCount = Self.chunkCount(rows: rows.count, chunkRows: chunkRows)
        self.batch = batch
        self.stepsPerEpoch = stepsPerEpoch
        self.epochs = epochs
        self.seed = seed
        self.partition = partition
        featureCount = reader.featureCount
        let capacity = (rows.count + chunkCount - 1) / chunkCount, d = reader.featureCount
        chunkCapacity = capacity
        func buffer() -> Buffer {
            Buffer(
                features: .allocate(capacity: capacity * d), labels: .allocate(capacity: capacity),
                shuffle: .allocate(capacity: capacity))
        }
        buffers = (buffer(), buffer())
        chunkOrder = .allocate(capacity: chunkCount)
        starts = .allocate(capacity: chunkCount + 1)
    }

    deinit {
        for b in [buffers.0, buffers.1] {
            b.features.deallocate()
            b.labels.deallocate()
            b.shuffle.deallocate()
        }
        chunkOrder.deallocate()
        starts.deallocate()
    }

    static func chunkCount(rows: Int, chunkRows: Int) -> Int { max(1, (rows + chunkRows - 1) / chunkRows) }
    /// The smallest chunk a rank with `rows` rows gets: a batch must fit in it.
    static func minChunk(rows: Int, chunkRows: Int) -> Int { rows / chunkCount(rows: rows, chunkRows: chunkRows) }

    /// Local rows (0 = the rank's first) of chunk `c`.
    private func chunkRange(_ c: Int) -> Range<Int> { rowRange(total: rows.count, rank: c, size: chunkCount) }

    private func ensureOrder(epoch: Int) {
        guard epoch != orderEpoch else { return }
        for k in 0..<chunkCount { chunkOrder[k] = Int32(k) }
        var rng = SeededRNG(seed: seed, stream: 0xC4_0000 &+ UInt64(epoch) << 20 &+ UInt64(partition))
        rng.shuffle(chunkOrder)
        starts[0] = 0
        for k in 0..<chunkCount { starts[k + 1] = starts[k] + chunkRange(Int(chunkOrder[k])).count }
        orderEpoch = epoch
    }

    private func stream(_ step: Int) -> (epoch: Int, first: Int) {
        (step / stepsPerEpoch, (step % stepsPerEpoch) * batch)
    }

    /// Whether a fully read buffer holds stream position `p` of `epoch` (no array: this runs
    /// every step).
    private func inMemory(epoch: Int, _ p: Int) -> Bool {
        func holds(_ b: Buffer) -> Bool { b.full && b.epoch == epoch && b.start <= p && p < b.end }
        return holds(buffers.0) || holds(buffers.1)
    }

    func isReady(_ step: Int) -> Bool {
        let (e, a) = stream(step)
        return inMemory(epoch: e, a) && inMemory(epoch: e, a + batch - 1)
    }

    func readAhead(_ step: Int) throws -> Bool {
        let (e, a) = stream(step)
        if nextChunk < 0 {
            ensureOrder(epoch: e)
            nextChunk = e * chunkCount + ((0..<chunkCount).first { starts[$0 + 1] > a } ?? 0)
        }
        // A chunk being read: its next piece.
        if buffers.0.epoch >= 0 && !buffers.0.full { try readPiece(&buffers.0); return true }
        if buffers.1.epoch >= 0 && !buffers.1.full { try readPiece(&buffers.1); return true }
        guard nextChunk < epochs * chunkCount else { return false }
        // The next chunk replaces the one before the previous, once no step still needs it.
        let occupant = nextChunk & 1 == 0 ? buffers.0 : buffers.1
        guard occupant.epoch < 0 || occupant.epoch < e || (occupant.epoch == e && occupant.end <= a) else {
            return false
        }
        let epoch = nextChunk / chunkCount, k = nextChunk % chunkCount
        ensureOrder(epoch: epoch)
        var b = occupant
        b.epoch = epoch
        b.chunk = Int(chunkOrder[k])
        b.start = starts[k]
        b.count = chunkRange(b.chunk).count
        b.filled = 0
        let shuffle = UnsafeMutableBufferPointer(rebasing: b.shuffle[0..<b.count])
        for i in 0..<b.count { shuffle[i] = Int32(i) }
        var rng = SeededRNG(
            seed: seed, stream: 0xC4_0001 &+ UInt64(epoch) << 40 &+ UInt64(partition) << 20 &+ UInt64(b.chunk))
        rng.shuffle(shuffle)
        try readPiece(&b)
        if nextChunk & 1 == 0 { buffers.0 = b } else { buffers.1 = b }
        nextChunk += 1
        return true
    }

    /// Reads the buffer's next rows, up to the shard's next HDF5 chunk boundary, under the
    /// process-wide HDF5 lock (rank 0's main thread writes checkpoints meanwhile).
    private func readPiece(_ b: inout Buffer) throws {
        let first = rows.lowerBound + chunkRange(b.chunk).lowerBound + b.filled
        let end = reader.pieceEnd(from: first, limit: first + b.count - b.filled)
        let (f, l, at) = (b.features, b.labels, b.filled)
        try HDF5File.serialized {
            try reader.read(first..<end, features: f + at * featureCount, labels: l + at)
        }
        b.filled += end - first
    }

    func assemble(
        _ step: Int, x: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Int32>,
        rows out: UnsafeMutablePointer<Int32>
    ) {
        let (e, a) = stream(step)
        let d = featureCount
        for i in 0..<batch {
            let p = a + i
            let b = buffers.0.epoch == e && buffers.0.start <= p && p < buffers.0.end ? buffers.0 : buffers.1
            let r = Int(b.shuffle[p - b.start])
            (x + i * d).update(from: b.features + r * d, count: d)
            y[i] = b.labels[r]
            out[i] = Int32(chunkRange(b.chunk).lowerBound + r)
        }
    }

    var bytes: Int { 2 * chunkCapacity * (featureCount * 4 + 8) + chunkCount * 12 + 8 }
    var summary: String {
        String(
            format: "chunks of %d rows read ahead from the shards (the rank's %d rows in %d chunks; 2 held, %.1f MiB)",
            chunkCapacity, rows.count, chunkCount, Double(bytes) / 1048576)
    }
}
