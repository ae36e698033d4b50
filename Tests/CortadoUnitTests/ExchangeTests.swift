import CortadoCore
import CortadoJob
import CortadoModel
import CortadoPipeline
import CortadoTestSupport
import CortadoTrain
import XCTest

/// What the overlapped exchange relies on, without MPI: backward reports gradients only once
/// they are final, in falling offsets, and the buckets cover the arena in that order.
final class ExchangeTests: XCTestCase {
    func mlp(blockRows: Int) -> Network<Double> {
        let spec = ModelSpec(
            inputShape: [20], layers: [.dense(units: 12), .relu, .dense(units: 8), .layerNorm, .relu, .dense(units: 3)])
        let net = Network<Double>(spec: spec, maxBatch: 6)
        net.initialize(seed: 5)
        net.gradientBlockRows = blockRows
        return net
    }

    func step(_ net: Network<Double>) {
        var rng = SeededRNG(seed: 9)
        let x = (0..<(6 * 20)).map { _ in rng.uniform() * 2 - 1 }
        let labels: [Int32] = [0, 1, 2, 0, 1, 2]
        net.grads.zero()
        _ = x.withUnsafeBufferPointer { xp in
            labels.withUnsafeBufferPointer { lp in
                net.step(xp.baseAddress!, labels: lp.baseAddress!, batch: 6, train: true)
            }
        }
    }

    /// Each reported offset: everything at or above it already holds its final value. The
    /// offsets come in `gradientReadyPoints` order, falling, down to 0; row blocks give the
    /// same gradients as whole-tensor backward.
    func testBackwardReportsFinalGradientsInFallingOffsets() {
        let plain = mlp(blockRows: 0)
        step(plain)
        let net = mlp(blockRows: 3) // the 12×20 weight in 4 blocks of 3 rows, the 8×12 in 3
        var reported = [Int](), snapshots = [[Double]]()
        net.gradientsReady = { offset in
            reported.append(offset)
            snapshots.append(Array(net.grads.buffer[offset..<net.layout.count]))
        }
        step(net)
        XCTAssertEqual(reported, net.gradientReadyPoints)
        XCTAssertEqual(reported, reported.sorted(by: >))
        XCTAssertEqual(reported.last, 0)
        XCTAssertEqual(reported.filter { $0 < 12 * 20 }.count, 4, "rows 9-11, 6-8, 3-5, 0-2 of the first weight")
        let final = Array(net.grads.buffer[0..<net.layout.count])
        for (offset, snap) in zip(reported, snapshots) {
            XCTAssertEqual(snap, Array(final[offset...]), "gradients at ≥ \(offset) changed after being reported")
        }
        assertClose(final, Array(plain.grads.buffer[0..<plain.layout.count]), rel: 1e-12, "blocked vs whole backward")
    }

    /// Buckets partition the arena, highest offsets first, each at least the target size but
    /// the last, cut only at reported points.
    func testBucketsCoverTheArenaInBackwardOrder() {
        let points = [900, 700, 650, 400, 100, 0]
        let b = gradientBuckets(count: 1000, readyPoints: points, size: 250)
        XCTAssertEqual(b, [700..<1000, 400..<700, 100..<400, 0..<100])
        XCTAssertEqual(gradientBuckets(count: 1000, readyPoints: points, size: 10_000), [0..<1000])
        XCTAssertEqual(gradientBuckets(count: 1000, readyPoints: [], size: 1), [0..<1000])
        for size in [1, 60, 333] {
            let bs = gradientBuckets(count: 1000, readyPoints: points, size: size)
            XCTAssertEqual(bs.first?.upperBound, 1000)
            XCTAssertEqual(bs.last?.lowerBound, 0)
            for (a, c) in zip(bs, bs.dropFirst()) { XCTAssertEqual(a.lowerBound, c.upperBound) }
            for x in bs.dropLast() {
                XCTAssertGreaterThanOrEqual(x.count, size); XCTAssertTrue(points.contains(x.lowerBound))
            }
        }
    }
}
