import CKernels
import CortadoCompress
import CortadoCore
import CortadoInfer
import CortadoJob
import CortadoModel
import CortadoPipeline
import CortadoTestSupport
import CortadoTrain
import Foundation
import XCTest

/// Pruning, 16-bit storage and sparse (CSR) weights: exact sparsity, the stored file reading
/// back to exactly the pruned (and dequantized) weights, error bounds for fp16/bf16/int8, and
/// damaged sparse tables rejected.
final class CompressionTests: XCTestCase {
    let spec = ModelSpec(inputShape: [784], layers: [.dense(units: 128), .relu, .dense(units: 5)])

    func params() -> [Float] {
        let net = Network<Float>(spec: spec, maxBatch: 1)
        net.initialize(seed: 9)
        return net.params.array
    }

    func write(_ path: String, _ recipe: String, _ p: [Float]) throws {
        try p.withUnsafeBufferPointer {
            try ModelExport.write(
                path: path, recipe: try Recipe(recipe), model: spec, classes: ["a", "b", "c", "d", "e"], params: $0,
                metadata: [:])
        }
    }

    /// The int8 GEMM's paths (portable C, AVX2, AVX-512 VNNI where the CPU has it) give the
    /// same int32 results as a Swift reference, on shapes with tails in every dimension and
    /// values at ±127.
    func testInt8KernelPathsAgreeWithAReference() throws {
        var rng = SeededRNG(seed: 3, stream: 1)
        let best = Int(cortado_int8_best_path())
        print("int8 kernel: best path on this CPU \(InferenceModel.int8PathName)")
        for (m, n, k) in [(1, 1, 1), (7, 13, 100), (3, 256, 784), (5, 6, 64), (2, 9, 33), (6, 16, 96), (4, 12, 800)] {
            let a = (0..<(m * k)).map { _ in Int8(Int(rng.below(255)) - 127) }
            var w = (0..<(n * k)).map { _ in Int8(Int(rng.below(255)) - 127) }
            w[0] = 127; if w.count > 1 { w[1] = -127 }
            var want = [Int32](repeating: 0, count: m * n)
            for i in 0..<m {
                for j in 0..<n {
                    want[i * n + j] = (0..<k).reduce(Int32(0)) { $0 + Int32(a[i * k + $1]) * Int32(w[j * k + $1]) }
                }
            }
            for path in 0...best {
                var c = [Int32](repeating: -1, count: m * n)
                cortado_int8_gemm(a, w, &c, Int32(m), Int32(n), Int32(k), Int32(path))
                XCTAssertEqual(c, want, "path \(path), \(m)×\(n)×\(k)")
            }
            // Non-negative activations (after ReLU) take the sign-free variant.
            let u = a.map { $0 == Int8.min ? 0 : abs($0) }
            var wantU = [Int32](repeating: 0, count: m * n)
            for i in 0..<m {
                for j in 0..<n {
                    wantU[i * n + j] = (0..<k).reduce(Int32(0)) { $0 + Int32(u[i * k + $1]) * Int32(w[j * k + $1]) }
                }
            }
            for path in 0...best {
                var c = [Int32](repeating: -1, count: m * n)
                cortado_int8_gemm_ex(u, w, &c, Int32(m), Int32(n), Int32(k), Int32(path), 1)
                XCTAssertEqual(c, wantU, "non-negative, path \(path), \(m)×\(n)×\(k)")
            }
        }
    }

    /// The float ends of the int8 path against Swift references: per-row dynamic quantization
    /// (round half to even, ±127, zeroed padding), a fixed scale clipping, the epilogue with
    /// per-column and per-row bias and ReLU, and im2row in bytes with padding and stride.
    func testInt8EpiloguesAndIm2rowMatchAReference() throws {
        var rng = SeededRNG(seed: 5, stream: 2)
        let m = 5, k = 37, ld = 64
        var x = (0..<(m * k)).map { _ in Float(rng.normal() * 3) }
        for j in 0..<k { x[2 * k + j] = 0 } // an all-zero row gets scale 1
        let n = 11
        let c = (0..<(m * n)).map { _ in Int32(rng.below(20001)) - 10000 }
        let rs = (0..<m).map { _ in Float(rng.uniform()) * 0.01 }, cs = (0..<n).map { _ in Float(rng.uniform()) * 0.01 }
        let rb = (0..<m).map { _ in Float(rng.normal()) }, cb = (0..<n).map { _ in Float(rng.normal()) }
        // Each path (portable, and the CPU's best) against the same reference.
        for path in Set([Int32(CORTADO_INT8_PORTABLE), cortado_int8_best_path()]).sorted() {
            var q = [Int8](repeating: 99, count: m * ld), scales = [Float](repeating: 0, count: m)
            XCTAssertEqual(
                cortado_quantize_rows(x, Int32(k), Int32(m), Int32(k), &q, Int32(ld), &scales, path), 0,
                "negative values")
            for i in 0..<m {
                let mx = x[(i * k)..<((i + 1) * k)].map(abs).max()!
                let scale: Float = mx > 0 ? mx / 127 : 1
                XCTAssertEqual(scales[i], scale, "row \(i)")
                for j in 0..<ld {
                    let want: Int8 =
                        j < k ? Int8(max(-127, min(127, (x[i * k + j] * (1 / scale)).rounded(.toNearestOrEven)))) : 0
                    XCTAssertEqual(q[i * ld + j], want, "row \(i) col \(j) path \(path)")
                }
            }
            let positive = x.map { max($0, -0.001) } // tiny negatives round to 0: still non-negative
            XCTAssertEqual(
                cortado_quantize_rows(positive, Int32(k), Int32(m), Int32(k), &q, Int32(ld), &scales, path), 1)
            XCTAssertEqual(
                cortado_quantize_rows_fixed(x, Int32(k), Int32(m), Int32(k), 0.01, &q, Int32(ld), &scales, path), 0)
            XCTAssertEqual(
                Set(q.indices.filter { $0 % ld < k }.map { abs(Int(q[$0])) }).max(), 127,
                "a small fixed scale clips at ±127")
            XCTAssertEqual(scales, [Float](repeating: 0.01, count: m))

            for (perRow, relu) in [(false, false), (false, true), (true, true)] {
                var out = [Float](repeating: .nan, count: m * n)
                cortado_dequantize_rows(
                    c, Int32(m), Int32(n), rs, cs, perRow ? rb : nil, perRow ? nil : cb, relu ? 1 : 0, &out, path)
                for i in 0..<m {
                    for j in 0..<n {
                        var y = Float(c[i * n + j]) * (rs[i] * cs[j]) + (perRow ? rb[i] : cb[j])
                        if relu { y = max(y, 0) }
                        XCTAssertEqual(
                            out[i * n + j], y, "(\(i), \(j)) per-row bias \(perRow) relu \(relu) path \(path)")
                    }
                }
            }
        }

        for g in [
            ConvShape(c: 2, h: 5, w: 6, f: 1, k: 3, s: 1, p: 1), ConvShape(c: 3, h: 7, w: 7, f: 1, k: 3, s: 2, p: 0),
            ConvShape(c: 1, h: 4, w: 3, f: 1, k: 5, s: 2, p: 2), ConvShape(c: 2, h: 6, w: 5, f: 1, k: 2, s: 3, p: 1),
            ConvShape(c: 24, h: 5, w: 4, f: 1, k: 3, s: 1, p: 1), ConvShape(c: 1, h: 6, w: 5, f: 1, k: 3, s: 1, p: 1),
            ConvShape(c: 32, h: 4, w: 5, f: 1, k: 3, s: 2, p: 1)
        ] {
            let image = (0..<g.inCount).map { _ in Int8(Int(rng.below(255)) - 127) }
            var floats = [Float](repeating: 0, count: g.positions * g.patch)
            image.map(Float.init).withUnsafeBufferPointer { im2row($0.baseAddress!, g, rows: &floats) }
            // im2col (the training path, copies by line segment) is im2row (per element) transposed.
            var cols = [Float](repeating: .nan, count: g.positions * g.patch)
            image.map(Float.init).withUnsafeBufferPointer { im2col($0.baseAddress!, g, cols: &cols) }
            for pos in 0..<g.positions {
                for j in 0..<g.patch {
                    XCTAssertEqual(
                        cols[j * g.positions + pos], floats[pos * g.patch + j], "im2col \(g) row \(j) position \(pos)")
                }
            }
            // The int8 path: the image channels last, each row (kernel row, kernel column,
            // channel) — the reference's (channel, kernel row, kernel column) permuted.
            let hw = g.h * g.w
            var hwc = [Int8](repeating: 99, count: g.inCount)
            cortado_chw_to_hwc_int8(image, Int32(g.c), Int32(hw), &hwc)
            for ci in 0..<g.c { for i in 0..<hw { XCTAssertEqual(hwc[i * g.c + ci], image[ci * hw + i], "hwc \(g)") } }
            let ldr = (g.patch + 31) / 32 * 32, kk = g.k * g.k
            var rows = [Int8](repeating: 99, count: g.positions * ldr)
            cortado_im2row_int8(
                hwc, Int32(g.c), Int32(g.h), Int32(g.w), Int32(g.k), Int32(g.s), Int32(g.p), &rows, Int32(ldr))
            for pos in 0..<g.positions {
                for j in 0..<ldr {
                    let want = j < g.patch ? Int8(floats[pos * g.patch + j % g.c * kk + j / g.c]) : 0
                    XCTAssertEqual(rows[pos * ldr + j], want, "\(g) position \(pos) column \(j)")
                }
            }
        }
    }

    /// An int8 CNN (conv weights per filter, the conv GEMM in int8) scores close to its fp32
    /// self, and its file is about a quarter of the fp32 one.
    func testInt8ConvolutionTracksFP32() throws {
        let cnn = ModelSpec(
            inputShape: [1, 12, 12],
            layers: [
                .conv2d(filters: 8, kernel: 3, stride: 1, padding: 1), .relu,
                .maxPool(size: 2, stride: 2), .conv2d(filters: 16, kernel: 3, stride: 1, padding: 1),
                .relu, .flatten, .dense(units: 4)
            ])
        let net = Network<Float>(spec: cnn, maxBatch: 1)
        net.initialize(seed: 4)
        let dir = Support.scratch("int8-conv")
        var sizes = [String: Int](), outputs = [String: [Float]]()
        var rng = SeededRNG(seed: 8)
        let rows = 16, x = (0..<(rows * 144)).map { _ in Float(rng.normal()) }
        for recipe in ["fp32", "int8"] {
            let path = dir + "/\(recipe).cmodel"
            try net.params.array.withUnsafeBufferPointer {
                try ModelExport.write(
                    path: path, recipe: try Recipe(recipe), model: cnn, classes: ["a", "b", "c", "d"], params: $0,
                    metadata: [:])
            }
            XCTAssertEqual(
                try ModelFile.load(path).tensor("layers.3.weight")?.dtype, recipe == "int8" ? .int8 : .float32)
            sizes[recipe] = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            let m = try InferenceModel(path: path)
            var p = [Float](repeating: 0, count: rows * 4)
            m.predict(x, batch: rows, probabilities: &p)
            outputs[recipe] = p
        }
        let diff = zip(outputs["fp32"]!, outputs["int8"]!).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(diff, 0.05, "int8 probabilities within 0.05 of fp32")
        XCTAssertGreaterThan(diff, 0, "the int8 path ran")
        XCTAssertLessThan(Double(sizes["int8"]!) / Double(sizes["fp32"]!), 0.4)
    }

    /// A 90 %-pruned model scores the same through the sparse kernel (row path, 32-sample
    /// blocks with a partial block, portable C) as through the densified weights (to rounding
    /// for fp32, to activation quantization for int8); `auto` picks sparse for the big layer
    /// and keeps batch 1 on the dense path.
    func testSparseKernelMatchesDense() throws {
        let dir = Support.scratch("sparse-kernel")
        for recipe in ["prune0.9+fp32", "prune0.9+int8"] {
            let path = dir + "/\(recipe).cmodel"
            try write(path, recipe, params())
            let dense = try InferenceModel(path: path, sparse: .never)
            XCTAssertEqual(dense.sparseLayerIndices, [])
            XCTAssertEqual(
                try InferenceModel(path: path).sparseLayerIndices, [0],
                "auto: the 784×128 layer is below the density crossover")
            var rng = SeededRNG(seed: 12)
            let rows = 45, x = (0..<(rows * 784)).map { _ in Float(rng.normal()) }
            var want = [Float](repeating: 0, count: rows * 5)
            let wantLogits = (0..<rows).flatMap { r -> [Float] in
                let l = dense.logits(Array(x[(r * 784)..<((r + 1) * 784)]), batch: 1)
                return (0..<5).map { l[$0] }
            }
            dense.predict(x, batch: rows, probabilities: &want)
            for (policy, path8, batch) in [
                (InferenceModel.SparsePolicy.always, 1, 3), (.always, 1, 45), (.always, 0, 45), (.auto, 1, 45),
                (.auto, 1, 1)
            ] {
                let m = try InferenceModel(path: path, sparse: policy)
                m.int8Path = path8
                for start in stride(from: 0, to: rows, by: batch) {
                    let n = min(batch, rows - start)
                    let l = Array(x[(start * 784)..<((start + n) * 784)]).withUnsafeBufferPointer {
                        m.logits($0.baseAddress!, batch: n)
                    }
                    for i in 0..<(n * 5) {
                        // int8: the sparse kernel multiplies fp32 activations by the dequantized
                        // weights, the dense path quantized activations; fp32: rounding only.
                        let tolerance: Float =
                            recipe.hasSuffix("int8") ? 0.05 : 2e-4 * max(1, abs(wantLogits[start * 5 + i]))
                        XCTAssertEqual(
                            l[i], wantLogits[start * 5 + i], accuracy: tolerance,
                            "\(recipe) \(policy) path \(path8) batch \(batch) logit \(start * 5 + i)")
                    }
                }
            }
        }
    }

    /// Static int8: the file carries one calibrated input scale per int8 layer (min/max =
    /// largest |x| / 127 on the calibration rows; a percentile gives a smaller one), inference
    /// uses it and stays close to fp32, a recipe without calibration rows is refused, and a
    /// damaged scale is rejected at load.
    func testStaticInt8CalibratesInputScales() throws {
        let dir = Support.scratch("int8-static")
        var rng = SeededRNG(seed: 21)
        let rows = 64, x = (0..<(rows * 784)).map { _ in Float(rng.uniform()) }
        let p = params()
        var probs = [String: [Float]](), inputScales = [String: Float]()
        for recipe in ["fp32", "int8-static", "int8-static99.9"] {
            let path = dir + "/\(recipe).cmodel"
            try p.withUnsafeBufferPointer { pb in
                try x.withUnsafeBufferPointer { xb in
                    try ModelExport.write(
                        path: path, recipe: try Recipe(recipe), model: spec, classes: ["a", "b", "c", "d", "e"],
                        params: pb, metadata: [:], calibration: (xb.baseAddress!, rows))
                }
            }
            let file = try ModelFile.load(path)
            if recipe != "fp32" {
                let t0 = try XCTUnwrap(file.tensor("layers.0.input_scale")),
                    t2 = try XCTUnwrap(file.tensor("layers.2.input_scale"))
                XCTAssertEqual(file.values(t2, as: Float.self).count, 1)
                inputScales[recipe] = file.values(t0, as: Float.self)[0]
                XCTAssertTrue(file.header.metadata["activation_scales"]?.contains("on 64 training rows") ?? false)
            }
            var out = [Float](repeating: 0, count: rows * 5)
            try InferenceModel(path: path).predict(x, batch: rows, probabilities: &out)
            probs[recipe] = out
        }
        XCTAssertEqual(inputScales["int8-static"]!, x.map(abs).max()! / 127, "min/max: the largest input / 127")
        XCTAssertLessThan(inputScales["int8-static99.9"]!, inputScales["int8-static"]!)
        for recipe in ["int8-static", "int8-static99.9"] {
            XCTAssertLessThan(zip(probs["fp32"]!, probs[recipe]!).map { abs($0 - $1) }.max()!, 0.05, recipe)
        }
        XCTAssertThrowsError(try write(dir + "/none.cmodel", "int8-static", p)) {
            XCTAssertTrue(($0 as? CortadoError)?.message.contains("needs calibration rows") ?? false, "\($0)")
        }
        // A negative scale written into the file is refused when the model loads.
        let path = dir + "/int8-static.cmodel"
        let file = try ModelFile.load(path)
        let t = try XCTUnwrap(file.tensor("layers.0.input_scale"))
        try damageModelFile(
            file, at: ModelFile.dataOffset(file) + t.offset, with: withUnsafeBytes(of: Float(-1)) { Data($0) },
            to: dir + "/bad.cmodel")
        XCTAssertThrowsError(try InferenceModel(path: dir + "/bad.cmodel")) {
            XCTAssertTrue(($0 as? CortadoError)?.message.contains("input_scale") ?? false, "\($0)")
        }
    }

    func testRecipesParseAndRejectNonsense() throws {
        XCTAssertEqual(try Recipe("prune0.9+int8"), Recipe(precision: .int8, sparsity: 0.9))
        XCTAssertEqual(try Recipe("prune0.75/layer+bf16"), Recipe(precision: .bf16, sparsity: 0.75, scope: .layer))
        XCTAssertEqual(try Recipe("fp16").description, "fp16")
        XCTAssertEqual(try Recipe("prune0.5/layer+int8").fileName, "model-prune0.5-layer+int8.cmodel")
        XCTAssertEqual(try Recipe("int8-static").calibrationPercentile, 100)
        XCTAssertEqual(try Recipe("prune0.9+int8-static99.99").description, "prune0.9+int8-static99.99")
        XCTAssertEqual(try Recipe("int8-static99.9").precision, .int8)
        for bad in [
            "int4", "prune1.5+int8", "prune0.9/block", "int8+fp16", "", "int8-static120", "int8-staticx",
            "int8+int8-static"
        ] {
            XCTAssertThrowsError(try Recipe(bad), bad)
        }
    }

    /// Global and per-layer pruning hit the requested sparsity exactly (ties included) on the
    /// prunable weights only, keep the largest magnitudes, and leave biases alone.
    func testMagnitudePruningIsExact() throws {
        let layout = spec.parameterLayout
        for scope in [Recipe.Scope.global, .layer] {
            var p = params()
            for i in 0..<200 { p[i] = 0.5 } // ties at one magnitude
            let pruner = Pruner(layout: layout, scope: scope)
            p.withUnsafeMutableBufferPointer { pruner.prune($0.baseAddress!, to: 0.8) }
            let weights = pruner.prunable
            XCTAssertEqual(weights.map(\.name), ["layers.0.weight", "layers.2.weight"])
            let zeros = p.withUnsafeBufferPointer { pruner.zeros($0.baseAddress!) }
            if scope == .global {
                XCTAssertEqual(zeros, Int((Double(pruner.prunableCount) * 0.8).rounded()))
            } else {
                XCTAssertEqual(zeros, weights.map { Int((Double($0.count) * 0.8).rounded()) }.reduce(0, +))
                for t in weights {
                    let z = p[t.offset..<(t.offset + t.count)].filter { $0 == 0 }.count
                    XCTAssertEqual(z, Int((Double(t.count) * 0.8).rounded()), t.name)
                }
            }
            // Every kept weight is at least as large as every pruned one (within a tensor for per-layer).
            let groups = scope == .global ? [weights] : weights.map { [$0] }
            let original = params()
            for g in groups {
                let idx = g.flatMap { $0.offset..<($0.offset + $0.count) }
                let kept = idx.filter { p[$0] != 0 }.map { abs(p[$0]) }
                let pruned = idx.filter { p[$0] == 0 && $0 >= 200 }.map { abs(original[$0]) }
                if let lo = kept.min(), let hi = pruned.max() { XCTAssertGreaterThanOrEqual(lo, hi) }
            }
            let bias = layout.tensor("layers.0.bias")!
            XCTAssertEqual(
                Array(p[bias.offset..<(bias.offset + bias.count)]),
                Array(original[bias.offset..<(bias.offset + bias.count)]))
        }
        XCTAssertEqual(Pruner.scheduled(step: 0, start: 10, end: 110, final: 0.9), 0)
        XCTAssertEqual(Pruner.scheduled(step: 60, start: 10, end: 110, final: 0.9), 0.9 * (1 - 0.125), accuracy: 1e-12)
        XCTAssertEqual(Pruner.scheduled(step: 500, start: 10, end: 110, final: 0.9), 0.9)
    }

    /// Each recipe's file reads back (through the same reader cortado-infer uses) to the pruned
    /// weights: exactly for fp32 CSR, within half a quantization step for int8, within fp16's
    /// and bf16's rounding; sparse files are smaller; predictions stay close to fp32.
    func testStoredWeightsReadBackWithinTheirPrecision() throws {
        let dir = Support.scratch("compress-roundtrip")
        let p = params(), layout = spec.parameterLayout
        var pruned = p
        let pruner = Pruner(layout: layout, scope: .global)
        pruned.withUnsafeMutableBufferPointer { pruner.prune($0.baseAddress!, to: 0.9) }
        var sizes = [String: Int]()
        for recipe in ["fp32", "fp16", "bf16", "int8", "prune0.9+fp32", "prune0.9+int8", "prune0.9+bf16"] {
            let path = dir + "/" + (try Recipe(recipe)).fileName
            try write(path, recipe, p)
            sizes[recipe] = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            let f = try ModelFile.load(path)
            let reference = recipe.hasPrefix("prune") ? pruned : p
            for t in layout.tensors {
                let got = try f.floats(t.name, shape: t.shape), want = Array(reference[t.offset..<(t.offset + t.count)])
                let maxAbs = want.map(abs).max() ?? 0
                let tolerance: Float =
                    t.name.hasSuffix(".bias") || recipe.hasSuffix("fp32")
                    ? 0
                    : recipe.hasSuffix("int8")
                        ? maxAbs / 127 / 2 * 1.0001 : recipe.hasSuffix("bf16") ? maxAbs / 128 : maxAbs / 1024
                for i in 0..<t.count {
                    XCTAssertEqual(got[i], want[i], accuracy: tolerance, "\(recipe) \(t.name)[\(i)]")
                    if want[i] == 0 { XCTAssertEqual(got[i], 0, "\(recipe): a pruned weight came back non-zero") }
                }
            }
            if recipe.hasPrefix("prune") {
                XCTAssertNotNil(f.tensor("layers.0.weight.indptr"), "\(recipe) should store CSR")
                XCTAssertEqual(Int(f.header.metadata["non_zeros"]!), pruned.filter { $0 != 0 }.count)
            }
            _ = try InferenceModel(path: path)
        }
        XCTAssertLessThan(Double(sizes["prune0.9+int8"]!), 0.1 * Double(sizes["fp32"]!))
        XCTAssertLessThan(Double(sizes["int8"]!), 0.27 * Double(sizes["fp32"]!))
        XCTAssertLessThan(Double(sizes["fp16"]!), 0.52 * Double(sizes["fp32"]!))
    }

    /// A CSR table whose column index points past the row (checksum made valid) is rejected
    /// with the tensor named.
    func testDamagedSparseTableIsRejected() throws {
        let dir = Support.scratch("compress-bad")
        let path = dir + "/m.cmodel"
        try write(path, "prune0.9+fp32", params())
        let f = try ModelFile.load(path)
        let ix = f.tensor("layers.0.weight.indices")!
        // column 65535 ≥ 784
        try damageModelFile(f, at: ModelFile.dataOffset(f) + ix.offset, with: Data([0xFF, 0xFF]), to: path)
        XCTAssertThrowsError(try InferenceModel(path: path)) {
            XCTAssertTrue(
                "\($0)".contains(
                    "m.cmodel: sparse tensor 'layers.0.weight': row pointers or column indices out of range"), "\($0)")
        }
    }
}
