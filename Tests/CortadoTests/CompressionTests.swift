import CortadoCompress
import CortadoCore
import CortadoInfer
import CortadoModel
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
            try ModelExport.write(path: path, recipe: try Recipe(recipe), model: spec, classes: ["a", "b", "c", "d", "e"], params: $0, metadata: [:])
        }
    }

    func testRecipesParseAndRejectNonsense() throws {
        XCTAssertEqual(try Recipe("prune0.9+int8"), Recipe(precision: .int8, sparsity: 0.9))
        XCTAssertEqual(try Recipe("prune0.75/layer+bf16"), Recipe(precision: .bf16, sparsity: 0.75, scope: .layer))
        XCTAssertEqual(try Recipe("fp16").description, "fp16")
        XCTAssertEqual(try Recipe("prune0.5/layer+int8").fileName, "model-prune0.5-layer+int8.cmodel")
        for bad in ["int4", "prune1.5+int8", "prune0.9/block", "int8+fp16", ""] {
            XCTAssertThrowsError(try Recipe(bad), bad)
        }
    }

    /// Global and per-layer pruning hit the requested sparsity exactly (ties included) on the
    /// prunable weights only, keep the largest magnitudes, and leave biases alone.
    func testMagnitudePruningIsExact() throws {
        let layout = spec.parameterLayout
        for scope in [Recipe.Scope.global, .layer] {
            var p = params()
            for i in 0..<200 { p[i] = 0.5 }   // ties at one magnitude
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
            XCTAssertEqual(Array(p[bias.offset..<(bias.offset + bias.count)]), Array(original[bias.offset..<(bias.offset + bias.count)]))
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
                let tolerance: Float = t.name.hasSuffix(".bias") || recipe.hasSuffix("fp32") ? 0
                    : recipe.hasSuffix("int8") ? maxAbs / 127 / 2 * 1.0001 : recipe.hasSuffix("bf16") ? maxAbs / 128 : maxAbs / 1024
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
        var bytes = Data(f.bytes.prefix(f.bytes.count - 32))
        let at = bytes.count - (f.bytes.count - 32 - (ModelFile.dataOffset(f) + ix.offset))
        bytes[at] = 0xFF; bytes[at + 1] = 0xFF   // column 65535 ≥ 784
        var h = SHA256()
        h.update(bytes)
        bytes.append(contentsOf: h.finalize())
        try bytes.write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try InferenceModel(path: path)) {
            XCTAssertTrue("\($0)".contains("m.cmodel: sparse tensor 'layers.0.weight': row pointers or column indices out of range"), "\($0)")
        }
    }
}
