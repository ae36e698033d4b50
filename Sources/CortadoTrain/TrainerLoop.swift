import CortadoCore
import CortadoData
import CortadoJob
import CortadoModel
import CortadoMPI
import Foundation

/// The resume, epoch and step phases.
extension Trainer {
    /// Resume: the newest checkpoint's parameters and optimizer state on every rank, and the
    /// step it maps to.
    func resume(_ run: inout RunState) throws {
        let task = run.task, opt = run.opt, n = run.n, stateMultiple = run.stateMultiple, spec = run.spec
        let stepsPerEpoch = run.stepsPerEpoch, partitions = spec.dataPartitions ?? comm.size, runDir = spec.runDir
        let zero = zero
        // Rank 0, resuming with ZeRO-1: the checkpoint's whole optimizer state, until scattered.
        var fullState = [Float]()
        let resumed = try comm.agree("resuming from \(Checkpoint.folder(runDir: runDir))") { () -> Int in
            guard comm.rank == 0 else { return 0 }
            guard let (path, ck) = try Checkpoint.newest(runDir: runDir, warn: { self.log("warning: \($0)") }) else {
                throw CortadoError.usage("--resume: no checkpoint in \(Checkpoint.folder(runDir: runDir))")
            }
            guard ck.layout == task.layout else {
                throw CortadoError.model("\(path): parameter layout differs from the job's model")
            }
            // Another world size: keep the *epoch progress* (examples seen), not the step
            // count, so the remaining epochs and the learning-rate schedule's position carry
            // over; the data order and the global batch (batch_size × ranks) change.
            var at = ck.step
            if ck.dataPartitions != partitions || ck.stepsPerEpoch != stepsPerEpoch {
                at = Int((Double(ck.step) * Double(stepsPerEpoch) / Double(max(ck.stepsPerEpoch, 1))).rounded())
                log(
                    "warning: checkpoint was written by \(ck.worldSize) ranks with \(ck.stepsPerEpoch) steps/epoch; now \(comm.size) ranks, \(stepsPerEpoch) steps/epoch: step \(ck.step) maps to step \(at) (same epoch progress); the data order and global batch differ from an uninterrupted run"
                )
            }
            _ = ck.params.withUnsafeBufferPointer { task.params.buffer.update(fromContentsOf: $0) }
            guard ck.optimizerState.count == stateMultiple * n else {
                throw CortadoError.model(
                    "\(path): optimizer state has \(ck.optimizerState.count) values, the job's \(spec.optimizer.type) needs \(stateMultiple * n)"
                )
            }
            if zero == nil {
                _ = ck.optimizerState.withUnsafeBufferPointer { opt.state.buffer.update(fromContentsOf: $0) }
            } else {
                fullState = ck.optimizerState
            }
            log("resumed from \(path) at step \(at)")
            return at
        }
        run.step = comm.allreduceMax(resumed)
        comm.broadcast(task.params.base, count: n)
        if let zero {
            fullState.withUnsafeMutableBufferPointer {
                zero.scatterState(comm.rank == 0 ? $0.baseAddress : nil, into: opt.state, multiple: stateMultiple)
            }
            fullState = []
        } else {
            comm.broadcast(opt.state.base, count: opt.state.count)
        }
    }

    /// The hooks, in the order they are called: watchdog, preemption, pruning, the metrics
    /// log (its epoch line comes before early stopping's verdict), early stopping. Arms the
    /// fault injection and installs the preemption handlers first.
    func makeHooks(_ run: RunState, pruning: PruningHook?, wallStart: Double) -> [any TrainingHook] {
        let (spec, task, opt, stepsPerEpoch) = (run.spec, run.task, run.opt, run.stepsPerEpoch)
        run.fault?.arm()
        Preemption.install()
        let watchdog = Watchdog(timeout: spec.watchdogSeconds, rankName: comm.name)
        let checkpoint = { [unowned self] (step: Int) in
            self.writeCheckpoint(spec: spec, step: step, stepsPerEpoch: stepsPerEpoch, task: task, opt: opt)
        }
        var hooks: [any TrainingHook] = [
            WatchdogHook(watchdog), PreemptionHook(comm: comm, watchdog: watchdog, checkpoint: checkpoint)
        ]
        if let pruning { hooks.append(pruning) }
        if let pace = PaceHook() { hooks.append(pace) }
        hooks.append(MetricsLogHook(run: run, isRoot: comm.rank == 0, wallStart: wallStart, log: log))
        if let es = spec.earlyStopping {
            hooks.append(
                EarlyStoppingHook(
                    es, task: task, totalSteps: run.totalSteps,
                    writeBest: { [unowned self] step in
                        self.writeCheckpoint(
                            spec: spec, step: step, stepsPerEpoch: stepsPerEpoch, task: task, opt: opt, best: true)
                    }, log: log))
        }
        return hooks
    }

    /// One epoch: its steps, the time split, the validation pass, then the hooks' verdict and
    /// record. Returns whether a hook stops the run.
    func epoch(_ run: inout RunState, hooks: [any TrainingHook]) throws -> Bool {
        let epoch = run.step / run.stepsPerEpoch, task = run.task, size = comm.size
        var sums = EpochSums()
        let splitBefore = run.timing.split, gatheredBefore = task.dataSeconds, commBefore = task.backwardCommSeconds
        let t0 = monotonicSeconds()
        while run.step < run.totalSteps && run.step / run.stepsPerEpoch == epoch {
            try step(&run, epoch: epoch, sums: &sums, hooks: hooks)
        }
        let dt = monotonicSeconds() - t0
        let samples = sums.steps * run.batch * size
        run.timing.endEpoch(
            seconds: dt, samples: samples, gathered: task.dataSeconds - gatheredBefore,
            overlapped: task.backwardCommSeconds - commBefore)
        hooks.enter(.evaluation, step: run.step)
        if run.hasValidation { run.lastVal = task.evaluate(.validation) }
        let sps = Double(run.timing.trainSamples) / max(run.timing.trainTime, 1e-9)
        let report = EpochReport(
            epoch: epoch, step: run.step, trainLoss: sums.loss / Double(max(sums.steps, 1)),
            trainCE: sums.hardLoss / Double(max(sums.steps, 1)), samplesPerSecond: sps,
            eta: Double((run.totalSteps - run.step) * run.batch * size) / sps,
            seconds: dt, samples: samples, split: run.timing.split - splitBefore, validation: run.lastVal)
        var stop = false
        for hook in hooks where hook.afterEpoch(report) { stop = true }
        for hook in hooks { hook.recordEpoch(report) }
        return stop
    }

    /// One step: forward and backward, the exchange (gradients and status slots in one
    /// collective), the status check, the update and its hooks, then the step's end (hooks,
    /// periodic checkpoint). Allocates nothing.
    func step(_ run: inout RunState, epoch: Int, sums: inout EpochSums, hooks: [any TrainingHook]) throws {
        let step = run.step, task = run.task, g = run.g, n = run.n, scale = Double(run.batch * comm.size)
        hooks.enter(.compute, step: step)
        task.grads.zero()
        let tStep = monotonicSeconds()
        // accumulate_steps micro-batches, their gradients summed in the arena (backward
        // accumulates); an overlapped exchange rides along the last one's backward only.
        var lossSum = 0.0, hardLossSum = 0.0, correct = 0
        for j in 0..<run.micro {
            task.exchangeDuringBackward = j == run.micro - 1
            let r = task.trainStep(step: step * run.micro + j)
            lossSum += r.lossSum
            hardLossSum += task.hardLossSum ?? r.lossSum
            correct += r.correct
        }
        var localLoss = Float(lossSum)
        let failure = localFailure(run, step: step, epoch: epoch, loss: &localLoss)
        // Status slots, folded into the same exchange as the gradients.
        g[n + StatusSlot.loss] = localLoss
        g[n + StatusSlot.correct] = Float(correct)
        g[n + StatusSlot.stopRequests] = Preemption.requested ? 1 : 0
        g[n + StatusSlot.failures] = failure == nil ? 0 : 1
        g[n + StatusSlot.hardLoss] = Float(hardLossSum)
        let tExchange = monotonicSeconds()
        hooks.enter(.exchange, step: step)
        if let zero { zero.exchange(g, extras: StatusSlot.count) } else { task.exchangeGradients() }
        let tUpdate = monotonicSeconds()
        hooks.enter(.compute, step: step)
        if g[n + StatusSlot.failures] > 0 {
            // Every rank learned of the failure at this same step: agree on the lowest
            // failing rank's message and leave together; the last checkpoint stands.
            try comm.agree("step \(step)") { if let failure { throw failure } }
        }
        let loss = Double(g[n]) / scale
        var gather = 0.0 // ZeRO-1's allgather of parameters: exchange, not update
        if loss.isFinite {
            gather = update(run, step: step)
            for hook in hooks { hook.afterUpdate(step: step) }
            sums.loss += loss
            sums.hardLoss += Double(g[n + StatusSlot.hardLoss]) / scale
            sums.steps += 1
        } else if run.spec.nonFinite == .skip {
            run.skipped += 1
            log("warning: non-finite loss at step \(step): update skipped on every rank (\(run.skipped) so far)")
        } else {
            throw CortadoError(
                .numeric,
                "non-finite training loss at step \(step) (epoch \(epoch)); last checkpoint: \(run.lastCheckpoint ?? "none")"
            )
        }
        run.timing.split.compute += tExchange - tStep; run.timing.split.exchange += tUpdate - tExchange + gather
        run.timing.split.update += monotonicSeconds() - tUpdate - gather
        run.timing.split.steps += 1
        run.step += 1
        for hook in hooks { try hook.afterStep(step: run.step, stopRequested: g[n + StatusSlot.stopRequests] > 0) }
        if run.spec.checkpointEvery > 0 && run.step % run.spec.checkpointEvery == 0 && run.step < run.totalSteps {
            hooks.enter(.checkpoint, step: run.step)
            run.lastCheckpoint = writeCheckpoint(
                spec: run.spec, step: run.step, stepsPerEpoch: run.stepsPerEpoch, task: task, opt: run.opt)
        }
    }

    /// This rank's own failure at `step` before the exchange: an injected fault, or (with
    /// non_finite: stop) a non-finite loss or gradient — so the message names the rank (one
    /// BLAS pass over the gradient: NaN propagates).
    func localFailure(_ run: RunState, step: Int, epoch: Int, loss localLoss: inout Float) -> CortadoError? {
        var failure = run.fault?.apply(step: step, loss: &localLoss)
        if failure == nil && run.spec.nonFinite == .stop && !(localLoss.isFinite && run.task.localGradientsFinite()) {
            failure = CortadoError(
                .numeric,
                "non-finite \(localLoss.isFinite ? "gradient" : "loss") at step \(step) (epoch \(epoch)); last checkpoint: \(run.lastCheckpoint ?? "none")"
            )
        }
        return failure
    }

    /// The optimizer update of `step`: this rank updates `slice` (all of it, or its ZeRO-1
    /// slice, then shared). Averaging (× 1/ranks) rides in the optimizer's pass; clipping
    /// needs it done first. Returns the seconds of ZeRO-1's parameter allgather, which the
    /// step split counts as exchange: it moves the whole arena, and counted as update it made
    /// ZeRO-1's update look as if it did not shrink with the ranks (issue 17).
    @discardableResult
    func update(_ run: RunState, step: Int) -> Double {
        let task = run.task, opt = run.opt, g = run.g, slice = run.slice, sliceTrainable = run.sliceTrainable
        let invSize = run.invSize, totalSteps = run.totalSteps, clipNorm = run.spec.optimizer.clipNorm
        let lr = opt.learningRate(step: step, total: totalSteps)
        let clip = clipNorm > 0
        if clip {
            for i in slice { g[i] *= invSize }
            _ = clipGlobalNorm(g, range: slice, maxNorm: clipNorm, sumOverRanks: zero?.sumOverRanks ?? { $0 })
        }
        opt.update(
            params: task.params.base + slice.lowerBound, grads: g + slice.lowerBound, lr: lr, step: step,
            ranges: sliceTrainable, gradScale: clip ? 1 : invSize)
        guard let zero else { return 0 }
        let t0 = monotonicSeconds()
        zero.allgather(task.params.base)
        return monotonicSeconds() - t0
    }
}
