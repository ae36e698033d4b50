import COpenBLAS
import CortadoCore
import CortadoData
import CortadoJob
import CortadoMPI
import CortadoModel
import Foundation

/// What the SPMD loop in `Trainer` needs from a model family on one rank's data: the
/// classifier (`ClassifierTask`: a feed-forward network on features and labels) and the
/// recommender (`RecommenderTask`: embeddings on id pairs). The loop owns everything else —
/// the optimizer, schedule, checkpoints, resume, early stopping, logging — so both families
/// get the same guarantees.
protocol TrainingTask: AnyObject {
    var layout: ParameterLayout { get }
    var params: Arena<Float> { get }
    /// Same layout as `params` plus `StatusSlot.count` trailing slots (loss, correct count,
    /// stop requests, failures), summed across ranks together with the gradients.
    var grads: Arena<Float> { get }
    /// The architecture in one line, for the start-up log.
    var summary: String { get }
    /// Training rows this rank owns.
    var trainRows: Int { get }
    /// Bytes of data this rank holds.
    var dataBytes: Int { get }
    /// Bytes of activation buffers and saved layer state (0 where not counted).
    var activationBytes: Int { get }
    /// Metrics the epoch line shows, in order (keys of `evaluate`'s result).
    var logMetrics: [String] { get }
    /// Training FLOPs per example, for the summary.
    var flopsPerExample: Double { get }
    /// Keys of `evaluate` that describe the data or a baseline, not the model: the summary
    /// reports them under their own names (`popularity_hr@10`), not the model file's
    /// (`fp32_hr@10`), and the closing line shows them.
    var referenceMetrics: [String] { get }
    /// Tensors of `layout` that hold data, not parameters (a recommender's mean rating days):
    /// the optimizer leaves them out like frozen layers.
    var constantTensors: Set<String> { get }

    /// Deterministic initial parameters from the seed (identical on every rank).
    func initialize(seed: UInt64)
    /// What the rank holds of its training rows, for the start-up log.
    var dataSummary: String { get }
    /// Seconds the step loop spent on batch assembly so far (waiting for it, when prefetched).
    var dataSeconds: Double { get }
    /// Before the step loop: its first step and the step it ends before (starts a loader).
    func beginTraining(at step: Int, end: Int) throws
    /// After the step loop: nothing runs beside the main thread any more.
    func endTraining()
    /// Forward and backward on this rank's batch of `step` (the task knows which rows each
    /// step takes; steps come in order); gradients (of the mean loss) accumulate into
    /// `grads`, which the caller zeroed. Returns the batch's summed loss per example and its
    /// correct count.
    func trainStep(step: Int) -> (lossSum: Double, correct: Int)
    /// Whether the next `trainStep`'s backward may start the gradient exchange (overlap): off
    /// for all but the last micro-batch of an accumulated step, whose gradients are not final.
    var exchangeDuringBackward: Bool { get set }
    /// The last `trainStep`'s summed hard-label cross-entropy when the training loss is
    /// something else (distillation adds a soft term); nil when the loss is just that.
    var hardLossSum: Double? { get }
    /// Whether this rank's own gradients of the last `trainStep` are all finite (before the
    /// exchange mixes them with the other ranks').
    func localGradientsFinite() -> Bool
    /// Seconds of the exchange spent inside `trainStep` so far (buckets sent during backward).
    var backwardCommSeconds: Double { get }
    /// How the gradients travel, for the start-up log ("" when there is nothing to say).
    var exchangeDescription: String { get }
    /// Sums `grads` (parameters and the status slots) across ranks, identically on all.
    func exchangeGradients()
    /// Metrics over a whole split (each rank scores its rows; the result is reduced, so
    /// every rank returns the same values). Always has "loss".
    func evaluate(_ split: Split) -> [String: Double]
    /// Rank 0 at the end: writes the `emit` model files into `runDir` and scores each written
    /// file with the emitter (the inference runtime) on the test split. Returns paths and metrics.
    func emitModels(
        emit: [String], runDir: String, metadata: [String: String],
        emitter: ModelEmitter
    ) throws -> (models: [String: String], metrics: [String: Double])
}

extension TrainingTask {
    var hardLossSum: Double? { nil }
    var constantTensors: Set<String> { [] }
    var exchangeDuringBackward: Bool {
        get { true }
        set {}
    }
    var referenceMetrics: [String] { [] }
    var backwardCommSeconds: Double { 0 }
    var exchangeDescription: String { "" }
    /// One BLAS pass over the arena: a NaN or Inf anywhere makes the sum non-finite.
    func localGradientsFinite() -> Bool { cblas_sasum(Int32(layout.count), grads.base, 1).isFinite }
    var dataSummary: String { "whole share in memory" }
    var dataSeconds: Double { 0 }
    func beginTraining(at step: Int, end: Int) throws {}
    func endTraining() {}
}

extension TrainingTask {
    /// For each `emit` recipe: `write` writes its model file at `runDir/model-<recipe>.cmodel`
    /// and returns the metrics of scoring it. Returns every file by recipe, and the metrics.
    func emitEach(_ emit: [String], runDir: String, _ write: (String, Recipe, String) throws -> [String: Double])
        throws -> (models: [String: String], metrics: [String: Double])
    {
        var models = [String: String](), metrics = [String: Double]()
        for e in emit {
            let recipe = try Recipe(e) // validated with the spec
            let path = (runDir as NSString).appendingPathComponent(recipe.fileName)
            metrics.merge(try write(e, recipe, path)) { $1 }
            models[e] = path
        }
        return (models, metrics)
    }
}

/// The evaluation splits.
enum Split: String { case validation, test }

/// Whether a smaller value of a metric is better.
func lowerIsBetter(_ metric: String) -> Bool { metric == "loss" || metric == "rmse" }

/// What building a rank's task has to hand: its rows and readers, the data order, the log.
struct TaskContext {
    let comm: Communicator
    let spec: JobSpec
    let data: RunData
    /// This rank's training rows in memory, or nil when the loader reads them in chunks.
    let train: LocalData?
    let validation: LocalData, test: LocalData
    let share: RankShare
    let plan: EpochPlan
    let stepsPerEpoch: Int
    let log: (String) -> Void
}

/// How a model family (`model.type`, `ModelFamily`) trains: what data it needs and how one
/// rank's task is built. One conformance per family, next to its task; `taskBuilder(for:)`
/// is the one place that maps a family to it.
protocol TaskBuilder {
    /// Checks, before step 0 on every rank, that the data suits the family.
    static func checkData(spec: JobSpec, manifest: DatasetManifest, model: ModelSpec) throws
    /// Builds this rank's task.
    static func build(_ context: TaskContext) throws -> TrainingTask
}

/// The trainer task of each model family (a new family adds its case here and in `ModelFamily`).
func taskBuilder(for family: ModelFamily) -> TaskBuilder.Type {
    switch family {
    case .feedforward: ClassifierTask.self
    case .recommender: RecommenderTask.self
    case .text: TextTask.self
    }
}
