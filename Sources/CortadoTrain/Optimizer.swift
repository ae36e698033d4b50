import CKernels
import CortadoJob
import CortadoModel
import Foundation

/// The optimizer over the flat arenas: one loop over the whole parameter arena (every tensor
/// is a view into it), with its state in one more arena of the same layout (SGD: velocity;
/// Adam/AdamW: first moments then second moments). PyTorch's formulations:
///
///     sgd:    g' = g + λw;  v ← μv + g';  w ← w − lr·(nesterov ? g' + μv : v)
///     adam:   g' = g + λw;  m ← β₁m + (1−β₁)g';  s ← β₂s + (1−β₂)g'²;
///             w ← w − lr·m̂/(√ŝ + ε),  m̂ = m/(1−β₁ᵗ), ŝ = s/(1−β₂ᵗ)
///     adamw:  w ← w − lr·λ·w (decoupled), then adam with g' = g
public final class Optimizer {
    public let spec: JobSpec.OptimizerSpec
    public let count: Int
    /// Optimizer state, (stateMultiple × count): what checkpoints save as `optimizer_state`.
    public let state: Arena<Float>
    /// The CKernels path the update runs (the CPU's best; tests also force the portable one).
    public var kernelPath = Int(cortado_int8_best_path())

    public init(spec: JobSpec.OptimizerSpec, count: Int) {
        self.spec = spec
        self.count = count
        state = Arena(count: Self.stateMultiple(spec.type) * count)
    }

    /// Arenas of state per parameter: 1 for SGD (velocity), 2 for Adam (m, s).
    public static func stateMultiple(_ type: String) -> Int { type == "sgd" ? 1 : 2 }

    /// Learning rate at `step` (0-based) of `total`: linear warm-up, then constant, cosine,
    /// linear decay to 0, or step decay (× gamma every `decay_steps`).
    public func learningRate(step: Int, total: Int) -> Float {
        let base = spec.learningRate
        if step < spec.warmupSteps { return Float(base * Double(step + 1) / Double(spec.warmupSteps)) }
        let after = step - spec.warmupSteps, span = max(total - spec.warmupSteps, 1)
        let t = min(Double(after) / Double(span), 1)
        switch spec.schedule {
        case "cosine": return Float(base * 0.5 * (1 + cos(Double.pi * t)))
        case "linear": return Float(base * (1 - t))
        case "step": return Float(base * pow(spec.gamma, Double(after / max(spec.decaySteps, 1))))
        default: return Float(base)
        }
    }

    /// Applies one update to `params` from the summed gradients `grads` times `gradScale` (the
    /// averaging factor 1/ranks, applied in the same pass: scaling in place first would be one
    /// more read-modify-write pass over the whole gradient arena); `step` is 0-based (Adam's
    /// bias correction uses step + 1). Only `ranges` of the arena are trained (frozen layers'
    /// tensors are left out, so they are not even decayed); nil means all of it. `grads` is
    /// only read. One vectorized C pass per range (CKernels' optimizer.c), bit-identical to
    /// the formulas above computed on `grads[i] * gradScale`.
    public func update(params w: UnsafeMutablePointer<Float>, grads g: UnsafePointer<Float>, lr: Float, step: Int,
                       ranges: [Range<Int>]? = nil, gradScale: Float = 1) {
        for r in ranges ?? [0..<count] { update(w, g, lr: lr, step: step, r, gradScale: gradScale) }
    }

    private func update(_ w: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, lr: Float, step: Int, _ range: Range<Int>,
                        gradScale: Float) {
        let wd = Float(spec.weightDecay), n = count, i = range.lowerBound, len = range.count
        switch spec.type {
        case "adam", "adamw":
            let t = Double(step + 1)
            let c1 = Float(1 - pow(spec.beta1, t)), c2 = Float(1 - pow(spec.beta2, t))
            cortado_adam_update(w + i, g + i, state.base + i, state.base + n + i, len, lr, Float(spec.beta1), Float(spec.beta2),
                                Float(spec.eps), wd, c1, c2, gradScale, spec.type == "adamw" ? 1 : 0, Int32(kernelPath))
        default:
            cortado_sgd_update(w + i, g + i, state.base + i, len, lr, Float(spec.momentum), wd, gradScale, spec.nesterov ? 1 : 0,
                               Int32(kernelPath))
        }
    }
}

/// Scales `grads` (count) so their global L2 norm is at most `maxNorm`; returns the norm
/// before clipping. Called after the allreduce, so every rank computes the same factor.
public func clipGlobalNorm(_ grads: UnsafeMutablePointer<Float>, count: Int, maxNorm: Double) -> Double {
    clipGlobalNorm(grads, range: 0..<count, maxNorm: maxNorm)
}

/// The same over `grads[range]`, one rank's part of a vector spread over ranks (ZeRO-1):
/// `sumOverRanks` turns this part's sum of squares into the whole vector's.
public func clipGlobalNorm(_ grads: UnsafeMutablePointer<Float>, range: Range<Int>, maxNorm: Double,
                           sumOverRanks: (Double) -> Double = { $0 }) -> Double {
    var sq = 0.0
    for i in range { sq += Double(grads[i]) * Double(grads[i]) }
    let norm = sumOverRanks(sq).squareRoot()
    if maxNorm > 0 && norm > maxNorm {
        let f = Float(maxNorm / norm)
        for i in range { grads[i] *= f }
    }
    return norm
}
