import CortadoCore
import CortadoModel
import XCTest

/// Central-difference gradient checks in Double for every layer and the loss (Caffe's
/// GradientChecker): |analytic − numeric| ≤ 1e-6 · max(1, |analytic|, |numeric|), kinks avoided.
final class GradientCheckTests: XCTestCase {
    let eps = 1e-6
    let tol = 1e-6

    /// Inputs (batch, d) away from 0 so ReLU kinks are never straddled.
    func inputs(_ batch: Int, _ d: Int, seed: UInt64) -> [Double] {
        var rng = SeededRNG(seed: seed)
        return (0..<(batch * d)).map { _ in
            let v = rng.uniform() * 2 - 1
            return v < 0 ? v - 0.05 : v + 0.05
        }
    }

    /// Mean loss of `net` on (x, labels).
    func loss(_ net: Network<Double>, _ x: [Double], _ labels: [Int32], batch: Int) -> Double {
        x.withUnsafeBufferPointer { xp in labels.withUnsafeBufferPointer { lp in
            net.step(xp.baseAddress!, labels: lp.baseAddress!, batch: batch, train: false).lossSum / Double(batch)
        } }
    }

    func check(_ what: String, analytic: Double, numeric: Double, file: StaticString = #filePath, line: UInt = #line) {
        let err = abs(analytic - numeric)
        XCTAssertLessThanOrEqual(err, tol * max(1, abs(analytic), abs(numeric)),
                                 "\(what): analytic \(analytic), numeric \(numeric)", file: file, line: line)
    }

    /// Checks every parameter gradient and every input gradient of `layers` on a small batch.
    func checkNetwork(_ layers: [LayerSpec], inputs d: Int, batch: Int = 5, file: StaticString = #filePath, line: UInt = #line) {
        let spec = ModelSpec(inputShape: [d], layers: layers)
        let classes = spec.outputSize
        let net = Network<Double>(spec: spec, maxBatch: batch)
        net.initialize(seed: 7)
        // Non-zero biases, so their gradients are not trivially symmetric.
        for t in net.layout.tensors where t.shape.count == 1 {
            for j in 0..<t.count { net.params.base[t.offset + j] = 0.1 * Double(j + 1) - 0.2 }
        }
        var x = inputs(batch, d, seed: 3)
        let labels = (0..<batch).map { Int32(($0 * 7 + 1) % classes) }

        // Analytic: parameter gradients from step(train:), input gradient from backward(dInput:).
        net.grads.zero()
        _ = x.withUnsafeBufferPointer { xp in labels.withUnsafeBufferPointer { lp in
            net.step(xp.baseAddress!, labels: lp.baseAddress!, batch: batch, train: true)
        } }
        let dParams = Array(net.grads.buffer)
        var dLogits = [Double](repeating: 0, count: batch * classes)
        var dInput = [Double](repeating: 0, count: batch * d)
        x.withUnsafeBufferPointer { xp in
            let logits = net.forward(xp.baseAddress!, batch: batch)
            _ = labels.withUnsafeBufferPointer { lp in
                SoftmaxCrossEntropy.evaluate(logits: logits, labels: lp.baseAddress!, batch: batch, classes: classes,
                                             dLogits: &dLogits, gradScale: 1 / Double(batch))
            }
            net.backward(xp.baseAddress!, batch: batch, dLogits: dLogits, dInput: &dInput)
        }

        for i in 0..<net.layout.count {
            let saved = net.params.base[i]
            net.params.base[i] = saved + eps
            let plus = loss(net, x, labels, batch: batch)
            net.params.base[i] = saved - eps
            let minus = loss(net, x, labels, batch: batch)
            net.params.base[i] = saved
            let name = net.layout.tensors.last { $0.offset <= i }!.name
            check("\(layers) d\(name)[\(i)]", analytic: dParams[i], numeric: (plus - minus) / (2 * eps), file: file, line: line)
        }
        for i in 0..<x.count {
            let saved = x[i]
            x[i] = saved + eps
            let plus = loss(net, x, labels, batch: batch)
            x[i] = saved - eps
            let minus = loss(net, x, labels, batch: batch)
            x[i] = saved
            check("\(layers) dInput[\(i)]", analytic: dInput[i], numeric: (plus - minus) / (2 * eps), file: file, line: line)
        }
    }

    func testDense() { checkNetwork([.dense(units: 3)], inputs: 4) }

    func testReLU() { checkNetwork([.relu], inputs: 4) }

    func testMLP() { checkNetwork([.dense(units: 6), .relu, .dense(units: 5), .relu, .dense(units: 3)], inputs: 7) }

    func testSoftmaxCrossEntropy() {
        let batch = 4, classes = 5
        var z = inputs(batch, classes, seed: 11).map { $0 * 3 }
        let labels: [Int32] = [4, 0, 2, 2]
        var d = [Double](repeating: 0, count: batch * classes)
        _ = SoftmaxCrossEntropy.evaluate(logits: z, labels: labels, batch: batch, classes: classes, dLogits: &d, gradScale: 1 / Double(batch))
        func f() -> Double {
            SoftmaxCrossEntropy.evaluate(logits: z, labels: labels, batch: batch, classes: classes, dLogits: nil, gradScale: 1).lossSum / Double(batch)
        }
        for i in 0..<z.count {
            let s = z[i]
            z[i] = s + eps; let plus = f()
            z[i] = s - eps; let minus = f()
            z[i] = s
            check("dLogits[\(i)]", analytic: d[i], numeric: (plus - minus) / (2 * eps))
        }
        // Rows of the gradient sum to zero (softmax minus a one-hot, both summing to 1).
        for r in 0..<batch { XCTAssertEqual(d[(r * classes)..<((r + 1) * classes)].reduce(0, +), 0, accuracy: 1e-12) }
    }

    /// The checker itself must be able to fail: a deliberately wrong gradient is caught.
    func testCheckerCatchesAWrongGradient() {
        let err = abs(0.30 - 0.31)
        XCTAssertGreaterThan(err, tol * max(1, 0.31), "a 1e-2 error must exceed the tolerance")
    }
}
