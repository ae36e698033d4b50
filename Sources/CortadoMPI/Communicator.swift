import CMPI
import CortadoCore
import Foundation

/// With NodeWindow.swift, the only place that calls MPI. Wraps a private duplicate of MPI_COMM_WORLD (so nothing else
/// in the process can match our messages) and offers the few collectives training needs.
///
/// Every method is a collective that every rank must call in the same order; none is ever
/// called under `if rank == 0`. MPI counts are 32-bit, so large buffers go in chunks.
public final class Communicator: Collective {
    public let rank: Int
    public let size: Int
    public let hostname: String
    var comm: MPI_Comm? // internal: NodeWindow.swift splits it

    /// Initializes MPI once per process. Safe to call without mpirun (a world of one rank).
    public init() {
        // SERIALIZED: the gradient exchange's communication thread (distributed.overlap:
        // thread) makes MPI calls, never at the same time as the main thread.
        var provided: Int32 = 0
        MPI_Init_thread(nil, nil, Int32(MPI_THREAD_SERIALIZED), &provided)
        var dup: MPI_Comm?
        MPI_Comm_dup(cortado_mpi_comm_world(), &dup)
        comm = dup
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(dup, &r)
        MPI_Comm_size(dup, &s)
        rank = Int(r)
        size = Int(s)
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, 255)
        hostname = String(cString: buf)
    }

    public var name: String { "rank \(rank) (\(hostname))" }

    /// Whether this process was started by mpirun/srun (so MPI_Init connects to a job) rather
    /// than by hand (where `Solo` serves and MPI is never initialized).
    public static var launchedByMPI: Bool {
        let env = ProcessInfo.processInfo.environment
        return env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMIX_RANK"] != nil || env["PMI_RANK"] != nil
    }

    /// Ranks started on this host (Open MPI's environment; falls back to the world size).
    public var localSize: Int {
        Int(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? "") ?? size
    }

    static let chunk = 1 << 28 // elements per MPI call, well below Int32.max
    /// Elements per reduction call (4 MiB of floats). Open MPI's reductions take a scratch
    /// buffer the size of the message; for a whole 40 MB arena glibc maps and unmaps it on
    /// every step (measured: +38 MiB RSS spikes and page faults each step on the wide MLP).
    /// Pieces this size stay in the heap, are reused, and still run at full bandwidth.
    public static let reductionPiece = 1 << 20

    /// In-place sum across ranks of a Float buffer (the gradient arena), in pieces.
    public func allreduceSum(_ buf: UnsafeMutablePointer<Float>, count: Int) {
        var off = 0
        while off < count {
            let n = min(Self.reductionPiece, count - off)
            MPI_Allreduce(cortado_mpi_in_place(), buf + off, Int32(n), cortado_mpi_float(), cortado_mpi_sum(), comm)
            off += n
        }
    }

    /// Sum-reduces `buf` block by block (rank r's block, `counts[r]` values at
    /// `displacements[r]`, summed onto rank r): a reduce-scatter that leaves each rank's block
    /// of the sum in place, the ZeRO-1 gradient exchange. Done as in-place MPI_Reduce calls of
    /// at most `reductionPiece` values, so MPI's scratch stays small (see `reductionPiece`);
    /// the other ranks' blocks in `buf` are left as scratch.
    public func reduceScatterSum(
        _ buf: UnsafeMutablePointer<Float>, counts: UnsafePointer<Int32>, displacements: UnsafePointer<Int32>
    ) {
        for r in 0..<size {
            var off = Int(displacements[r])
            let end = off + Int(counts[r])
            while off < end {
                let n = Int32(min(Self.reductionPiece, end - off))
                if r == rank {
                    MPI_Reduce(
                        cortado_mpi_in_place(), buf + off, n, cortado_mpi_float(), cortado_mpi_sum(), Int32(r), comm)
                } else {
                    MPI_Reduce(buf + off, nil, n, cortado_mpi_float(), cortado_mpi_sum(), Int32(r), comm)
                }
                off += Int(n)
            }
        }
    }

    /// In place: every rank's block `buf[displacements[r] ..< + counts[r]]` goes to every rank
    /// (ZeRO-1: each rank updated its slice of the parameters; all need all of them).
    public func allgatherInPlace(
        _ buf: UnsafeMutablePointer<Float>, counts: UnsafePointer<Int32>, displacements: UnsafePointer<Int32>
    ) {
        MPI_Allgatherv(
            cortado_mpi_in_place(), 0, cortado_mpi_float(), buf, counts, displacements, cortado_mpi_float(), comm)
    }

    /// 16-bit values (the reduced-precision gradient exchange), rank to rank: this rank sends
    /// `send[displacements[r] ..< + counts[r]]` to rank r and receives every rank s's block
    /// for it at `recv[s · counts[rank] ..< + counts[rank]]`, in rank order. Moves bits only,
    /// so the owner sums them in an order of its own choosing (MPI_Alltoallv).
    /// `recvCounts`/`recvDisplacements` (size each) are scratch the caller allocated once.
    public func allToAll(
        _ send: UnsafePointer<UInt16>, counts: UnsafePointer<Int32>, displacements: UnsafePointer<Int32>,
        recv: UnsafeMutablePointer<UInt16>, recvCounts: UnsafeMutablePointer<Int32>,
        recvDisplacements: UnsafeMutablePointer<Int32>
    ) {
        for s in 0..<size {
            recvCounts[s] = counts[rank]
            recvDisplacements[s] = Int32(s) * counts[rank]
        }
        MPI_Alltoallv(
            send, counts, displacements, cortado_mpi_uint16(), recv, recvCounts, recvDisplacements,
            cortado_mpi_uint16(), comm)
    }

    /// `allgatherInPlace` for 16-bit values.
    public func allgatherInPlace(
        _ buf: UnsafeMutablePointer<UInt16>, counts: UnsafePointer<Int32>, displacements: UnsafePointer<Int32>
    ) {
        MPI_Allgatherv(
            cortado_mpi_in_place(), 0, cortado_mpi_uint16(), buf, counts, displacements, cortado_mpi_uint16(), comm)
    }

    /// Root collects every rank's block into `buf` at `displacements` (root's own block is
    /// already in place); other ranks send `buf[0..<counts[rank]]`.
    public func gather(
        _ buf: UnsafeMutablePointer<Float>, counts: UnsafePointer<Int32>, displacements: UnsafePointer<Int32>,
        root: Int = 0
    ) {
        if rank == root {
            MPI_Gatherv(
                cortado_mpi_in_place(), 0, cortado_mpi_float(), buf, counts, displacements, cortado_mpi_float(),
                Int32(root), comm)
        } else {
            MPI_Gatherv(buf, counts[rank], cortado_mpi_float(), nil, nil, nil, cortado_mpi_float(), Int32(root), comm)
        }
    }

    /// The reverse of `gather`: root's `buf` at `displacements` goes out in blocks; every other
    /// rank receives its block at `buf[0..<counts[rank]]`.
    public func scatter(
        _ buf: UnsafeMutablePointer<Float>, counts: UnsafePointer<Int32>, displacements: UnsafePointer<Int32>,
        root: Int = 0
    ) {
        if rank == root {
            MPI_Scatterv(
                buf, counts, displacements, cortado_mpi_float(), cortado_mpi_in_place(), 0, cortado_mpi_float(),
                Int32(root), comm)
        } else {
            MPI_Scatterv(nil, nil, nil, cortado_mpi_float(), buf, counts[rank], cortado_mpi_float(), Int32(root), comm)
        }
    }

    /// Non-blocking in-place sums in flight, at most `capacity` at once: the bucketed gradient
    /// exchange starts one per bucket as backward finishes it. Open MPI here makes no progress
    /// in the background, so the owner calls `progress()` between layers and `waitAll()` at
    /// the end. The request array is allocated once; buffers must not move until `waitAll`.
    public final class Pending {
        let comm: Communicator
        let requests: UnsafeMutableBufferPointer<MPI_Request?>
        public private(set) var count = 0

        init(comm: Communicator, capacity: Int) {
            self.comm = comm
            requests = .allocate(capacity: max(capacity, 1))
            requests.initialize(repeating: cortado_mpi_request_null())
        }
        deinit { requests.deallocate() }

        /// Starts the sum of `buf[0..<count]` across ranks (count < 2^31).
        public func startSum(_ buf: UnsafeMutablePointer<Float>, count n: Int) {
            precondition(count < requests.count && n < Int(Int32.max), "too many or too large non-blocking sums")
            MPI_Iallreduce(
                cortado_mpi_in_place(), buf, Int32(n), cortado_mpi_float(), cortado_mpi_sum(), comm.comm,
                &requests[count])
            count += 1
        }

        /// Lets MPI advance the sums in flight; returns whether all have completed.
        @discardableResult
        public func progress() -> Bool {
            var done: Int32 = 0
            MPI_Testall(Int32(count), requests.baseAddress, &done, cortado_mpi_statuses_ignore())
            return done != 0
        }

        /// Blocks until every sum started has completed; the set is then empty.
        public func waitAll() {
            MPI_Waitall(Int32(count), requests.baseAddress, cortado_mpi_statuses_ignore())
            count = 0
        }
    }

    public func pending(capacity: Int) -> Pending { Pending(comm: self, capacity: capacity) }

    /// Gathers `count` Floats from every rank into `recv` in rank order, without allocating
    /// (the sparse gradient exchange calls it every step): first each rank's count into
    /// `counts` (size), then the values at offsets `displacements` (size) into `recv`, which
    /// must hold the sum of the counts. Returns the total.
    @discardableResult
    public func allgatherv(
        _ send: UnsafePointer<Float>, count: Int, recv: UnsafeMutablePointer<Float>,
        counts: UnsafeMutablePointer<Int32>, displacements: UnsafeMutablePointer<Int32>
    ) -> Int {
        precondition(count < Int(Int32.max), "allgatherv over 2^31 values")
        var mine = Int32(count)
        MPI_Allgather(&mine, 1, cortado_mpi_int32(), counts, 1, cortado_mpi_int32(), comm)
        var total = 0
        for r in 0..<size {
            precondition(total + Int(counts[r]) < Int(Int32.max), "allgatherv over 2^31 values")
            displacements[r] = Int32(total)
            total += Int(counts[r])
        }
        MPI_Allgatherv(send, Int32(count), cortado_mpi_float(), recv, counts, displacements, cortado_mpi_float(), comm)
        return total
    }

    /// In-place sum across ranks of a few doubles (metrics).
    public func allreduceSum(_ values: inout [Double]) {
        values.withUnsafeMutableBufferPointer {
            _ = MPI_Allreduce(
                cortado_mpi_in_place(), $0.baseAddress, Int32($0.count), cortado_mpi_double(), cortado_mpi_sum(), comm)
        }
    }

    public func allreduceMin(_ value: Int) -> Int { reduceInt(value, cortado_mpi_min()) }
    public func allreduceMax(_ value: Int) -> Int { reduceInt(value, cortado_mpi_max()) }

    private func reduceInt(_ value: Int, _ op: MPI_Op?) -> Int {
        var v = Int64(value)
        MPI_Allreduce(cortado_mpi_in_place(), &v, 1, cortado_mpi_int64(), op, comm)
        return Int(v)
    }

    /// Broadcasts a Float buffer from `root` to every rank.
    public func broadcast(_ buf: UnsafeMutablePointer<Float>, count: Int, root: Int = 0) {
        var off = 0
        while off < count {
            let n = min(Self.chunk, count - off)
            MPI_Bcast(buf + off, Int32(n), cortado_mpi_float(), Int32(root), comm)
            off += n
        }
    }

    /// Broadcasts a byte array of the same length on every rank from `root`.
    public func broadcast(_ bytes: inout [UInt8], root: Int = 0) {
        bytes.withUnsafeMutableBufferPointer {
            _ = MPI_Bcast($0.baseAddress, Int32($0.count), cortado_mpi_uint8(), Int32(root), comm)
        }
    }

    /// Broadcasts bytes from `root`: length first, then the bytes.
    public func broadcastBytes(_ bytes: [UInt8], root: Int) -> [UInt8] {
        var len = [Int64(rank == root ? bytes.count : 0)]
        MPI_Bcast(&len, 1, cortado_mpi_int64(), Int32(root), comm)
        var buf = rank == root ? bytes : [UInt8](repeating: 0, count: Int(len[0]))
        broadcast(&buf, root: root)
        return buf
    }

    /// Gathers one byte string from every rank, in rank order.
    public func allgather(_ bytes: [UInt8]) -> [[UInt8]] {
        var lens = [Int64](repeating: 0, count: size)
        var myLen = Int64(bytes.count)
        MPI_Allgather(&myLen, 1, cortado_mpi_int64(), &lens, 1, cortado_mpi_int64(), comm)
        var counts = [Int32](), displs = [Int32]()
        var total = 0
        for l in lens {
            precondition(total + Int(l) < Int(Int32.max), "allgather over 2 GiB")
            counts.append(Int32(l)); displs.append(Int32(total)); total += Int(l)
        }
        var recv = [UInt8](repeating: 0, count: max(total, 1))
        var send = bytes.isEmpty ? [0] : bytes
        MPI_Allgatherv(&send, Int32(bytes.count), cortado_mpi_uint8(), &recv, counts, displs, cortado_mpi_uint8(), comm)
        return (0..<size).map { Array(recv[Int(displs[$0])..<(Int(displs[$0]) + Int(counts[$0]))]) }
    }

    /// Gathers one string from every rank, in rank order.
    public func allgather(_ s: String) -> [String] {
        allgather(Array(s.utf8)).map { String(decoding: $0, as: UTF8.self) }
    }

    public func barrier() { MPI_Barrier(comm) }

    /// The single abort path for what cannot be agreed (a failure inside the step loop): prints
    /// one rank-prefixed line and tears the whole job down via MPI_Abort.
    public func abort(_ message: String, code: Int32) -> Never {
        printError("cortado-train: \(name): \(message)")
        MPI_Abort(comm, code)
        exit(code)
    }

    /// Ends MPI cleanly; call once on every rank.
    public func finalize() {
        if comm != nil { MPI_Comm_free(&comm) }
        MPI_Finalize()
    }
}
