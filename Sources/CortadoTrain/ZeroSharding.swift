import CortadoCore
import CortadoData
import CortadoJob
import CortadoModel
import CortadoMPI
import Foundation

/// ZeRO stage 1 (Rajbhandari et al., 2020): the optimizer state is sharded across ranks. Rank
/// r owns the contiguous slice `mine` (≈ count/ranks values) of the parameter arena and keeps
/// momentum/moments for it alone. Each step the gradients are reduce-scattered (each rank gets
/// the sum for its slice), each rank updates its slice of the parameters, and the slices are
/// allgathered — the same communication volume as one allreduce, and the same arithmetic as
/// the unsharded update on each value, so results match it (bit for bit with two ranks; tested).
///
/// Checkpoints stay unsharded (the full state, in arena layout) so any run can resume any
/// other: rank 0 gathers the state into a buffer it allocates for the write and frees after.
final class ZeroSharding {
    let comm: Communicator
    /// Parameters in the arena.
    let count: Int
    /// This rank's slice of the arena.
    let mine: Range<Int>
    /// Per rank, in rank order: slice lengths and starts (MPI's Int32 counts).
    let counts: UnsafeMutableBufferPointer<Int32>, displacements: UnsafeMutableBufferPointer<Int32>
    private var norm = [0.0]
    /// `distributed.precision: bf16 | fp16`: the reduce-scatter in 16 bits, summed in fp32 on
    /// the owner, which updates from that fp32 sum; the parameters are allgathered in fp32.
    /// `distributed.exchange: shm`: reduce-scatter and allgather through shared memory.
    let arena: (any ArenaExchange)?
    var half: HalfExchange? { arena as? HalfExchange }

    init(comm: Communicator, count: Int, distributed: JobSpec.Distributed = .init()) throws {
        guard count < Int(Int32.max) else {
            throw CortadoError.usage("distributed.zero: \(count) parameters exceed MPI's 2^31 count")
        }
        self.comm = comm
        self.count = count
        counts = .allocate(capacity: comm.size)
        displacements = .allocate(capacity: comm.size)
        for r in 0..<comm.size {
            let s = rowRange(total: count, rank: r, size: comm.size)
            counts[r] = Int32(s.count)
            displacements[r] = Int32(s.lowerBound)
        }
        mine = rowRange(total: count, rank: comm.rank, size: comm.size)
        arena = try makeArenaExchange(comm: comm, count: count, distributed)
        if let shared = arena as? SharedMemoryExchange, shared.hosts > 1 {
            throw CortadoError.usage(
                "distributed.exchange: shm with distributed.zero runs on one host; this job spans \(shared.hosts) (set distributed.zero: false for the hierarchical exchange)"
            )
        }
        if let arena { precondition(arena.mine == mine, "\(type(of: arena)) and ZeRO-1 slices differ") }
    }

    deinit { counts.deallocate(); displacements.deallocate() }

    /// Sums the gradients: this rank's slice of the sum ends up at `g[mine]` (the rest of the
    /// arena is left stale), and the `extras` status slots after the arena are summed whole.
    func exchange(_ g: UnsafeMutablePointer<Float>, extras: Int) {
        if let arena {
            arena.reduceScatter(g)
        } else {
            comm.reduceScatterSum(g, counts: counts.baseAddress!, displacements: displacements.baseAddress!)
        }
        comm.allreduceSum(g + count, count: extras)
    }

    /// Every rank's updated slice to every rank.
    func allgather(_ params: UnsafeMutablePointer<Float>) {
        if let shared = arena as? SharedMemoryExchange { return shared.allgather(params) }
        comm.allgatherInPlace(params, counts: counts.baseAddress!, displacements: displacements.baseAddress!)
    }

    /// A slice's sum (of squares, for the global gradient norm) summed over the ranks: one
    /// small allreduce into a stored buffer, so the step allocates nothing.
    func sumOverRanks(_ value: Double) -> Double {
        norm[0] = value
        comm.allreduceSum(&norm)
        return norm[0]
    }

    /// Trainable ranges of the arena, as ranges of this rank's slice (0-based in it).
    func local(_ ranges: [Range<Int>]?) -> [Range<Int>] {
        (ranges ?? [0..<count]).compactMap { r in
            let lo = max(r.lowerBound, mine.lowerBound), hi = min(r.upperBound, mine.upperBound)
            return lo < hi ? (lo - mine.lowerBound)..<(hi - mine.lowerBound) : nil
        }
    }

    /// Collective. Rank 0 returns the full optimizer state (`multiple` arenas of `count`, the
    /// unsharded layout) in a buffer the caller deallocates; the others return nil.
    func gatherState(_ state: Arena<Float>, multiple: Int) -> UnsafeMutableBufferPointer<Float>? {
        let full: UnsafeMutableBufferPointer<Float>? = comm.rank == 0 ? .allocate(capacity: multiple * count) : nil
        for k in 0..<multiple {
            let slice = state.base + k * mine.count
            if let full {
                (full.baseAddress! + k * count + mine.lowerBound).update(from: slice, count: mine.count)
                comm.gather(
                    full.baseAddress! + k * count, counts: counts.baseAddress!,
                    displacements: displacements.baseAddress!)
            } else {
                comm.gather(slice, counts: counts.baseAddress!, displacements: displacements.baseAddress!)
            }
        }
        return full
    }

    /// Collective, the reverse of `gatherState`: rank 0's full state (`multiple` × `count`)
    /// goes out in slices; every rank stores its own into `state`.
    func scatterState(_ full: UnsafeMutablePointer<Float>?, into state: Arena<Float>, multiple: Int) {
        for k in 0..<multiple {
            let slice = state.base + k * mine.count
            if let full {
                comm.scatter(full + k * count, counts: counts.baseAddress!, displacements: displacements.baseAddress!)
                slice.update(from: full + k * count + mine.lowerBound, count: mine.count)
            } else {
                comm.scatter(slice, counts: counts.baseAddress!, displacements: displacements.baseAddress!)
            }
        }
    }
}
