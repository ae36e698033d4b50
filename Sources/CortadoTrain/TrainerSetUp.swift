import COpenBLAS
import CortadoCore
import CortadoData
import CortadoJob
import CortadoModel
import CortadoMPI
import Foundation

/// The set-up phase: everything that can fail fails here, on all ranks together, before the
/// first gradient allreduce.
extension Trainer {
    /// The job spec every rank agrees on, with its data partitions resolved; and, on rank 0 of
    /// a resume, the checkpoint it will start from and the job spec that wrote it.
    func readSpec() throws -> (spec: JobSpec, resumeFrom: (path: String, jobSpecJSON: String)?) {
        var spec = try comm.agree("reading job spec") {
            var s = try JobSpec.load(path: options.specPath, overrides: options.overrides)
            if let r = options.runDir { s.runDir = r }
            // Registry references become the version folder's file path here, once: the
            // resolved spec (job.json, checkpoints, model metadata) names the immutable file,
            // which is how a pushed model's lineage finds its parent version.
            if let f = s.initFrom, ModelReference.isReference(f) {
                do {
                    s.initFrom = try ModelReference.path(f, registry: options.registry, preferring: "model-fp32.cmodel")
                } catch let e as CortadoError {
                    throw CortadoError(e.kind, "init_from: \(e.message)")
                }
            }
            if let t = s.teacher, ModelReference.isReference(t.model) {
                do { s.teacher?.model = try ModelReference.path(t.model, registry: options.registry) } catch let e
                    as CortadoError
                { throw CortadoError(e.kind, "teacher.model: \(e.message)") }
            }
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
            let written = comm.allreduceMax(ck?.worldSize ?? 0),
                ckPartitions = comm.allreduceMax(ck?.dataPartitions ?? 0)
            if written > 0 {
                let global = spec.batchSize * written
                partitions = ckPartitions % comm.size == 0 ? ckPartitions : comm.size
                if written != comm.size {
                    let b = max(1, Int((Double(global) / Double(comm.size)).rounded()))
                    log(
                        "resuming a \(written)-rank run on \(comm.size) ranks: batch_size \(spec.batchSize) → \(b) per rank (global batch \(global) → \(b * comm.size)); "
                            + (partitions == ckPartitions
                                ? "same data order (\(partitions) data partitions)"
                                : "\(ckPartitions) data partitions do not divide among \(comm.size) ranks: new data order")
                    )
                    spec.batchSize = b
                }
            }
        }
        try comm.agree("partitioning data") {
            guard partitions % comm.size == 0, (spec.batchSize * comm.size) % partitions == 0 else {
                throw CortadoError.usage(
                    "data_partitions: \(partitions) must be a multiple of the \(comm.size) ranks and divide the global batch \(spec.batchSize * comm.size)"
                )
            }
        }
        spec.dataPartitions = partitions
        return (spec, resumeFrom)
    }

    /// Opens the splits, checks the task and the teacher (whose bytes are hashed into `spec`),
    /// and compares what every rank is about to run.
    func openData(spec: inout JobSpec, resumeFrom: (path: String, jobSpecJSON: String)?) throws -> RunData {
        let (trainReader, valReader, testReader) = try comm.agree("opening data \(spec.data)") {
            (
                try SplitReader(manifestPath: spec.data, split: "train"),
                try SplitReader(manifestPath: spec.data, split: "validation"),
                try SplitReader(manifestPath: spec.data, split: "test")
            )
        }
        let manifest = trainReader.manifest
        let model = spec.modelSpec(inputShape: manifest.featureShape)
        try comm.agree("checking the task") { [spec] in
            try taskBuilder(for: spec.family).checkData(spec: spec, manifest: manifest, model: model)
            if let es = spec.earlyStopping, valReader.rows == 0 {
                throw CortadoError.usage(
                    "early_stopping: \(spec.data) has no validation rows (prepared with --no-validation?), so \(es.metric) cannot pick an epoch; set early_stopping: null and the epochs the tuned run chose (its summary's best_epoch)"
                )
            }
        }
        // The teacher is checked (and its bytes hashed into the spec) on every rank before the
        // pre-flight comparison, so ranks that would read different teacher files disagree.
        let teacher = try spec.teacher.map { [spec] t in
            try comm.agree("checking the teacher") {
                try DistillationTeacher.load(t, manifest: manifest, data: spec.data, runtime: services.teacherRuntime)
            }
        }
        if let teacher { spec.teacher = teacher.spec }
        try preflight(spec: spec, manifest: manifest)
        // Before the run folder's job.json is rewritten: a resume keeps the run's teacher.
        try comm.agree("checking the teacher against the checkpoint") { [spec] in
            if let (path, json) = resumeFrom {
                try DistillationTeacher.checkResume(checkpoint: path, jobSpecJSON: json, teacher: spec.teacher)
            }
        }
        return RunData(
            train: trainReader, validation: valReader, test: testReader, manifest: manifest, model: model,
            teacher: teacher)
    }

    /// Sets the BLAS threads: `threads`, or by default this host's cores shared among its
    /// ranks, and never more than the cores the rank is bound to (mpirun --bind-to core, srun
    /// --cpu-bind): threads beyond those only take turns on them. Collective (a warning).
    func chooseBLASThreads(spec: JobSpec) -> (threads: Int, cores: Int) {
        let cores = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        let bound = Placement.allowedCores.count
        let threads = spec.threads ?? max(1, min(cores / max(comm.localSize, 1), bound > 0 ? bound : cores))
        setBLASThreads(threads)
        if comm.localSize * threads > cores {
            log("warning: \(comm.localSize) ranks × \(threads) BLAS threads exceed the \(cores) cores of this host")
        }
        let crowded = comm.allreduceMax(bound > 0 && threads > bound ? threads * 1000 + bound : 0)
        if crowded > 0 {
            log(
                "warning: a rank is bound to \(crowded % 1000) core(s) but runs \(crowded / 1000) BLAS threads; they share those cores (set threads: \(crowded % 1000), or launch with mpirun --bind-to none)"
            )
        }
        return (threads, cores)
    }

    /// Steps per epoch, the same on every rank; checks the batch and `loader.chunk_rows`
    /// against this rank's share.
    func planSteps(spec: JobSpec, data: RunData, share: RankShare) throws -> Int {
        let B = spec.batchSize, rows = data.train.rows, myRows = share.rows, perRank = share.perRank
        // Every partition yields the same number of steps per epoch, or the allreduces pair up
        // wrongly and the job hangs: all use the smallest partition's count; each partition's
        // remainder rows (< its batch + 1) are left out of that epoch (a different set each
        // epoch, since the order is reshuffled).
        // With accumulate_steps K a step takes K micro-batches: the epoch has 1/K as many steps.
        let K = spec.accumulateSteps
        let stepsPerEpoch = comm.allreduceMin(share.parts.map { $0.count / share.partBatch }.min()!) / K
        try comm.agree("checking the batch") {
            if stepsPerEpoch == 0 {
                throw CortadoError.usage(
                    "batch_size \(B)\(K > 1 ? " × accumulate_steps \(K)" : "") is larger than a rank's share of the \(rows) training rows (\(rows / comm.size)); use fewer ranks or a smaller batch"
                )
            }
        }
        let chunkRows = spec.loader?.chunkRows ?? 0
        try comm.agree("checking loader.chunk_rows") {
            guard chunkRows > 0 else { return }
            guard perRank == 1 else {
                throw CortadoError.usage(
                    "loader.chunk_rows: chunked loading shuffles one partition per rank; data_partitions \(spec.dataPartitions ?? comm.size) on \(comm.size) ranks gives rank \(comm.rank) \(perRank) (set loader.chunk_rows: 0)"
                )
            }
            let smallest = ChunkedRows.minChunk(rows: myRows.count, chunkRows: chunkRows)
            guard smallest >= B else {
                throw CortadoError.usage(
                    "loader.chunk_rows: \(chunkRows) splits rank \(comm.rank)'s \(myRows.count) rows into chunks of \(smallest) rows, fewer than batch_size \(B) (use at least 2 × batch_size)"
                )
            }
        }
        return stepsPerEpoch
    }

    /// Loads this rank's rows and builds the model family's task around them.
    func buildTask(spec: JobSpec, data: RunData, share: RankShare, stepsPerEpoch: Int) throws -> TrainingTask {
        let B = spec.batchSize, chunkRows = spec.loader?.chunkRows ?? 0, myRows = share.rows
        let (trainReader, valReader, testReader) = (data.train, data.validation, data.test)
        // The training rows go to the task, which frees them after the step loop: no other
        // reference may outlive the task's construction (`context` ends with this function).
        let train = try comm.agree("loading training rows") {
            chunkRows > 0
                ? nil : try LocalData(reader: trainReader, range: myRows, verifyChecksums: spec.verifyChecksums)
        }
        let (val, test) = try comm.agree("loading validation and test rows") {
            (
                try LocalData(
                    reader: valReader, range: rowRange(total: valReader.rows, rank: comm.rank, size: comm.size),
                    verifyChecksums: spec.verifyChecksums),
                try LocalData(
                    reader: testReader, range: rowRange(total: testReader.rows, rank: comm.rank, size: comm.size),
                    verifyChecksums: spec.verifyChecksums)
            )
        }
        HDF5File.releaseFreeMemory() // read buffers, checksum chunks: not held into training
        // The task sees micro-batches: K per step, micro-step s·K + j of step s. Its rows are
        // those a batch of B·K takes at step s (the plan cuts the same shuffle into B-row pieces).
        let microSteps = stepsPerEpoch * spec.accumulateSteps
        let plan = EpochPlan(
            seed: spec.seed, parts: share.parts, firstPartition: comm.rank * share.perRank, batch: B,
            stepsPerEpoch: microSteps)
        let context = TaskContext(
            comm: comm, spec: spec, data: data, train: train, validation: val, test: test, share: share,
            plan: plan, stepsPerEpoch: microSteps, log: log)
        return try comm.agree("building the model") { try taskBuilder(for: spec.family).build(context) }
    }

    /// The optimizer (over this rank's ZeRO-1 slice, or the whole arena) and the initial
    /// parameters, identical on every rank.
    func makeRun(spec: JobSpec, task: TrainingTask, stepsPerEpoch: Int) throws -> RunState {
        let n = task.layout.count
        // ZeRO-1: this rank keeps optimizer state for its slice of the arena only.
        zero = try comm.agree("sharding the optimizer state") {
            try spec.distributed.zero
                ? ZeroSharding(comm: comm, count: n, distributed: spec.distributed) : nil
        }
        let zero = zero
        let opt = Optimizer(spec: spec.optimizer, count: zero?.mine.count ?? n)
        let stateMultiple = Optimizer.stateMultiple(spec.optimizer.type)
        task.initialize(seed: spec.seed)
        if let source = spec.initFrom {
            try comm.agree("initializing from \(source)") {
                if comm.rank == 0 {
                    log(
                        try loadInitial(
                            source, layout: task.layout, params: task.params, exclude: Set(spec.initExclude)))
                }
            }
        }
        comm.broadcast(task.params.base, count: n) // identical start, whatever the platform's libm
        // Trainable parts of the arena: everything but the frozen layers' tensors and the
        // task's constants.
        let frozen = Set(spec.freeze.map { "layers.\($0)." }), constants = task.constantTensors
        let trainable: [Range<Int>]? =
            spec.freeze.isEmpty && !task.layout.tensors.contains { constants.contains($0.name) }
            ? nil
            : task.layout.tensors
                .filter { t in !frozen.contains { t.name.hasPrefix($0) } && !constants.contains(t.name) }
                .map { $0.offset..<($0.offset + $0.count) }
        return RunState(
            spec: spec, task: task, opt: opt, stateMultiple: stateMultiple, stepsPerEpoch: stepsPerEpoch,
            trainable: trainable, zero: zero, comm: comm)
    }
}
