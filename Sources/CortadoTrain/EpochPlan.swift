import CortadoCore
import Foundation

/// Which of this rank's training rows each step of an epoch takes, when the rank holds its
/// whole share in memory. Each data partition is shuffled by its own stream (seed, epoch,
/// partition); step s takes rows s·b..<(s+1)·b of each of this rank's partitions, in partition
/// order (b = batch / partitions per rank). The order depends only on (seed, epoch, partition),
/// so a resumed run, a prefetching loader and the synchronous path all see the same rows.
struct EpochPlan {
    let seed: UInt64
    /// This rank's partitions, as row ranges of the split; contiguous, in order.
    let parts: [Range<Int>]
    /// Index of this rank's first partition among all partitions.
    let firstPartition: Int
    let batch: Int
    let stepsPerEpoch: Int

    var rows: Range<Int> { parts.first!.lowerBound..<parts.last!.upperBound }
    var partBatch: Int { batch / parts.count }
    /// Size of `fill`'s order buffer, (stepsPerEpoch, batch).
    var orderCount: Int { stepsPerEpoch * batch }
    /// Size of `fill`'s scratch: the largest partition.
    var scratchCount: Int { parts.map(\.count).max()! }

    /// Fills `order` (stepsPerEpoch, batch) with epoch `epoch`'s local row indices (0 is the
    /// rank's first row); `scratch` holds `scratchCount` values. Allocates nothing.
    func fill(order: UnsafeMutablePointer<Int32>, scratch: UnsafeMutablePointer<Int32>, epoch: Int) {
        let first = rows.lowerBound, b = partBatch
        for (j, part) in parts.enumerated() {
            let shuffled = UnsafeMutableBufferPointer(start: scratch, count: part.count)
            for i in 0..<part.count { shuffled[i] = Int32(part.lowerBound - first + i) }
            var rng = SeededRNG(seed: seed, stream: 0x0_0DE7 &+ UInt64(epoch) << 20 &+ UInt64(firstPartition + j))
            rng.shuffle(shuffled)
            for s in 0..<stepsPerEpoch {
                (order + s * batch + j * b).update(from: scratch + s * b, count: b)
            }
        }
    }
}
