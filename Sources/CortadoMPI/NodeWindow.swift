import CMPI
import CortadoCore
import Foundation

/// Memory that the ranks of one host share (MPI-3: MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)
/// and MPI_Win_allocate_shared): each local rank owns a segment of `floats` values that every
/// local rank reads and writes directly, with plain loads and stores. For jobs over several
/// hosts it also holds the communicator of the ranks that have the same local rank on every
/// host (one per host), which a hierarchical exchange sums across.
///
/// Set up once (a collective on the world communicator) and kept for the process: the
/// segments are allocated here, never in a step, and MPI_Finalize frees them.
public final class NodeWindow {
    /// This rank's place among the ranks of its host, and how many there are.
    public let localRank: Int, localSize: Int
    /// Hosts in the job; every host runs `localSize` ranks (checked).
    public let hosts: Int
    /// (localSize) every local rank's segment of `floats` values, in local rank order.
    public let segments: UnsafeMutableBufferPointer<UnsafeMutablePointer<Float>>
    public let floats: Int
    private var node: MPI_Comm?, cross: MPI_Comm?, win: MPI_Win?

    /// Collective over `world`. Throws (on every rank alike) when the hosts run different
    /// numbers of ranks, since the hierarchical sum pairs local rank r of every host.
    init(world: Communicator, floats: Int) throws {
        self.floats = floats
        var node: MPI_Comm?
        MPI_Comm_split_type(world.comm, Int32(MPI_COMM_TYPE_SHARED), 0, cortado_mpi_info_null(), &node)
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(node, &r)
        MPI_Comm_size(node, &s)
        localRank = Int(r)
        localSize = Int(s)
        let fewest = world.allreduceMin(localSize), most = world.allreduceMax(localSize)
        var cross: MPI_Comm?
        MPI_Comm_split(world.comm, r, Int32(world.rank), &cross)
        var h: Int32 = 0
        MPI_Comm_size(cross, &h)
        hosts = Int(h)
        self.node = node
        self.cross = cross
        var base: UnsafeMutableRawPointer?
        var win: MPI_Win?
        MPI_Win_allocate_shared(
            MPI_Aint(max(floats, 1) * MemoryLayout<Float>.stride), Int32(MemoryLayout<Float>.stride),
            cortado_mpi_info_null(), node, &base, &win)
        self.win = win
        segments = .allocate(capacity: localSize)
        for p in 0..<localSize {
            var bytes: MPI_Aint = 0, unit: Int32 = 0
            var at: UnsafeMutableRawPointer?
            MPI_Win_shared_query(win, Int32(p), &bytes, &unit, &at)
            segments[p] = at!.bindMemory(to: Float.self, capacity: max(floats, 1))
        }
        // One passive epoch for the window's life: MPI_Win_sync (in `fence`) needs one.
        MPI_Win_lock_all(Int32(MPI_MODE_NOCHECK), win)
        guard fewest == most else {
            throw CortadoError.usage(
                "distributed.exchange: shm needs the same number of ranks on every host; \(world.name) has \(localSize), hosts run \(fewest) to \(most)"
            )
        }
    }

    /// Orders the host's shared-memory accesses: every local rank's stores before the call
    /// are visible to every local rank's loads after it (MPI_Win_sync, barrier, MPI_Win_sync).
    public func fence() {
        MPI_Win_sync(win)
        MPI_Barrier(node)
        MPI_Win_sync(win)
    }

    /// In-place sum of `buf` over the ranks with this rank's local rank, one per host, in
    /// pieces of `Communicator.reductionPiece` (a no-op on one host).
    public func sumAcrossHosts(_ buf: UnsafeMutablePointer<Float>, count: Int) {
        guard hosts > 1 else { return }
        var off = 0
        while off < count {
            let n = min(Communicator.reductionPiece, count - off)
            MPI_Allreduce(cortado_mpi_in_place(), buf + off, Int32(n), cortado_mpi_float(), cortado_mpi_sum(), cross)
            off += n
        }
    }
}

extension Communicator {
    /// Collective: a shared-memory window of `floats` values per rank over this host's ranks.
    public func nodeWindow(floats: Int) throws -> NodeWindow { try NodeWindow(world: self, floats: floats) }
}
