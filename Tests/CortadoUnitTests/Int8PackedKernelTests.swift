import CKernels
import CortadoCompress
import CortadoCore
import CortadoInfer
import CortadoJob
import CortadoModel
import CortadoTestSupport
import Foundation
import XCTest

/// The packed int8 GEMM (weights packed once at load into vpdpbusd panels, register-tiled):
/// bit-identical to a scalar reference on shapes that leave tails in every dimension (rows
/// past the 6-row tile, columns past a 16-column panel, k not a multiple of 4), signed and
/// non-negative activations, values at ±127; and a whole int8 model giving the same logits
/// bit for bit on every kernel path.
final class Int8PackedKernelTests: XCTestCase {
    func reference(_ a: [Int8], _ w: [Int8], m: Int, n: Int, k: Int) -> [Int32] {
        var c = [Int32](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var s: Int32 = 0
                for p in 0..<k { s += Int32(a[i * k + p]) * Int32(w[j * k + p]) }
                c[i * n + j] = s
            }
        }
        return c
    }

    func testPackedKernelMatchesTheReferenceOnOddShapes() throws {
        var rng = SeededRNG(seed: 17, stream: 4)
        let best = Int(cortado_int8_best_path())
        print("int8 packed kernel: best path on this CPU \(InferenceModel.int8PathName)")
        let shapes = [
            (1, 1, 1), (1, 3, 17), (3, 17, 33), (17, 33, 257), (33, 257, 3), (257, 1, 33), (7, 65, 129),
            (6, 64, 4), (13, 100, 800), (1, 256, 800), (12, 48, 5), (2, 16, 2)
        ]
        for (m, n, k) in shapes {
            var a = (0..<(m * k)).map { _ in Int8(Int(rng.below(255)) - 127) }
            var w = (0..<(n * k)).map { _ in Int8(Int(rng.below(255)) - 127) }
            a[0] = -127; a[a.count - 1] = 127
            w[0] = 127; w[w.count - 1] = -127
            var packed = [Int8](repeating: 0, count: cortado_int8_packed_size(Int32(n), Int32(k)))
            cortado_int8_pack_weights(w, Int32(n), Int32(k), &packed)
            let u = a.map { $0 == Int8.min ? 0 : abs($0) }
            for (x, nonneg) in [(a, Int32(0)), (u, Int32(0)), (u, Int32(1))] {
                let want = reference(x, w, m: m, n: n, k: k)
                for path in 0...best {
                    // Sentinels past the end catch stores outside (m, n).
                    var c = [Int32](repeating: -7, count: m * n + 16)
                    cortado_int8_gemm_packed(x, packed, &c, Int32(m), Int32(n), Int32(k), Int32(path), nonneg)
                    XCTAssertEqual(Array(c[0..<(m * n)]), want, "path \(path) nonneg \(nonneg), \(m)×\(n)×\(k)")
                    XCTAssertEqual(
                        Array(c[(m * n)...]), [Int32](repeating: -7, count: 16), "wrote past c, \(m)×\(n)×\(k)")
                    // The row-major kernels agree with it (the cross-path contract).
                    var r = [Int32](repeating: -1, count: m * n)
                    cortado_int8_gemm_ex(x, w, &r, Int32(m), Int32(n), Int32(k), Int32(path), nonneg)
                    XCTAssertEqual(r, want, "row-major path \(path), \(m)×\(n)×\(k)")
                }
            }
        }
    }

    /// An int8 MLP (input widths that pad, an output narrower than one panel) scores the same
    /// logits on every path, at batch 1, at a batch with a row tail, and at a large batch.
    func testInt8ModelLogitsAreIdenticalOnEveryPath() throws {
        let spec = ModelSpec(
            inputShape: [100], layers: [.dense(units: 70), .relu, .dense(units: 33), .dense(units: 10)])
        let net = Network<Float>(spec: spec, maxBatch: 1)
        net.initialize(seed: 5)
        let path = Support.scratch("int8-packed") + "/m.cmodel"
        try net.params.array.withUnsafeBufferPointer {
            try ModelExport.write(
                path: path, recipe: try Recipe("int8"), model: spec, classes: (0..<10).map { "c\($0)" }, params: $0,
                metadata: [:])
        }
        var rng = SeededRNG(seed: 8)
        let rows = 131, x = (0..<(rows * 100)).map { _ in Float(rng.normal()) }
        let best = Int(cortado_int8_best_path())
        for batch in [1, 7, 131] {
            var byPath = [[Float]]()
            for p in 0...best {
                let m = try InferenceModel(path: path)
                m.int8Path = p
                var all = [Float]()
                for start in stride(from: 0, to: rows, by: batch) {
                    let n = min(batch, rows - start)
                    let l = Array(x[(start * 100)..<((start + n) * 100)]).withUnsafeBufferPointer {
                        m.logits($0.baseAddress!, batch: n)
                    }
                    all += (0..<(n * 10)).map { l[$0] }
                }
                byPath.append(all)
            }
            for p in 1..<byPath.count {
                let differ = byPath[0].indices.filter { byPath[p][$0].bitPattern != byPath[0][$0].bitPattern }
                XCTAssertEqual(
                    differ.count, 0,
                    "path \(p) against portable, batch \(batch): logit \(differ.first ?? -1) "
                        + "\(differ.first.map { byPath[p][$0] } ?? 0) vs \(differ.first.map { byPath[0][$0] } ?? 0)")
            }
        }
    }
}
