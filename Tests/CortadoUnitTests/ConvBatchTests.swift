import CKernels
import CortadoCompress
import CortadoCore
import CortadoInfer
import CortadoJob
import CortadoModel
import CortadoTestSupport
import XCTest

/// Convolutions batched across samples at inference (chunks of samples through one im2col and
/// one GEMM): in int8 (dynamic and static, every kernel path) a batch of N gives exactly the
/// logits of N batches of 1; in fp32 the same to rounding, because OpenBLAS's sgemm rounds an
/// output differently with the matrix's row and column counts (measured for Prescott,
/// Haswell and SkylakeX: a dense 37×3136·3136×128 product against 37 one-row products, and a
/// conv's chunk against its samples, differ in the last bits), which the dense layers
/// already showed before conv batching. The same holds when one call runs a batch as several
/// forward passes (`InferenceModel.passRows`). And the conv epilogue that transposes a chunk's
/// products into (filters, positions) per sample matches the scalar formula.
final class ConvBatchTests: XCTestCase {
    /// Geometry chosen for tails everywhere: the first conv splits 37 samples into several
    /// chunks with a partial last one (fp32 and int8), filter counts that are not multiples of
    /// 8 (the epilogue's tile), 49 positions (not a multiple of 8), stride 2, padding.
    let spec = ModelSpec(
        inputShape: [2, 28, 28],
        layers: [
            .conv2d(filters: 20, kernel: 3, stride: 1, padding: 1), .relu, .maxPool(size: 2, stride: 2),
            .conv2d(filters: 13, kernel: 3, stride: 2, padding: 1), .relu, .flatten, .dense(units: 5)
        ])

    func testBatchOfNGivesTheLogitsOfNBatchesOfOne() throws {
        let g = ConvShape(c: 2, h: 28, w: 28, f: 20, k: 3, s: 1, p: 1)
        XCTAssertGreaterThan(37, convChunk(g, batch: 37, of: Float.self), "the test spans several fp32 chunks")
        XCTAssertGreaterThan(
            InferenceModel.defaultPassBytes / (spec.widths.reduce(0, +) * 4), 37, "one pass by default")
        let net = Network<Float>(spec: spec, maxBatch: 1)
        net.initialize(seed: 6)
        var rng = SeededRNG(seed: 9)
        let rows = 37, d = spec.inputSize
        let x = (0..<(rows * d)).map { _ in Float(rng.normal()) }
        let dir = Support.scratch("conv-batch")
        let best = Int(cortado_int8_best_path())
        for recipe in ["fp32", "int8", "int8-static"] {
            let path = dir + "/\(recipe).cmodel"
            try net.params.array.withUnsafeBufferPointer { pb in
                try x.withUnsafeBufferPointer { xb in
                    try ModelExport.write(
                        path: path, recipe: try Recipe(recipe), model: spec, classes: (0..<5).map { "c\($0)" },
                        params: pb, metadata: [:], calibration: (xb.baseAddress!, rows))
                }
            }
            var want: [Float]?
            for p in recipe == "fp32" ? [best] : Array(0...best) {
                // (rows, nil): one pass; (rows, 4): passes of 4 rows inside one call.
                for (batch, passRows) in [(1, nil), (5, nil), (rows, nil), (rows, 4)] as [(Int, Int?)] {
                    let m = try InferenceModel(path: path)
                    m.int8Path = p
                    if let passRows { m.passBytes = passRows * spec.widths.reduce(0, +) * 4 }
                    XCTAssertEqual(
                        m.passRows, passRows ?? InferenceModel.defaultPassBytes / (spec.widths.reduce(0, +) * 4))
                    var all = [Float]()
                    for start in stride(from: 0, to: rows, by: batch) {
                        let n = min(batch, rows - start)
                        let l = Array(x[(start * d)..<((start + n) * d)]).withUnsafeBufferPointer {
                            m.logits($0.baseAddress!, batch: n)
                        }
                        all += (0..<(n * 5)).map { l[$0] }
                    }
                    guard let want else {
                        want = all
                        continue
                    }
                    // fp32: to sgemm's rounding (see above); int8: bit for bit.
                    let tolerance: Float = recipe == "fp32" ? 1e-5 : 0
                    let differ = all.indices.filter {
                        recipe == "fp32"
                            ? abs(all[$0] - want[$0]) > tolerance * max(1, abs(want[$0]))
                            : all[$0].bitPattern != want[$0].bitPattern
                    }
                    XCTAssertEqual(
                        differ.count, 0,
                        "\(recipe) path \(p) batch \(batch) passes of \(m.passRows) against batch 1: logit \(differ.first ?? -1) "
                            + "\(differ.first.map { all[$0] } ?? 0) vs \(differ.first.map { want[$0] } ?? 0)")
                }
            }
        }
    }

    /// The transposing conv epilogue against the scalar formula (c · (filter scale · sample
    /// scale) + bias, then ReLU), with tails in positions and filters; and with the max pool it
    /// fuses (2×2/2 on even and odd maps, an overlapping 3×3/2) against that formula followed
    /// by `maxPoolInference`, bit for bit.
    func testConvEpilogueMatchesTheFormula() {
        var rng = SeededRNG(seed: 3)
        let cases: [(samples: Int, oh: Int, ow: Int, filters: Int, pool: (Int, Int)?)] = [
            (3, 7, 7, 13, nil), (2, 4, 4, 8, nil), (1, 1, 7, 3, nil), (2, 4, 6, 20, nil),
            (3, 8, 10, 13, (2, 2)), (2, 7, 9, 20, (2, 2)), (1, 9, 7, 8, (3, 2)), (2, 28, 28, 32, (2, 2))
        ]
        for (samples, oh, ow, filters, pool) in cases {
            let positions = oh * ow
            let c = (0..<(samples * positions * filters)).map { _ in Int32(rng.normal() * 20_000) }
            let ss = (0..<samples).map { _ in Float(rng.uniform()) * 0.01 + 1e-4 }
            var fs = (0..<filters).map { _ in Float(rng.uniform()) * 0.01 + 1e-4 }
            var b = (0..<filters).map { _ in Float(rng.normal()) }
            // The first 8 filters once with a negative scale and a NaN bias: the pool then
            // compares values, not products (the kernel's monotonic shortcut does not hold).
            if pool != nil && samples == 2 { fs[0] = -fs[0]; b[1] = .nan }
            for relu in [false, true] {
                var want = [Float](repeating: 0, count: c.count)
                for s in 0..<samples {
                    for f in 0..<filters {
                        for p in 0..<positions {
                            var y = Float(c[(s * positions + p) * filters + f]) * (fs[f] * ss[s])
                            y += b[f]
                            if relu && !(y > 0) { y = 0 }
                            want[(s * filters + f) * positions + p] = y
                        }
                    }
                }
                if let (size, stride) = pool {
                    let g = PoolShape(c: filters, h: oh, w: ow, size: size, stride: stride)
                    var pooled = [Float](repeating: 0, count: samples * g.outCount)
                    maxPoolInference(out: &pooled, input: want, batch: samples, g)
                    want = pooled
                }
                for path in Set([Int32(CORTADO_INT8_PORTABLE), cortado_int8_best_path()]).sorted() {
                    var out = [Float](repeating: .nan, count: want.count)
                    cortado_dequantize_conv(
                        c, Int32(samples), Int32(oh), Int32(ow), Int32(filters), ss, fs, b, relu ? 1 : 0,
                        Int32(pool?.0 ?? 0), Int32(pool?.1 ?? 0), &out, path)
                    let bad = out.indices.filter { out[$0].bitPattern != want[$0].bitPattern }
                    XCTAssertEqual(
                        bad.count, 0,
                        "\(samples)×\(oh)×\(ow)×\(filters) pool \(String(describing: pool)) relu \(relu) path \(path)")
                }
            }
        }
    }

    /// The inference max pool (no argmax, row-wise) gives the training pool's values bit for
    /// bit, ties and infinities included, on the CNNs' 2×2/2 pool (even and odd sizes: its own
    /// loop) and an overlapping 3×3/2 (the general one).
    func testInferenceMaxPoolMatchesTheTrainingOne() {
        var rng = SeededRNG(seed: 5)
        for g in [
            PoolShape(c: 3, h: 8, w: 10, size: 2, stride: 2), PoolShape(c: 2, h: 7, w: 9, size: 2, stride: 2),
            PoolShape(c: 2, h: 9, w: 7, size: 3, stride: 2)
        ] {
            let batch = 3
            // Rounded values make ties; one -infinity and one +infinity per sample.
            var x = (0..<(batch * g.inCount)).map { _ in Float((rng.normal() * 2).rounded()) }
            for n in 0..<batch { x[n * g.inCount] = -.infinity; x[n * g.inCount + 5] = .infinity }
            var want = [Float](repeating: 0, count: batch * g.outCount), got = want
            var argmax = [Int32](repeating: 0, count: batch * g.outCount)
            maxPoolForward(out: &want, argmax: &argmax, input: x, batch: batch, g)
            maxPoolInference(out: &got, input: x, batch: batch, g)
            XCTAssertEqual(got.map(\.bitPattern), want.map(\.bitPattern), "\(g.size)×\(g.size) stride \(g.stride)")
        }
    }
}
