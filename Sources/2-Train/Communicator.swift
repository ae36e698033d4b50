import CMPI
import CortadoCore
import Foundation

/// The only place that calls MPI. Wraps a private duplicate of MPI_COMM_WORLD (so nothing else
/// in the process can match our messages) and offers the few collectives training needs.
///
/// Every method is a collective that every rank must call in the same order; none is ever
/// called under `if rank == 0`. MPI counts are 32-bit, so large buffers go in chunks.
public final class Communicator {
    public let rank: Int
    public let size: Int
    public let hostname: String
    private var comm: MPI_Comm?

    /// Initializes MPI once per process. Safe to call without mpirun (a world of one rank).
    public init() {
        var provided: Int32 = 0
        MPI_Init_thread(nil, nil, Int32(MPI_THREAD_FUNNELED), &provided)
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

    /// "rank 1 (node2)": how every message names a rank.
    public var name: String { "rank \(rank) (\(hostname))" }

    /// Ranks started on this host (Open MPI's environment; falls back to the world size).
    public var localSize: Int {
        Int(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? "") ?? size
    }

    static let chunk = 1 << 28   // elements per MPI call, well below Int32.max

    /// In-place sum across ranks of a Float buffer (the gradient arena).
    public func allreduceSum(_ buf: UnsafeMutablePointer<Float>, count: Int) {
        var off = 0
        while off < count {
            let n = min(Self.chunk, count - off)
            MPI_Allreduce(cortado_mpi_in_place(), buf + off, Int32(n), cortado_mpi_float(), cortado_mpi_sum(), comm)
            off += n
        }
    }

    /// In-place sum across ranks of a few doubles (metrics).
    public func allreduceSum(_ values: inout [Double]) {
        values.withUnsafeMutableBufferPointer {
            _ = MPI_Allreduce(cortado_mpi_in_place(), $0.baseAddress, Int32($0.count), cortado_mpi_double(), cortado_mpi_sum(), comm)
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

    /// Broadcasts a string from `root` (length first, then bytes).
    public func broadcast(_ s: String, root: Int = 0) -> String {
        var lenBytes = withUnsafeBytes(of: Int64(rank == root ? s.utf8.count : 0)) { Array($0) }
        broadcast(&lenBytes, root: root)
        let len = Int(lenBytes.withUnsafeBytes { $0.loadUnaligned(as: Int64.self) })
        var bytes = rank == root ? Array(s.utf8) : [UInt8](repeating: 0, count: len)
        broadcast(&bytes, root: root)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Gathers one string from every rank, in rank order.
    public func allgather(_ s: String) -> [String] {
        let mine = Array(s.utf8)
        var lens = [Int64](repeating: 0, count: size)
        var myLen = Int64(mine.count)
        MPI_Allgather(&myLen, 1, cortado_mpi_int64(), &lens, 1, cortado_mpi_int64(), comm)
        let maxLen = Int(lens.max() ?? 0)
        var send = mine + [UInt8](repeating: 0, count: maxLen - mine.count)
        var recv = [UInt8](repeating: 0, count: maxLen * size)
        MPI_Allgather(&send, Int32(maxLen), cortado_mpi_uint8(), &recv, Int32(maxLen), cortado_mpi_uint8(), comm)
        return (0..<size).map { String(decoding: recv[($0 * maxLen)..<($0 * maxLen + Int(lens[$0]))], as: UTF8.self) }
    }

    public func barrier() { MPI_Barrier(comm) }

    /// Runs `body` on every rank, then agrees on the outcome: if any rank threw, every rank
    /// throws the same error — the lowest failing rank's, prefixed with its name — so all ranks
    /// take the same branch and nobody is left waiting in a later collective.
    public func agree<T>(_ what: String, _ body: () throws -> T) throws -> T {
        var result: T?
        var failure: CortadoError?
        do { result = try body() } catch let e as CortadoError { failure = e } catch {
            failure = CortadoError(.io, "\(error)")
        }
        let firstFailed = allreduceMin(failure == nil ? size : rank)
        if firstFailed == size, let result { return result }
        let message = broadcast(failure.map { "\(name): \(what): \($0.message)" } ?? "", root: firstFailed)
        var code = [UInt8](repeating: UInt8(failure?.exitCode ?? 0), count: 1)
        broadcast(&code, root: firstFailed)
        let kind = CortadoError.kind(forExitCode: Int32(code[0])) ?? .distributed
        throw CortadoError(kind, message)
    }

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
