import CortadoCore
import CortadoData
import CortadoJob
import CortadoModel
import CortadoMPI
import Foundation

/// A fastText-style text classifier (`TextSpec`) on the id lists of `cortado prepare text`.
///
/// Gradient exchange as the recommender's: the head (the dense part of the arena) is
/// allreduced; the embedding table goes through `SparseExchange` (each rank's touched rows,
/// allgathered and merged in rank order) when its worst-case traffic is well below a dense
/// allreduce's (`exchange: auto`), or as forced by `exchange: dense|sparse`.
final class TextTask: TrainingTask {
    let comm: Communicator
    let spec: TextSpec
    let classes: [String]
    let vocabulary: TextVocabulary
    let clf: TextClassifier<Float>
    /// Per split of this rank: document offsets (rows + 1, from 0) and ids; labels from LocalData.
    let train: (offsets: [Int], ids: [Int32]), val: (offsets: [Int], ids: [Int32]), test: (offsets: [Int], ids: [Int32])
    let trainLabels: LocalData, valLabels: LocalData, testLabels: LocalData
    let exchange: SparseExchange?
    let testFiles: [String]
    let evalBatch = TextTask.evalBatch
    static let evalBatch = 256
    /// Batch buffers: (B + 1) offsets, (maxIds) ids, (B) labels.
    let offsets: UnsafeMutablePointer<Int32>, ids: UnsafeMutablePointer<Int32>, labels: UnsafeMutablePointer<Int32>
    let maxIds: Int
    let plan: EpochPlan
    let order: EpochOrder
    let tokensPerDocument: Double

    init(_ c: TaskContext, train trainLabels: LocalData) throws {
        let comm = c.comm
        let manifest = c.data.manifest
        guard let v = manifest.text, let options = c.spec.text else {
            throw CortadoError.usage("\(c.spec.data): model.type text needs data from `cortado prepare text`")
        }
        let spec = try options.spec(manifest: manifest)
        let rows = spec.rows
        let train = try TextShard.read(c.data.train, range: trainLabels.range, rows: rows)
        let val = try TextShard.read(c.data.validation, range: c.validation.range, rows: rows)
        let test = try TextShard.read(c.data.test, range: c.test.range, rows: rows)
        // The longest documents bound a batch's ids (largest per-rank bound, agreed on).
        func longest(_ o: [Int]) -> Int { zip(o, o.dropFirst()).map { $1 - $0 }.max() ?? 0 }
        let longestDoc = comm.allreduceMax(max(longest(train.offsets), longest(val.offsets), longest(test.offsets), 1))
        let maxBatch = max(c.spec.batchSize, Self.evalBatch)
        var sums = [Double(train.ids.count), Double(trainLabels.rows)]
        comm.allreduceSum(&sums)
        let clf = TextClassifier<Float>(spec: spec, maxBatch: maxBatch, gradientExtras: StatusSlot.count)
        let sparse = SparseExchange(
            comm: comm, tables: [SparseExchange.Table(rows: rows, parts: [(clf.embedding, spec.dim)])],
            denseCount: spec.denseCount, arenaCount: clf.layout.count, extras: StatusSlot.count,
            maxIds: [c.spec.batchSize * longestDoc])
        // auto: sparse when the table is ≥ 1 MiB of gradient and a typical step's gathered rows
        // (mean ids per document × global batch, each a row of dim + 1 floats) are under a
        // quarter of the dense traffic. Unlike the recommender's fixed ids per row, the
        // worst case here (every document as long as the longest) is far from the typical
        // one: on R8 it is 8.0 M floats against 28 M dense, while a step gathers ≈ 0.9 M.
        let mode = options.exchange
        let typical = Int(Double(comm.size * c.spec.batchSize * (spec.dim + 1)) * sums[0] / max(sums[1], 1))
        let useSparse =
            mode == .sparse
            || (mode == .auto && sparse.denseCost >= 1 << 18 && 4 * min(typical, sparse.sparseBound) < sparse.denseCost)
        self.comm = comm
        self.spec = spec
        vocabulary = v
        classes = manifest.classes
        self.trainLabels = trainLabels
        valLabels = c.validation
        testLabels = c.test
        (self.train, self.val, self.test) = (train, val, test)
        testFiles = c.data.test.files.map(\.path)
        plan = c.plan
        order = EpochOrder(plan: plan)
        maxIds = maxBatch * longestDoc
        offsets = .allocate(capacity: maxBatch + 1)
        ids = .allocate(capacity: maxIds)
        labels = .allocate(capacity: maxBatch)
        tokensPerDocument = sums[0] / max(sums[1], 1)
        self.clf = clf
        exchange = useSparse ? sparse : nil
        c.log(
            "text: \(v.vocabulary.count) words + \(rows - v.vocabulary.count) n-gram buckets × dim \(spec.dim), \(classes.count) classes, \(String(format: "%.0f", tokensPerDocument)) ids per document; embedding gradients exchanged \(useSparse ? "sparsely" : "densely") (\(mode): ≈ \(typical), at most \(sparse.sparseBound) floats gathered vs \(sparse.denseCost) for a dense allreduce)"
        )
    }

    deinit {
        offsets.deallocate(); ids.deallocate(); labels.deallocate()
    }

    var layout: ParameterLayout { clf.layout }
    var params: Arena<Float> { clf.params }
    var grads: Arena<Float> { clf.grads }
    var summary: String {
        "text(embedding bag \(spec.rows)×\(spec.dim), mean; head \(spec.layers.map(\.description).joined(separator: " ")))"
    }
    var trainRows: Int { trainLabels.rows }
    var dataBytes: Int { 4 * (train.ids.count + val.ids.count + test.ids.count) + 8 * (trainLabels.rows + 3) }
    var activationBytes: Int { clf.head.bufferBytes }
    var logMetrics: [String] { ["loss", "accuracy"] }
    var flopsPerExample: Double {
        3 * (Double(spec.dim) * tokensPerDocument + spec.head.forwardFLOPsPerLayer.reduce(0, +))
    }

    func initialize(seed: UInt64) { clf.initialize(seed: seed) }

    /// Copies documents `rows` of a split into the batch buffers; returns the batch's id count.
    @inline(__always)
    func fill(_ data: (offsets: [Int], ids: [Int32]), _ y: LocalData, rows: (Int) -> Int, count: Int) -> Int {
        var n = 0
        offsets[0] = 0
        data.ids.withUnsafeBufferPointer { src in
            for i in 0..<count {
                let r = rows(i)
                let a = data.offsets[r], len = data.offsets[r + 1] - a
                if len > 0 { (ids + n).update(from: src.baseAddress! + a, count: len) }
                n += len
                offsets[i + 1] = Int32(n)
                labels[i] = y.labels[r]
            }
        }
        return n
    }

    func trainStep(step: Int) -> (lossSum: Double, correct: Int) {
        let o = order.rows(step: step)
        let n = fill(train, trainLabels, rows: { Int(o[$0]) }, count: plan.batch)
        exchange?.idSources[0] = (UnsafePointer(ids), n)
        return clf.step(offsets: offsets, ids: ids, labels: labels, batch: plan.batch, train: true)
    }

    func exchangeGradients() {
        if let exchange { exchange.exchange(clf.grads.base); return }
        let g = clf.grads.base, head = spec.denseCount
        comm.allreduceSum(g, count: head)
        comm.allreduceSum(g + head, count: clf.layout.count + StatusSlot.count - head)
    }

    func evaluate(_ split: Split) -> [String: Double] {
        let (data, y) = split == .validation ? (val, valLabels) : (test, testLabels)
        var sums = [0.0, 0.0, Double(y.rows)]
        var r0 = 0
        while r0 < y.rows {
            let nb = min(evalBatch, y.rows - r0)
            _ = fill(data, y, rows: { r0 + $0 }, count: nb)
            let r = clf.step(offsets: offsets, ids: ids, labels: labels, batch: nb, train: false)
            sums[0] += r.lossSum
            sums[1] += Double(r.correct)
            r0 += nb
        }
        comm.allreduceSum(&sums)
        let n = max(sums[2], 1)
        return ["loss": sums[0] / n, "accuracy": sums[1] / n]
    }

    func emitModels(
        emit: [String], runDir: String, metadata: [String: String],
        emitter: ModelEmitter
    ) throws -> (models: [String: String], metrics: [String: Double]) {
        var meta = metadata
        meta["text"] = String(decoding: try stableJSON(vocabulary, pretty: false), as: UTF8.self)
        return try emitEach(emit, runDir: runDir) { e, recipe, path in
            try emitter.writeText(
                path: path, recipe: recipe, text: spec, classes: classes,
                params: UnsafeBufferPointer(clf.params.buffer), metadata: meta)
            // Scored by the inference runtime on the test split's id lists.
            return ["\(e)_model_accuracy": try emitter.textAccuracy(path: path, testFiles: testFiles)]
        }
    }
}

extension TextTask: TaskBuilder {
    static func checkData(spec: JobSpec, manifest: DatasetManifest, model: ModelSpec) throws {
        guard manifest.task == "classification", manifest.text != nil, let options = spec.text else {
            throw CortadoError.usage(
                "\(spec.data): model.type text trains on data from `cortado prepare text` (this is \(manifest.task) data without a vocabulary)"
            )
        }
        _ = try options.spec(manifest: manifest)
    }

    static func build(_ c: TaskContext) throws -> TrainingTask {
        guard let train = c.train else {
            throw CortadoError.usage("loader.chunk_rows: a text model keeps its rows in memory (set 0)")
        }
        return try TextTask(c, train: train)
    }
}
