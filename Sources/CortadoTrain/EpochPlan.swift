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

/// A plan's row order, one epoch at a time: refilled when a step of another epoch asks for its
/// rows. The in-memory batch source and the recommender and text tasks share it. Sized once;
/// allocates nothing after `init`.
final class EpochOrder {
    let plan: EpochPlan
    /// (stepsPerEpoch, batch) local row indices of epoch `epoch`.
    private let order: UnsafeMutableBufferPointer<Int32>, scratch: UnsafeMutableBufferPointer<Int32>
    private var epoch = -1

    init(plan: EpochPlan) {
        self.plan = plan
        order = .allocate(capacity: plan.orderCount)
        scratch = .allocate(capacity: plan.scratchCount)
    }

    deinit { order.deallocate(); scratch.deallocate() }

    /// Bytes of the two buffers.
    var bytes: Int { (plan.orderCount + plan.scratchCount) * MemoryLayout<Int32>.stride }

    /// The local rows of `step`'s batch (plan.batch of them), valid until a step of another
    /// epoch is asked for.
    func rows(step: Int) -> UnsafePointer<Int32> {
        let e = step / plan.stepsPerEpoch
        if e != epoch {
            plan.fill(order: order.baseAddress!, scratch: scratch.baseAddress!, epoch: e)
            epoch = e
        }
        return UnsafePointer(order.baseAddress! + (step % plan.stepsPerEpoch) * plan.batch)
    }
}
