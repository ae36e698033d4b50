import CKernels
import CortadoCompress
import CortadoCore
import CortadoInfer
import CortadoJob
import CortadoModel
import CortadoTestSupport
import XCTest

/// The fp32 direct conv kernel (cortado_conv_f32_forward, with ReLU and max pool fused) on every
/// path this CPU runs, against a plain Double reference, and the inference runtime that uses it
/// against the training network's im2col + sgemm path.
final class DirectConvTests: XCTestCase {
    /// (c, h, w, f, k, s, p): odd sizes, rows narrower and wider than a tile (14 pixels), no,
    /// one and two pixels of padding, stride 2, 1×1 and 5×5 kernels, filter counts that take
    /// one or several blocks of 2 vectors (and 24: AVX2 only, 8 per vector); channel counts the
    /// AVX-512 padding gathers 16 at a time, with and without a tail (32, 20).
    let shapes = [
        (1, 28, 28, 32, 3, 1, 1), (3, 9, 11, 16, 3, 1, 1), (5, 7, 30, 48, 3, 2, 1), (2, 13, 17, 24, 5, 1, 2),
        (32, 6, 6, 64, 3, 1, 0), (4, 5, 3, 80, 1, 1, 0), (7, 15, 15, 8, 3, 2, 0),
        (20, 5, 9, 16, 3, 1, 1)
    ]

    /// (relu, pool size, pool stride): none, ReLU alone, pool alone, both, and an overlapping pool.
    let epilogues = [(false, 0, 0), (true, 0, 0), (false, 2, 2), (true, 2, 2), (true, 3, 2)]

    /// ... and each sample of a batch gets the bits it gets alone.
    func testEveryPathMatchesThePlainConvolution() {
        var rng = SeededRNG(seed: 11)
        let batch = 3
        for (c, h, w, f, k, s, p) in shapes {
            let g = ConvShape(c: c, h: h, w: w, f: f, k: k, s: s, p: p)
            let x = (0..<(batch * g.inCount)).map { _ in Float(rng.normal()) }
            let weight = (0..<(f * g.patch)).map { _ in Float(rng.normal() * 0.3) }
            let bias = (0..<f).map { _ in Float(rng.normal()) }
            var packed = [Float](repeating: .nan, count: f * g.patch)
            cortado_conv_f32_pack(weight, Int32(f), Int32(c), Int32(k), &packed)
            let (want, bound) = reference(x, weight, bias, g, batch: batch)
            let best = Int(cortado_conv_f32_best_path(Int32(f)))
            for path in 0...best {
                for (relu, size, stride) in epilogues where size <= g.oh && size <= g.ow {
                    let (w2, b2) = epilogue(want, bound, g, batch: batch, relu: relu, size: size, stride: stride)
                    var out = [Float](repeating: .nan, count: w2.count)
                    var scratch = [Float](
                        repeating: .nan,
                        count: cortado_conv_f32_scratch(
                            Int32(c), Int32(h), Int32(w), Int32(f), Int32(k), Int32(s), Int32(p)))
                    cortado_conv_f32_forward(
                        x, Int32(batch), Int32(c), Int32(h), Int32(w), Int32(f), Int32(k), Int32(s), Int32(p), packed,
                        bias, relu ? 1 : 0, Int32(size), Int32(stride), &out, &scratch, Int32(path))
                    let bad = out.indices.filter { !(abs(Double(out[$0]) - w2[$0]) <= 1e-5 * b2[$0]) }
                    XCTAssertEqual(
                        bad.count, 0,
                        "path \(path) \(c)×\(h)×\(w) f \(f) k \(k) s \(s) p \(p) relu \(relu) pool \(size)/\(stride): "
                            + "output \(bad.first ?? -1) is \(bad.first.map { out[$0] } ?? 0), "
                            + "want \(bad.first.map { w2[$0] } ?? 0)")
                    // Each sample alone gives the same bits as in the batch.
                    let per = out.count / batch
                    for n in 0..<batch {
                        var one = [Float](repeating: .nan, count: per)
                        cortado_conv_f32_forward(
                            Array(x[(n * g.inCount)..<((n + 1) * g.inCount)]), 1, Int32(c), Int32(h), Int32(w),
                            Int32(f),
                            Int32(k), Int32(s), Int32(p), packed, bias, relu ? 1 : 0, Int32(size), Int32(stride), &one,
                            &scratch, Int32(path))
                        XCTAssertEqual(one.map(\.bitPattern), out[(n * per)..<((n + 1) * per)].map(\.bitPattern))
                    }
                }
            }
        }
    }

    /// A CNN whose conv layers all take the direct kernel (with ReLU + pool, pool alone, ReLU
    /// alone, nothing fused): the runtime's logits against the training network's (im2col +
    /// sgemm, separate ReLU and pool passes) to rounding, on every path, and a batch of N the
    /// logits of N batches of 1 to rounding.
    func testRuntimeMatchesTheTrainingNetworkAndIsBatchIndependent() throws {
        let spec = ModelSpec(
            inputShape: [3, 13, 11],
            layers: [
                .conv2d(filters: 16, kernel: 3, stride: 1, padding: 1), .relu, .maxPool(size: 2, stride: 2),
                .conv2d(filters: 32, kernel: 3, stride: 1, padding: 1), .maxPool(size: 2, stride: 2),
                .conv2d(filters: 24, kernel: 1, stride: 1, padding: 0), .relu,
                .conv2d(filters: 16, kernel: 3, stride: 2, padding: 1), .flatten, .dense(units: 7)
            ])
        let net = Network<Float>(spec: spec, maxBatch: 9)
        net.initialize(seed: 4)
        var rng = SeededRNG(seed: 8)
        // Non-zero biases, so that a bias added twice or not at all shows.
        for t in net.layout.tensors where t.name.hasSuffix(".bias") {
            for j in 0..<t.count { net.params.base[t.offset + j] = Float(rng.normal() * 0.1) }
        }
        let rows = 9, d = spec.inputSize
        let x = (0..<(rows * d)).map { _ in Float(rng.normal()) }
        let want = x.withUnsafeBufferPointer {
            Array(UnsafeBufferPointer(start: net.forward($0.baseAddress!, batch: rows), count: rows * 7))
        }
        let path = Support.scratch("direct-conv") + "/fp32.cmodel"
        try net.params.array.withUnsafeBufferPointer { pb in
            try ModelExport.write(
                path: path, recipe: try Recipe("fp32"), model: spec, classes: (0..<7).map { "c\($0)" }, params: pb,
                metadata: [:])
        }
        let best = Int(cortado_conv_f32_best_path(16))
        XCTAssertGreaterThan(best, 0, "this CPU runs a vector path (the benchmark machine has AVX-512)")
        for p in 0...best {
            let m = try InferenceModel(path: path)
            m.convPath = p
            var batched = [Float]()
            x.withUnsafeBufferPointer { xb in
                let l = m.logits(xb.baseAddress!, batch: rows)
                batched = (0..<(rows * 7)).map { l[$0] }
            }
            let differ = want.indices.filter { !(abs(batched[$0] - want[$0]) <= 1e-5 * max(1, abs(want[$0]))) }
            XCTAssertEqual(
                differ.count, 0,
                "path \(p): logit \(differ.first ?? -1) \(differ.first.map { batched[$0] } ?? 0) vs \(differ.first.map { want[$0] } ?? 0)"
            )
            // Batch 1 to rounding only: the dense layer's sgemm rounds with the row count
            // (ConvBatchTests); the conv itself is batch-independent bit for bit (above).
            for r in 0..<rows {
                let one = Array(x[(r * d)..<((r + 1) * d)]).withUnsafeBufferPointer { xb in
                    let l = m.logits(xb.baseAddress!, batch: 1)
                    return (0..<7).map { l[$0] }
                }
                let b = Array(batched[(r * 7)..<((r + 1) * 7)])
                XCTAssertTrue(
                    zip(one, b).allSatisfy { abs($0 - $1) <= 1e-5 * max(1, abs($1)) },
                    "path \(p) row \(r): \(one) vs \(b)")
            }
        }
    }

    /// y (batch, f, oh, ow) in Double and, per output, Σ|terms| (|bias| + Σ|x·w|): the scale of
    /// the rounding a float sum of those terms may make.
    private func reference(_ x: [Float], _ w: [Float], _ b: [Float], _ g: ConvShape, batch: Int) -> ([Double], [Double])
    {
        var y = [Double](repeating: 0, count: batch * g.outCount), bound = y
        for n in 0..<batch {
            for fi in 0..<g.f {
                for oy in 0..<g.oh {
                    for ox in 0..<g.ow {
                        var s = Double(b[fi]), a = abs(Double(b[fi]))
                        for ci in 0..<g.c {
                            for ki in 0..<g.k {
                                for kj in 0..<g.k {
                                    let iy = oy * g.s - g.p + ki, ix = ox * g.s - g.p + kj
                                    guard iy >= 0 && iy < g.h && ix >= 0 && ix < g.w else { continue }
                                    let t =
                                        Double(x[n * g.inCount + (ci * g.h + iy) * g.w + ix])
                                        * Double(w[fi * g.patch + (ci * g.k + ki) * g.k + kj])
                                    s += t
                                    a += abs(t)
                                }
                            }
                        }
                        let o = n * g.outCount + (fi * g.oh + oy) * g.ow + ox
                        y[o] = s
                        bound[o] = max(a, 1e-3)
                    }
                }
            }
        }
        return (y, bound)
    }

    /// The reference's ReLU and max pool, the pool's bound the largest in its window.
    private func epilogue(
        _ y: [Double], _ bound: [Double], _ g: ConvShape, batch: Int, relu: Bool, size: Int, stride: Int
    ) -> ([Double], [Double]) {
        let r = relu ? y.map { $0 > 0 ? $0 : 0 } : y
        guard size > 0 else { return (r, bound) }
        let ph = (g.oh - size) / stride + 1, pw = (g.ow - size) / stride + 1
        var out = [Double](), ob = [Double]()
        for n in 0..<batch {
            for fi in 0..<g.f {
                for py in 0..<ph {
                    for px in 0..<pw {
                        var m = -Double.infinity, mb = 0.0
                        for dy in 0..<size {
                            for dx in 0..<size {
                                let i = n * g.outCount + (fi * g.oh + py * stride + dy) * g.ow + px * stride + dx
                                m = max(m, r[i])
                                mb = max(mb, bound[i])
                            }
                        }
                        out.append(m)
                        ob.append(mb)
                    }
                }
            }
        }
        return (out, ob)
    }
}
