import CortadoJob
import CortadoModel
import CortadoTestSupport
import CortadoTrain
import XCTest

/// SGD with momentum, Nesterov SGD, Adam and AdamW: three steps each against numpy (make_golden.py), plus the
/// learning-rate schedules and global-norm clipping.
final class OptimizerGoldenTests: XCTestCase {
    struct Golden: Decodable {
        var batch: Int, inputs: Int, hidden: Int, classes: Int
        var x: [Double], labels: [Int32], params: [Double]
        var optimizers: [String: Run]
        struct Run: Decodable {
            var learning_rate: Double, weight_decay: Double, losses: [Double], params_after: [Double]
        }
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
                let r = x.withUnsafeBufferPointer {
                    net.step($0.baseAddress!, labels: g.labels, batch: g.batch, train: true)
                }
                losses.append(r.lossSum / Double(g.batch))
                opt.update(params: net.params.base, grads: net.grads.base, lr: Float(o.learningRate), step: step)
            }
            let r = x.withUnsafeBufferPointer {
                net.step($0.baseAddress!, labels: g.labels, batch: g.batch, train: false)
            }
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
        XCTAssertEqual(lr("constant", 4), 0.5) // warm-up: (4 + 1) / 10
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
