import CKernels
import CortadoCore
import Foundation

/// Adam, PyTorch's formulation (weight decay added to the gradient); state: first moments m,
/// then second moments s.
///
///     g' = g + λw;  m ← β₁m + (1−β₁)g';  s ← β₂s + (1−β₂)g'²;
///     w ← w − lr·m̂/(√ŝ + ε),  m̂ = m/(1−β₁ᵗ), ŝ = s/(1−β₂ᵗ)
public enum Adam: OptimizerRule {
    public static let name = "adam"
    public static let keys = ["beta1", "beta2", "eps"]
    public static let stateArenas = 2

    public static func read(_ o: ConfigReader, into spec: inout JobSpec.OptimizerSpec) throws {
        spec.beta1 = try o.double("beta1") ?? spec.beta1
        spec.beta2 = try o.double("beta2") ?? spec.beta2
        spec.eps = try o.double("eps") ?? spec.eps
    }

    public static func validate(_ spec: JobSpec.OptimizerSpec, path: String) throws {
        try check(
            spec.beta1 >= 0 && spec.beta1 < 1 && spec.beta2 >= 0 && spec.beta2 < 1, path, "beta1/beta2",
            "must be in [0, 1)")
        try check(spec.eps > 0, path, "eps", "must be positive")
    }

    public static func update(_ spec: JobSpec.OptimizerSpec, _ s: OptimizerStep) { step(spec, s, decoupled: false) }

    /// Adam and AdamW share the kernel; `decoupled` picks AdamW's weight decay.
    static func step(_ spec: JobSpec.OptimizerSpec, _ s: OptimizerStep, decoupled: Bool) {
        let t = Double(s.step + 1)
        let c1 = Float(1 - pow(spec.beta1, t)), c2 = Float(1 - pow(spec.beta2, t))
        cortado_adam_update(
            s.w, s.g, s.state, s.state + s.stride, s.n, s.lr, Float(spec.beta1), Float(spec.beta2),
            Float(spec.eps), Float(spec.weightDecay), c1, c2, s.gradScale, decoupled ? 1 : 0, s.path)
    }
}

/// AdamW (Loshchilov & Hutter): Adam with decoupled weight decay, w ← w − lr·λ·w first, then
/// Adam with g' = g. The same keys and state as Adam.
public enum AdamW: OptimizerRule {
    public static let name = "adamw"
    public static let keys = Adam.keys
    public static let stateArenas = Adam.stateArenas

    public static func read(_ o: ConfigReader, into spec: inout JobSpec.OptimizerSpec) throws {
        try Adam.read(o, into: &spec)
    }

    public static func validate(_ spec: JobSpec.OptimizerSpec, path: String) throws {
        try Adam.validate(spec, path: path)
    }

    public static func update(_ spec: JobSpec.OptimizerSpec, _ s: OptimizerStep) { Adam.step(spec, s, decoupled: true) }
}
