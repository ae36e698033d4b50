import CortadoCore
import CortadoJob
import CortadoPipeline
import CortadoModel
import CortadoTrain
import CortadoTestSupport
import XCTest

/// The fused C update (CKernels' optimizer.c) against the scalar Swift loop it replaced: the
/// trainer used to scale the gradient arena by 1/ranks in place and then run the scalar
/// formulas; the kernel applies the scale in the same pass. Parameters and state must stay
/// bit-identical, for every optimizer variant, scale and sub-range (ZeRO-1 updates a slice).
final class OptimizerKernelTests: XCTestCase {
    /// The replaced code, verbatim in its arithmetic: `g` already scaled by the caller.
    func referenceUpdate(
        _ spec: JobSpec.OptimizerSpec, w: inout [Float], g: [Float], state: inout [Float], lr: Float, step: Int,
        range: Range<Int>
    ) {
        let wd = Float(spec.weightDecay), n = w.count
        switch spec.type {
        case "adam", "adamw":
            let b1 = Float(spec.beta1), b2 = Float(spec.beta2), eps = Float(spec.eps)
            let t = Double(step + 1)
            let c1 = Float(1 - pow(spec.beta1, t)), c2 = Float(1 - pow(spec.beta2, t))
            let decoupled = spec.type == "adamw"
            for i in range {
                let gi = decoupled ? g[i] : g[i] + wd * w[i]
                if decoupled { w[i] -= lr * wd * w[i] }
                state[i] = b1 * state[i] + (1 - b1) * gi
                state[n + i] = b2 * state[n + i] + (1 - b2) * gi * gi
                w[i] -= lr * (state[i] / c1) / ((state[n + i] / c2).squareRoot() + eps)
            }
        default:
            let mu = Float(spec.momentum)
            for i in range {
                let gi = g[i] + wd * w[i]
                let vi = mu * state[i] + gi
                state[i] = vi
                w[i] -= lr * (spec.nesterov ? gi + mu * vi : vi)
            }
        }
    }

    /// Fails naming the first value whose bits differ (kernel vs scalar reference).
    func assertBitIdentical(
        _ kernel: [Float], _ reference: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(kernel.count, reference.count, what, file: file, line: line)
        if let i = kernel.indices.first(where: {
            $0 < reference.count && kernel[$0].bitPattern != reference[$0].bitPattern
        }) {
            XCTFail("\(what): value \(i): kernel \(kernel[i]), scalar \(reference[i])", file: file, line: line)
        }
    }

    func variants() -> [(String, JobSpec.OptimizerSpec)] {
        var sgd = JobSpec.OptimizerSpec()
        sgd.weightDecay = 1e-2
        var nesterov = sgd
        nesterov.nesterov = true
        var adam = sgd
        adam.type = "adam"
        var adamw = adam
        adamw.type = "adamw"
        adamw.weightDecay = 0.05
        var plain = sgd
        plain.weightDecay = 0
        return [("sgd", sgd), ("sgd+nesterov", nesterov), ("adam", adam), ("adamw", adamw), ("sgd, no decay", plain)]
    }

    func testKernelIsBitIdenticalToScalarFormulas() {
        let n = 1003 // not a multiple of any vector width: the kernels' tails run too
        var rng = SeededRNG(seed: 7, stream: 1)
        for (name, spec) in variants() {
            for path in [0, Optimizer(spec: spec, count: 1).kernelPath] { // portable, and the CPU's best
                for gradScale: Float in [1, 0.5, 1.0 / 3] {
                    for ranges in [nil, [0..<1, 5..<517, 600..<1003]] as [[Range<Int>]?] {
                        let opt = Optimizer(spec: spec, count: n)
                        opt.kernelPath = path
                        var w = (0..<n).map { _ in Float(rng.normal()) }
                        var state = [Float](repeating: 0, count: opt.state.count)
                        let params = Arena<Float>(count: n)
                        params.load(w)
                        for step in 0..<4 {
                            // Sums over ranks: some large, some tiny, some exactly zero.
                            var g = (0..<n).map { i in i % 97 == 0 ? 0 : Float(rng.normal() * (i % 3 == 0 ? 1e3 : 1e-3))
                            }
                            let lr = Float(0.01 * Double(step + 1))
                            g.withUnsafeBufferPointer {
                                opt.update(
                                    params: params.base, grads: $0.baseAddress!, lr: lr, step: step, ranges: ranges,
                                    gradScale: gradScale)
                            }
                            for i in 0..<n { g[i] *= gradScale }
                            for r in ranges ?? [0..<n] {
                                referenceUpdate(spec, w: &w, g: g, state: &state, lr: lr, step: step, range: r)
                            }
                            let what =
                                "\(name), path \(path), scale \(gradScale), ranges \(ranges.map { "\($0)" } ?? "all"), step \(step)"
                            assertBitIdentical(params.array, w, "\(what): parameters")
                            assertBitIdentical(opt.state.array, state, "\(what): optimizer state")
                        }
                    }
                }
            }
        }
    }
}
