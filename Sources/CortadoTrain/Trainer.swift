import COpenBLAS
import CortadoCore
import CortadoData
import CortadoJob
import CortadoModel
import CortadoMPI
import Foundation

/// Command-line options of cortado-train that are not part of the job spec.
public struct TrainOptions {
    public var specPath: String
    public var overrides: [String] = []
    public var runDir: String?
    public var resume = false
    public var overwrite = false
    public var json = false
    /// Test hook: run one step on global rows [rank·B, (rank+1)·B), write the averaged gradient
    /// arena to this HDF5 file, and stop.
    public var probeGradient: String?
    /// Print what each rank would run with (host, cores, BLAS threads, shards, transport) and stop.
    public var dryRun = false

    public init(specPath: String) { self.specPath = specPath }
}

/// What a finished run reports (the `--json` line).
public struct TrainSummary: Codable {
    public var runDir: String
    public var worldSize: Int
    public var steps: Int
    public var checkpoint: String?
    public var models: [String: String]
    public var validation: [String: Double]
    public var test: [String: Double]
    public var samplesPerSecond: Double
    /// Samples per second over the epochs after this run's first (start-up effects such as
    /// first-touch page faults excluded); nil when the run had a single epoch.
    public var steadySamplesPerSecond: Double?
    /// Training FLOPs per sample (forward + backward), for FLOP-rate reports.
    public var flopsPerSample: Double
    public var peakRSSMiBMax: Double
    /// Each rank's peak RSS, in rank order (rank 0 also holds the end phase and, with ZeRO-1,
    /// gathers the whole optimizer state for each checkpoint).
    public var peakRSSMiB: [Double] = []
    public var wallSeconds: Double
    /// Mean milliseconds per step on rank 0: batch assembly, or with `loader.prefetch` the wait
    /// for the loader thread's batch ("data"), forward+backward
    /// ("compute", without data), gradient exchange ("exchange": the allreduce including the
    /// wait for the slowest rank), optimizer update ("update").
    public var stepMilliseconds: [String: Double] = [:]
    /// The same split for every rank, in rank order ("compute", "data", "exchange", "update"):
    /// a straggler shows as the rank with the most compute and the least exchange, since the
    /// others' exchange time is mostly waiting for it.
    public var stepMillisecondsByRank: [String: [Double]] = [:]

    enum CodingKeys: String, CodingKey {
        case runDir = "run_dir", worldSize = "world_size", steps, checkpoint, models, validation, test
        case samplesPerSecond = "samples_per_sec", steadySamplesPerSecond = "samples_per_sec_steady", flopsPerSample = "train_flops_per_sample", peakRSSMiBMax = "peak_rss_mib_max", peakRSSMiB = "peak_rss_mib", wallSeconds = "wall_sec"
        case stepMilliseconds = "step_ms", stepMillisecondsByRank = "step_ms_by_rank"
    }
}

/// The SPMD training loop. Every rank runs the same code on its own rows; the only
/// communication is one in-place allreduce of the gradient arena per step (plus small
/// reductions for metrics and set-up agreement).
public final class Trainer {
    let comm: Communicator
    let options: TrainOptions
    let services: TrainerServices
    var log: (String) -> Void
    /// ZeRO-1's sharding of the optimizer state (distributed.zero), set before step 0.
    var zero: ZeroSharding?

    public init(comm: Communicator, options: TrainOptions, services: TrainerServices = TrainerServices()) {
        self.comm = comm
        self.options = options
        self.services = services
        let isRoot = comm.rank == 0
        log = { line in if isRoot { print(line); fflush(stdout) } }
    }

    /// Runs the job. Errors thrown from here are the same on every rank (set-up failures are
    /// agreed with `comm.agree`; a non-finite loss is seen by all ranks at the same step).
    public func run() throws -> TrainSummary? {
        let wallStart = monotonicSeconds()
        // ---- set-up: everything that can fail fails here, on all ranks together ----
        var spec = try comm.agree("reading job spec") {
            var s = try JobSpec.load(path: options.specPath, overrides: options.overrides)
            if let r = options.runDir { s.runDir = r }
            return s
        }
        // Resuming on another world size keeps the *global* batch (batch_size × ranks of the
        // run that wrote the checkpoint), so the optimization continues as it would have. When
        // the new world size divides the run's data partitions the global batches are the very
        // same rows (only the summation order changes); otherwise the partitions become the new
        // ranks and the per-rank batch is rounded when it does not divide.
        var partitions = spec.dataPartitions ?? comm.size
        // Rank 0: the checkpoint a resume will start from, and the job spec that wrote it.
        var resumeFrom: (path: String, jobSpecJSON: String)?
        if options.resume {
            let newest = comm.rank == 0 ? try? Checkpoint.newest(runDir: spec.runDir, warn: { _ in }) : nil
            let ck = newest?.checkpoint
            resumeFrom = newest.map { ($0.path, $0.checkpoint.jobSpecJSON) }
            let written = comm.allreduceMax(ck?.worldSize ?? 0), ckPartitions = comm.allreduceMax(ck?.dataPartitions ?? 0)
            if written > 0 {
                let global = spec.batchSize * written
                partitions = ckPartitions % comm.size == 0 ? ckPartitions : comm.size
                if written != comm.size {
                    let b = max(1, Int((Double(global) / Double(comm.size)).rounded()))
                    log("resuming a \(written)-rank run on \(comm.size) ranks: batch_size \(spec.batchSize) → \(b) per rank (global batch \(global) → \(b * comm.size)); " +
                        (partitions == ckPartitions ? "same data order (\(partitions) data partitions)" : "\(ckPartitions) data partitions do not divide among \(comm.size) ranks: new data order"))
                    spec.batchSize = b
                }
            }
        }
        try comm.agree("partitioning data") {
            guard partitions % comm.size == 0, (spec.batchSize * comm.size) % partitions == 0 else {
                throw CortadoError.usage("data_partitions: \(partitions) must be a multiple of the \(comm.size) ranks and divide the global batch \(spec.batchSize * comm.size)")
            }
        }
        spec.dataPartitions = partitions
        let (trainReader, valReader, testReader) = try comm.agree("opening data \(spec.data)") {
            (try SplitReader(manifestPath: spec.data, split: "train"),
             try SplitReader(manifestPath: spec.data, split: "validation"),
             try SplitReader(manifestPath: spec.data, split: "test"))
        }
        let manifest = trainReader.manifest
        let model = spec.modelSpec(inputShape: manifest.featureShape)
        try comm.agree("checking the task") {
            if spec.recommender != nil {
                guard !(manifest.categoricalColumns ?? []).isEmpty else {
                    throw CortadoError.usage("\(spec.data): a recommender needs id columns (prepare them with encoding: ids)")
                }
            } else {
                guard manifest.task == "classification" else {
                    throw CortadoError.usage("\(spec.data): task '\(manifest.task)' needs model.type: recommender (feed-forward models train on classification data)")
                }
                try model.validate(classes: manifest.classes.count)
            }
        }
        // The teacher is checked (and its bytes hashed into the spec) on every rank before the
        // pre-flight comparison, so ranks that would read different teacher files disagree.
        let teacher = try spec.teacher.map { t in
            try comm.agree("checking the teacher") { try DistillationTeacher.load(t, manifest: manifest, data: spec.data, runtime: services.teacherRuntime) }
        }
        if let teacher { spec.teacher = teacher.spec }
        try preflight(spec: spec, manifest: manifest)
        // Before the run folder's job.json is rewritten: a resume keeps the run's teacher.
        try comm.agree("checking the teacher against the checkpoint") {
            if let (path, json) = resumeFrom { try DistillationTeacher.checkResume(checkpoint: path, jobSpecJSON: json, teacher: spec.teacher) }
        }

        // Default BLAS threads: this host's cores shared among its ranks, and never more than
        // the cores the rank is bound to (mpirun --bind-to core, srun --cpu-bind): threads
        // beyond those only take turns on them.
        let cores = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        let bound = Placement.allowedCores.count
        let threads = spec.threads ?? max(1, min(cores / max(comm.localSize, 1), bound > 0 ? bound : cores))
        setBLASThreads(threads)
        if comm.localSize * threads > cores {
            log("warning: \(comm.localSize) ranks × \(threads) BLAS threads exceed the \(cores) cores of this host")
        }
        let crowded = comm.allreduceMax(bound > 0 && threads > bound ? threads * 1000 + bound : 0)
        if crowded > 0 {
            log("warning: a rank is bound to \(crowded % 1000) core(s) but runs \(crowded / 1000) BLAS threads; they share those cores (set threads: \(crowded % 1000), or launch with mpirun --bind-to none)")
        }

        let B = spec.batchSize
        if let probe = options.probeGradient { return try probeGradient(spec: spec, model: model, reader: trainReader, out: probe) }

        // This rank's partitions are contiguous, so its rows are one range of the split.
        let perRank = partitions / comm.size, partBatch = B / perRank
        let parts = (0..<perRank).map { rowRange(total: trainReader.rows, rank: comm.rank * perRank + $0, size: partitions) }
        let myRows = parts.first!.lowerBound..<parts.last!.upperBound
        if options.dryRun {
            describePlacement(threads: threads, cores: cores, rows: myRows, reader: trainReader)
            return nil
        }
        // Every partition yields the same number of steps per epoch, or the allreduces pair up
        // wrongly and the job hangs: all use the smallest partition's count; each partition's
        // remainder rows (< its batch + 1) are left out of that epoch (a different set each
        // epoch, since the order is reshuffled).
        let stepsPerEpoch = comm.allreduceMin(parts.map { $0.count / partBatch }.min()!)
        try comm.agree("checking the batch") {
            if stepsPerEpoch == 0 {
                throw CortadoError.usage("batch_size \(B) is larger than a rank's share of the \(trainReader.rows) training rows (\(trainReader.rows / comm.size)); use fewer ranks or a smaller batch")
            }
        }
        let chunkRows = spec.loader?.chunkRows ?? 0
        try comm.agree("checking loader.chunk_rows") {
            guard chunkRows > 0 else { return }
            guard perRank == 1 else {
                throw CortadoError.usage("loader.chunk_rows: chunked loading shuffles one partition per rank; data_partitions \(partitions) on \(comm.size) ranks gives rank \(comm.rank) \(perRank) (set loader.chunk_rows: 0)")
            }
            let smallest = ChunkedRows.minChunk(rows: myRows.count, chunkRows: chunkRows)
            guard smallest >= B else {
                throw CortadoError.usage("loader.chunk_rows: \(chunkRows) splits rank \(comm.rank)'s \(myRows.count) rows into chunks of \(smallest) rows, fewer than batch_size \(B) (use at least 2 × batch_size)")
            }
        }
        let runDir = spec.runDir
        try comm.agree("preparing run folder \(runDir)") {
            if comm.rank == 0 { try prepareRunDir(runDir, spec: spec) }
        }
        // What the process holds before any data: MPI, BLAS, the Swift runtime and libraries.
        let runtimeBytes = comm.allreduceMax(currentRSSBytes())
        // The training rows go to the task, which frees them after the step loop: no other
        // reference may outlive the task's construction (`train = nil` below).
        var train = try comm.agree("loading training rows") {
            chunkRows > 0 ? nil : try LocalData(reader: trainReader, range: myRows, verifyChecksums: spec.verifyChecksums)
        }
        let (val, test) = try comm.agree("loading validation and test rows") {
            (try LocalData(reader: valReader, range: rowRange(total: valReader.rows, rank: comm.rank, size: comm.size), verifyChecksums: spec.verifyChecksums),
             try LocalData(reader: testReader, range: rowRange(total: testReader.rows, rank: comm.rank, size: comm.size), verifyChecksums: spec.verifyChecksums))
        }

        HDF5File.releaseFreeMemory()   // read buffers, checksum chunks: not held into training
        let plan = EpochPlan(seed: spec.seed, parts: parts, firstPartition: comm.rank * perRank, batch: B, stepsPerEpoch: stepsPerEpoch)
        let task: TrainingTask = try comm.agree("building the model") {
            if spec.recommender != nil, let train {
                return try RecommenderTask(comm: comm, job: spec, manifest: manifest, data: (train, val, test),
                                           readers: [trainReader, valReader, testReader], plan: plan, log: log)
            }
            if chunkRows > 0 && spec.verifyChecksums { try trainReader.verifyChecksums(overlapping: myRows) }
            let source: BatchSource = train.map { InMemoryRows(data: $0, plan: plan) } ??
                ChunkedRows(reader: trainReader, rows: myRows, chunkRows: chunkRows, batch: B, stepsPerEpoch: stepsPerEpoch,
                            epochs: spec.epochs, seed: spec.seed, partition: comm.rank)
            let loader = BatchLoader(source: source, batch: B, featureCount: trainReader.featureCount, prefetch: spec.loader?.prefetch ?? true)
            return ClassifierTask(comm: comm, spec: spec, model: model, classes: manifest.classes, data: (train, val, test),
                                  trainReader: trainReader, trainRange: myRows, loader: loader,
                                  testFiles: testReader.files.map(\.path), teacher: teacher)
        }
        train = nil
        let n = task.layout.count
        // ZeRO-1: this rank keeps optimizer state for its slice of the arena only.
        zero = try comm.agree("sharding the optimizer state") { try spec.distributed.zero ? ZeroSharding(comm: comm, count: n) : nil }
        let zero = zero
        let opt = Optimizer(spec: spec.optimizer, count: zero?.mine.count ?? n)
        let stateMultiple = Optimizer.stateMultiple(spec.optimizer.type)
        // Early stopping: the best parameters so far, on every rank (they are identical).
        let best = Arena<Float>(count: spec.earlyStopping == nil ? 0 : n)
        var bestScore = -Double.infinity, badEpochs = 0, stoppedEarly = false
        task.initialize(seed: spec.seed)
        if let source = spec.initFrom {
            try comm.agree("initializing from \(source)") {
                if comm.rank == 0 { log(try loadInitial(source, layout: task.layout, params: task.params, exclude: Set(spec.initExclude))) }
            }
        }
        comm.broadcast(task.params.base, count: n)   // identical start, whatever the platform's libm
        // Trainable parts of the arena: everything but the frozen layers' tensors.
        let frozen = Set(spec.freeze.map { "layers.\($0)." })
        let trainable: [Range<Int>]? = spec.freeze.isEmpty ? nil : task.layout.tensors
            .filter { t in !frozen.contains { t.name.hasPrefix($0) } }.map { $0.offset..<($0.offset + $0.count) }

        var step = 0
        // Rank 0, resuming with ZeRO-1: the checkpoint's whole optimizer state, until scattered.
        var fullState = [Float]()
        if options.resume {
            let resumed = try comm.agree("resuming from \(Checkpoint.folder(runDir: runDir))") { () -> Int in
                guard comm.rank == 0 else { return 0 }
                guard let (path, ck) = try Checkpoint.newest(runDir: runDir, warn: { self.log("warning: \($0)") }) else {
                    throw CortadoError.usage("--resume: no checkpoint in \(Checkpoint.folder(runDir: runDir))")
                }
                guard ck.layout == task.layout else { throw CortadoError.model("\(path): parameter layout differs from the job's model") }
                // Another world size: keep the *epoch progress* (examples seen), not the step
                // count, so the remaining epochs and the learning-rate schedule's position carry
                // over; the data order and the global batch (batch_size × ranks) change.
                var at = ck.step
                if ck.dataPartitions != partitions || ck.stepsPerEpoch != stepsPerEpoch {
                    at = Int((Double(ck.step) * Double(stepsPerEpoch) / Double(max(ck.stepsPerEpoch, 1))).rounded())
                    log("warning: checkpoint was written by \(ck.worldSize) ranks with \(ck.stepsPerEpoch) steps/epoch; now \(comm.size) ranks, \(stepsPerEpoch) steps/epoch: step \(ck.step) maps to step \(at) (same epoch progress); the data order and global batch differ from an uninterrupted run")
                }
                _ = ck.params.withUnsafeBufferPointer { task.params.buffer.update(fromContentsOf: $0) }
                guard ck.optimizerState.count == stateMultiple * n else {
                    throw CortadoError.model("\(path): optimizer state has \(ck.optimizerState.count) values, the job's \(spec.optimizer.type) needs \(stateMultiple * n)")
                }
                if zero == nil {
                    _ = ck.optimizerState.withUnsafeBufferPointer { opt.state.buffer.update(fromContentsOf: $0) }
                } else {
                    fullState = ck.optimizerState
                }
                log("resumed from \(path) at step \(at)")
                return at
            }
            step = comm.allreduceMax(resumed)
            comm.broadcast(task.params.base, count: n)
            if let zero {
                fullState.withUnsafeMutableBufferPointer { zero.scatterState(comm.rank == 0 ? $0.baseAddress : nil, into: opt.state, multiple: stateMultiple) }
                fullState = []
            } else {
                comm.broadcast(opt.state.base, count: opt.state.count)
            }
        }

        let totalSteps = spec.epochs * stepsPerEpoch
        // Gradual pruning: the mask and its scratch are allocated here, once. Every rank holds
        // the same parameters after each update, so every rank derives the same mask. On
        // resume the mask is rebuilt from the parameters (the pruned ones are exactly zero).
        let pruning = spec.pruning.map { p in
            (pruner: Pruner(layout: task.layout, scope: p.scope), start: p.startStep,
             end: p.endStep > 0 ? p.endStep : max(p.startStep + 1, totalSteps * 2 / 3), every: p.everySteps, final: p.sparsity)
        }
        if let pr = pruning, step > pr.start {
            let last = min(pr.start + (step - pr.start) / pr.every * pr.every, pr.end)
            pr.pruner.prune(task.params.base, to: Pruner.scheduled(step: last, start: pr.start, end: pr.end, final: pr.final))
        }
        // Parameters, gradients and this rank's optimizer state (a 1/ranks slice with ZeRO-1).
        let arenaMiB = Double(4 * (2 * n + opt.state.count)) / 1048576
        let dataMiB = Double(task.dataBytes) / 1048576
        let activationMiB = task.activationBytes > 0 ? String(format: ", activations %.1f MiB", Double(task.activationBytes) / 1048576) : ""
        let teacherMiB = teacher?.cache.map { String(format: ", teacher logits %.1f MiB", Double($0.bytes) / 1048576) } ?? ""
        log("cortado-train \(cortadoVersion): \(comm.size) ranks, \(threads) BLAS thread(s)/rank, model \(task.summary) (\(n) parameters)")
        log(exchangeSummary(spec: spec, task: task, stateMultiple: stateMultiple))
        if let teacher { log(teacher.summary) }
        log("data: \(trainReader.rows) training rows (\(myRows.count) on rank 0), \(stepsPerEpoch) steps/epoch of \(B)×\(comm.size), \(totalSteps) steps; training rows: \(task.dataSummary)")
        // The runtime is what the process held before loading data (MPI, BLAS, libraries);
        // peak RSS is compared with the other items, which are ours.
        log("memory/rank: arenas \(String(format: "%.1f", arenaMiB)) MiB, data \(String(format: "%.1f", dataMiB)) MiB\(activationMiB)\(teacherMiB); runtime (MPI, BLAS, libraries) \(String(format: "%.1f", Double(runtimeBytes) / 1048576)) MiB")

        // ---- the step loop: buffers below are the only ones it touches ----
        let g = task.grads.base
        // The part of the arena this rank updates, and its trainable ranges relative to it.
        let slice = zero?.mine ?? 0..<n
        let sliceTrainable = zero?.local(trainable) ?? trainable
        let invSize = 1 / Float(comm.size)
        var trainTime = 0.0, trainSamples = 0
        // Epochs after this run's first: the steady-state rate.
        var laterTime = 0.0, laterSamples = 0, epochsRun = 0
        // Step-time split, rank 0's clocks: compute includes data until the epoch's end.
        var split = (compute: 0.0, data: 0.0, exchange: 0.0, update: 0.0, steps: 0)
        var lastCheckpoint: String?
        let metricsPath = (runDir as NSString).appendingPathComponent("metrics.jsonl")
        var lastVal = [String: Double]()
        var skipped = 0
        let fault = FaultInjection.fromEnvironment(rank: comm.rank)
        fault?.arm()
        Preemption.install()
        let watchdog = Watchdog(timeout: spec.watchdogSeconds, rankName: comm.name)

        try comm.agree("starting the loader") { try task.beginTraining(at: step, end: totalSteps) }
        while step < totalSteps {
            let epoch = step / stepsPerEpoch
            var epochLoss = 0.0, epochHardLoss = 0.0, epochSteps = 0
            let splitBefore = split, gatheredBefore = task.dataSeconds, commBefore = task.backwardCommSeconds
            let t0 = monotonicSeconds()
            while step < totalSteps && step / stepsPerEpoch == epoch {
                watchdog.beat(step: step, .compute)
                task.grads.zero()
                let tStep = monotonicSeconds()
                let r = task.trainStep(step: step)
                var localLoss = Float(r.lossSum)
                var failure = fault?.apply(step: step, loss: &localLoss)
                // A rank whose own loss or gradient is non-finite reports itself, so the
                // message names the rank (one BLAS pass over the gradient: NaN propagates).
                if failure == nil && spec.nonFinite == .stop && !(localLoss.isFinite && task.localGradientsFinite()) {
                    failure = CortadoError(.numeric, "non-finite \(localLoss.isFinite ? "gradient" : "loss") at step \(step) (epoch \(epoch)); last checkpoint: \(lastCheckpoint ?? "none")")
                }
                // Status slots, folded into the same exchange as the gradients.
                g[n + StatusSlot.loss] = localLoss
                g[n + StatusSlot.correct] = Float(r.correct)
                g[n + StatusSlot.stopRequests] = Preemption.requested ? 1 : 0
                g[n + StatusSlot.failures] = failure == nil ? 0 : 1
                g[n + StatusSlot.hardLoss] = Float(task.hardLossSum ?? r.lossSum)
                let tExchange = monotonicSeconds()
                watchdog.beat(step: step, .exchange)
                if let zero { zero.exchange(g, extras: StatusSlot.count) } else { task.exchangeGradients() }
                let tUpdate = monotonicSeconds()
                watchdog.beat(step: step, .compute)
                if g[n + StatusSlot.failures] > 0 {
                    // Every rank learned of the failure at this same step: agree on the lowest
                    // failing rank's message and leave together; the last checkpoint stands.
                    try comm.agree("step \(step)") { if let failure { throw failure } }
                }
                let loss = Double(g[n]) / Double(B * comm.size)
                if loss.isFinite {
                    let lr = opt.learningRate(step: step, total: totalSteps)
                    // Averaging (× 1/ranks) rides in the optimizer's pass; clipping needs it done first.
                    // This rank updates `slice` (all of it, or its ZeRO-1 slice, then shared).
                    let clip = spec.optimizer.clipNorm > 0
                    if clip {
                        for i in slice { g[i] *= invSize }
                        _ = clipGlobalNorm(g, range: slice, maxNorm: spec.optimizer.clipNorm, sumOverRanks: zero?.sumOverRanks ?? { $0 })
                    }
                    opt.update(params: task.params.base + slice.lowerBound, grads: g + slice.lowerBound, lr: lr, step: step,
                               ranges: sliceTrainable, gradScale: clip ? 1 : invSize)
                    zero?.allgather(task.params.base)
                    if let pr = pruning {
                        if step >= pr.start && step <= pr.end && (step - pr.start) % pr.every == 0 {
                            pr.pruner.prune(task.params.base, to: Pruner.scheduled(step: step, start: pr.start, end: pr.end, final: pr.final))
                        } else {
                            pr.pruner.apply(task.params.base)
                        }
                    }
                    epochLoss += loss
                    epochHardLoss += Double(g[n + StatusSlot.hardLoss]) / Double(B * comm.size)
                    epochSteps += 1
                } else if spec.nonFinite == .skip {
                    skipped += 1
                    log("warning: non-finite loss at step \(step): update skipped on every rank (\(skipped) so far)")
                } else {
                    throw CortadoError(.numeric, "non-finite training loss at step \(step) (epoch \(epoch)); last checkpoint: \(lastCheckpoint ?? "none")")
                }
                split.compute += tExchange - tStep; split.exchange += tUpdate - tExchange; split.update += monotonicSeconds() - tUpdate
                split.steps += 1
                step += 1
                if g[n + StatusSlot.stopRequests] > 0 {
                    // Preemption: every rank saw the request at this step boundary. Rank 0
                    // writes the checkpoint; the barrier keeps every rank alive until it is on
                    // disk (mpirun kills the rest as soon as one rank exits non-zero).
                    watchdog.beat(step: step, .checkpoint)
                    let path = writeCheckpoint(spec: spec, step: step, stepsPerEpoch: stepsPerEpoch, task: task, opt: opt)
                    let who = comm.allgather(Preemption.requested ? Preemption.signalName : "").enumerated()
                        .filter { !$0.element.isEmpty }.map { "\($0.element) on rank \($0.offset)" }   // also the barrier
                    throw CortadoError(.preempted, "preempted (\(who.joined(separator: ", "))) at step \(step): checkpoint \(path ?? "written by rank 0"); exit 75 — run again with --resume")
                }
                if spec.checkpointEvery > 0 && step % spec.checkpointEvery == 0 && step < totalSteps {
                    watchdog.beat(step: step, .checkpoint)
                    lastCheckpoint = writeCheckpoint(spec: spec, step: step, stepsPerEpoch: stepsPerEpoch, task: task, opt: opt)
                }
            }
            let dt = monotonicSeconds() - t0
            trainTime += dt
            trainSamples += epochSteps * B * comm.size
            if epochsRun > 0 { laterTime += dt; laterSamples += epochSteps * B * comm.size }
            epochsRun += 1
            // Batch assembly (or the wait for the loader) ran inside the compute window.
            let gathered = task.dataSeconds - gatheredBefore
            split.data += gathered
            split.compute -= gathered
            // MPI calls made during backward (the overlapped exchange) count as exchange.
            let overlapped = task.backwardCommSeconds - commBefore
            split.exchange += overlapped
            split.compute -= overlapped
            watchdog.beat(step: step, .evaluation)
            lastVal = task.evaluate(.validation)
            let sps = Double(trainSamples) / max(trainTime, 1e-9)
            let eta = Double((totalSteps - step) * B * comm.size) / sps
            let shown = task.logMetrics.map { String(format: "val_%@ %.4f", $0, lastVal[$0] ?? .nan) }.joined(separator: "  ")
            // Distilling, train_loss is the total and train_ce its hard-label part alone (the
            // figure a run without a teacher reports as train_loss).
            let trainCE = epochHardLoss / Double(max(epochSteps, 1))
            let ce = spec.teacher == nil ? "" : String(format: "  train_ce %.4f", trainCE)
            log(String(format: "epoch %d/%d  step %d  train_loss %.4f%@  %@  %.0f samples/s  ETA %.0fs",
                       epoch + 1, spec.epochs, step, epochLoss / Double(max(epochSteps, 1)), ce, shown, sps, eta))
            if let es = spec.earlyStopping {
                // Every rank sees the same reduced metric, so all take the same branch.
                let key = String(es.metric.dropFirst(4))   // "val_…"
                let value = lastVal[key] ?? .nan
                let score = lowerIsBetter(key) ? -value : value
                if score > bestScore {
                    bestScore = score
                    badEpochs = 0
                    _ = best.buffer.update(fromContentsOf: task.params.buffer)
                    writeCheckpoint(spec: spec, step: step, stepsPerEpoch: stepsPerEpoch, task: task, opt: opt, best: true)
                } else {
                    badEpochs += 1
                    if badEpochs >= es.patience && step < totalSteps {
                        log("early stopping: \(es.metric) has not improved for \(badEpochs) epochs; restoring the best parameters")
                        stoppedEarly = true
                    }
                }
            }
            if comm.rank == 0 {
                var line: [String: Double] = ["epoch": Double(epoch + 1), "step": Double(step), "train_loss": epochLoss / Double(max(epochSteps, 1)),
                                              "samples_per_sec": sps, "lr": Double(opt.learningRate(step: max(step - 1, 0), total: totalSteps)),
                                              "elapsed_sec": monotonicSeconds() - wallStart,
                                              "epoch_sec": dt, "epoch_samples_per_sec": Double(epochSteps * B * comm.size) / max(dt, 1e-9),
                                              "compute_s": split.compute - splitBefore.compute, "data_s": split.data - splitBefore.data,
                                              "allreduce_s": split.exchange - splitBefore.exchange, "update_s": split.update - splitBefore.update]
                if spec.teacher != nil { line["train_ce"] = trainCE }
                for (k, v) in lastVal { line["val_" + k] = v }
                appendLine(metricsPath, line)
            }
            if stoppedEarly { break }
        }
        task.endTraining()   // training rows freed: the end phase (model files, scoring) needs room
        HDF5File.releaseFreeMemory()
        if let pr = pruning {
            let zeros = pr.pruner.zeros(task.params.base)
            log(String(format: "pruning: %d of %d prunable weights are zero (%.1f%%)", zeros, pr.pruner.prunableCount, 100 * Double(zeros) / Double(max(pr.pruner.prunableCount, 1))))
        }
        if spec.earlyStopping != nil && bestScore > -Double.infinity {
            _ = task.params.buffer.update(fromContentsOf: best.buffer)
            lastVal = task.evaluate(.validation)
        }

        // ---- the end: final checkpoint, test metrics, model files ----
        watchdog.beat(step: step, .finishing)
        lastCheckpoint = writeCheckpoint(spec: spec, step: step, stepsPerEpoch: stepsPerEpoch, task: task, opt: opt)
        if lastVal.isEmpty { lastVal = task.evaluate(.validation) }
        var testMetrics = [String: Double]()
        for (k, v) in task.evaluate(.test) { testMetrics["fp32_" + k] = v }
        var models = [String: String]()
        if comm.rank == 0 {
            do {
                let metadata = try ModelMetadata.make(spec: spec, specJSON: spec.canonicalJSON, manifest: manifest, data: spec.data,
                                                      step: step, worldSize: comm.size)
                let emitted = try services.emitter.map { try task.emitModels(emit: spec.emit, runDir: runDir, metadata: metadata, emitter: $0) }
                    ?? (models: [:], metrics: [:])
                models = emitted.models
                testMetrics.merge(emitted.metrics) { $1 }
            } catch let e as CortadoError {
                comm.abort("writing model files: \(e.message)", code: e.exitCode)
            } catch {
                comm.abort("writing model files: \(error)", code: 4)
            }
        }
        let byRank = stepSplitByRank(split.compute, split.data, split.exchange, split.update, steps: split.steps)
        if comm.size > 1, let compute = byRank["compute"], let exchange = byRank["exchange"] {
            log(straggler(compute: compute, exchange: exchange))
        }
        let peaks = comm.allgather(String(peakRSSBytes())).map { (Double($0) ?? 0) / 1048576 }
        let peak = peaks.max() ?? 0
        let summary = TrainSummary(runDir: runDir, worldSize: comm.size, steps: step, checkpoint: lastCheckpoint, models: models,
                                   validation: lastVal, test: testMetrics,
                                   samplesPerSecond: Double(trainSamples) / max(trainTime, 1e-9),
                                   steadySamplesPerSecond: laterSamples > 0 ? Double(laterSamples) / max(laterTime, 1e-9) : nil,
                                   flopsPerSample: task.flopsPerExample, peakRSSMiBMax: peak, peakRSSMiB: peaks,
                                   wallSeconds: monotonicSeconds() - wallStart,
                                   stepMilliseconds: byRank.mapValues { $0[0] }, stepMillisecondsByRank: byRank)
        let shownTest = task.logMetrics.map { String(format: "%@ %.4f", $0, testMetrics["fp32_" + $0] ?? .nan) }
            + testMetrics.keys.filter { $0.hasSuffix("_model_accuracy") || $0.hasSuffix("_model_rmse") || $0.hasPrefix("fp32_popularity") }.sorted()
                .map { String(format: "%@ %.4f", $0, testMetrics[$0]!) }
        log(String(format: "done: %d steps, test %@, %.0f samples/s, peak RSS %.0f MiB/rank (max)",
                   step, shownTest.joined(separator: ", "), summary.samplesPerSecond, peak))
        for (k, v) in models.sorted(by: { $0.key < $1.key }) { log("model \(k): \(v)") }
        return summary
    }

    /// Every rank's mean step split in milliseconds (collective): each rank's own clocks.
    func stepSplitByRank(_ compute: Double, _ data: Double, _ exchange: Double, _ update: Double, steps: Int) -> [String: [Double]] {
        let keys = ["compute", "data", "exchange", "update"], size = comm.size
        var values = [Double](repeating: 0, count: keys.count * size)
        for (k, v) in [compute, data, exchange, update].enumerated() { values[k * size + comm.rank] = 1000 * v / Double(max(steps, 1)) }
        comm.allreduceSum(&values)
        return Dictionary(uniqueKeysWithValues: keys.enumerated().map { ($1, Array(values[$0 * size ..< ($0 + 1) * size])) })
    }

    /// The end-of-run line on balance: each rank's compute and exchange per step. A rank that
    /// computes longer than the others makes them wait in the exchange, whatever the network
    /// (a straggling node shows here as the rank with the most compute and the least exchange).
    func straggler(compute: [Double], exchange: [Double]) -> String {
        let list = { (v: [Double]) in v.map { String(format: "%.3f", $0) }.joined(separator: " ") }
        let slowest = compute.indices.max { compute[$0] < compute[$1] }!
        let mean = compute.reduce(0, +) / Double(compute.count)
        return String(format: "ms/step by rank: compute %@, exchange %@ (rank %d computes longest, %+.1f %% over the mean; beyond the transfer, a rank's exchange is waiting for the slower one)",
                      list(compute), list(exchange), slowest, 100 * (compute[slowest] / max(mean, 1e-12) - 1))
    }

    /// The start-up line on how gradients are summed, with ZeRO-1's memory saving per rank.
    func exchangeSummary(spec: JobSpec, task: TrainingTask, stateMultiple: Int) -> String {
        guard let zero else { return task.exchangeDescription.isEmpty ? "gradient exchange: one allreduce per step" : task.exchangeDescription }
        let full = Double(4 * stateMultiple * zero.count) / 1048576, mine = Double(4 * stateMultiple * zero.mine.count) / 1048576
        return String(format: "gradient exchange: ZeRO-1 (reduce-scatter, update of this rank's slice, allgather): optimizer state %.2f MiB/rank instead of %.2f (%.2f MiB saved)",
                      mine, full, full - mine)
    }

    /// `--dry-run`: every rank reports where it runs and what it will read; rank 0 prints the
    /// table. For debugging a placement before spending an allocation on it.
    func describePlacement(threads: Int, cores: Int, rows: Range<Int>, reader: SplitReader) {
        let allowed = Placement.allowedList ?? "?"
        var base = 0, shards = [String]()
        for f in reader.files {
            let lo = max(rows.lowerBound, base), hi = min(rows.upperBound, base + f.rows)
            if lo < hi { shards.append("\((f.path as NSString).lastPathComponent)[\(lo - base)..<\(hi - base)]") }
            base += f.rows
        }
        let mine = [comm.hostname, allowed == "0-\(cores - 1)" ? "all (\(allowed))" : allowed,
                    String(threads), "\(rows.count) rows: " + shards.joined(separator: " ")].joined(separator: "\t")
        let all = comm.allgather(mine).map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
        let hosts = all.map { $0[0] }
        let btl = ProcessInfo.processInfo.environment["OMPI_MCA_btl"].map { " (OMPI_MCA_btl=\($0))" } ?? ""
        func pad(_ s: String, _ n: Int) -> String { s.padding(toLength: max(n, s.count + 1), withPad: " ", startingAt: 0) }
        log(pad("rank", 6) + pad("host", 14) + pad("cores bound", 14) + pad("BLAS threads", 14) + pad("transport to rank 0", 24) + "data")
        for (r, f) in all.enumerated() {
            let transport = r == 0 ? "-" : (hosts[r] == hosts[0] ? "shared memory (vader)" : "tcp") + btl
            log(pad(String(r), 6) + pad(f[0], 14) + pad(f[1], 14) + pad(f[2], 14) + pad(transport, 24) + f[3])
        }
        let perHost = Dictionary(grouping: hosts, by: { $0 }).mapValues(\.count)
        for (h, n) in perHost.sorted(by: { $0.key < $1.key }) where n * threads > cores {
            log("warning: \(h): \(n) ranks × \(threads) BLAS threads exceed its \(cores) cores")
        }
    }

    /// Ranks compare what they are about to run: binary version, resolved job spec, data
    /// manifest. A mismatch fails on every rank, naming both values.
    func preflight(spec: JobSpec, manifest: DatasetManifest) throws {
        let manifestHash = SHA256.hex((try? stableJSON(manifest, pretty: false)) ?? Data())
        let mine = "version=\(cortadoVersion) spec=\(SHA256.hex(Data(spec.canonicalJSON.utf8)).prefix(16)) manifest=\(manifestHash.prefix(16))"
        let all = comm.allgather(mine)
        if let (r, other) = all.enumerated().first(where: { $0.element != all[0] }) {
            throw CortadoError(.distributed, "ranks disagree before step 0: rank 0 has \(all[0]), rank \(r) has \(other)")
        }
    }

    /// Creates the run folder and refuses to mix a new run into an old one.
    func prepareRunDir(_ runDir: String, spec: JobSpec) throws {
        try ensureWritableDirectory(Checkpoint.folder(runDir: runDir))
        let existing = try Checkpoint.checkpointFiles(runDir: runDir)
        if !existing.isEmpty && !options.resume {
            guard options.overwrite else {
                throw CortadoError.usage("\(runDir) already holds checkpoints: pass --resume to continue, --overwrite to start over, or another --run-dir")
            }
            for f in existing { unlink(f) }
            unlink((Checkpoint.folder(runDir: runDir) as NSString).appendingPathComponent("latest"))
        }
        if !options.resume { unlink((runDir as NSString).appendingPathComponent("metrics.jsonl")) }
        try AtomicFile.write(Data(spec.canonicalJSON.utf8),
                             to: (runDir as NSString).appendingPathComponent("job.json"))
    }

    /// Rank 0 writes a checkpoint (`best`: checkpoints/best.h5, the best by the early-stopping
    /// metric, outside the rotation); a failure here cannot be agreed (the others are already
    /// in the next step's allreduce), so it takes the abort path. Collective under ZeRO-1:
    /// every rank calls it, and rank 0 gathers the sharded optimizer state for the file.
    @discardableResult
    func writeCheckpoint(spec: JobSpec, step: Int, stepsPerEpoch: Int, task: TrainingTask, opt: Optimizer, best: Bool = false) -> String? {
        let gathered = zero?.gatherState(opt.state, multiple: Optimizer.stateMultiple(spec.optimizer.type))
        defer { gathered?.deallocate() }
        guard comm.rank == 0 else { return nil }
        let state = UnsafeBufferPointer(gathered ?? opt.state.buffer), params = UnsafeBufferPointer(task.params.buffer)
        let what = best ? "best checkpoint" : "checkpoint"
        do {
            // Under the process-wide HDF5 lock: a chunked loader thread may be reading shards.
            return try HDF5File.serialized {
                if best {
                    let path = (Checkpoint.folder(runDir: spec.runDir) as NSString).appendingPathComponent("best.h5")
                    try Checkpoint.writeFile(path, step: step, stepsPerEpoch: stepsPerEpoch, worldSize: comm.size, dataPartitions: spec.dataPartitions ?? comm.size,
                                             jobSpecJSON: spec.canonicalJSON, layout: task.layout, params: params, optimizerState: state)
                    return path
                }
                return try Checkpoint.write(runDir: spec.runDir, step: step, stepsPerEpoch: stepsPerEpoch, worldSize: comm.size,
                                            dataPartitions: spec.dataPartitions ?? comm.size, jobSpecJSON: spec.canonicalJSON, layout: task.layout,
                                            params: params, optimizerState: state, keep: spec.checkpointKeep)
            }
        } catch let e as CortadoError {
            comm.abort("\(what) at step \(step): \(e.message)", code: e.exitCode)
        } catch {
            comm.abort("\(what) at step \(step): \(error)", code: 4)
        }
    }

    /// Copies every tensor of an earlier model (.cmodel, fp32) or checkpoint (.h5) whose name
    /// and shape match into `net`, except excluded layers; returns a one-line report.
    func loadInitial(_ path: String, layout: ParameterLayout, params: Arena<Float>, exclude: Set<Int>) throws -> String {
        var source = [String: (shape: [Int], values: [Float])]()
        if path.hasSuffix(".h5") {
            let ck = try Checkpoint.read(path)
            for t in ck.layout.tensors { source[t.name] = (t.shape, Array(ck.params[t.offset..<(t.offset + t.count)])) }
        } else {
            let file = try ModelFile.load(path)
            guard file.header.precision == "fp32" else { throw CortadoError.model("\(path): fine-tune from an fp32 model, not \(file.header.precision)") }
            for t in file.header.tensors where t.dtype == .float32 { source[t.name] = (t.shape, file.values(t, as: Float.self)) }
        }
        var loaded = [String](), fresh = [String]()
        for t in layout.tensors {
            let parts = t.name.split(separator: ".")
            let layer = parts.count > 1 ? Int(parts[1]) ?? -1 : -1
            guard !exclude.contains(layer), let s = source[t.name], s.shape == t.shape else { fresh.append(t.name); continue }
            for j in 0..<t.count { params.base[t.offset + j] = s.values[j] }
            loaded.append(t.name)
        }
        guard !loaded.isEmpty else { throw CortadoError.model("\(path): no tensor matches the model by name and shape") }
        return "initialized \(loaded.count) tensors from \(path); fresh: \(fresh.isEmpty ? "none" : fresh.joined(separator: ", "))"
    }

    /// One step on global rows [rank·B, (rank+1)·B); rank 0 writes the averaged gradient.
    func probeGradient(spec: JobSpec, model: ModelSpec, reader: SplitReader, out: String) throws -> TrainSummary? {
        let B = spec.batchSize
        let rows = comm.rank * B..<(comm.rank + 1) * B
        let data = try comm.agree("loading probe rows") {
            try LocalData(reader: reader, range: rows, verifyChecksums: false)
        }
        let net = Network<Float>(spec: model, maxBatch: B, gradientExtras: 2)
        net.initialize(seed: spec.seed)
        comm.broadcast(net.params.base, count: net.layout.count)
        let r = net.step(data.features.baseAddress!, labels: data.labels.baseAddress!, batch: B, train: true)
        let n = net.layout.count
        net.grads.base[n] = Float(r.lossSum)
        comm.allreduceSum(net.grads.base, count: n + 2)
        for i in 0..<n { net.grads.base[i] /= Float(comm.size) }
        try comm.agree("writing \(out)") {
            guard comm.rank == 0 else { return }
            let h5 = try HDF5File.create(out)
            try h5.write("gradient", net.grads.base, dtype: .float32, shape: [n])
            try h5.setAttribute("loss", Double(net.grads.base[n]) / Double(B * comm.size))
            try h5.setAttribute("world_size", Int64(comm.size))
        }
        return nil
    }
}

/// The kernel's view of this process's binding (what mpirun --bind-to, srun --cpu-bind or
/// taskset set): /proc/self/status's Cpus_allowed_list, e.g. "0-1,4".
enum Placement {
    static var allowedList: String? {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        return status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") }
            .map { $0.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces) }
    }

    /// The cores this process may run on (empty when the list cannot be read).
    static var allowedCores: [Int] {
        (allowedList ?? "").split(separator: ",").flatMap { part -> [Int] in
            let ends = part.split(separator: "-").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard let lo = ends.first, let hi = ends.last, lo <= hi else { return [] }
            return Array(lo...hi)
        }
    }
}

/// Appends one JSON object as a line (metrics.jsonl); best effort, the run goes on without it.
func appendLine(_ path: String, _ object: [String: Double]) {
    guard let data = try? stableJSON(object.mapValues { $0.isFinite ? $0 : -1 }, pretty: false) else { return }
    if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
    guard let fh = FileHandle(forWritingAtPath: path) else { return }
    fh.seekToEndOfFile()
    fh.write(data + Data("\n".utf8))
    try? fh.close()
}
