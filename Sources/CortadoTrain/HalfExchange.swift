import CKernels
import CortadoCore
import CortadoData
import CortadoJob
import CortadoMPI
import Foundation

/// The gradient exchange in 16 bits (`distributed.precision: bf16 | fp16`), as Horovod's
/// `compression=fp16` and DDP's bf16 compress hook offer it.
///
/// Each rank rounds its fp32 gradients to 16 bits (nearest, ties to even) into a buffer
/// allocated here once, and sends every rank its slice of them (one MPI_Alltoallv, the same
/// slices as ZeRO-1's). The owner of a slice adds the ranks' values in fp32, in rank order,
/// then rounds the sum to 16 bits once more and the slices are allgathered in 16 bits; every
/// rank (the owner too) converts them back into the fp32 arena. Per rank that sends
/// 2·(ranks−1)/ranks·n·2 bytes, half of a ring allreduce in fp32.
///
/// Why not an allreduce with a user-defined 16-bit sum (MPI_Op_create): its partial sums are
/// rounded to 16 bits at every hop of MPI's reduction tree, so the error grows with the ranks,
/// and the order of those roundings is whatever algorithm MPI picks for the message size.
/// Here each value is rounded exactly twice (the rank's gradient, the sum), the sum itself is
/// fp32 in a fixed order, and MPI only moves bits: the result is the same on every run and
/// for every MPI algorithm.
final class HalfExchange: ArenaExchange {
    let comm: Communicator
    let format: Int32
    let precision: ExchangePrecision
    /// Parameters in the arena (the status slots after it are not this exchange's).
    let count: Int
    /// This rank's slice of the arena (the one it sums), as ZeRO-1's `ZeroSharding.mine`.
    let mine: Range<Int>
    /// Per rank, in rank order: slice lengths and starts, and the all-to-all's receive side.
    private let counts: UnsafeMutableBufferPointer<Int32>, displacements: UnsafeMutableBufferPointer<Int32>
    private let recvCounts: UnsafeMutableBufferPointer<Int32>, recvDisplacements: UnsafeMutableBufferPointer<Int32>
    /// (count) this rank's gradients in 16 bits; after the exchange, the summed arena.
    private let wire: UnsafeMutableBufferPointer<UInt16>
    /// (ranks, mine.count) every rank's 16-bit values of this rank's slice, in rank order.
    private let inbox: UnsafeMutableBufferPointer<UInt16>

    init(comm: Communicator, count: Int, precision: ExchangePrecision) throws {
        guard precision != .fp32 else {
            throw CortadoError.usage("distributed.precision: fp32 needs no 16-bit exchange")
        }
        guard count < Int(Int32.max) else {
            throw CortadoError.usage("distributed.precision: \(count) parameters exceed MPI's 2^31 count")
        }
        self.comm = comm
        self.count = count
        self.precision = precision
        format = Int32(precision == .bf16 ? CORTADO_HALF_BF16 : CORTADO_HALF_FP16)
        counts = .allocate(capacity: comm.size)
        displacements = .allocate(capacity: comm.size)
        recvCounts = .allocate(capacity: comm.size)
        recvDisplacements = .allocate(capacity: comm.size)
        for r in 0..<comm.size {
            let s = rowRange(total: count, rank: r, size: comm.size)
            counts[r] = Int32(s.count)
            displacements[r] = Int32(s.lowerBound)
        }
        mine = rowRange(total: count, rank: comm.rank, size: comm.size)
        wire = .allocate(capacity: max(count, 1))
        inbox = .allocate(capacity: max(comm.size * mine.count, 1))
    }

    deinit {
        for p in [counts, displacements, recvCounts, recvDisplacements] { p.deallocate() }
        wire.deallocate()
        inbox.deallocate()
    }

    /// Bytes this rank sends per step: the all-to-all, plus the 16-bit allgather unless the
    /// caller shares something else instead (ZeRO-1 allgathers fp32 parameters).
    func bytesSent(allgather: Bool) -> Int {
        2 * (count - mine.count) + (allgather ? 2 * mine.count * (comm.size - 1) : 0)
    }

    /// The reduce-scatter half: rounds `g[0..<count]` to 16 bits, exchanges slices, and leaves
    /// this rank's slice of the fp32 sum at `g[mine]` (the rest of the arena is left stale).
    func reduceScatter(_ g: UnsafeMutablePointer<Float>) {
        cortado_to_half(g, wire.baseAddress!, count, format)
        comm.allToAll(
            wire.baseAddress!, counts: counts.baseAddress!, displacements: displacements.baseAddress!,
            recv: inbox.baseAddress!, recvCounts: recvCounts.baseAddress!,
            recvDisplacements: recvDisplacements.baseAddress!)
        cortado_sum_half(inbox.baseAddress!, mine.count, Int32(comm.size), mine.count, g + mine.lowerBound, format)
    }

    /// The whole exchange: `g[0..<count]` becomes the sum over ranks, rounded to 16 bits, the
    /// same bits on every rank.
    func allreduce(_ g: UnsafeMutablePointer<Float>) {
        reduceScatter(g)
        let w = wire.baseAddress!
        cortado_to_half(g + mine.lowerBound, w + mine.lowerBound, mine.count, format)
        comm.allgatherInPlace(w, counts: counts.baseAddress!, displacements: displacements.baseAddress!)
        cortado_from_half(w, g, count, format)
    }

    var summary: String {
        String(
            format:
                "gradient exchange: %@ (rounded to 16 bits, slices all-to-all, fp32 sums in rank order, 16-bit allgather): %.2f MiB sent per rank per step (fp32 allreduce: %.2f)",
            precision.rawValue, Double(bytesSent(allgather: true)) / 1048576,
            Double(8 * count * (comm.size - 1) / comm.size) / 1048576)
    }
}
