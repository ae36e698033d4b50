import CortadoCore
import CortadoData
import Foundation

/// Where a `BatchLoader` takes its rows from: the rank's whole share in memory
/// (`InMemoryRows`) or chunks read from the shards as training goes (`ChunkedRows`). Called
/// from one thread at a time (the loader thread, or the main thread without prefetch).
protocol BatchSource: AnyObject {
    /// Whether every row step `step` takes is in memory now.
    func isReady(_ step: Int) -> Bool
    /// Reads one piece ahead of `step`, the next step to assemble; false when nothing can be
    /// read now (all buffers hold rows still to be used, or everything is read).
    func readAhead(_ step: Int) throws -> Bool
    /// Copies step `step`'s rows: features into x (batch, d), labels into y (batch), their
    /// local row indices (0 = the rank's first training row) into rows (batch).
    func assemble(
        _ step: Int, x: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Int32>, rows: UnsafeMutablePointer<Int32>)
    /// Bytes of training rows (and their bookkeeping) this source holds.
    var bytes: Int { get }
    /// For the start-up log: what the source holds.
    var summary: String { get }
}

/// Assembles the classifier's training batches into one of two slots (double buffering).
/// With `prefetch`, a thread created once in `start` assembles step s+1 into the other slot
/// while the main thread trains on step s, so the copy (and, chunked, the shard reads) leave
/// the critical path; without it, `batch` assembles on the calling thread. Both run the same
/// `BatchSource` code on the same steps, so the batches are the same rows in the same order
/// bit for bit. Nothing is allocated after `init`.
final class BatchLoader {
    let batch: Int, featureCount: Int
    let source: BatchSource
    let prefetch: Bool
    /// The slots: features (2, batch, featureCount), labels (2, batch), local rows (2, batch).
    private let x: UnsafeMutableBufferPointer<Float>, y: UnsafeMutableBufferPointer<Int32>,
        rows: UnsafeMutableBufferPointer<Int32>
    /// Guards the counters below; the loader thread waits on it for a free slot, the main
    /// thread for a ready one.
    private let cond = NSCondition()
    /// Steps < `ready` are assembled; the main thread has moved past steps < `released`.
    private var ready = 0, released = 0, end = 0
    private var stopping = false, running = false
    /// A loader-thread failure (a shard that cannot be read): the main thread aborts with it.
    private var failure: String?
    /// Seconds the main thread spent waiting for (or, without prefetch, assembling) batches.
    private(set) var dataSeconds = 0.0
    private var thread = pthread_t()

    init(source: BatchSource, batch: Int, featureCount: Int, prefetch: Bool) {
        self.source = source
        self.batch = batch
        self.featureCount = featureCount
        self.prefetch = prefetch
        x = .allocate(capacity: 2 * batch * featureCount)
        y = .allocate(capacity: 2 * batch)
        rows = .allocate(capacity: 2 * batch)
    }

    deinit { x.deallocate(); y.deallocate(); rows.deallocate() }

    /// Bytes the loader holds: its slots and its source's rows.
    var bytes: Int { 2 * batch * (featureCount * 4 + 8) + source.bytes }

    /// Before the step loop: the next batch is step `step`, and none after `end` is needed.
    /// With prefetch, starts the loader thread (once), which begins assembling at once.
    func start(at step: Int, end: Int) throws {
        ready = step
        released = step
        self.end = end
        guard prefetch, !running else { return }
        running = true
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(
            &thread, nil,
            { raw in
                let loader = Unmanaged<BatchLoader>.fromOpaque(raw!).takeRetainedValue()
                loader.run()
                return nil
            }, context)
        guard rc == 0 else {
            Unmanaged<BatchLoader>.fromOpaque(context).release()
            running = false
            throw CortadoError.io("loader thread not started (pthread_create \(rc)); set loader.prefetch: false")
        }
    }

    /// After the step loop (or on the way out): ends the loader thread and waits for it, so no
    /// shard read runs beside what follows (model files, test scoring).
    func stop() {
        guard running else { return }
        cond.lock()
        stopping = true
        cond.broadcast()
        cond.unlock()
        pthread_join(thread, nil)
        running = false
    }

    /// Step `step`'s batch: features (batch, featureCount), labels (batch) and local row
    /// indices (batch), valid until the next call. Steps come in order, one each call.
    /// A loader failure is returned as a message for the caller's abort path.
    func batch(_ step: Int) -> Result<
        (x: UnsafePointer<Float>, y: UnsafePointer<Int32>, rows: UnsafePointer<Int32>), LoaderFailure
    > {
        let t0 = monotonicSeconds()
        defer { dataSeconds += monotonicSeconds() - t0 }
        let slot = step & 1
        if prefetch {
            cond.lock()
            released = step // step - 1 is done: its slot may take step + 1
            cond.broadcast()
            while ready <= step && failure == nil { cond.wait() }
            let failed = failure
            cond.unlock()
            if let failed { return .failure(LoaderFailure(message: failed)) }
        } else {
            do {
                while !source.isReady(step) {
                    guard try source.readAhead(step) else {
                        return .failure(LoaderFailure(message: "step \(step): rows not readable (loader bug)"))
                    }
                }
            } catch {
                return .failure(LoaderFailure(message: Self.describe(error)))
            }
            assemble(step, slot: slot)
        }
        let i = slot * batch
        return .success(
            (
                UnsafePointer(x.baseAddress! + i * featureCount), UnsafePointer(y.baseAddress! + i),
                UnsafePointer(rows.baseAddress! + i)
            ))
    }

    private func assemble(_ step: Int, slot: Int) {
        let i = slot * batch
        source.assemble(step, x: x.baseAddress! + i * featureCount, y: y.baseAddress! + i, rows: rows.baseAddress! + i)
    }

    /// The loader thread: assemble the next step as soon as its slot is free and its rows are
    /// in memory; in between, read ahead; otherwise sleep until the main thread frees a slot.
    private func run() {
        var next = ready
        while true {
            cond.lock()
            let slotFree = next < end && next < released + 2, stop = stopping
            cond.unlock()
            if stop { return }
            if slotFree && source.isReady(next) {
                assemble(next, slot: next & 1)
                next += 1
                cond.lock()
                ready = next
                cond.broadcast()
                cond.unlock()
                continue
            }
            // The source is touched by this thread alone: no lock while reading.
            let didRead: Bool
            do { didRead = try source.readAhead(next) } catch { fail(Self.describe(error)); return }
            if didRead { continue }
            if slotFree { fail("step \(next): rows not readable (loader bug)"); return }
            cond.lock()
            while !stopping && !(next < end && next < released + 2) { cond.wait() }
            cond.unlock()
        }
    }

    private func fail(_ message: String) {
        cond.lock()
        failure = message
        cond.broadcast()
        cond.unlock()
    }

    private static func describe(_ error: Error) -> String { (error as? CortadoError)?.message ?? "\(error)" }
}

/// Why the loader could not deliver a batch (its message names the file and rows).
struct LoaderFailure: Error { let message: String }

/// The rank's whole share of the training split in memory (`LocalData`), in `EpochPlan`'s
/// order. The order of an epoch is filled when its first step is assembled, in the loader's
/// own buffer: the main thread never reads it, it gets each batch's rows with the batch.
final class InMemoryRows: BatchSource {
    let data: LocalData
    let plan: EpochPlan
    private let order: EpochOrder

    init(data: LocalData, plan: EpochPlan) {
        self.data = data
        self.plan = plan
        order = EpochOrder(plan: plan)
    }

    func isReady(_ step: Int) -> Bool { true }
    func readAhead(_ step: Int) throws -> Bool { false }

    func assemble(
        _ step: Int, x: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Int32>, rows: UnsafeMutablePointer<Int32>
    ) {
        let batchRows = order.rows(step: step)
        rows.update(from: batchRows, count: plan.batch)
        data.gather(batchRows, count: plan.batch, x: x, y: y)
    }

    var bytes: Int { data.bytes + order.bytes }
    var summary: String { "whole share in memory (\(data.rows) rows)" }
}
