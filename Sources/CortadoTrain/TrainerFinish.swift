import CortadoCore
import CortadoData
import CortadoJob
import CortadoModel
import CortadoMPI
import Foundation

/// The start-up report and the finish phase: final checkpoint, test metrics, model files and
/// the summary.
extension Trainer {
    /// The start-up lines: ranks and threads, the exchange, the teacher, the data plan, memory.
    func logStart(_ run: RunState, data: RunData, share: RankShare, threads: Int, runtimeBytes: Int) {
        let task = run.task, n = run.n, opt = run.opt
        // Parameters, gradients and this rank's optimizer state (a 1/ranks slice with ZeRO-1).
        let arenaMiB = Double(4 * (2 * n + opt.state.count)) / 1048576
        let dataMiB = Double(task.dataBytes) / 1048576
        let activationMiB =
            task.activationBytes > 0
            ? String(format: ", activations %.1f MiB", Double(task.activationBytes) / 1048576) : ""
        let teacherMiB =
            data.teacher?.cache.map { String(format: ", teacher logits %.1f MiB", Double($0.bytes) / 1048576) } ?? ""
        log(
            "cortado-train \(cortadoVersion): \(comm.size) ranks, \(threads) BLAS thread(s)/rank, model \(task.summary) (\(n) parameters)"
        )
        log("BLAS: \(BLASKernelCheck.summary)")
        if let w = BLASKernelCheck.status.warning { log("warning: \(w)") }
        log(exchangeSummary(spec: run.spec, task: task, stateMultiple: run.stateMultiple))
        if let teacher = data.teacher { log(teacher.summary) }
        log(
            "data: \(data.train.rows) training rows (\(share.rows.count) on rank 0), \(run.stepsPerEpoch) steps/epoch of \(run.batch)×\(comm.size)\(run.micro > 1 ? " (\(run.micro) micro-batches of \(run.spec.batchSize) per exchange)" : ""), \(run.totalSteps) steps; training rows: \(task.dataSummary)"
        )
        // The runtime is what the process held before loading data (MPI, BLAS, libraries);
        // peak RSS is compared with the other items, which are ours.
        log(
            "memory/rank: arenas \(String(format: "%.1f", arenaMiB)) MiB, data \(String(format: "%.1f", dataMiB)) MiB\(activationMiB)\(teacherMiB); runtime (MPI, BLAS, libraries) \(String(format: "%.1f", Double(runtimeBytes) / 1048576)) MiB"
        )
    }

    /// After the step loop: the hooks' finish (pruning report, best parameters restored), the
    /// final checkpoint, test metrics and model files, then the summary.
    func finish(_ run: inout RunState, data: RunData, hooks: [any TrainingHook], wallStart: Double) throws
        -> TrainSummary
    {
        let task = run.task
        task.endTraining() // training rows freed: the end phase (model files, scoring) needs room
        HDF5File.releaseFreeMemory()
        for hook in hooks { hook.finish(&run) }
        hooks.enter(.finishing, step: run.step)
        run.lastCheckpoint = writeCheckpoint(
            spec: run.spec, step: run.step, stepsPerEpoch: run.stepsPerEpoch, task: task, opt: run.opt)
        if run.lastVal.isEmpty && run.hasValidation { run.lastVal = task.evaluate(.validation) }
        var testMetrics = [String: Double]()
        let reference = Set(task.referenceMetrics)
        for (k, v) in task.evaluate(.test) { testMetrics[reference.contains(k) ? k : "fp32_" + k] = v }
        var models = [String: String]()
        if comm.rank == 0 {
            let emitted = emitModels(run, manifest: data.manifest)
            models = emitted.models
            testMetrics.merge(emitted.metrics) { $1 }
        }
        let summary = summarize(run, models: models, testMetrics: testMetrics, wallStart: wallStart)
        if comm.rank == 0 {
            // The --json line as a file: what `cortado registry push` and `cortado report` read
            // (throughput, step split and peak RSS per rank, wall time).
            let path = (run.spec.runDir as NSString).appendingPathComponent("summary.json")
            do { try AtomicFile.write(try stableJSON(summary, pretty: true), to: path) } catch {
                log("warning: \(path): \(describe(error))")
            }
        }
        return summary
    }

    /// Rank 0: the `emit` model files and their test metrics; a failure takes the abort path
    /// (the other ranks are already in the final reductions).
    func emitModels(_ run: RunState, manifest: DatasetManifest) -> (models: [String: String], metrics: [String: Double])
    {
        let spec = run.spec, task = run.task, step = run.step, runDir = spec.runDir
        do {
            let metadata = try ModelMetadata.make(
                spec: spec, specJSON: spec.canonicalJSON, manifest: manifest, data: spec.data,
                step: step, worldSize: comm.size)
            return try services.emitter.map {
                try task.emitModels(emit: spec.emit, runDir: runDir, metadata: metadata, emitter: $0)
            }
                ?? (models: [:], metrics: [:])
        } catch let e as CortadoError {
            comm.abort("writing model files: \(e.message)", code: e.exitCode)
        } catch {
            comm.abort("writing model files: \(error)", code: 4)
        }
    }

    /// The summary and the closing lines (collective: the step split and peak RSS of every rank).
    func summarize(_ run: RunState, models: [String: String], testMetrics: [String: Double], wallStart: Double)
        -> TrainSummary
    {
        let split = run.timing.split, timing = run.timing, step = run.step
        let byRank = stepSplitByRank(split.compute, split.data, split.exchange, split.update, steps: split.steps)
        if comm.size > 1, let compute = byRank["compute"], let exchange = byRank["exchange"] {
            log(straggler(compute: compute, exchange: exchange))
        }
        let peaks = comm.allgather(String(peakRSSBytes())).map { (Double($0) ?? 0) / 1048576 }
        let peak = peaks.max() ?? 0
        let summary = TrainSummary(
            runDir: run.spec.runDir, worldSize: comm.size, steps: step, checkpoint: run.lastCheckpoint, models: models,
            validation: run.lastVal, test: testMetrics,
            samplesPerSecond: Double(timing.trainSamples) / max(timing.trainTime, 1e-9),
            steadySamplesPerSecond: timing.laterSamples > 0
                ? Double(timing.laterSamples) / max(timing.laterTime, 1e-9) : nil,
            flopsPerSample: run.task.flopsPerExample, peakRSSMiBMax: peak, peakRSSMiB: peaks,
            wallSeconds: monotonicSeconds() - wallStart,
            stepMilliseconds: byRank.mapValues { $0[0] }, stepMillisecondsByRank: byRank,
            blasKernel: BLASKernelCheck.status.kernel, blasKernelAuto: BLASKernelCheck.status.automatic,
            bestEpoch: run.bestEpoch)
        let shownTest =
            run.task.logMetrics.map { String(format: "%@ %.4f", $0, testMetrics["fp32_" + $0] ?? .nan) }
            + testMetrics.keys.filter {
                $0.hasSuffix("_model_accuracy") || $0.hasSuffix("_model_rmse")
            }.sorted()
            .map { String(format: "%@ %.4f", $0, testMetrics[$0]!) }
            + run.task.referenceMetrics.compactMap { k in
                testMetrics[k].map { k.hasSuffix("_rows") ? "\(k) \(Int($0))" : String(format: "%@ %.4f", k, $0) }
            }
        log(
            String(
                format: "done: %d steps, test %@, %.0f samples/s, peak RSS %.0f MiB/rank (max)",
                step, shownTest.joined(separator: ", "), summary.samplesPerSecond, peak))
        for (k, v) in models.sorted(by: { $0.key < $1.key }) { log("model \(k): \(v)") }
        return summary
    }
}
