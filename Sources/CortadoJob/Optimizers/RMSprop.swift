import CKernels
import CortadoCore

/// RMSprop, PyTorch's formulation (no momentum, not centered); state: the running mean of
/// squared gradients v.
///
///     g' = g + λw;  v ← αv + (1−α)g'²;  w ← w − lr·g'/(√v + ε)
public enum RMSprop: OptimizerRule {
    public static let name = "rmsprop"
    public static let keys = ["alpha", "eps"]
    public static let stateArenas = 1
    /// PyTorch's default smoothing constant; `alpha` is kept in the spec only when given.
    static let defaultAlpha = 0.99

    static func alpha(_ spec: JobSpec.OptimizerSpec) -> Double { spec.extra["alpha"] ?? defaultAlpha }

    public static func read(_ o: ConfigReader, into spec: inout JobSpec.OptimizerSpec) throws {
        if let a = try o.double("alpha") { spec.extra["alpha"] = a }
        spec.eps = try o.double("eps") ?? spec.eps
    }

    public static func validate(_ spec: JobSpec.OptimizerSpec, path: String) throws {
        try check(alpha(spec) >= 0 && alpha(spec) < 1, path, "alpha", "must be in [0, 1), got \(alpha(spec))")
        try check(spec.eps > 0, path, "eps", "must be positive")
    }

    /// The kernel is optimizer.c's "rmsprop", hyper = (α, ε).
    static let kernel = cortado_optimizer_find(name)

    public static func update(_ spec: JobSpec.OptimizerSpec, _ s: OptimizerStep) {
        guard let kernel else { preconditionFailure("CKernels' optimizer.c registers no \"rmsprop\" kernel") }
        // A tuple, not an array: no allocation in the step loop (a homogeneous tuple is contiguous).
        withUnsafePointer(to: (Float(alpha(spec)), Float(spec.eps))) { t in
            t.withMemoryRebound(to: Float.self, capacity: 2) {
                kernel(s.w, s.g, s.state, s.stride, s.n, s.lr, Float(spec.weightDecay), s.gradScale, $0, s.path)
            }
        }
    }
}
