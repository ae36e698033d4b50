import CKernels
import CortadoCore
import CortadoData
import CortadoMPI
import Foundation

/// The gradient exchange through shared memory (`distributed.exchange: shm`), for ranks that
/// share a host: an MPI-3 shared window (`NodeWindow`, allocated once at set-up) holds one
/// segment of `count` values per local rank.
///
/// Each step: (1) every rank copies its gradients into its segment; (2) after a fence, each
/// rank sums its slice (`rowRange` of the arena by local rank) over every segment in rank order
/// (CKernels' `cortado_sum_segments`) and stores the sum into its own segment's slice; (3) on
/// several hosts that slice is summed across hosts among the ranks with the same local rank
/// (one MPI allreduce per slice: the hierarchical path); (4) after a fence, every rank copies
/// every slice out of its owner's segment. A fence before (1) keeps a fast rank from
/// overwriting its segment while a slow one still reads the previous step's slices.
///
/// Each value is summed in one fixed order, so reruns give the same bits (with two ranks, the
/// plain allreduce's bits too: a + b = b + a). Memory traffic per rank: the arena copied in,
/// read once over all slices, copied out: about 3 × 4·count bytes, against the 2·(n−1)/n
/// pipelined copies and reductions of MPI's shared-memory transport plus its protocol.
final class SharedMemoryExchange: ArenaExchange {
    let window: NodeWindow
    /// Parameters in the arena (status slots after it travel with MPI, as for `HalfExchange`).
    let count: Int
    /// This rank's slice of the arena (the one it sums): by local rank; with one host, the
    /// same slices as ZeRO-1's `ZeroSharding.mine`.
    let mine: Range<Int>
    private let slices: [Range<Int>]
    private let own: UnsafeMutablePointer<Float>

    init(comm: Communicator, count: Int) throws {
        self.count = count
        let w = try comm.nodeWindow(floats: count)
        window = w
        slices = (0..<w.localSize).map { rowRange(total: count, rank: $0, size: w.localSize) }
        mine = slices[w.localRank]
        own = w.segments[w.localRank]
    }

    var hosts: Int { window.hosts }

    /// Steps (1)–(3): this rank's slice of the sum at `g[mine]` and in its segment; the rest
    /// of `g` is left as it was (stale).
    func reduceScatter(_ g: UnsafeMutablePointer<Float>) {
        window.fence()
        own.update(from: g, count: count)
        window.fence()
        cortado_sum_segments(
            UnsafePointer(OpaquePointer(window.segments.baseAddress!)), Int32(window.localSize), mine.lowerBound,
            mine.count, own + mine.lowerBound, window.hosts > 1 ? nil : g + mine.lowerBound)
        if window.hosts > 1 {
            window.sumAcrossHosts(own + mine.lowerBound, count: mine.count)
            (g + mine.lowerBound).update(from: own + mine.lowerBound, count: mine.count)
        }
    }

    /// The whole exchange: `g[0..<count]` becomes the sum over every rank of the job.
    func allreduce(_ g: UnsafeMutablePointer<Float>) {
        reduceScatter(g)
        gatherSlices(into: g)
    }

    /// ZeRO-1's allgather of updated parameters through the same segments (one host): each
    /// rank publishes its slice `params[mine]`, then copies every other rank's.
    func allgather(_ params: UnsafeMutablePointer<Float>) {
        window.fence()
        (own + mine.lowerBound).update(from: params + mine.lowerBound, count: mine.count)
        gatherSlices(into: params)
    }

    /// Step (4): after a fence, every other local rank's slice from its segment into `dest`.
    private func gatherSlices(into dest: UnsafeMutablePointer<Float>) {
        window.fence()
        for (p, s) in slices.enumerated() where p != window.localRank {
            (dest + s.lowerBound).update(from: window.segments[p] + s.lowerBound, count: s.count)
        }
    }

    var summary: String {
        let mib = Double(4 * count) / 1048576
        return String(
            format:
                "gradient exchange: shared memory (%d ranks on each of %d host(s); slices summed in rank order%@): %.2f MiB copied in and out per rank per step, no MPI transfer on the host",
            window.localSize, window.hosts, window.hosts > 1 ? ", then across hosts by local rank" : "", mib)
    }
}
