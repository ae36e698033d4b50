import CortadoCore
import CortadoModel
import CortadoTestSupport
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

    /// Mean loss of `net` on (x, labels); in training mode (dropout on, same mask every call
    /// since the seed is fixed) when `training`.
    func loss(_ net: Network<Double>, _ x: [Double], _ labels: [Int32], batch: Int, training: Bool = false) -> Double {
        x.withUnsafeBufferPointer { xp in
            labels.withUnsafeBufferPointer { lp in
                net.step(xp.baseAddress!, labels: lp.baseAddress!, batch: batch, train: training).lossSum
                    / Double(batch)
            }
        }
    }

    func check(_ what: String, analytic: Double, numeric: Double, file: StaticString = #filePath, line: UInt = #line) {
        let err = abs(analytic - numeric)
        XCTAssertLessThanOrEqual(
            err, tol * max(1, abs(analytic), abs(numeric)),
            "\(what): analytic \(analytic), numeric \(numeric)", file: file, line: line)
    }

    /// Checks every parameter gradient and every input gradient of `layers` on a small batch.
    func checkNetwork(
        _ layers: [LayerSpec], inputs d: Int, batch: Int = 5, file: StaticString = #filePath, line: UInt = #line
    ) {
        checkNetwork(layers, shape: [d], batch: batch, file: file, line: line)
    }

    func checkNetwork(
        _ layers: [LayerSpec], shape: [Int], batch: Int = 5, training: Bool = false, file: StaticString = #filePath,
        line: UInt = #line
    ) {
        let spec = ModelSpec(inputShape: shape, layers: layers)
        let d = spec.inputSize
        let classes = spec.outputSize
        let net = Network<Double>(spec: spec, maxBatch: batch)
        net.initialize(seed: 7)
        net.dropoutSeed = 99
        // Non-zero biases, so their gradients are not trivially symmetric.
        for t in net.layout.tensors where t.shape.count == 1 {
            for j in 0..<t.count { net.params.base[t.offset + j] = 0.1 * Double(j + 1) - 0.2 }
        }
        var x = inputs(batch, d, seed: 3)
        let labels = (0..<batch).map { Int32(($0 * 7 + 1) % classes) }

        // Analytic: parameter gradients from step(train:), input gradient from backward(dInput:).
        net.grads.zero()
        _ = x.withUnsafeBufferPointer { xp in
            labels.withUnsafeBufferPointer { lp in
                net.step(xp.baseAddress!, labels: lp.baseAddress!, batch: batch, train: true)
            }
        }
        let dParams = Array(net.grads.buffer)
        let f = { (x: [Double]) in self.loss(net, x, labels, batch: batch, training: training) }
        var dLogits = [Double](repeating: 0, count: batch * classes)
        var dInput = [Double](repeating: 0, count: batch * d)
        x.withUnsafeBufferPointer { xp in
            let logits = net.forward(xp.baseAddress!, batch: batch, training: training)
            _ = labels.withUnsafeBufferPointer { lp in
                SoftmaxCrossEntropy.evaluate(
                    logits: logits, labels: lp.baseAddress!, batch: batch, classes: classes,
                    dLogits: &dLogits, gradScale: 1 / Double(batch))
            }
            net.backward(xp.baseAddress!, batch: batch, dLogits: dLogits, dInput: &dInput)
        }

        for i in 0..<net.layout.count {
            let saved = net.params.base[i]
            net.params.base[i] = saved + eps
            let plus = f(x)
            net.params.base[i] = saved - eps
            let minus = f(x)
            net.params.base[i] = saved
            let name = net.layout.tensors.last { $0.offset <= i }!.name
            check(
                "\(layers) d\(name)[\(i)]", analytic: dParams[i], numeric: (plus - minus) / (2 * eps), file: file,
                line: line)
        }
        for i in 0..<x.count {
            let saved = x[i]
            x[i] = saved + eps
            let plus = f(x)
            x[i] = saved - eps
            let minus = f(x)
            x[i] = saved
            check(
                "\(layers) dInput[\(i)]", analytic: dInput[i], numeric: (plus - minus) / (2 * eps), file: file,
                line: line)
        }
    }

    func testDense() { checkNetwork([.dense(units: 3)], inputs: 4) }

    func testReLU() { checkNetwork([.relu], inputs: 4) }

    /// Every registered elementwise activation (a new kind is checked without a test change),
    /// with its default key values.
    func testEveryRegisteredActivation() {
        for kind in ActivationRegistry.kinds {
            checkNetwork([.dense(units: 5), .activation(Activation(kind)), .dense(units: 3)], inputs: 4)
        }
    }

    func testMLP() { checkNetwork([.dense(units: 6), .relu, .dense(units: 5), .relu, .dense(units: 3)], inputs: 7) }

    func testActivations() {
        for act in [LayerSpec.gelu, .sigmoid, .tanh] {
            checkNetwork([.dense(units: 5), act, .dense(units: 3)], inputs: 4)
        }
    }

    func testLayerNorm() { checkNetwork([.dense(units: 6), .layerNorm, .dense(units: 3)], inputs: 4) }

    func testDropoutWithAFixedMask() {
        checkNetwork([.dense(units: 8), .dropout(rate: 0.4), .dense(units: 3)], shape: [4], training: true)
    }

    func testConv2dWithStrideAndPadding() {
        checkNetwork(
            [.conv2d(filters: 3, kernel: 3, stride: 2, padding: 1), .flatten, .dense(units: 3)], shape: [2, 5, 6],
            batch: 3)
        checkNetwork(
            [
                .conv2d(filters: 2, kernel: 2, stride: 1, padding: 0), .tanh,
                .conv2d(filters: 2, kernel: 3, stride: 1, padding: 1),
                .flatten, .dense(units: 3)
            ], shape: [1, 4, 4], batch: 2)
    }

    func testPooling() {
        checkNetwork(
            [
                .conv2d(filters: 2, kernel: 3, stride: 1, padding: 1), .maxPool(size: 2, stride: 2), .flatten,
                .dense(units: 3)
            ], shape: [1, 6, 6], batch: 3)
        checkNetwork([.avgPool(size: 2, stride: 1), .flatten, .dense(units: 3)], shape: [2, 4, 5], batch: 3)
        checkNetwork([.maxPool(size: 3, stride: 2), .flatten, .dense(units: 3)], shape: [2, 7, 7], batch: 2)
    }

    func testShapeErrorsNameTheLayerAndShapes() {
        let spec = ModelSpec(
            inputShape: [784],
            layers: [.conv2d(filters: 4, kernel: 3, stride: 1, padding: 0), .flatten, .dense(units: 10)])
        XCTAssertThrowsError(try spec.validate(classes: 10)) {
            XCTAssertTrue(
                "\($0)".contains(
                    "model.layers.0 (conv2d(4, 3x3, stride 1, pad 0)): input shape [784]: needs a (channels, height, width) input"
                ), "\($0)")
        }
        let ok = ModelSpec(
            inputShape: [1, 28, 28],
            layers: [
                .conv2d(filters: 8, kernel: 3, stride: 1, padding: 1), .maxPool(size: 2, stride: 2), .flatten,
                .dense(units: 10)
            ])
        XCTAssertNoThrow(try ok.validate(classes: 10))
        XCTAssertEqual(ok.shapes, [[8, 28, 28], [8, 14, 14], [1568], [10]])
    }

    func testSoftmaxCrossEntropy() { checkLoss(smoothing: 0) }

    func testSoftmaxCrossEntropyWithLabelSmoothing() { checkLoss(smoothing: 0.2) }

    func checkLoss(smoothing: Double) {
        let batch = 4, classes = 5
        var z = inputs(batch, classes, seed: 11).map { $0 * 3 }
        let labels: [Int32] = [4, 0, 2, 2]
        var d = [Double](repeating: 0, count: batch * classes)
        _ = SoftmaxCrossEntropy.evaluate(
            logits: z, labels: labels, batch: batch, classes: classes, dLogits: &d,
            gradScale: 1 / Double(batch), smoothing: smoothing)
        func f() -> Double {
            SoftmaxCrossEntropy.evaluate(
                logits: z, labels: labels, batch: batch, classes: classes, dLogits: nil, gradScale: 1,
                smoothing: smoothing
            ).lossSum / Double(batch)
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
