import CortadoCore
import CortadoModel
import CortadoTestSupport
import XCTest

/// The recommender (embedding lookup, concatenation, dot product, MLP tower, MSE and BCE):
/// numpy golden values (Fixtures/make_golden_recsys.py), central-difference gradient checks in
/// Double, and the ranking metrics.
final class RecommenderTests: XCTestCase {
    struct Golden: Decodable {
        var users: Int, items: Int, dim: Int, hidden: Int
        var batch_users: [Int32], batch_items: [Int32], ratings: [Double], labels: [Double]
        var tensors: [String: [Double]], scores: [Double], sse: Double, bce: Double, mse_grads: [String: [Double]]
    }

    func goldenSpec(_ g: Golden) -> RecommenderSpec {
        var s = RecommenderSpec(userColumn: "u", itemColumn: "i", users: g.users, items: g.items, dim: g.dim)
        s.mlp = [.dense(units: g.hidden), .relu, .dense(units: 1)]
        return s
    }

    func runGolden<T: Real>(_ type: T.Type, rel: Double, abs: Double) throws {
        let g = try JSONDecoder().decode(Golden.self, from: try Support.fixture("golden_recsys.json"))
        var spec = goldenSpec(g)
        let rec = Recommender<T>(spec: spec, maxBatch: g.batch_users.count)
        XCTAssertEqual(Set(rec.layout.tensors.map(\.name)), Set(g.tensors.keys))
        for t in rec.layout.tensors {
            for (j, v) in g.tensors[t.name]!.enumerated() { rec.params.base[t.offset + j] = T(v) }
        }
        let n = g.batch_users.count
        let scores = Array(
            UnsafeBufferPointer(start: rec.forward(users: g.batch_users, items: g.batch_items, batch: n), count: n))
        assertClose(scores.map { Double($0) }, g.scores, rel: rel, abs: abs, "scores")
        rec.grads.zero()
        let mse = rec.step(
            users: g.batch_users, items: g.batch_items, targets: g.ratings.map { T($0) }, batch: n, train: true)
        XCTAssertEqual(mse.lossSum, g.sse, accuracy: rel * g.sse)
        for t in rec.layout.tensors {
            let got = (0..<t.count).map { Double(rec.grads.base[t.offset + $0]) }
            assertClose(got, g.mse_grads[t.name]!, rel: rel * 10, abs: abs * 10, "d\(t.name)")
        }
        spec.loss = "bce"
        let bceNet = Recommender<T>(spec: spec, maxBatch: n)
        bceNet.params.load(Array(rec.params.buffer))
        let bce = bceNet.step(
            users: g.batch_users, items: g.batch_items, targets: g.labels.map { T($0) }, batch: n, train: false)
        XCTAssertEqual(bce.lossSum, g.bce, accuracy: rel * g.bce)
    }

    func testForwardLossAndGradientsMatchNumpyInDouble() throws { try runGolden(Double.self, rel: 1e-12, abs: 1e-13) }
    func testForwardLossAndGradientsMatchNumpyInFloat() throws { try runGolden(Float.self, rel: 1e-5, abs: 1e-6) }

    /// Every parameter's gradient of the mean loss against central differences: embeddings
    /// (with a repeated id), the concatenation, the dot product, biases and a tanh tower.
    /// With `l2`, the objective is the mean loss plus the penalty per row (`l2Penalty` / batch).
    /// With `time`, the rows carry days on both sides of their user's mean day (user 3 once
    /// before, once after), and t_u — a constant — must get no gradient at all.
    func checkGradients(
        loss: String, dot: Bool, mlp: [LayerSpec], l2: RowL2 = RowL2(), time: TimeBias? = nil,
        bias: Bool = true, userDays: [Int32]? = nil, file: StaticString = #filePath, line: UInt = #line
    ) {
        var spec = RecommenderSpec(userColumn: "u", itemColumn: "i", users: 4, items: 6, dim: 3)
        spec.loss = loss; spec.dot = dot; spec.mlp = mlp; spec.initStd = 0.5; spec.time = time; spec.bias = bias
        let users: [Int32] = [1, 3, 3, 0, 2], items: [Int32] = [5, 1, 4, 4, 2]
        let targets: [Double] = loss == "mse" ? [4, 2, 5, 1, 3] : [1, 0, 1, 0, 1]
        let days: [Double] = [2.5, 0.3, 7.25, -1.5, 0.02]
        let rec = Recommender<Double>(spec: spec, maxBatch: users.count)
        rec.l2 = l2
        rec.initialize(seed: 11, globalMean: 0.3)
        for i in 0..<rec.layout.count where rec.params.base[i] == 0 { rec.params.base[i] = 0.05 * Double(i % 7) - 0.1 }
        if time != nil {
            for (u, t) in [0.5, 1.0, -0.25, 3.0].enumerated() { rec.params.base[rec.userMeanDay + u] = t }
        }
        func step(train: Bool) -> Double {
            time == nil
                ? rec.step(users: users, items: items, targets: targets, batch: users.count, train: train).lossSum
                : rec.step(
                    users: users, items: items, days: days, userDays: userDays, targets: targets, batch: users.count,
                    train: train
                ).lossSum
        }
        rec.grads.zero()
        _ = step(train: true)
        let analytic = Array(rec.grads.buffer)
        func f() -> Double {
            (step(train: false) + rec.l2Penalty(users: users, items: items, batch: users.count)) / Double(users.count)
        }
        let eps = 1e-6
        for i in 0..<rec.layout.count {
            if RecommenderSpec.constantTensors.contains(rec.layout.tensors.last { $0.offset <= i }!.name) {
                XCTAssertEqual(analytic[i], 0, "t_u and the (user, day) index are constants", file: file, line: line)
                continue
            }
            let saved = rec.params.base[i]
            rec.params.base[i] = saved + eps; let plus = f()
            rec.params.base[i] = saved - eps; let minus = f()
            rec.params.base[i] = saved
            let numeric = (plus - minus) / (2 * eps)
            let name = rec.layout.tensors.last { $0.offset <= i }!.name
            XCTAssertLessThanOrEqual(
                Swift.abs(analytic[i] - numeric), 1e-6 * max(1, Swift.abs(numeric)),
                "\(loss) d\(name)[\(i)]: analytic \(analytic[i]), numeric \(numeric)", file: file, line: line)
        }
    }

    func testGradientsMSEWithDotAndTower() {
        checkGradients(loss: "mse", dot: true, mlp: [.dense(units: 4), .tanh, .dense(units: 1)])
    }
    func testGradientsBCEWithTowerOnly() {
        checkGradients(loss: "bce", dot: false, mlp: [.dense(units: 5), .sigmoid, .dense(units: 1)])
    }
    func testGradientsMatrixFactorization() { checkGradients(loss: "mse", dot: true, mlp: []) }
    func testGradientsWithUserDrift() {
        checkGradients(loss: "mse", dot: true, mlp: [], time: TimeBias(column: "t"))
        checkGradients(
            loss: "mse", dot: true, mlp: [], l2: RowL2(embeddings: 0.3, biases: 0.2, drift: 0.5),
            time: TimeBias(column: "t", beta: 0.7))
        checkGradients(
            loss: "mse", dot: false, mlp: [.dense(units: 4), .tanh, .dense(units: 1)], time: TimeBias(column: "t"))
        // The bias baseline with drift: no factors, no tower.
        checkGradients(loss: "mse", dot: false, mlp: [], l2: RowL2(drift: 0.1), time: TimeBias(column: "t"))
    }

    /// The per-(user, day) bias: rows 1…3 of `user_day_bias`, row 2 scored twice (by users 3 and
    /// 3 on one day), one row unseen (0): its bias is never read and gets no gradient; the index
    /// columns are constants.
    func testGradientsWithUserDayBias() {
        var time = TimeBias(column: "t", beta: 0.6)
        time.userDays = 3
        let rows: [Int32] = [1, 2, 2, 0, 3]
        checkGradients(loss: "mse", dot: true, mlp: [], time: time, userDays: rows)
        checkGradients(
            loss: "mse", dot: true, mlp: [], l2: RowL2(embeddings: 0.3, drift: 0.5, userDay: 0.4), time: time,
            userDays: rows)
        checkGradients(loss: "mse", dot: false, mlp: [], l2: RowL2(userDay: 0.2), time: time, userDays: rows)
    }

    /// b_{u,day} by hand: a row adds its pair's bias; an unseen pair (or no rows given, a top-K
    /// request) adds nothing; the index maps (user, UTC day of the Unix time) to its row.
    func testUserDayBiasScoresByHandAndIndexes() {
        var spec = RecommenderSpec(userColumn: "u", itemColumn: "i", users: 3, items: 4, dim: 2)
        spec.time = TimeBias(column: "t", beta: 0.5)
        spec.time!.userDays = 2
        let rec = Recommender<Double>(spec: spec, maxBatch: 4)
        XCTAssertEqual(
            rec.layout.tensors.map(\.name).suffix(5),
            ["item_embedding", "item_bias", "user_day_bias", "user_day_user", "user_day_day"])
        XCTAssertEqual(rec.layout.tensor("user_day_bias")!.shape, [3])
        rec.initialize(seed: 3, globalMean: 3.5)
        let p = rec.params.base
        p[rec.userDayBias + 1] = 0.25; p[rec.userDayBias + 2] = -0.5
        p[rec.userDayUser + 1] = 1; p[rec.userDayDay + 1] = 10_200
        p[rec.userDayUser + 2] = 2; p[rec.userDayDay + 2] = 10_201
        rec.indexUserDays()
        let day = TimeBias.secondsPerDay
        XCTAssertEqual(rec.userDayRow(user: 1, seconds: 10_200 * day), 1)
        XCTAssertEqual(rec.userDayRow(user: 1, seconds: 10_201 * day - 1), 1, "same UTC day")
        XCTAssertEqual(rec.userDayRow(user: 1, seconds: 10_201 * day), 0, "next day: unseen")
        XCTAssertEqual(rec.userDayRow(user: 2, seconds: 10_201.5 * day), 2)
        XCTAssertEqual(rec.userDayRow(user: 0, seconds: 10_200 * day), 0, "unseen user")
        let users: [Int32] = [1, 2, 2, 1], items: [Int32] = [1, 2, 3, 1], rows: [Int32] = [1, 2, 0, 0]
        let static_ = Array(UnsafeBufferPointer(start: rec.forward(users: users, items: items, batch: 4), count: 4))
        let timed = Array(
            UnsafeBufferPointer(start: rec.forward(users: users, items: items, userDays: rows, batch: 4), count: 4))
        let want = [0.25, -0.5, 0, 0]
        for r in 0..<4 { XCTAssertEqual(timed[r] - static_[r], want[r], accuracy: 1e-12, "row \(r)") }
    }

    /// dev_u(t) by hand: (a + a_u)·sign(t − t_u)·|t − t_u|^β is added to the static score; with no
    /// days (a top-K request) every row of a user moves by the same amount (dev = 0), so its
    /// ranking is that of the static model; the drift tensors sit where the layout says.
    func testUserDriftScoresByHand() {
        var spec = RecommenderSpec(userColumn: "u", itemColumn: "i", users: 3, items: 4, dim: 2)
        spec.time = TimeBias(column: "t", beta: 0.5)
        let rec = Recommender<Double>(spec: spec, maxBatch: 4)
        XCTAssertEqual(
            rec.layout.tensors.map(\.name),
            [
                "global_bias", "global_drift", "user_embedding", "user_bias", "user_drift", "user_mean_day",
                "item_embedding", "item_bias"
            ])
        XCTAssertEqual(spec.denseCount, rec.userEmbedding)
        rec.initialize(seed: 3, globalMean: 3.5)
        let p = rec.params.base
        p[rec.globalDrift] = -0.1
        p[rec.userDrift + 1] = 0.3; p[rec.userDrift + 2] = -0.2
        p[rec.userMeanDay + 1] = 10; p[rec.userMeanDay + 2] = -4
        let users: [Int32] = [1, 1, 2, 2], items: [Int32] = [1, 2, 3, 1]
        let static_ = Array(UnsafeBufferPointer(start: rec.forward(users: users, items: items, batch: 4), count: 4))
        let days: [Double] = [19, 6, -4, -13]
        let timed = Array(
            UnsafeBufferPointer(start: rec.forward(users: users, items: items, days: days, batch: 4), count: 4))
        let want = [0.2 * 3, 0.2 * -2, 0, -0.3 * -3]
        for r in 0..<4 { XCTAssertEqual(timed[r] - static_[r], want[r], accuracy: 1e-12, "row \(r)") }
    }
    func testGradientsWithRowL2() {
        checkGradients(loss: "mse", dot: true, mlp: [], l2: RowL2(embeddings: 0.3, biases: 0.2))
        checkGradients(
            loss: "bce", dot: true, mlp: [.dense(units: 4), .tanh, .dense(units: 1)], l2: RowL2(embeddings: 0.7))
    }

    /// The per-row penalty reaches exactly the looked-up rows, once per scored row (user 3 and
    /// item 4 twice), and leaves the biases, the global bias, the tower and every other row
    /// alone when `biases` is 0; numbers worked by hand.
    func testRowL2TouchesOnlyScoredRowsAndExemptsBiases() {
        var spec = RecommenderSpec(userColumn: "u", itemColumn: "i", users: 4, items: 6, dim: 2)
        spec.mlp = [.dense(units: 3), .relu, .dense(units: 1)]
        let rec = Recommender<Double>(spec: spec, maxBatch: 3)
        for i in 0..<rec.layout.count { rec.params.base[i] = Double(i % 5) + 1 }
        rec.l2 = RowL2(embeddings: 0.5)
        let users: [Int32] = [3, 3, 1], items: [Int32] = [4, 4, 2]
        rec.grads.zero()
        rec.l2Backward(users: users, items: items, batch: 3, scale: 0.25)
        let p = rec.params.base, g = rec.grads.base, d = spec.dim
        for i in 0..<rec.layout.count {
            let user = (rec.userEmbedding..<rec.userBias).contains(i) ? (i - rec.userEmbedding) / d : nil
            let item = (rec.itemEmbedding..<rec.itemBias).contains(i) ? (i - rec.itemEmbedding) / d : nil
            // 2 · 0.5 · 0.25 · w per scored row.
            let times =
                user.map { u in users.filter { $0 == u }.count } ?? item.map { j in items.filter { $0 == j }.count }
                ?? 0
            XCTAssertEqual(
                g[i], 0.25 * Double(times) * p[i], "gradient \(i) (\(rec.layout.tensors.last { $0.offset <= i }!.name))"
            )
        }
        // Penalty: 0.5 · Σ rows (‖U[u]‖² + ‖V[i]‖²); the biases add nothing.
        var want = 0.0
        for (u, i) in zip(users, items) {
            for j in 0..<d {
                want += pow(p[rec.userEmbedding + Int(u) * d + j], 2) + pow(p[rec.itemEmbedding + Int(i) * d + j], 2)
            }
        }
        XCTAssertEqual(rec.l2Penalty(users: users, items: items, batch: 3), 0.5 * want, accuracy: 1e-9)
        rec.l2 = RowL2(embeddings: 0, biases: 2)
        rec.grads.zero()
        rec.l2Backward(users: users, items: items, batch: 3, scale: 1)
        XCTAssertEqual(g[rec.userBias + 3], 2 * 2 * 2 * p[rec.userBias + 3])
        XCTAssertEqual(g[rec.itemBias + 2], 2 * 2 * p[rec.itemBias + 2])
        XCTAssertEqual(g[rec.userBias + 2], 0)
        XCTAssertEqual((0..<rec.layout.count).filter { g[$0] != 0 }.count, 4)
    }

    func testBinaryCrossEntropyIsStableAtLargeLogits() {
        let z: [Double] = [60, -60, 0], y: [Double] = [0, 1, 1]
        var d = [Double](repeating: 0, count: 3)
        let r = BinaryCrossEntropy.evaluate(logits: z, targets: y, batch: 3, dLogits: &d, gradScale: 1)
        XCTAssertEqual(r.lossSum, 60 + 60 + log(2), accuracy: 1e-9)
        assertClose(d, [1, -1, -0.5], rel: 1e-12, abs: 1e-12, "dBCE")
    }

    func testRankingMetrics() {
        // Items 1…5; item 0 is the unknown id and never ranked.
        let scores: [Float] = [99, 0.9, 0.5, 0.7, 0.5, 0.1]
        var excluded = [UInt8](repeating: 0, count: 6)
        XCTAssertEqual(expectedRank(scores: scores, count: 6, target: 2, excluded: excluded), 2.5) // 2 above, 1 tie
        excluded[1] = 1 // the user's other item
        XCTAssertEqual(expectedRank(scores: scores, count: 6, target: 2, excluded: excluded), 1.5)
        XCTAssertEqual(hitAndNDCG(rank: 0, k: 10).ndcg, 1)
        XCTAssertEqual(hitAndNDCG(rank: 2, k: 10).ndcg, 0.5)
        XCTAssertEqual(hitAndNDCG(rank: 10, k: 10).hit, 0)
        let h = Interactions(users: 3, pairs: [(2, 5), (0, 1), (2, 3), (2, 4)])
        XCTAssertEqual(Array(h.items(of: 2)), [3, 4, 5])
        XCTAssertEqual(Array(h.items(of: 1)), [])
    }

    func testSpecErrorsNameTheKey() {
        var s = RecommenderSpec(userColumn: "u", itemColumn: "i", users: 4, items: 6, dim: 3)
        s.mlp = [.dense(units: 4)]
        XCTAssertThrowsError(try s.validate()) {
            XCTAssertTrue("\($0)".contains("model.mlp.0") && "\($0)".contains("[4]"), "\($0)")
        }
        s.mlp = []; s.dot = false
        XCTAssertNoThrow(try s.validate(), "biases alone: the bias baseline, trained")
        s.bias = false
        XCTAssertThrowsError(try s.validate()) { XCTAssertTrue("\($0)".contains("model.dot"), "\($0)") }
        s.time = TimeBias(column: "t")
        s.dot = true
        XCTAssertThrowsError(try s.validate()) { XCTAssertTrue("\($0)".contains("needs bias: true"), "\($0)") }
        s.bias = true; s.time?.beta = 0
        XCTAssertThrowsError(try s.validate()) { XCTAssertTrue("\($0)".contains("model.drift_beta"), "\($0)") }
        s.time = nil; s.loss = "hinge"
        XCTAssertThrowsError(try s.validate()) { XCTAssertTrue("\($0)".contains("model.loss"), "\($0)") }
    }
}
