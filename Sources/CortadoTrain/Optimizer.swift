import CKernels
import CortadoJob
import CortadoModel
import Foundation

/// The optimizer over the flat arenas: one loop over the whole parameter arena (every tensor
/// is a view into it), with its state in `stateArenas` more arenas of the same layout. What
/// each optimizer computes is in its `OptimizerRule` (Optimizers/, one file each).
public final class Optimizer {
    public let spec: JobSpec.OptimizerSpec
    /// `spec.type` and `spec.schedule` parsed (the spec keeps the strings job.json holds).
    public let rule: any OptimizerRule.Type
    public let schedule: LearningRateSchedule
    public let count: Int
    /// Optimizer state, (stateMultiple × count): what checkpoints save as `optimizer_state`.
    public let state: Arena<Float>
    /// The CKernels path the update runs (the CPU's best; tests also force the portable one).
    public var kernelPath = Int(cortado_int8_best_path())

    /// `spec` must have passed `validate()` (every spec read from a file or job.json has);
    /// an unregistered type here is a programming error, not a user's.
    public init(spec: JobSpec.OptimizerSpec, count: Int) {
        guard let rule = OptimizerRegistry.rule(named: spec.type),
            let schedule = LearningRateSchedule(rawValue: spec.schedule)
        else {
            preconditionFailure(
                "Optimizer: unvalidated spec (optimizer.type '\(spec.type)', schedule '\(spec.schedule)')")
        }
        self.spec = spec
        self.rule = rule
        self.schedule = schedule
        self.count = count
        state = Arena(count: rule.stateArenas * count)
    }

    /// Arenas of state per parameter for a validated `optimizer.type`.
    public static func stateMultiple(_ type: String) -> Int {
        guard let rule = OptimizerRegistry.rule(named: type) else {
            preconditionFailure("Optimizer: unvalidated optimizer.type '\(type)'")
        }
        return rule.stateArenas
    }

    /// Learning rate at `step` (0-based) of `total`: linear warm-up, then constant, cosine,
    /// linear decay to 0, or step decay (× gamma every `decay_steps`).
    public func learningRate(step: Int, total: Int) -> Float {
        let base = spec.learningRate
        if step < spec.warmupSteps { return Float(base * Double(step + 1) / Double(spec.warmupSteps)) }
        let after = step - spec.warmupSteps, span = max(total - spec.warmupSteps, 1)
        let t = min(Double(after) / Double(span), 1)
        switch schedule {
        case .cosine: return Float(base * 0.5 * (1 + cos(Double.pi * t)))
        case .linear: return Float(base * (1 - t))
        case .step: return Float(base * pow(spec.gamma, Double(after / max(spec.decaySteps, 1))))
        case .constant: return Float(base)
        }
    }

    /// Applies one update to `params` from the summed gradients `grads` times `gradScale` (the
    /// averaging factor 1/ranks, applied in the same pass: scaling in place first would be one
    /// more read-modify-write pass over the whole gradient arena); `step` is 0-based. Only
    /// `ranges` of the arena are trained (frozen layers' tensors are left out, so they are not
    /// even decayed); nil means all of it. `grads` is only read. One vectorized C pass per
    /// range (CKernels' optimizer.c), bit-identical to the rule's formula computed on
    /// `grads[i] * gradScale`.
    public func update(
        params w: UnsafeMutablePointer<Float>, grads g: UnsafePointer<Float>, lr: Float, step: Int,
        ranges: [Range<Int>]? = nil, gradScale: Float = 1
    ) {
        for r in ranges ?? [0..<count] {
            let i = r.lowerBound
            rule.update(
                spec,
                OptimizerStep(
                    w: w + i, g: g + i, state: state.base + i, stride: count, n: r.count, lr: lr, step: step,
                    gradScale: gradScale, path: Int32(kernelPath)))
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
public func clipGlobalNorm(
    _ grads: UnsafeMutablePointer<Float>, range: Range<Int>, maxNorm: Double,
    sumOverRanks: (Double) -> Double = { $0 }
) -> Double {
    var sq = 0.0
    for i in range { sq += Double(grads[i]) * Double(grads[i]) }
    let norm = sumOverRanks(sq).squareRoot()
    if maxNorm > 0 && norm > maxNorm {
        let f = Float(maxNorm / norm)
        for i in range { grads[i] *= f }
    }
    return norm
}
