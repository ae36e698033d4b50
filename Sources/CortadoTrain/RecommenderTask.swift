import CortadoCore
import CortadoData
import CortadoJob
import CortadoModel
import CortadoMPI
import Foundation

/// A recommender (MF / NCF, `RecommenderSpec`) on (user id, item id) rows with ratings
/// (mse) or as implicit positives (bce with sampled negatives).
///
/// Gradient exchange: the tower and global bias (the dense head of the arena) are allreduced;
/// the embedding tables go through `SparseExchange` when its worst-case traffic is below a
/// dense allreduce's (`exchange: auto`), or as forced by `exchange: dense|sparse`. The
/// optimizer then updates the whole arena as usual, so momentum and Adam behave exactly as
/// with the dense exchange (rows with zero gradient still decay their moments).
///
/// Evaluation: MSE/RMSE on the split's ratings (mse), and HR@10 / NDCG@10 by full ranking of
/// each held-out (user, item) against every item the user has no interaction with in any
/// split, next to the same numbers for a popularity ranker (training-interaction counts);
/// for ratings (mse) next to the RMSE of the global mean and of user + item biases, both
/// fitted on the training split (`RatingBaselines`). A held-out row whose item is unknown (id
/// 0: not in training) counts as a miss; how many rows had an unknown user or item is reported
/// (`unknown_rows`). For this every rank keeps all (user, item) ids of all splits (8 bytes per
/// interaction). Training negatives (bce) avoid each user's training items unless
/// `exclude_seen: false` (`NegativeSampler`).
///
/// Time terms (`TimeBias`): each row's time comes from its numeric time column (Unix
/// seconds) into a per-batch `days` buffer; the model's origin and each user's mean training
/// day t_u are computed here from the training split (one allreduce) and t_u is written into
/// the arena as a constant (`constantTensors`), so the model file carries it. The per-day bias
/// (`TimeBias.userDays`) gets one row per (user, UTC day) pair of the training split, the union
/// over ranks (one allgather), sorted, so every rank numbers them alike; the pairs go into the
/// arena's index columns, and each batch row carries its row (0: pair unseen in training).
final class RecommenderTask: TrainingTask {
    static let k = 10
    let comm: Communicator
    let spec: RecommenderSpec
    let rec: Recommender<Float>
    let train: LocalData, val: LocalData, test: LocalData
    let userColumn: Int, itemColumn: Int
    let seed: UInt64
    let exchange: SparseExchange?
    let history: Interactions
    let popularity: [Float]
    let sampler: NegativeSampler
    /// Global mean and user + item bias predictors (mse only), fitted on the training split.
    let baselines: RatingBaselines?
    let testFiles: [String]
    /// Batch buffers: (B · rowsPerExample) users, items, targets.
    let users: UnsafeMutablePointer<Int32>, items: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Float>
    /// (B · rowsPerExample) model days of the batch's rows (time terms only; else unused).
    let days: UnsafeMutablePointer<Float>
    /// (users) each user's mean training day, days since the model's origin (time terms only).
    let userMeanDays: [Double]
    /// (user, UTC day) keys of the per-day bias rows 1…n, sorted (empty without it).
    let userDayKeys: [Int64]
    /// (B · rowsPerExample) the batch rows' per-day bias rows (0 without it).
    let dayRows: UnsafeMutablePointer<Int32>
    /// Ranking scratch: scores of every item, and the flags of the user's other items.
    let allScores: UnsafeMutablePointer<Float>, excluded: UnsafeMutablePointer<UInt8>
    /// Which rows each step takes: the epoch's order (stepsPerEpoch, B) of local row indices,
    /// filled when a step of another epoch comes; scratch for the shuffle.
    let plan: EpochPlan
    let order: EpochOrder

    init(
        comm: Communicator, job: JobSpec, manifest: DatasetManifest,
        data: (train: LocalData, val: LocalData, test: LocalData),
        readers: [SplitReader], plan: EpochPlan, log: (String) -> Void
    ) throws {
        var s = try job.recommenderSpec(manifest: manifest)
        // Collective when the model has time terms (one allreduce, every rank).
        (s.time, userMeanDays) = Self.userMeanDays(s, data.train, comm: comm, column: Self.userColumnIndex(s, manifest))
        // Collective too (one allgather) with the per-day bias.
        userDayKeys = Self.userDayKeys(s, data.train, comm: comm, column: Self.userColumnIndex(s, manifest))
        if s.time?.userDays != nil { s.time!.userDays = userDayKeys.count }
        let idColumns = manifest.categoricalColumns ?? []
        userColumn = idColumns.firstIndex(of: s.userColumn)!
        itemColumn = idColumns.firstIndex(of: s.itemColumn)!
        spec = s
        self.comm = comm
        (train, val, test) = data
        seed = job.seed
        self.plan = plan
        order = EpochOrder(plan: plan)
        testFiles = readers.first { $0.splitName == "test" }?.files.map(\.path) ?? []
        let rows = job.batchSize * s.rowsPerExample
        rec = Recommender<Float>(spec: s, maxBatch: max(rows, 1024), gradientExtras: StatusSlot.count)
        rec.l2 = job.recommender?.rowL2 ?? RowL2()
        // Sized for the largest use: a training batch, or a chunk of items when ranking.
        users = .allocate(capacity: rec.maxBatch); items = .allocate(capacity: rec.maxBatch);
        targets = .allocate(capacity: rec.maxBatch)
        days = .allocate(capacity: rec.maxBatch)
        days.initialize(repeating: 0, count: rec.maxBatch)
        dayRows = .allocate(capacity: rec.maxBatch)
        dayRows.initialize(repeating: 0, count: rec.maxBatch)
        allScores = .allocate(capacity: s.items)
        excluded = .allocate(capacity: s.items)
        excluded.initialize(repeating: 0, count: s.items)

        // Every interaction of every split, for the "not yet interacted" filter; training
        // counts for the popularity baseline.
        var pairs = [(user: Int32, item: Int32)](), trainPairs = pairs
        var counts = [Float](repeating: 0, count: s.items)
        for r in readers {
            let split = try idPairs(r, userColumn: userColumn, itemColumn: itemColumn, users: s.users, items: s.items)
            if r.splitName == "train" {
                for p in split { counts[Int(p.item)] += 1 }
                trainPairs = split
            }
            pairs += split
        }
        history = Interactions(users: s.users, pairs: pairs)
        popularity = counts
        let excludeSeen = job.recommender?.excludeSeen ?? true
        sampler = NegativeSampler(
            items: s.items, seen: excludeSeen ? Interactions(users: s.users, pairs: trainPairs) : nil)
        // Collective (two allreduces, every rank in this order).
        let (t, k) = (data.train, data.train.idColumns)
        let (uc, ic) = (userColumn, itemColumn)
        baselines =
            s.loss == "mse"
            ? RatingBaselines(
                users: s.users, items: s.items, rows: t.rows, user: { t.ids[$0 * k + uc] },
                item: { t.ids[$0 * k + ic] },
                rating: { Double(t.targets[$0]) }, reduce: { comm.allreduceSum(&$0) }) : nil

        let layout = s.parameterLayout
        var tables = [
            SparseExchange.Table(
                rows: s.users,
                parts: [(rec.userEmbedding, s.dim), (rec.userBias, 1)] + (s.time != nil ? [(rec.userDrift, 1)] : [])),
            SparseExchange.Table(rows: s.items, parts: [(rec.itemEmbedding, s.dim), (rec.itemBias, 1)])
        ]
        if let n = s.time?.userDays { tables.append(SparseExchange.Table(rows: n + 1, parts: [(rec.userDayBias, 1)])) }
        let sparse = SparseExchange(
            comm: comm, tables: tables, denseCount: s.denseCount, arenaCount: layout.count, extras: StatusSlot.count,
            maxIds: tables.map { _ in rows })
        // auto: sparse when the tables are big (≥ 1 MiB of gradient) and the worst-case
        // gathered rows are well under the dense traffic. Below that an allreduce is as fast
        // (measured: 0.15 ms dense vs 0.20 ms sparse per step for MovieLens-100k's tables on
        // 2 ranks; the sparse path costs two more collective latencies).
        let mode = job.recommender!.exchange
        let useSparse =
            mode == .sparse
            || (mode == .auto && sparse.denseCost >= 1 << 18 && 4 * sparse.sparseBound < sparse.denseCost)
        exchange = useSparse ? sparse : nil
        if s.loss == "bce" {
            log(
                "negatives: \(s.negatives) per positive, drawn uniformly from \(excludeSeen ? "the items the user has no training interaction with (exclude_seen)" : "the whole catalogue (exclude_seen: false)")"
            )
        }
        if !rec.l2.isZero {
            log(
                "per-row L2: \(rec.l2.embeddings) on each scored user and item embedding row, \(s.bias ? (rec.l2.biases == 0 ? "biases exempt" : "\(rec.l2.biases) on their biases") : "no biases")"
            )
        }
        if let t = s.time {
            log(
                "time bias: user_drift on column \(t.column), dev_u(t) = sign(t − t_u)·|t − t_u|^\(t.beta) in days; origin day \(String(format: "%.3f", t.origin)) (the training mean)\(rec.l2.drift > 0 ? ", per-row L2 \(rec.l2.drift) on a_u" : "")"
            )
            if let n = t.userDays {
                log(
                    "user-day bias: \(n) (user, UTC day) rows from the training split\(rec.l2.userDay > 0 ? ", per-row L2 \(rec.l2.userDay)" : ""); a pair not seen in training scores 0 (counted as unseen_user_days)"
                )
            }
        }
        log(
            "recommender: \(s.users - 1) users × \(s.items - 1) items, dim \(s.dim); embedding gradients exchanged \(useSparse ? "sparsely" : "densely") (\(mode): ≤ \(sparse.sparseBound) floats gathered vs \(sparse.denseCost) for a dense allreduce)"
        )
        writeUserDayIndex()
    }

    deinit {
        users.deallocate(); items.deallocate(); targets.deallocate(); days.deallocate(); dayRows.deallocate()
        allScores.deallocate(); excluded.deallocate()
    }

    var layout: ParameterLayout { rec.layout }
    var params: Arena<Float> { rec.params }
    var grads: Arena<Float> { rec.grads }
    var summary: String {
        "recommender(dim \(spec.dim)\(spec.dot ? ", dot" : "")\(spec.bias ? ", bias" : "")\(spec.mlp.isEmpty ? "" : ", mlp " + spec.mlp.map(\.description).joined(separator: " ")), \(spec.loss))"
    }
    var trainRows: Int { train.rows }
    var dataBytes: Int { train.bytes + val.bytes + test.bytes + history.items.count * 4 }
    var activationBytes: Int { 0 } // its tower's and tables' batch buffers are not counted yet
    var logMetrics: [String] { spec.loss == "mse" ? ["rmse", "hr@10", "ndcg@10"] : ["loss", "hr@10", "ndcg@10"] }
    var referenceMetrics: [String] {
        ["popularity_hr@10", "popularity_ndcg@10"] + (spec.loss == "mse" ? ["global_mean_rmse", "bias_rmse"] : [])
            + ["unknown_rows"] + (spec.time?.userDays != nil ? ["unseen_user_days"] : [])
    }
    var flopsPerExample: Double { 3 * spec.forwardFLOPs * Double(spec.rowsPerExample) }

    /// Ratings (mse): the biases start at the user + item bias baseline fitted on the training
    /// split (the global bias at the mean rating), so the model begins at that predictor and
    /// the factors learn what it misses, instead of the first epochs re-deriving the biases
    /// while the factors overfit (on MovieLens-100k the factors overfit within ~5 epochs).
    func initialize(seed: UInt64) {
        rec.initialize(seed: seed, globalMean: Float(baselines?.mean ?? 0))
        guard let b = baselines, spec.bias else { return }
        let p = rec.params.base
        for u in 0..<spec.users { p[rec.userBias + u] = Float(b.userBias[u]) }
        for i in 0..<spec.items { p[rec.itemBias + i] = Float(b.itemBias[i]) }
        if spec.time != nil { for u in 0..<spec.users { p[rec.userMeanDay + u] = Float(userMeanDays[u]) } }
        writeUserDayIndex()
    }

    /// Writes the per-day bias's (user, day) pairs into the arena's index columns (row r + 1 =
    /// key r) and indexes them; `initialize` zeroes the arena, so it runs there and at start.
    func writeUserDayIndex() {
        guard spec.time?.userDays != nil else { return }
        let p = rec.params.base
        for (r, key) in userDayKeys.enumerated() {
            p[rec.userDayUser + r + 1] = Float(key >> 32)
            p[rec.userDayDay + r + 1] = Float(Int32(truncatingIfNeeded: key))
        }
        rec.indexUserDays()
    }

    /// The per-day bias's sorted (user, UTC day) keys: the union over ranks of the training
    /// rows' pairs (one allgather on every rank); empty without the per-day bias.
    static func userDayKeys(_ s: RecommenderSpec, _ t: LocalData, comm: Communicator, column uc: Int) -> [Int64] {
        guard let time = s.time, time.userDays != nil else { return [] }
        let k = t.idColumns, f = t.featureCount
        var mine = Set<Int64>()
        for r in 0..<t.rows {
            let seconds = Double(t.features[r * f + time.feature])
            mine.insert(TimeBias.userDayKey(user: t.ids[r * k + uc], day: TimeBias.utcDay(seconds: seconds)))
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity(mine.count * 8)
        for key in mine { withUnsafeBytes(of: key.littleEndian) { bytes.append(contentsOf: $0) } }
        var all = Set<Int64>()
        for part in comm.allgather(bytes) {
            for j in stride(from: 0, to: part.count, by: 8) {
                all.insert(part[j..<(j + 8)].withUnsafeBytes { Int64(littleEndian: $0.loadUnaligned(as: Int64.self)) })
            }
        }
        return all.sorted()
    }

    var constantTensors: Set<String> { RecommenderSpec.constantTensors }

    /// The user id column's position among the data's id columns.
    private static func userColumnIndex(_ s: RecommenderSpec, _ m: DatasetManifest) -> Int {
        (m.categoricalColumns ?? []).firstIndex(of: s.userColumn)!
    }

    /// With time terms: the spec's time with its origin (the training rows' mean day) set, and
    /// each user's mean training day relative to it (0 for users with no training rows). One
    /// allreduce of (users + 1) sums and counts, on every rank; nothing without time terms.
    static func userMeanDays(_ s: RecommenderSpec, _ t: LocalData, comm: Communicator, column uc: Int) -> (
        TimeBias?, [Double]
    ) {
        guard var time = s.time else { return (nil, []) }
        // [Σ days, count] per user, then the totals.
        var sums = [Double](repeating: 0, count: 2 * s.users + 2)
        let k = t.idColumns, f = t.featureCount
        for r in 0..<t.rows {
            let u = Int(t.ids[r * k + uc]), day = Double(t.features[r * f + time.feature]) / TimeBias.secondsPerDay
            sums[2 * u] += day; sums[2 * u + 1] += 1
            sums[2 * s.users] += day; sums[2 * s.users + 1] += 1
        }
        comm.allreduceSum(&sums)
        time.origin = sums[2 * s.users] / max(sums[2 * s.users + 1], 1)
        let origin = time.origin
        return (time, (0..<s.users).map { u in sums[2 * u + 1] > 0 ? sums[2 * u] / sums[2 * u + 1] - origin : 0 })
    }

    /// Fills the batch: each positive row, then (bce) its negatives, drawn by `sampler` with a
    /// generator seeded by (seed, step, rank).
    @inline(__always)
    func fill(_ data: LocalData, order: UnsafePointer<Int32>, batch: Int, rng: inout SeededRNG) -> Int {
        let k = data.idColumns
        var n = 0
        for i in 0..<batch {
            let row = Int(order[i])
            let u = data.ids[row * k + userColumn]
            users[n] = u; items[n] = data.ids[row * k + itemColumn]
            targets[n] = spec.loss == "mse" ? data.targets[row] : 1
            if let time = spec.time {
                let seconds = Double(data.features[row * data.featureCount + time.feature])
                days[n] = Float(time.day(seconds: seconds))
                dayRows[n] = rec.userDayRow(user: u, seconds: seconds)
            }
            n += 1
            if spec.loss == "bce" {
                for _ in 0..<spec.negatives {
                    users[n] = u; items[n] = sampler.draw(user: u, rng: &rng); targets[n] = 0
                    dayRows[n] = 0
                    n += 1
                }
            }
        }
        return n
    }

    func trainStep(step: Int) -> (lossSum: Double, correct: Int) {
        var rng = SeededRNG(seed: seed, stream: 0x4E6 &+ UInt64(step) << 20 &+ UInt64(comm.rank))
        let n = fill(
            train, order: order.rows(step: step), batch: plan.batch, rng: &rng)
        if let exchange {
            exchange.idSources[0] = (UnsafePointer(users), n)
            exchange.idSources[1] = (UnsafePointer(items), n)
            if spec.time?.userDays != nil { exchange.idSources[2] = (UnsafePointer(dayRows), n) }
        }
        let r = rec.step(
            users: users, items: items, days: days, userDays: dayRows, targets: targets, batch: n, train: true)
        return (r.lossSum / Double(spec.rowsPerExample), r.correct)
    }

    /// Both modes allreduce the dense head (tower, global bias) on its own, so the head's sums
    /// come out of the same MPI reduction in either mode and the two differ only in how the
    /// tables travel.
    func exchangeGradients() {
        if let exchange { exchange.exchange(rec.grads.base); return }
        let g = rec.grads.base, head = spec.denseCount
        comm.allreduceSum(g, count: head)
        comm.allreduceSum(g + head, count: rec.layout.count + StatusSlot.count - head)
    }

    func evaluate(_ split: Split) -> [String: Double] {
        let data = split == .validation ? val : test
        // Loss over the split's rows (with negatives drawn from a fixed seed for bce).
        // loss, rows, model hr, ndcg, popularity hr, ndcg, unknown rows, global-mean and bias SSE,
        // rows whose (user, day) has no per-day bias row
        var sums = [0.0, Double(data.rows), 0, 0, 0, 0, 0, 0, 0, 0]
        var rng = SeededRNG(seed: 0xE7A1, stream: UInt64(comm.rank))
        let order = UnsafeMutablePointer<Int32>.allocate(capacity: 256)
        defer { order.deallocate() }
        var r0 = 0
        while r0 < data.rows {
            let nb = min(256 / spec.rowsPerExample, data.rows - r0)
            for i in 0..<nb { order[i] = Int32(r0 + i) }
            let n = fill(data, order: order, batch: nb, rng: &rng)
            sums[0] +=
                rec.step(
                    users: users, items: items, days: days, userDays: dayRows, targets: targets, batch: n, train: false
                )
                .lossSum / Double(spec.rowsPerExample)
            if spec.time?.userDays != nil { for j in 0..<n where dayRows[j] == 0 { sums[9] += 1 } }
            r0 += nb
        }
        // Full ranking of each held-out item, for the model and for popularity.
        let k = data.idColumns
        popularity.withUnsafeBufferPointer { pop in
            for i in 0..<data.rows {
                let u = data.ids[i * k + userColumn], target = Int(data.ids[i * k + itemColumn])
                if let b = baselines {
                    let r = Double(data.targets[i])
                    sums[7] += (r - b.mean) * (r - b.mean)
                    let e = r - b.predict(user: u, item: Int32(target))
                    sums[8] += e * e
                }
                if u == 0 || target == 0 { sums[6] += 1 }
                // An item unseen in training cannot be recommended: a miss for every ranker.
                if target == 0 { continue }
                scoreAll(user: u)
                for j in history.items(of: Int(u)) where Int(j) != target { excluded[Int(j)] = 1 }
                let m = hitAndNDCG(
                    rank: expectedRank(scores: allScores, count: spec.items, target: target, excluded: excluded),
                    k: Self.k)
                let p = hitAndNDCG(
                    rank: expectedRank(scores: pop.baseAddress!, count: spec.items, target: target, excluded: excluded),
                    k: Self.k)
                for j in history.items(of: Int(u)) { excluded[Int(j)] = 0 }
                sums[2] += m.hit; sums[3] += m.ndcg; sums[4] += p.hit; sums[5] += p.ndcg
            }
        }
        comm.allreduceSum(&sums)
        let n = max(sums[1], 1)
        var m = [
            "loss": sums[0] / n, "hr@10": sums[2] / n, "ndcg@10": sums[3] / n,
            "popularity_hr@10": sums[4] / n, "popularity_ndcg@10": sums[5] / n, "unknown_rows": sums[6]
        ]
        if spec.time?.userDays != nil { m["unseen_user_days"] = sums[9] }
        if spec.loss == "mse" {
            m["rmse"] = (sums[0] / n).squareRoot()
            m["global_mean_rmse"] = (sums[7] / n).squareRoot()
            m["bias_rmse"] = (sums[8] / n).squareRoot()
        }
        return m
    }

    /// Scores of every item for `user` into `allScores`.
    func scoreAll(user: Int32) {
        var j = 0
        while j < spec.items {
            let n = min(rec.maxBatch, spec.items - j)
            for i in 0..<n { users[i] = user; items[i] = Int32(j + i) }
            (allScores + j).update(from: rec.forward(users: users, items: items, batch: n), count: n)
            j += n
        }
    }

    func emitModels(
        emit: [String], runDir: String, metadata: [String: String],
        emitter: ModelEmitter
    ) throws -> (models: [String: String], metrics: [String: Double]) {
        try emitEach(emit, runDir: runDir) { e, recipe, path in
            try emitter.writeRecommender(
                path: path, recipe: recipe, recommender: spec,
                params: UnsafeBufferPointer(rec.params.buffer), metadata: metadata)
            // Score the written file with the inference runtime on the test split's pairs (this
            // also checks that it loads); an RMSE is reported for rating models only.
            let rmse = try emitter.recommenderRMSE(path: path, testFiles: testFiles)
            return spec.loss == "mse" ? ["\(e)_model_rmse": rmse] : [:]
        }
    }
}

extension RecommenderTask: TaskBuilder {
    static func checkData(spec: JobSpec, manifest: DatasetManifest, model: ModelSpec) throws {
        guard !(manifest.categoricalColumns ?? []).isEmpty else {
            throw CortadoError.usage("\(spec.data): a recommender needs id columns (prepare them with encoding: ids)")
        }
    }

    static func build(_ c: TaskContext) throws -> TrainingTask {
        // ModelFamily.recommender does not load in chunks (the spec's validation refuses it).
        guard let train = c.train else {
            throw CortadoError.usage("loader.chunk_rows: a recommender keeps its rows in memory (set 0)")
        }
        return try RecommenderTask(
            comm: c.comm, job: c.spec, manifest: c.data.manifest, data: (train, c.validation, c.test),
            readers: [c.data.train, c.data.validation, c.data.test], plan: c.plan, log: c.log)
    }
}
