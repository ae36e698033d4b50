import CortadoCore
import Foundation

/// What a request asks a model version for.
public enum JobInput: Sendable {
    /// Classifier: (rows, inputSize) encoded features, row-major.
    case features([Float])
    /// Recommender: user ids (model ids, 1-based) and the number of items per user.
    case users([Int32], k: Int)
}

/// What a model version answers.
public enum JobOutput: Sendable {
    /// (rows, classes) probabilities, row-major, and the argmax per row.
    case classes(probabilities: [Float], predicted: [Int])
    /// Per user: the top items (ids) and their scores, best first.
    case topK(items: [[Int32]], scores: [[Float]])
}

/// Why the queue turned a request away or gave up on it.
public enum QueueError: Error, Sendable {
    /// The bounded queue holds `queued` rows of `limit`: the client should retry later (503).
    case full(queued: Int, limit: Int)
    /// The model version stopped (unloaded) before the job ran.
    case stopped
    /// The request's time limit passed while it waited (it never ran).
    case cancelled
}

/// One request's rows waiting for (or in) a batch. The continuation is resumed exactly once:
/// by the worker that ran it, by cancellation, or when the queue stops.
final class BatchJob: @unchecked Sendable {
    let rows: Int
    let input: JobInput
    let enqueued = monotonicSeconds()
    var started = 0.0
    var output: JobOutput?
    private let lock = NSLock()
    private var continuation: CheckedContinuation<(JobOutput, Double), Error>?
    private var finished = false
    /// The result when it came before the continuation was attached.
    private var result: Result<(JobOutput, Double), Error>?

    init(rows: Int, input: JobInput) {
        self.rows = rows
        self.input = input
    }

    /// Hands the waiting request's continuation to the job; if the job already finished (a
    /// fast batch can beat the caller here), resumes it at once with that result.
    func attach(_ c: CheckedContinuation<(JobOutput, Double), Error>) {
        lock.lock()
        if let r = result {
            lock.unlock()
            c.resume(with: r)
            return
        }
        continuation = c
        lock.unlock()
    }

    /// Resumes the waiting request once; later calls do nothing. True if this call did it.
    @discardableResult
    func finish(_ result: Result<(JobOutput, Double), Error>) -> Bool {
        lock.lock()
        guard !finished else {
            lock.unlock()
            return false
        }
        finished = true
        let c = continuation
        continuation = nil
        if c == nil { self.result = result }
        lock.unlock()
        c?.resume(with: result)
        return true
    }

    var isFinished: Bool {
        lock.lock()
        defer { lock.unlock() }
        return finished
    }
}

/// Runs batches on a model version. One engine per inference thread: engines hold scratch
/// buffers and are used by their thread only.
protocol BatchEngine: AnyObject {
    /// Computes every job's `output` (the jobs' rows together fit the engine's batch size,
    /// except a single job larger than it, which runs alone).
    func run(_ jobs: [BatchJob])
}

/// Dynamic batching for one model version: a bounded FIFO of requests and a fixed set of
/// inference threads. A free thread takes the oldest request and waits up to `maxDelay` for
/// more to fill `maxBatch` rows, then runs them as one batch — the trade Triton's dynamic
/// batcher makes: a little latency at low load for much higher throughput under load.
/// Plain Swift threads and a condition variable: the model runtime never sees HTTP or the
/// async world, and a blocking BLAS call never stalls the server's event loops.
final class BatchQueue: @unchecked Sendable {
    let maxBatch: Int
    let maxDelay: Double // seconds
    let capacity: Int // rows queued at most
    let observer: QueueObserver?
    private let cond = NSCondition()
    private var jobs = [BatchJob]()
    private var queuedRows = 0
    private var stopping = false
    private var running = 0
    private var threads = [Thread]()
    /// Engines not running a batch: the threads take one per batch, and `runInline` borrows one.
    private var free: [BatchEngine]
    /// How long a one-row batch takes (seconds, a moving average; infinity until measured).
    private var loneSeconds = Double.infinity
    /// A lone request shorter than this runs on the caller's thread (`runInline`).
    let inlineLimit: Double
    private let engineCount: Int

    init(
        engines: [BatchEngine], maxBatch: Int, maxDelayMicroseconds: Int, capacity: Int, observer: QueueObserver?,
        inlineLimitMicroseconds: Int
    ) {
        self.maxBatch = max(1, maxBatch)
        maxDelay = Double(max(0, maxDelayMicroseconds)) / 1e6
        self.capacity = max(1, capacity)
        self.observer = observer
        inlineLimit = Double(max(0, inlineLimitMicroseconds)) / 1e6
        free = engines
        engineCount = engines.count
        running = engines.count
        for i in engines.indices {
            let t = Thread { [self] in loop() }
            t.name = "cortado-infer-\(i)"
            t.stackSize = 8 << 20
            threads.append(t)
        }
        for t in threads { t.start() }
    }

    /// Queues the rows and waits for their batch; returns the output and the seconds the job
    /// waited in the queue. Throws `QueueError.full` at once when the queue is at capacity.
    func submit(rows: Int, input: JobInput) async throws -> (JobOutput, Double) {
        let job = BatchJob(rows: rows, input: input)
        try enqueue(job)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { c in job.attach(c) }
        } onCancel: {
            job.finish(.failure(QueueError.cancelled))
        }
    }

    /// Runs a one-row request at once on the calling thread (the connection's event loop) when
    /// nothing is queued or running, no batching delay is set and a one-row batch is
    /// known to take less than `inlineLimit`: for a small model the two thread hand-offs
    /// (to an inference thread and back) cost far more than the model. Nil: queue it instead.
    func runInline(rows: Int, input: JobInput) -> JobOutput? {
        guard rows == 1, maxDelay == 0 else { return nil }
        cond.lock()
        // Only when the version is idle (nothing queued, no batch running): under load the row
        // is worth more batched with others than scored alone here.
        guard !stopping, jobs.isEmpty, free.count == engineCount, loneSeconds < inlineLimit,
            let engine = free.popLast()
        else {
            cond.unlock()
            return nil
        }
        cond.unlock()
        let job = BatchJob(rows: rows, input: input)
        let t0 = monotonicSeconds()
        engine.run([job])
        let took = monotonicSeconds() - t0
        cond.lock()
        free.append(engine)
        loneSeconds = 0.9 * loneSeconds + 0.1 * took
        // A request queued meanwhile may be waiting for this engine.
        if !jobs.isEmpty { cond.broadcast() }
        cond.unlock()
        observer?.batch(rows: rows)
        return job.output
    }

    private func enqueue(_ job: BatchJob) throws {
        cond.lock()
        defer { cond.unlock() }
        if stopping { throw QueueError.stopped }
        // A request larger than the whole queue is still taken when the queue is empty (it
        // runs alone); otherwise the bound holds.
        if queuedRows > 0, queuedRows + job.rows > capacity {
            throw QueueError.full(queued: queuedRows, limit: capacity)
        }
        jobs.append(job)
        queuedRows += job.rows
        observer?.depth(queuedRows)
        cond.signal()
    }

    /// Stops taking requests; queued ones still run, then the threads exit.
    func stop() {
        cond.lock()
        stopping = true
        cond.broadcast()
        cond.unlock()
    }

    /// Blocks until every thread has exited (after `stop`).
    func waitStopped() {
        cond.lock()
        while running > 0 { cond.wait() }
        cond.unlock()
    }

    private func loop() {
        while true {
            cond.lock()
            while (jobs.isEmpty || free.isEmpty) && !(stopping && jobs.isEmpty) { cond.wait() }
            if jobs.isEmpty && stopping {
                running -= 1
                cond.broadcast()
                cond.unlock()
                return
            }
            // Wait for the batch to fill, up to maxDelay after the oldest job arrived.
            let deadline = jobs[0].enqueued + maxDelay
            while !stopping && queuedRows < maxBatch {
                let left = deadline - monotonicSeconds()
                if left <= 0 { break }
                _ = cond.wait(until: Date(timeIntervalSinceNow: left))
                if jobs.isEmpty { break }
            }
            // (Only with a batching delay can another thread take the last free engine meanwhile.)
            if free.isEmpty {
                cond.unlock()
                continue
            }
            var batch = [BatchJob](), rows = 0
            while let j = jobs.first, batch.isEmpty || rows + j.rows <= maxBatch {
                jobs.removeFirst()
                queuedRows -= j.rows
                if j.isFinished { continue } // cancelled while it waited
                batch.append(j)
                rows += j.rows
            }
            observer?.depth(queuedRows)
            // More work left: let another thread start on it now.
            if !jobs.isEmpty { cond.signal() }
            if batch.isEmpty {
                cond.unlock()
                continue
            }
            let engine = free.removeLast()
            cond.unlock()
            let now = monotonicSeconds()
            for j in batch { j.started = now }
            engine.run(batch)
            let took = monotonicSeconds() - now
            cond.lock()
            free.append(engine)
            if rows == 1 { loneSeconds = loneSeconds.isFinite ? 0.9 * loneSeconds + 0.1 * took : took }
            if !jobs.isEmpty { cond.signal() }
            cond.unlock()
            observer?.batch(rows: rows)
            for j in batch {
                if let out = j.output {
                    j.finish(.success((out, j.started - j.enqueued)))
                } else {
                    j.finish(.failure(CortadoError.model("the engine produced no output")))
                }
            }
        }
    }
}

/// Where the queue reports its depth and batch sizes (the server's metrics).
protocol QueueObserver: Sendable {
    func depth(_ rows: Int)
    func batch(rows: Int)
}
