import CortadoCompress
import CortadoCore
import CortadoData
import CortadoInfer
import CortadoJob
import CortadoModel
import CortadoPipeline
import CortadoTestSupport
import CortadoTrain
import Foundation
import XCTest

/// Knowledge distillation: the loss (gradient checks in Double, its limits, numpy golden
/// values), the `teacher:` job-spec block, and the inference runtime's logits.
final class DistillationTests: XCTestCase {
    let eps = 1e-6, tol = 1e-6

    /// (batch, classes) values in ±[0.05, 1.05) · scale, from a seed.
    func values(_ n: Int, seed: UInt64, scale: Double) -> [Double] {
        var rng = SeededRNG(seed: seed)
        return (0..<n).map { _ in
            let v = rng.uniform() * 2 - 1
            return scale * (v < 0 ? v - 0.05 : v + 0.05)
        }
    }

    func evaluate(
        _ z: [Double], _ t: [Double], _ labels: [Int32], classes: Int, temperature: Double, alpha: Double,
        smoothing: Double = 0, dLogits: UnsafeMutablePointer<Double>? = nil, gradScale: Double = 1
    ) -> (lossSum: Double, hardLossSum: Double, correct: Int) {
        DistillationLoss.evaluate(
            logits: z, teacherLogits: t, labels: labels, batch: labels.count, classes: classes,
            temperature: temperature, alpha: alpha, dLogits: dLogits, gradScale: gradScale, smoothing: smoothing)
    }

    /// Central differences of the mean loss against the analytic ∂ℓ/∂z, for a range of
    /// temperatures and weights (the T factor of the soft gradient is what this pins down).
    func testGradientMatchesFiniteDifferences() {
        let batch = 4, classes = 5
        let labels: [Int32] = [4, 0, 2, 2]
        let t = values(batch * classes, seed: 5, scale: 4)
        for (temperature, alpha, smoothing) in [
            (1.0, 0.5, 0.0), (4, 0.7, 0), (2, 1, 0), (0.5, 0.3, 0), (10, 0.9, 0), (3, 0, 0), (4, 0.5, 0.1)
        ] {
            var z = values(batch * classes, seed: 11, scale: 3)
            var d = [Double](repeating: 0, count: batch * classes)
            _ = evaluate(
                z, t, labels, classes: classes, temperature: temperature, alpha: alpha, smoothing: smoothing,
                dLogits: &d, gradScale: 1 / Double(batch))
            func f() -> Double {
                evaluate(z, t, labels, classes: classes, temperature: temperature, alpha: alpha, smoothing: smoothing)
                    .lossSum / Double(batch)
            }
            for i in 0..<z.count {
                let s = z[i]
                z[i] = s + eps; let plus = f()
                z[i] = s - eps; let minus = f()
                z[i] = s
                let numeric = (plus - minus) / (2 * eps)
                XCTAssertLessThanOrEqual(
                    abs(d[i] - numeric), tol * max(1, abs(d[i]), abs(numeric)),
                    "T \(temperature), alpha \(alpha), smoothing \(smoothing): dLogits[\(i)] analytic \(d[i]), numeric \(numeric)"
                )
            }
            // Both parts of the gradient are differences of distributions: rows sum to zero.
            for r in 0..<batch {
                XCTAssertEqual(d[(r * classes)..<((r + 1) * classes)].reduce(0, +), 0, accuracy: 1e-12)
            }
        }
    }

    /// α = 0 is softmax cross-entropy, bit for bit: loss, gradient and correct count.
    func testAlphaZeroIsCrossEntropyExactly() {
        let batch = 4, classes = 5
        let labels: [Int32] = [1, 3, 0, 4]
        let z = values(batch * classes, seed: 2, scale: 3), t = values(batch * classes, seed: 3, scale: 5)
        var d = [Double](repeating: 0, count: batch * classes), dCE = d
        let r = evaluate(z, t, labels, classes: classes, temperature: 4, alpha: 0, dLogits: &d, gradScale: 0.25)
        let ce = SoftmaxCrossEntropy.evaluate(
            logits: z, labels: labels, batch: batch, classes: classes, dLogits: &dCE, gradScale: 0.25)
        XCTAssertEqual(r.lossSum, ce.lossSum)
        XCTAssertEqual(r.hardLossSum, ce.lossSum)
        XCTAssertEqual(r.correct, ce.correct)
        XCTAssertEqual(d, dCE)
    }

    /// α = 1 learns from the teacher alone: the labels change the reported hard loss but
    /// neither the loss nor the gradient; a student that equals its teacher has zero loss and
    /// gradient; the gradient is T·(softmax(z/T) − softmax(t/T)) per row.
    func testAlphaOneIgnoresLabelsAndMatchesTheTeacher() {
        let batch = 3, classes = 4, temperature = 2.5
        let z = values(batch * classes, seed: 8, scale: 3), t = values(batch * classes, seed: 9, scale: 3)
        var d1 = [Double](repeating: 0, count: batch * classes), d2 = d1
        let a = evaluate(z, t, [0, 1, 2], classes: classes, temperature: temperature, alpha: 1, dLogits: &d1)
        let b = evaluate(z, t, [3, 3, 1], classes: classes, temperature: temperature, alpha: 1, dLogits: &d2)
        XCTAssertEqual(a.lossSum, b.lossSum)
        XCTAssertNotEqual(a.hardLossSum, b.hardLossSum)
        XCTAssertEqual(d1, d2)
        func softmax(_ v: ArraySlice<Double>) -> [Double] {
            let m = v.max()!, e = v.map { exp(($0 - m) / temperature) }, s = e.reduce(0, +)
            return e.map { $0 / s }
        }
        for r in 0..<batch {
            let row = (r * classes)..<((r + 1) * classes)
            let want = zip(softmax(z[row]), softmax(t[row])).map { temperature * ($0 - $1) }
            assertClose(Array(d1[row]), want, rel: 1e-12, abs: 1e-15, "row \(r)")
        }
        var d = [Double](repeating: 1, count: batch * classes)
        let same = evaluate(z, z, [0, 1, 2], classes: classes, temperature: temperature, alpha: 1, dLogits: &d)
        XCTAssertEqual(same.lossSum, 0, accuracy: 1e-14)
        XCTAssertEqual(d.map(abs).max()!, 0, accuracy: 1e-15)
    }

    /// Extreme logits (a confident teacher at a low temperature) stay finite.
    func testConfidentTeacherStaysFinite() {
        var d = [Float](repeating: 0, count: 3)
        let r = DistillationLoss.evaluate(
            logits: [Float(0), 1, 2], teacherLogits: [Float(200), -200, 0], labels: [Int32(0)], batch: 1, classes: 3,
            temperature: Float(0.1), alpha: Float(0.9), dLogits: &d, gradScale: 1)
        XCTAssertTrue(r.lossSum.isFinite && d.allSatisfy(\.isFinite), "\(r) \(d)")
    }

    // MARK: golden values

    struct Golden: Decodable {
        var batch: Int, inputs: Int, hidden: Int, classes: Int
        var x: [Double], labels: [Int32], params: [Double]
        var distillation: Distillation
        struct Distillation: Decodable {
            var temperature: Double, alpha: Double, teacher_logits: [Double], loss: Double, hard_loss: Double,
                grads: [Double]
        }
    }

    /// The golden MLP (Fixtures/make_golden.py) as a student: mean loss, hard loss and every
    /// parameter gradient of one `Network.distillationStep` against numpy.
    func run<T: Real>(_ type: T.Type, _ g: Golden) -> (loss: Double, hard: Double, grads: [Double]) {
        let spec = ModelSpec(inputShape: [g.inputs], layers: [.dense(units: g.hidden), .relu, .dense(units: g.classes)])
        let net = Network<T>(spec: spec, maxBatch: g.batch)
        net.params.load(g.params.map { T($0) })
        net.grads.zero()
        let x = g.x.map { T($0) }, t = g.distillation.teacher_logits.map { T($0) }
        let r = x.withUnsafeBufferPointer { xp in
            t.withUnsafeBufferPointer { tp in
                net.distillationStep(
                    xp.baseAddress!, labels: g.labels, teacherLogits: tp.baseAddress!, batch: g.batch,
                    temperature: T(g.distillation.temperature), alpha: T(g.distillation.alpha))
            }
        }
        return (r.lossSum / Double(g.batch), r.hardLossSum / Double(g.batch), net.grads.array.map { Double($0) })
    }

    func testGoldenMatchesNumpy() throws {
        let g = try JSONDecoder().decode(Golden.self, from: try Support.fixture("golden_mlp.json"))
        let d = run(Double.self, g)
        XCTAssertEqual(d.loss, g.distillation.loss, accuracy: 1e-12)
        XCTAssertEqual(d.hard, g.distillation.hard_loss, accuracy: 1e-12)
        assertClose(d.grads, g.distillation.grads, rel: 1e-10, abs: 1e-14, "Double grads")
        let f = run(Float.self, g)
        XCTAssertEqual(f.loss, g.distillation.loss, accuracy: 1e-5)
        assertClose(f.grads, g.distillation.grads, rel: 1e-4, abs: 1e-6, "Float grads")
        // The fixture can tell distillation from plain cross-entropy.
        XCTAssertGreaterThan(abs(g.distillation.loss - g.distillation.hard_loss), 0.1)
    }

    // MARK: job spec

    let base = """
        data: d/manifest.json
        model: {layers: [{type: dense, units: 16}, {type: relu}, {type: dense, units: 10}]}
        teacher:
          model: runs/t/model-fp32.cmodel
          temperature: 3
          alpha: 0.6
        """

    func testTeacherSpecOverridesAndDefaults() throws {
        let s = try spec(base)
        XCTAssertEqual(s.teacher?.model, "runs/t/model-fp32.cmodel")
        XCTAssertEqual(s.teacher?.temperature, 3)
        XCTAssertEqual(s.teacher?.alpha, 0.6)
        XCTAssertNil(s.teacher?.sha256, "the trainer fills it in")
        let o = try spec(base, ["teacher.alpha=0.5", "teacher.temperature=2", "teacher.model=other.cmodel"])
        XCTAssertEqual(
            o.teacher,
            {
                var t = JobSpec.Teacher(model: "other.cmodel"); t.temperature = 2; t.alpha = 0.5; return t
            }())
        let plain = "data: d/manifest.json\nmodel: {layers: [{type: dense, units: 10}]}\n"
        let added = try spec(plain, ["teacher={model: t.cmodel}"])
        XCTAssertEqual(added.teacher?.temperature, 4, "default temperature")
        XCTAssertEqual(added.teacher?.alpha, 0.7, "default alpha")
        XCTAssertNil(try spec(plain).teacher)
        XCTAssertFalse(try spec(plain).canonicalJSON.contains("teacher"), "specs without a teacher hash as before")
        XCTAssertTrue(
            o.canonicalJSON.contains("\"teacher\":{\"alpha\":0.5,\"model\":\"other.cmodel\",\"temperature\":2}"),
            o.canonicalJSON)
        XCTAssertNil(s.teacher?.cache, "cached unless told otherwise")
        let perBatch = try spec(base, ["teacher.cache=false"])
        XCTAssertEqual(perBatch.teacher?.cache, false)
        XCTAssertTrue(
            perBatch.canonicalJSON.contains("\"teacher\":{\"alpha\":0.6,\"cache\":false,"), perBatch.canonicalJSON)
        XCTAssertEqual(try spec(base + "\n  cache: true").teacher?.cache, true)
    }

    func testTeacherSpecErrorsNameTheField() {
        expectError(base, ["teacher.temperature=0"], contains: "teacher.temperature: must be positive, got 0")
        expectError(base, ["teacher.temperature=-2"], contains: "teacher.temperature: must be positive")
        expectError(base, ["teacher.alpha=1.5"], contains: "teacher.alpha: must be in [0, 1]")
        expectError(base, ["teacher.alpha=-0.1"], contains: "teacher.alpha: must be in [0, 1]")
        expectError(base, ["teacher.temp=2"], contains: "teacher.temp: unknown key")
        expectError(base, ["teacher.alpha=lots"], contains: "teacher.alpha: expected a number, got 'lots'")
        expectError(base, ["teacher.cache=sometimes"], contains: "teacher.cache: expected")
        expectError(base, ["teacher.sha256=abc"], contains: "teacher.sha256: unknown key")
        expectError(
            "data: d/manifest.json\nmodel: {layers: [{type: dense, units: 10}]}\n", ["teacher.alpha=0.5"],
            contains: "teacher.model: required")
        expectError(
            "data: d/manifest.json\nmodel: {type: recommender}\n", ["teacher.model=t.cmodel"],
            contains: "teacher: distillation trains classifiers")
    }

    /// The shipped pairs: each distilled student and its baseline differ only in the teacher
    /// (and run folder), and each student has at most a quarter of its teacher's parameters.
    func testShippedJobSpecsDifferOnlyInTheTeacher() throws {
        let count = { (s: JobSpec) in s.modelSpec(inputShape: [1, 28, 28]).parameterLayout.count }
        for (distilledJob, baselineJob, teacherJob, teacherParams) in [
            ("fashion-mlp-distilled", "fashion-mlp-small", "fashion-mlp", 235_146),
            ("fashion-cnn-distilled", "fashion-mlp-128", "fashion-cnn", 421_642)
        ] {
            let distilled = try JobSpec.load(path: Support.repoRoot + "/jobs/\(distilledJob).yaml")
            let baseline = try JobSpec.load(path: Support.repoRoot + "/jobs/\(baselineJob).yaml")
            let teacher = try JobSpec.load(path: Support.repoRoot + "/jobs/\(teacherJob).yaml")
            XCTAssertEqual(distilled.teacher?.model, teacher.runDir + "/model-fp32.cmodel", distilledJob)
            var same = distilled
            same.teacher = nil
            same.runDir = baseline.runDir
            XCTAssertEqual(same, baseline, "\(distilledJob) without its teacher is \(baselineJob)")
            XCTAssertNotEqual(distilled.runDir, baseline.runDir)
            XCTAssertEqual(count(teacher), teacherParams, teacherJob)
            XCTAssertLessThanOrEqual(
                4 * count(distilled), count(teacher), "\(distilledJob): at most a quarter of the teacher")
        }
    }

    // MARK: inference runtime

    /// `logits` is `predict` before the softmax, for fp32 and int8 files.
    func testInferenceLogitsAreThePredictionsBeforeSoftmax() throws {
        let dir = Support.scratch("distill-logits")
        let spec = ModelSpec(inputShape: [6], layers: [.dense(units: 5), .relu, .dense(units: 3)])
        let params = (0..<spec.parameterLayout.count).map { Float(sin(Double($0) + 1)) * 0.5 }
        let x = (0..<(4 * 6)).map { Float($0 + 1) / 24 - 0.5 }
        for recipe in ["fp32", "int8"] {
            let path = dir + "/m-\(recipe).cmodel"
            try params.withUnsafeBufferPointer {
                try ModelExport.write(
                    path: path, recipe: try Recipe(recipe), model: spec, classes: ["a", "b", "c"], params: $0,
                    metadata: [:])
            }
            let m = try InferenceModel(path: path)
            let z = Array(UnsafeBufferPointer(start: m.logits(x, batch: 4), count: 12))
            var p = [Float](repeating: 0, count: 12)
            m.predict(x, batch: 4, probabilities: &p)
            for r in 0..<4 {
                let row = z[(3 * r)..<(3 * r + 3)], e = row.map { exp($0 - row.max()!) }
                assertClose(
                    e.map { $0 / e.reduce(0, +) }, Array(p[(3 * r)..<(3 * r + 3)]), rel: 1e-6, abs: 1e-7,
                    "\(recipe) row \(r)")
            }
            XCTAssertGreaterThan(z.map(abs).max()!, 0.1, "\(recipe): logits, not probabilities")
        }
    }

    // MARK: teacher logits cache

    /// Compares `TeacherLogits` for `rows` rows of `x` (rows, inputs) against the teacher run
    /// on shuffled batches of `batch` rows, as the step loop would: the count of logits that
    /// differ in any bit and the largest difference in units of max(1, the row's largest |logit|).
    static func compareCache(_ path: String, x: UnsafePointer<Float>, rows: Int, batch: Int, seed: UInt64) throws -> (
        differ: Int, checked: Int, worst: Double
    ) {
        let cache = TeacherLogits(try InferenceModel(path: path), features: x, rows: rows, batch: batch)
        let perBatch = try InferenceModel(path: path)
        let d = perBatch.spec.inputSize, k = perBatch.classes
        var order = (0..<Int32(rows)).map { $0 }
        var rng = SeededRNG(seed: seed)
        order.withUnsafeMutableBufferPointer { rng.shuffle($0) }
        var xb = [Float](repeating: 0, count: batch * d), cached = [Float](repeating: 0, count: batch * k)
        var differ = 0, checked = 0, worst = 0.0
        for s in 0..<(rows / batch) {
            let batchRows = Array(order[(s * batch)..<((s + 1) * batch)])
            for (i, r) in batchRows.enumerated() { (0..<d).forEach { xb[i * d + $0] = x[Int(r) * d + $0] } }
            let z = perBatch.logits(xb, batch: batch)
            cache.gather(batchRows, count: batch, into: &cached)
            for i in 0..<batch {
                var scale: Float = 1
                for c in 0..<k { scale = max(scale, abs(z[i * k + c])) }
                for c in 0..<k where z[i * k + c].bitPattern != cached[i * k + c].bitPattern {
                    differ += 1
                    worst = max(worst, Double(abs(z[i * k + c] - cached[i * k + c]) / scale))
                }
            }
            checked += batch * k
        }
        return (differ, checked, worst)
    }

    /// The cache (every row computed once, in calls of `batch` rows) against the teacher run on
    /// shuffled training batches of `batch` rows: int8 teachers (activations quantized per row,
    /// integer GEMM) and pruned ones whose CSR layer runs sparse agree bit for bit; fp32 dense
    /// layers (OpenBLAS sgemm, whose rounding depends on a row's position in the batch) agree
    /// to 1e-5 of max(1, the row's largest |logit|), a few float ulps (measured: up to 1e-6 on
    /// the Fashion-MNIST MLP and CNN teachers, about half the logits differing).
    /// Batches that the 16-row sparse threshold, the 32-row sparse blocks and the 203 rows do
    /// not divide; MLP and CNN teachers.
    func testCachedTeacherLogitsMatchPerBatchLogits() throws {
        let dir = Support.scratch("distill-cache")
        let mlp = ModelSpec(
            inputShape: [64], layers: [.dense(units: 96), .relu, .dense(units: 48), .relu, .dense(units: 10)])
        let cnn = ModelSpec(
            inputShape: [1, 12, 12],
            layers: [
                .conv2d(filters: 8, kernel: 3, stride: 1, padding: 1), .relu, .maxPool(size: 2, stride: 2),
                .flatten, .dense(units: 24), .relu, .dense(units: 10)
            ])
        let rows = 203
        var rng = SeededRNG(seed: 17)
        for (name, spec) in [("mlp", mlp), ("cnn", cnn)] {
            let x = (0..<(rows * spec.inputSize)).map { _ in Float(rng.uniform()) }
            let params = (0..<spec.parameterLayout.count).map { Float(sin(Double($0) * 0.37 + 1)) * 0.3 }
            for recipe in ["fp32", "int8", "prune0.9+fp32", "prune0.9+int8"]
            where name == "mlp" || !recipe.hasPrefix("prune") {
                let path = dir + "/\(name)-\(recipe).cmodel"
                try params.withUnsafeBufferPointer {
                    try ModelExport.write(
                        path: path, recipe: try Recipe(recipe), model: spec, classes: (0..<10).map(String.init),
                        params: $0, metadata: [:])
                }
                if recipe.hasPrefix("prune") {
                    XCTAssertEqual(
                        try InferenceModel(path: path).sparseLayerIndices, [0, 2, 4], "\(recipe): runs sparse")
                }
                for batch in [1, 7, 50, 64] {
                    let r = try Self.compareCache(path, x: x, rows: rows, batch: batch, seed: UInt64(batch))
                    let what =
                        "\(name) \(recipe), batch \(batch): \(r.differ) of \(r.checked) cached logits differ, by up to \(r.worst)"
                    // Exact: int8 layers; batches of one; sparse layers from 16 rows (smaller
                    // batches take the dense fp32 path).
                    if recipe.hasSuffix("int8") || batch == 1 || (recipe.hasPrefix("prune") && batch >= 16) {
                        XCTAssertEqual(r.differ, 0, what)
                    } else {
                        XCTAssertLessThanOrEqual(r.worst, 1e-5, what)
                    }
                }
            }
        }
    }
}
