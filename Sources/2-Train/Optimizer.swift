import CortadoModel
import Foundation

/// SGD with momentum and L2 weight decay over the flat arenas (PyTorch's formulation):
///
///     v ← μ·v + (g + λ·w)        w ← w − lr·v
///
/// One loop over the whole arena: every parameter tensor is a view into it, so there is no
/// per-layer bookkeeping, and the momentum arena shares the parameter layout.
public final class SGD {
    public let spec: JobSpec.OptimizerSpec
    /// Momentum buffer, same layout as the parameters.
    public let velocity: Arena<Float>

    public init(spec: JobSpec.OptimizerSpec, count: Int) {
        self.spec = spec
        velocity = Arena(count: count)
    }

    /// Learning rate at `step` (0-based) of `total`: linear warm-up, then constant or cosine.
    public func learningRate(step: Int, total: Int) -> Float {
        let base = spec.learningRate
        if step < spec.warmupSteps { return Float(base * Double(step + 1) / Double(spec.warmupSteps)) }
        guard spec.schedule == "cosine", total > spec.warmupSteps else { return Float(base) }
        let t = Double(step - spec.warmupSteps) / Double(total - spec.warmupSteps)
        return Float(base * 0.5 * (1 + cos(Double.pi * min(t, 1))))
    }

    /// Applies one update to `params` (count values) from the averaged gradients `grads`.
    public func update(params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>, count: Int, lr: Float) {
        let mu = Float(spec.momentum), wd = Float(spec.weightDecay)
        let v = velocity.base
        for i in 0..<count {
            let vi = mu * v[i] + (grads[i] + wd * params[i])
            v[i] = vi
            params[i] -= lr * vi
        }
    }
}
