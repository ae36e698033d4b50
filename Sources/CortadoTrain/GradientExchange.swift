import COpenBLAS
import CortadoCore
import CortadoJob
import CortadoMPI
import Foundation

/// Sums a feed-forward model's gradient arena (and its trailing status slots) across ranks
/// each step, as `distributed.overlap` says (see `JobSpec.Distributed`):
///
/// - `off`: one blocking allreduce of arena + status slots after backward.
/// - `test`: the arena is cut into buckets of about `bucket_kib` at the points where backward
///   reports gradients final (`Network.gradientReadyPoints`); each bucket's MPI_Iallreduce
///   starts the moment its last layer (or row block) is done, and MPI_Testall between layers
///   moves them along, since Open MPI here progresses only inside MPI calls. After backward the
///   rest is waited for and the status slots summed on their own.
/// - `thread`: the same buckets, handed to a communication thread that runs a blocking
///   allreduce per bucket while backward goes on.
///
/// Buckets are posted in the same order on every rank (backward's order), as non-blocking
/// collectives require. Each value's sum is over the same ranks in every mode, so with two
/// ranks the results are bit-identical to `off` (tested); with more, MPI may pick another
/// summation order for a smaller message (within float rounding).
final class GradientExchange {
    let comm: Communicator
    let mode: OverlapMode
    let g: UnsafeMutablePointer<Float>
    /// Parameters in the arena; `extras` status slots follow.
    let count: Int, extras: Int
    /// In posting order: highest offsets first, as backward finishes them.
    let buckets: [Range<Int>]
    /// Whether to check each bucket for NaN/Inf before it leaves (non_finite: stop), so a
    /// rank can still name itself as the source once its buckets are in flight.
    let checkFinite: Bool
    /// `distributed.precision: bf16 | fp16` or `distributed.exchange: shm` (with overlap off
    /// only): the arena is summed by that `ArenaExchange`; the status slots by MPI in fp32.
    let arena: (any ArenaExchange)?
    private var posted = 0, checked = 0
    private var localFinite = true
    private let pending: Communicator.Pending
    /// Seconds spent inside MPI during backward (posting and progress): the trainer counts
    /// them as exchange, not compute.
    private(set) var backwardCommSeconds = 0.0
    private let work = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
    private let stopFlag = UnsafeMutablePointer<Bool>.allocate(capacity: 1)

    init(
        comm: Communicator, grads: UnsafeMutablePointer<Float>, count: Int, extras: Int, mode: OverlapMode,
        bucketValues: Int, readyPoints: [Int], checkFinite: Bool, arena: (any ArenaExchange)? = nil
    ) {
        precondition(arena == nil || mode == .off, "\(type(of: arena)) with overlap (the spec's validation refuses it)")
        self.comm = comm
        self.mode = mode
        g = grads
        self.count = count
        self.extras = extras
        self.checkFinite = checkFinite
        self.arena = arena
        buckets =
            mode == .off ? [0..<count] : gradientBuckets(count: count, readyPoints: readyPoints, size: bucketValues)
        pending = comm.pending(capacity: buckets.count)
        stopFlag.initialize(to: false)
        if mode == .thread { startThread() }
    }

    deinit {
        guard mode == .thread else { stopFlag.deallocate(); return }
        stopFlag.pointee = true
        work.signal()
        // The thread may still read the flag after this: it stays allocated (one byte).
    }

    /// Backward's report: every gradient at `offset` and above is final. Starts each bucket
    /// that is now complete, then lets MPI progress the ones in flight.
    func ready(from offset: Int) {
        guard posted < buckets.count, buckets[posted].lowerBound >= offset || mode == .test && pending.count > 0 else {
            return
        }
        let t0 = monotonicSeconds()
        while posted < buckets.count && buckets[posted].lowerBound >= offset { start(posted) }
        if mode == .test && pending.count > 0 { pending.progress() }
        backwardCommSeconds += monotonicSeconds() - t0
    }

    private func start(_ i: Int) {
        check(through: i)
        let b = buckets[i]
        if mode == .test {
            pending.startSum(g + b.lowerBound, count: b.count)
        } else if mode == .thread {
            work.signal()
        }
        posted = i + 1
    }

    private func check(through i: Int) {
        guard checkFinite else { return }
        while checked <= i {
            let b = buckets[checked]
            if localFinite { localFinite = cblas_sasum(Int32(b.count), g + b.lowerBound, 1).isFinite }
            checked += 1
        }
    }

    /// Whether this rank's own gradients were all finite (checked before they left).
    func localGradientsFinite() -> Bool {
        check(through: buckets.count - 1)
        return localFinite
    }

    /// Completes the step's exchange: starts what backward did not, waits for every bucket,
    /// sums the status slots. Identical on every rank afterwards; ready for the next step.
    func complete() {
        if let arena {
            arena.allreduce(g)
            comm.allreduceSum(g + count, count: extras)
        } else if mode == .off {
            comm.allreduceSum(g, count: count + extras)
        } else {
            while posted < buckets.count { start(posted) }
            if mode == .test { pending.waitAll() } else { for _ in buckets { done.wait() } }
            comm.allreduceSum(g + count, count: extras)
        }
        posted = 0
        checked = 0
        localFinite = true
    }

    /// The communication thread: one blocking allreduce per bucket, in posting order, each
    /// when the main thread signals it ready. The main thread makes no MPI call until it has
    /// collected every bucket's `done`, so MPI sees one thread at a time (MPI_THREAD_SERIALIZED).
    private func startThread() {
        // Raw pointers are not Sendable; the semaphores order every access to what they point at.
        struct Shared: @unchecked Sendable { let g: UnsafeMutablePointer<Float>, stop: UnsafeMutablePointer<Bool> }
        let (comm, buckets, work, done, shared) = (comm, buckets, work, done, Shared(g: g, stop: stopFlag))
        let thread = Thread {
            let (g, stop) = (shared.g, shared.stop)
            var next = 0
            while true {
                work.wait()
                if stop.pointee { return }
                let b = buckets[next]
                comm.allreduceSum(g + b.lowerBound, count: b.count)
                next = (next + 1) % buckets.count
                done.signal()
            }
        }
        thread.name = "cortado-allreduce"
        thread.start()
    }
}

/// The extension point for summing the dense gradient arena some other way than one MPI
/// allreduce: `HalfExchange` (16 bits on the wire) and `SharedMemoryExchange` (shared memory
/// on a host). `GradientExchange` calls `allreduce`; ZeRO-1 (`ZeroSharding`) calls
/// `reduceScatter` over the same slices as its own. The status slots after the arena are not
/// theirs: the callers sum those with MPI.
protocol ArenaExchange: AnyObject {
    /// Parameters in the arena.
    var count: Int { get }
    /// This rank's slice of the arena: the one `reduceScatter` leaves summed.
    var mine: Range<Int> { get }
    /// This rank's slice of the sum over ranks at `g[mine]`; the rest of `g[0..<count]` stale.
    func reduceScatter(_ g: UnsafeMutablePointer<Float>)
    /// `g[0..<count]` becomes the sum over ranks, the same bits on every rank.
    func allreduce(_ g: UnsafeMutablePointer<Float>)
    /// The start-up line on how gradients are summed.
    var summary: String { get }
}

/// The `ArenaExchange` that `distributed` asks for, or nil for MPI's fp32 allreduce (also on
/// one rank, where nothing travels and nothing is rounded). Collective (shm sets up a window).
func makeArenaExchange(comm: Communicator, count: Int, _ d: JobSpec.Distributed) throws -> (any ArenaExchange)? {
    guard comm.size > 1 else { return nil }
    switch (d.exchange, d.precision) {
    case (.shm, _): return try SharedMemoryExchange(comm: comm, count: count)
    case (.mpi, .fp32): return nil
    case (.mpi, let p): return try HalfExchange(comm: comm, count: count, precision: p)
    }
}

/// The exchange's buckets over an arena of `count` values: consecutive segments between the
/// points where backward reports gradients final (`Network.gradientReadyPoints`, falling),
/// merged until each holds at least `size` values (the last may be smaller); highest first.
public func gradientBuckets(count: Int, readyPoints: [Int], size: Int) -> [Range<Int>] {
    var points = readyPoints.filter { $0 >= 0 && $0 < count }
    if points.last != 0 { points.append(0) }
    var result = [Range<Int>](), top = count
    for p in points where top - p >= size || p == 0 {
        if p < top { result.append(p..<top) }
        top = p
    }
    return result
}
