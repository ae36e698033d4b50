import CortadoCompress
import CortadoCore
import CortadoInfer
import CortadoJob
import CortadoModel
import CortadoTrain

/// The end of a training run: model files written by the compression recipes (step 3) and
/// scored by the inference runtime (step 4), so the figures a run reports are the ones
/// cortado-infer reproduces.
public struct PipelineEmitter: ModelEmitter {
    public init() {}

    public func writeClassifier(
        path: String, recipe: Recipe, model: ModelSpec, classes: [String],
        params: UnsafeBufferPointer<Float>, metadata: [String: String],
        calibration: (features: UnsafePointer<Float>, rows: Int)?
    ) throws {
        try ModelExport.write(
            path: path, recipe: recipe, model: model, classes: classes, params: params,
            metadata: metadata, calibration: calibration.map { ($0.features, $0.rows) })
    }

    public func writeRecommender(
        path: String, recipe: Recipe, recommender: RecommenderSpec,
        params: UnsafeBufferPointer<Float>, metadata: [String: String]
    ) throws {
        try ModelExport.write(path: path, recipe: recipe, recommender: recommender, params: params, metadata: metadata)
    }

    public func writeText(
        path: String, recipe: Recipe, text: TextSpec, classes: [String],
        params: UnsafeBufferPointer<Float>, metadata: [String: String]
    ) throws {
        try ModelExport.write(
            path: path, recipe: recipe, text: text, classes: classes, params: params, metadata: metadata)
    }

    public func textAccuracy(path: String, testFiles: [String]) throws -> Double {
        let runtime = try TextModel(path: path)
        var correct = 0.0, rows = 0
        for f in testFiles {
            let s = try runtime.scorePrepared(path: f)
            correct += (s.accuracy ?? 0) * Double(s.rows)
            rows += s.rows
        }
        return correct / Double(max(rows, 1))
    }

    public func classifierAccuracy(path: String, testFiles: [String], batch: Int) throws -> Double {
        let runtime = try InferenceModel(path: path)
        var correct = 0.0, rows = 0
        for f in testFiles {
            let s = try score(model: runtime, inputPath: f, batch: batch, csvOutput: nil)
            correct += (s.accuracy ?? 0) * Double(s.rows)
            rows += s.rows
        }
        return correct / Double(max(rows, 1))
    }

    public func recommenderRMSE(path: String, testFiles: [String]) throws -> Double {
        let runtime = try RecommenderModel(path: path)
        var sq = 0.0, rows = 0
        for f in testFiles {
            let r = try scorePairs(model: runtime, inputPath: f, csvOutput: nil)
            sq += (r.rmse ?? 0) * (r.rmse ?? 0) * Double(r.rows)
            rows += r.rows
        }
        return (sq / Double(max(rows, 1))).squareRoot()
    }
}

/// The inference runtime as a distillation teacher.
extension InferenceModel: LogitsProvider {
    public var inputSize: Int { spec.inputSize }
    public var architecture: String {
        spec.layers.map(\.description).joined(separator: " ") + ", \(spec.parameterLayout.count) parameters"
    }
}

extension TrainerServices {
    /// What `cortado-train` runs with: emitted models written and scored, teachers run by the
    /// inference runtime.
    public static var standard: TrainerServices {
        TrainerServices(
            emitter: PipelineEmitter(), teacherRuntime: { file, path in try InferenceModel(file: file, path: path) })
    }
}
