import CortadoModel
import CortadoTestSupport
import XCTest

/// The activation term of cortado-train's start-up memory breakdown counts every buffer the
/// network sizes for its batch.
final class MemoryTests: XCTestCase {
    func testNetworkBufferBytesCountActivationsGradientsAndSavedState() {
        let mlp = Network<Float>(
            spec: ModelSpec(
                inputShape: [784], layers: [.dense(units: 256), .relu, .dense(units: 128), .relu, .dense(units: 10)]),
            maxBatch: 64)
        // activations 64·(256+256+128+128+10), two gradient buffers 64·784, one dCols slot.
        XCTAssertEqual(mlp.bufferBytes, 4 * (64 * 778 + 2 * 64 * 784 + 1))
        let g = ConvShape(c: 1, h: 8, w: 8, f: 4, k: 3, s: 1, p: 1)
        let cnn = Network<Float>(
            spec: ModelSpec(
                inputShape: [1, 8, 8],
                layers: [
                    .conv2d(filters: 4, kernel: 3, stride: 1, padding: 1),
                    .maxPool(size: 2, stride: 2), .flatten, .dropout(rate: 0.5), .dense(units: 3)
                ]),
            maxBatch: 5)
        let acts = 5 * (256 + 64 + 64 + 64 + 3), grads = 2 * 5 * 256, cols = 5 * g.patch * g.positions,
            dCols = g.patch * g.positions
        XCTAssertEqual(
            cnn.bufferBytes, 4 * (acts + grads + cols + dCols + 5 * 64) + 4 * 5 * 64,
            "conv columns, dropout mask, pool indices")
        let inference = Network<Float>(spec: cnn.spec, maxBatch: 5, training: false)
        // A chunk of samples' columns and products (conv2dForward), a 1-slot pool index.
        let chunk = convChunk(g, batch: 5, of: Float.self) * g.positions * (g.patch + g.f)
        XCTAssertEqual(
            inference.bufferBytes, 4 * (acts + chunk + 5 * 64) + 4,
            "inference keeps a chunk's columns and products, no pool indices and no backward buffers")
    }
}
