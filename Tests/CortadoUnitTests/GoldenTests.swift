import CortadoJob
import CortadoModel
import CortadoTrain
import CortadoTestSupport
import XCTest

/// Whole-model forward, loss, gradients and the first SGD steps against numpy (float64);
/// Fixtures/make_golden.py wrote the fixture.
final class GoldenTests: XCTestCase {
    struct Golden: Decodable {
        var batch: Int, inputs: Int, hidden: Int, classes: Int
        var x: [Double], labels: [Int32], params: [Double], logits: [Double], loss: Double, grads: [Double]
    }

    func golden() throws -> Golden { try JSONDecoder().decode(Golden.self, from: try Support.fixture("golden_mlp.json")) }

    func spec(_ g: Golden) -> ModelSpec {
        ModelSpec(inputShape: [g.inputs], layers: [.dense(units: g.hidden), .relu, .dense(units: g.classes)])
    }

    func run<T: Real>(_ type: T.Type, _ g: Golden) -> (logits: [Double], loss: Double, grads: [Double]) {
        let net = Network<T>(spec: spec(g), maxBatch: g.batch)
        XCTAssertEqual(net.layout.count, g.params.count)
        net.params.load(g.params.map { T($0) })
        net.grads.zero()
        let x = g.x.map { T($0) }
        let r = x.withUnsafeBufferPointer { net.step($0.baseAddress!, labels: g.labels, batch: g.batch, train: true) }
        let logits = x.withUnsafeBufferPointer { xp in Array(UnsafeBufferPointer(start: net.forward(xp.baseAddress!, batch: g.batch), count: g.batch * g.classes)) }
        return (logits.map { Double($0) }, r.lossSum / Double(g.batch), net.grads.array.map { Double($0) })
    }

    func testDoubleMatchesNumpy() throws {
        let g = try golden()
        let r = run(Double.self, g)
        assertClose(r.logits, g.logits, rel: 1e-12, "logits")
        XCTAssertEqual(r.loss, g.loss, accuracy: 1e-12)
        assertClose(r.grads, g.grads, rel: 1e-10, abs: 1e-14, "grads")
    }

    func testFloatMatchesNumpy() throws {
        let g = try golden()
        let r = run(Float.self, g)
        assertClose(r.logits, g.logits, rel: 1e-5, abs: 1e-6, "logits")
        XCTAssertEqual(r.loss, g.loss, accuracy: 1e-5)
        assertClose(r.grads, g.grads, rel: 1e-4, abs: 1e-6, "grads")
    }
}

/// conv2d (stride 2, padding 1) forward and backward against numpy; Fixtures/make_golden_conv.py.
final class ConvGoldenTests: XCTestCase {
    struct Golden: Decodable { var shape: [Int], x: [Double], w: [Double], b: [Double], out: [Double], g: [Double], dw: [Double], db: [Double], dx: [Double] }

    func testConv2dMatchesNumpy() throws {
        let gd = try JSONDecoder().decode(Golden.self, from: try Support.fixture("golden_conv.json"))
        let (n, c, h, w, f, k, s, p) = (gd.shape[0], gd.shape[1], gd.shape[2], gd.shape[3], gd.shape[4], gd.shape[5], gd.shape[6], gd.shape[7])
        let g = ConvShape(c: c, h: h, w: w, f: f, k: k, s: s, p: p)
        var out = [Double](repeating: 0, count: n * g.outCount)
        var cols = [Double](repeating: 0, count: n * g.patch * g.positions)
        conv2dForward(out: &out, cols: &cols, input: gd.x, weight: gd.w, bias: gd.b, batch: n, g)
        assertClose(out, gd.out, rel: 1e-12, abs: 1e-12, "conv output")
        var dw = [Double](repeating: 0, count: gd.w.count), db = [Double](repeating: 0, count: f)
        var dx = [Double](repeating: 0, count: gd.x.count), dCols = [Double](repeating: 0, count: g.patch * g.positions)
        conv2dBackward(dInput: &dx, dWeight: &dw, dBias: &db, dCols: &dCols, dOut: gd.g, cols: cols, weight: gd.w, batch: n, g)
        assertClose(dw, gd.dw, rel: 1e-12, abs: 1e-12, "dWeight")
        assertClose(db, gd.db, rel: 1e-12, abs: 1e-12, "dBias")
        assertClose(dx, gd.dx, rel: 1e-12, abs: 1e-12, "dInput")
    }
}

/// SGD with momentum, Nesterov SGD, Adam and AdamW: three steps each against numpy (make_golden.py), plus the
/// learning-rate schedules and global-norm clipping.
final class OptimizerGoldenTests: XCTestCase {
    struct Golden: Decodable {
        var batch: Int, inputs: Int, hidden: Int, classes: Int
        var x: [Double], labels: [Int32], params: [Double]
        var optimizers: [String: Run]
        struct Run: Decodable { var learning_rate: Double, weight_decay: Double, losses: [Double], params_after: [Double] }
    }

    func testOptimizersMatchNumpy() throws {
        let g = try JSONDecoder().decode(Golden.self, from: try Support.fixture("golden_mlp.json"))
        let spec = ModelSpec(inputShape: [g.inputs], layers: [.dense(units: g.hidden), .relu, .dense(units: g.classes)])
        for (kind, ref) in g.optimizers {
            let net = Network<Float>(spec: spec, maxBatch: g.batch)
            net.params.load(g.params.map { Float($0) })
            var o = JobSpec.OptimizerSpec()
            o.type = kind == "nesterov" ? "sgd" : kind
            o.nesterov = kind == "nesterov"
            o.learningRate = ref.learning_rate
            o.weightDecay = ref.weight_decay
            let opt = Optimizer(spec: o, count: net.layout.count)
            let x = g.x.map { Float($0) }
            var losses = [Double]()
            for step in 0..<3 {
                net.grads.zero()
                let r = x.withUnsafeBufferPointer { net.step($0.baseAddress!, labels: g.labels, batch: g.batch, train: true) }
                losses.append(r.lossSum / Double(g.batch))
                opt.update(params: net.params.base, grads: net.grads.base, lr: Float(o.learningRate), step: step)
            }
            let r = x.withUnsafeBufferPointer { net.step($0.baseAddress!, labels: g.labels, batch: g.batch, train: false) }
            losses.append(r.lossSum / Double(g.batch))
            assertClose(losses, ref.losses, rel: 1e-5, "\(kind) losses")
            assertClose(net.params.array.map { Double($0) }, ref.params_after, rel: 1e-4, abs: 1e-6, "\(kind) params")
        }
    }

    func testSchedulesAndClipping() {
        var o = JobSpec.OptimizerSpec()
        o.learningRate = 1
        o.warmupSteps = 10
        func lr(_ schedule: String, _ step: Int) -> Float {
            o.schedule = schedule
            return Optimizer(spec: o, count: 1).learningRate(step: step, total: 110)
        }
        XCTAssertEqual(lr("constant", 4), 0.5)           // warm-up: (4 + 1) / 10
        XCTAssertEqual(lr("cosine", 60), 0.5, accuracy: 1e-6)
        XCTAssertEqual(lr("linear", 35), 0.75, accuracy: 1e-6)
        o.decaySteps = 20
        o.gamma = 0.5
        XCTAssertEqual(lr("step", 49), 0.5, accuracy: 1e-6)
        XCTAssertEqual(lr("step", 50), 0.25, accuracy: 1e-6)
        var g: [Float] = [3, 4]
        XCTAssertEqual(clipGlobalNorm(&g, count: 2, maxNorm: 1), 5)
        XCTAssertEqual(g[0], 0.6, accuracy: 1e-6)
        XCTAssertEqual(g[1], 0.8, accuracy: 1e-6)
        var h: [Float] = [0.3, 0.4]
        _ = clipGlobalNorm(&h, count: 2, maxNorm: 1)
        XCTAssertEqual(h, [0.3, 0.4], "below the limit: untouched")
    }
}
