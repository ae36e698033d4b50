import CortadoCore
import CortadoData
import CortadoJob
import CortadoModel
import CortadoMPI
import Foundation

/// A feed-forward classifier (MLP, CNN) on features and integer labels: one dense allreduce
/// of the gradient arena per step. With a distillation teacher, each step also takes the
/// teacher's logits for the same batch rows (cached before step 0, or computed per batch) and
/// trains on `DistillationLoss`.
final class ClassifierTask: TrainingTask {
    let comm: Communicator
    let net: Network<Float>
    let model: ModelSpec
    let classes: [String]
    /// The rank's training rows in memory; nil when the loader reads them in chunks, and after
    /// training (freed for the end phase). The validation and test rows are always in memory:
    /// they are small, and every epoch scores them all.
    private(set) var train: LocalData?
    let val: LocalData, test: LocalData
    /// The training split and this rank's rows of it (model calibration reads from it when
    /// the rows are not in memory).
    let trainReader: SplitReader, trainRange: Range<Int>
    /// Assembles each step's batch (features, labels, row indices) from `train` or the shards;
    /// nil after `endTraining`.
    private(set) var loader: BatchLoader?
    /// Bytes and description of the loader's rows, kept for after it is gone.
    let loaderBytes: Int, loaderSummary: String
    let testFiles: [String]
    let seed: UInt64
    let evalBatch = 256
    /// The distillation teacher; its logits for the batch, (B, classes), come from buffers it
    /// sizes (and, cached, fills for every training row) here, before step 0.
    let teacher: DistillationTeacher?
    private(set) var hardLossSum: Double?
    /// Sums the gradient arena across ranks, overlapped with backward unless
    /// `distributed.overlap: off` (see `GradientExchange`); ZeRO-1 runs take the trainer's
    /// reduce-scatter instead and never call it.
    let exchange: GradientExchange

    init(
        comm: Communicator, spec: JobSpec, model: ModelSpec, classes: [String],
        data: (train: LocalData?, val: LocalData, test: LocalData), trainReader: SplitReader, trainRange: Range<Int>,
        loader: BatchLoader, testFiles: [String], teacher: DistillationTeacher? = nil
    ) throws {
        self.comm = comm
        self.model = model
        self.classes = classes
        (train, val, test) = data
        self.trainReader = trainReader
        self.trainRange = trainRange
        self.loader = loader
        loaderBytes = loader.bytes
        loaderSummary = loader.source.summary + (loader.prefetch ? ", prefetched" : ", assembled in the step")
        self.testFiles = testFiles
        seed = spec.seed
        net = Network<Float>(spec: model, maxBatch: max(spec.batchSize, evalBatch), gradientExtras: StatusSlot.count)
        net.labelSmoothing = spec.labelSmoothing
        self.teacher = teacher
        teacher?.prepare(train: train, batch: spec.batchSize) // the step loop then allocates nothing
        let d = spec.distributed
        let mode = d.zero || comm.size == 1 ? OverlapMode.off : d.overlap
        let bucketValues = d.bucketKiB * 1024 / MemoryLayout<Float>.stride
        net.gradientBlockRows = d.blockRows // in every mode, so every mode computes the same bits
        // ZeRO-1 runs sum through their own reduce-scatter (`ZeroSharding`).
        let arena = d.zero ? nil : try makeArenaExchange(comm: comm, count: net.layout.count, d)
        exchange = GradientExchange(
            comm: comm, grads: net.grads.base, count: net.layout.count, extras: StatusSlot.count, mode: mode,
            bucketValues: bucketValues, readyPoints: net.gradientReadyPoints, checkFinite: spec.nonFinite == .stop,
            arena: arena)
        if mode != .off { readyHook = { [exchange] in exchange.ready(from: $0) } }
        net.gradientsReady = readyHook
    }

    /// The overlapped exchange's hook into backward (nil without overlap); set once, so
    /// switching it per micro-batch allocates nothing.
    private var readyHook: ((Int) -> Void)?
    var exchangeDuringBackward: Bool {
        get { net.gradientsReady != nil }
        set { net.gradientsReady = newValue ? readyHook : nil }
    }

    /// The loader thread holds the loader, not this task: end it here too (a run that leaves
    /// the step loop by an error).
    deinit { loader?.stop() }

    var layout: ParameterLayout { net.layout }
    var params: Arena<Float> { net.params }
    var grads: Arena<Float> { net.grads }
    var summary: String { model.layers.map(\.description).joined(separator: " ") }
    var trainRows: Int { trainRange.count }
    var dataBytes: Int { loaderBytes + val.bytes + test.bytes }
    var dataSummary: String { loaderSummary }
    var dataSeconds: Double { loader?.dataSeconds ?? 0 }
    var activationBytes: Int { net.bufferBytes }
    var logMetrics: [String] { ["loss", "accuracy"] }
    var flopsPerExample: Double { model.trainingFLOPsPerSample }

    func initialize(seed: UInt64) { net.initialize(seed: seed) }

    func beginTraining(at step: Int, end: Int) throws { try loader?.start(at: step, end: end) }

    /// Stops the loader thread and frees the training rows: the end phase (test scoring, model
    /// files) would otherwise stack its buffers on top of them at the run's peak.
    func endTraining() {
        loader?.stop()
        loader = nil
        train = nil
    }

    func trainStep(step: Int) -> (lossSum: Double, correct: Int) {
        let b: (x: UnsafePointer<Float>, y: UnsafePointer<Int32>, rows: UnsafePointer<Int32>)
        guard let loader else {
            comm.abort("step \(step): training after endTraining (trainer bug)", code: CortadoError.data("").exitCode)
        }
        switch loader.batch(step) {
        case .success(let loaded): b = loaded
        case .failure(let f):
            comm.abort("step \(step): loading the training batch: \(f.message)", code: CortadoError.data("").exitCode)
        }
        let batch = loader.batch
        // Dropout masks from (seed, step, rank): reproducible, and a resumed run draws the
        // same masks as an uninterrupted one.
        net.dropoutSeed = seed &+ 0x9E37_79B9_7F4A_7C15 &* UInt64(step * comm.size + comm.rank + 1)
        guard let teacher else { return net.step(b.x, labels: b.y, batch: batch, train: true) }
        let teacherLogits = teacher.logits(rows: b.rows, x: b.x, batch: batch)
        let r = net.distillationStep(
            b.x, labels: b.y, teacherLogits: teacherLogits, batch: batch,
            temperature: Float(teacher.spec.temperature), alpha: Float(teacher.spec.alpha))
        hardLossSum = r.hardLossSum
        return (r.lossSum, r.correct)
    }

    func exchangeGradients() { exchange.complete() }
    func localGradientsFinite() -> Bool { exchange.localGradientsFinite() }
    var backwardCommSeconds: Double { exchange.backwardCommSeconds }
    var exchangeDescription: String {
        if let arena = exchange.arena { return arena.summary }
        guard exchange.mode != .off else { return "" }
        let kib = exchange.buckets.map { String($0.count * 4 / 1024) }.joined(separator: ", ")
        return
            "gradient exchange: \(exchange.buckets.count) buckets (\(kib) KiB, in backward's order), overlapped with backward (\(exchange.mode == .test ? "MPI_Testall between layers" : "communication thread"))"
    }

    /// Loss, accuracy, top-5 accuracy (more than 5 classes) and ROC AUC (2 classes). Sums
    /// are reduced; for AUC the (score, label) pairs are gathered so every rank computes the
    /// same value.
    func evaluate(_ split: Split) -> [String: Double] {
        let data = split == .validation ? val : test
        let k = model.outputSize
        var sums = [0.0, 0.0, 0.0, Double(data.rows)]
        var scores = [Float](), positives = [Bool]()
        var r0 = 0
        while r0 < data.rows {
            let nb = min(evalBatch, data.rows - r0)
            let labels = data.labels.baseAddress! + r0
            let logits = net.forward(data.features.baseAddress! + r0 * data.featureCount, batch: nb)
            let r = SoftmaxCrossEntropy.evaluate(
                logits: logits, labels: labels, batch: nb, classes: k, dLogits: nil, gradScale: 1)
            sums[0] += r.lossSum
            sums[1] += Double(r.correct)
            sums[2] += Double(topKCorrect(logits: logits, labels: labels, batch: nb, classes: k, k: 5))
            if k == 2 {
                for i in 0..<nb { scores.append(logits[2 * i + 1] - logits[2 * i]); positives.append(labels[i] == 1) }
            }
            r0 += nb
        }
        comm.allreduceSum(&sums)
        let n = max(sums[3], 1)
        var m = ["loss": sums[0] / n, "accuracy": sums[1] / n]
        if k > 5 { m["top5_accuracy"] = sums[2] / n }
        if k == 2 {
            var allScores = [Float](), allPositives = [Bool]()
            for part in comm.allgather(scores.withUnsafeBytes { Array($0) } + positives.map { $0 ? 1 : 0 }) {
                let c = part.count / 5
                allScores += (0..<c).map { i in
                    part.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) }
                }
                allPositives += part[(4 * c)...].map { $0 == 1 }
            }
            m["auc"] = rocAUC(scores: allScores, positives: allPositives)
        }
        return m
    }

    func emitModels(
        emit: [String], runDir: String, metadata: [String: String],
        emitter: ModelEmitter
    ) throws -> (models: [String: String], metrics: [String: Double]) {
        try emitEach(emit, runDir: runDir) { e, recipe, path in
            // Static int8 calibrates on this rank's first training rows (rank 0 emits), read
            // again from the shards: training freed them.
            let calibration = try recipe.calibrationPercentile.map { _ in
                try LocalData(reader: trainReader, range: trainRange.prefix(2048), verifyChecksums: false)
            }
            try emitter.writeClassifier(
                path: path, recipe: recipe, model: model, classes: classes,
                params: UnsafeBufferPointer(net.params.buffer), metadata: metadata,
                calibration: calibration.map { (UnsafePointer($0.features.baseAddress!), $0.rows) })
            // Score the written file with the inference runtime: checks the file, and gives
            // the int8 figure cortado-infer must reproduce.
            return [
                "\(e)_model_accuracy": try emitter.classifierAccuracy(
                    path: path, testFiles: testFiles, batch: evalBatch)
            ]
        }
    }
}

extension ClassifierTask: TaskBuilder {
    static func checkData(spec: JobSpec, manifest: DatasetManifest, model: ModelSpec) throws {
        guard manifest.task == "classification" else {
            throw CortadoError.usage(
                "\(spec.data): task '\(manifest.task)' needs model.type: recommender (feed-forward models train on classification data)"
            )
        }
        try model.validate(classes: manifest.classes.count)
    }

    static func build(_ c: TaskContext) throws -> TrainingTask {
        let spec = c.spec, reader = c.data.train, rows = c.share.rows, chunkRows = spec.loader?.chunkRows ?? 0
        if chunkRows > 0 && spec.verifyChecksums { try reader.verifyChecksums(overlapping: rows) }
        let source: BatchSource =
            c.train.map { InMemoryRows(data: $0, plan: c.plan) }
            ?? ChunkedRows(
                reader: reader, rows: rows, chunkRows: chunkRows, batch: spec.batchSize, stepsPerEpoch: c.stepsPerEpoch,
                epochs: spec.epochs, seed: spec.seed, partition: c.comm.rank)
        let loader = BatchLoader(
            source: source, batch: spec.batchSize, featureCount: reader.featureCount,
            prefetch: spec.loader?.prefetch ?? true)
        return try ClassifierTask(
            comm: c.comm, spec: spec, model: c.data.model, classes: c.data.manifest.classes,
            data: (c.train, c.validation, c.test), trainReader: reader, trainRange: rows, loader: loader,
            testFiles: c.data.test.files.map(\.path), teacher: c.data.teacher)
    }
}
