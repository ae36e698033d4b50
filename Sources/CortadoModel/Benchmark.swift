import CortadoCore
import Foundation

/// Measured sgemm speed of this machine's OpenBLAS: the ceiling a training step's FLOP rate is
/// compared against (benchmarks report step FLOP/s as a fraction of it).
public func measureSGEMM(m: Int, n: Int, k: Int, threads: Int, seconds: Double = 1.0) -> Double {
    setBLASThreads(threads)
    let a = Arena<Float>(count: m * k), b = Arena<Float>(count: k * n), c = Arena<Float>(count: m * n)
    for i in 0..<a.count { a.base[i] = Float(i % 17) * 0.01 }
    for i in 0..<b.count { b.base[i] = Float(i % 13) * 0.01 }
    Float.gemm(
        transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a.base, lda: k, b: b.base, ldb: n, beta: 0,
        c: c.base, ldc: n)
    var reps = 0
    let t0 = monotonicSeconds()
    var t = t0
    while t - t0 < seconds {
        Float.gemm(
            transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a.base, lda: k, b: b.base, ldb: n, beta: 0,
            c: c.base, ldc: n)
        reps += 1
        t = monotonicSeconds()
    }
    return 2.0 * Double(m * n * k) * Double(reps) / (t - t0) / 1e9
}

extension ModelSpec {
    /// Forward FLOPs of one sample per layer (2·MACs for dense and conv, one per output value
    /// for the others): the `cortado inspect` column.
    public var forwardFLOPsPerLayer: [Double] {
        zip(layers, zip([inputShape] + shapes.dropLast(), shapes)).map { l, io in
            let (input, output) = io
            switch l {
            case .dense: return 2 * Double(input.reduce(1, *) * output.reduce(1, *))
            case let .conv2d(_, k, _, _): return 2 * Double(output.reduce(1, *) * input[0] * k * k)
            case let .maxPool(size, _), let .avgPool(size, _): return Double(output.reduce(1, *) * size * size)
            case .flatten: return 0
            default: return Double(output.reduce(1, *))
            }
        }
    }

    /// Parameters per layer (weights and biases).
    public var parametersPerLayer: [Int] {
        let layout = parameterLayout
        return layers.indices.map { i in
            layout.tensors.filter { $0.name.hasPrefix("layers.\(i).") }.reduce(0) { $0 + $1.count }
        }
    }

    /// FLOPs of one training sample in the GEMM-shaped layers (dense, conv): forward (2·MACs),
    /// weight gradients (2·MACs) and input gradients (2·MACs) except for the first layer, whose
    /// input needs none.
    public var trainingFLOPsPerSample: Double {
        var flops = 0.0, first = true
        for (l, (input, output)) in zip(layers, zip([inputShape] + shapes.dropLast(), shapes)) {
            let macs: Double
            switch l {
            case .dense: macs = Double(input.reduce(1, *) * output.reduce(1, *))
            case let .conv2d(_, k, _, _): macs = Double(output.reduce(1, *) * input[0] * k * k)
            default: continue
            }
            flops += (first ? 4 : 6) * macs
            first = false
        }
        return flops
    }
}
