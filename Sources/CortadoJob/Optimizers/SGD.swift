import CKernels
import CortadoCore

/// SGD with momentum μ and optional Nesterov, PyTorch's formulation; state: velocity v.
///
///     g' = g + λw;  v ← μv + g';  w ← w − lr·(nesterov ? g' + μv : v)
public enum SGD: OptimizerRule {
    public static let name = "sgd"
    public static let keys = ["momentum", "nesterov"]
    public static let stateArenas = 1

    public static func read(_ o: ConfigReader, into spec: inout JobSpec.OptimizerSpec) throws {
        spec.momentum = try o.double("momentum") ?? spec.momentum
        spec.nesterov = try o.bool("nesterov") ?? spec.nesterov
    }

    public static func validate(_ spec: JobSpec.OptimizerSpec, path: String) throws {
        try check(spec.momentum >= 0 && spec.momentum < 1, path, "momentum", "must be in [0, 1), got \(spec.momentum)")
    }

    public static func update(_ spec: JobSpec.OptimizerSpec, _ s: OptimizerStep) {
        cortado_sgd_update(
            s.w, s.g, s.state, s.n, s.lr, Float(spec.momentum), Float(spec.weightDecay), s.gradScale,
            spec.nesterov ? 1 : 0, s.path)
    }
}
