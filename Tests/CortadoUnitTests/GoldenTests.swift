import CortadoJob
import CortadoModel
import CortadoTestSupport
import CortadoTrain
import XCTest

/// Whole-model forward, loss, gradients and the first SGD steps against numpy (float64);
/// Fixtures/make_golden.py wrote the fixture.
final class GoldenTests: XCTestCase {
    struct Golden: Decodable {
        var batch: Int, inputs: Int, hidden: Int, classes: Int
        var x: [Double], labels: [Int32], params: [Double], logits: [Double], loss: Double, grads: [Double]
    }

    func golden() throws -> Golden {
        try JSONDecoder().decode(Golden.self, from: try Support.fixture("golden_mlp.json"))
    }

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
        let logits = x.withUnsafeBufferPointer { xp in
            Array(UnsafeBufferPointer(start: net.forward(xp.baseAddress!, batch: g.batch), count: g.batch * g.classes))
        }
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
