import CortadoCore

/// One optimizer, defined in one file under Optimizers/ and listed once in
/// `OptimizerRegistry.rules`: its `optimizer.type` name, the spec keys it owns, their
/// validation, its state arenas and its update (a call into CKernels' optimizer.c).
///
/// The keys every optimizer shares (type, learning_rate, weight_decay, schedule, warmup_steps,
/// decay_steps, gamma, clip_norm) are `JobSpec.OptimizerSpec`'s own.
public protocol OptimizerRule {
    /// The `optimizer.type` value.
    static var name: String { get }
    /// The keys under `optimizer:` this optimizer reads (shared ones, such as `eps`, may be
    /// listed by several optimizers).
    static var keys: [String] { get }
    /// Arenas of state per parameter (each the parameter arena's size and layout).
    static var stateArenas: Int { get }
    /// Reads `keys` from the `optimizer:` section into `spec`; errors name the key path.
    static func read(_ o: ConfigReader, into spec: inout JobSpec.OptimizerSpec) throws
    /// Checks this optimizer's values in `spec`; errors name `path.key`.
    static func validate(_ spec: JobSpec.OptimizerSpec, path: String) throws
    /// One update over `step.n` parameters (a range of the arena).
    static func update(_ spec: JobSpec.OptimizerSpec, _ step: OptimizerStep)
}

/// The buffers and scalars of one update over a range of the flat arenas.
public struct OptimizerStep {
    /// (n) parameters, updated in place.
    public var w: UnsafeMutablePointer<Float>
    /// (n) summed gradients, only read; multiplied by `gradScale` (1/ranks) in the same pass.
    public var g: UnsafePointer<Float>
    /// (stateArenas, stride): arena k of this range starts at state + k·stride.
    public var state: UnsafeMutablePointer<Float>
    public var stride: Int
    public var n: Int
    public var lr: Float
    /// 0-based (Adam's bias correction uses step + 1).
    public var step: Int
    public var gradScale: Float
    /// The CKernels path (CORTADO_INT8_PORTABLE, …AVX2, …); every path gives the same bits.
    public var path: Int32

    public init(
        w: UnsafeMutablePointer<Float>, g: UnsafePointer<Float>, state: UnsafeMutablePointer<Float>, stride: Int,
        n: Int, lr: Float, step: Int, gradScale: Float, path: Int32
    ) {
        self.w = w
        self.g = g
        self.state = state
        self.stride = stride
        self.n = n
        self.lr = lr
        self.step = step
        self.gradScale = gradScale
        self.path = path
    }
}

/// Throws `path.key: why` unless `ok`.
func check(_ ok: Bool, _ path: String, _ key: String, _ why: @autoclosure () -> String) throws {
    if !ok { throw CortadoError.usage("\(path).\(key): \(why())") }
}

/// The learning-rate schedule after warm-up (`optimizer.schedule`).
public enum LearningRateSchedule: String, CaseIterable {
    case constant, cosine, linear, step

    /// Parses `optimizer.schedule`; a bad value's error lists the allowed ones.
    public static func parse(_ s: String, key: String) throws -> LearningRateSchedule {
        guard let v = LearningRateSchedule(rawValue: s) else {
            throw CortadoError.usage("\(key): '\(s)' is not one of \(allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return v
    }
}
