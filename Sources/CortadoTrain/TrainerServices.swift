import CortadoJob
import CortadoModel

/// Writes and scores the model files a run emits. The trainer (step 2) does not link the
/// compression recipes (step 3) or the inference runtime (step 4); the executable injects
/// them through this protocol (`CortadoPipeline.PipelineEmitter`).
public protocol ModelEmitter {
    /// Writes a classifier's file at `path` by `recipe`; `calibration` holds (rows, inputs)
    /// training features for static int8 scales.
    func writeClassifier(
        path: String, recipe: Recipe, model: ModelSpec, classes: [String],
        params: UnsafeBufferPointer<Float>, metadata: [String: String],
        calibration: (features: UnsafePointer<Float>, rows: Int)?) throws
    /// Writes a recommender's file at `path` by `recipe`.
    func writeRecommender(
        path: String, recipe: Recipe, recommender: RecommenderSpec,
        params: UnsafeBufferPointer<Float>, metadata: [String: String]) throws
    /// Writes a text classifier's file at `path` by `recipe` (`metadata` carries its vocabulary).
    func writeText(
        path: String, recipe: Recipe, text: TextSpec, classes: [String],
        params: UnsafeBufferPointer<Float>, metadata: [String: String]) throws
    /// Accuracy of the text classifier file at `path` over `testFiles`' id lists and labels.
    func textAccuracy(path: String, testFiles: [String]) throws -> Double
    /// Accuracy of the classifier file at `path` over `testFiles`, scored as cortado-infer does.
    func classifierAccuracy(path: String, testFiles: [String], batch: Int) throws -> Double
    /// RMSE of the recommender file at `path` over `testFiles`' (user, item, rating) rows.
    func recommenderRMSE(path: String, testFiles: [String]) throws -> Double
}

/// What the trainer gets from the steps after it, injected by the executable. Without an
/// emitter a run writes no model files (the checkpoint holds the parameters); without a
/// teacher runtime a `teacher:` job is refused before step 0.
public struct TrainerServices {
    public var emitter: ModelEmitter?
    public var teacherRuntime: TeacherRuntimeFactory?

    public init(emitter: ModelEmitter? = nil, teacherRuntime: TeacherRuntimeFactory? = nil) {
        self.emitter = emitter
        self.teacherRuntime = teacherRuntime
    }
}
