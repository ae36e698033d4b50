import CortadoCore
import CortadoData
import CortadoInfer
import CortadoModel
import Foundation

/// One model variant of a version, measured by the inference runtime on the test split: the
/// compression table of the card and the report.
public struct VariantMetrics: Codable, Equatable {
    public var recipe: String
    public var file: String
    public var bytes: Int
    public var precision: String
    public var accuracy: Double?
    public var rmse: Double?
    /// Median batch-1 latency, 1 BLAS thread.
    public var latencyMsP50: Double?

    enum CodingKeys: String, CodingKey {
        case recipe, file, bytes, precision, accuracy, rmse
        case latencyMsP50 = "batch1_latency_ms_p50"
    }
}

/// A classifier's test-split evaluation: confusion matrix (true class × predicted class) and
/// per-class accuracy (recall).
public struct ClassifierEvaluation: Codable, Equatable {
    public var rows: Int
    public var accuracy: Double
    public var classes: [String]
    public var confusion: [[Int]]
    public var perClassAccuracy: [Double]

    enum CodingKeys: String, CodingKey {
        case rows, accuracy, classes, confusion
        case perClassAccuracy = "per_class_accuracy"
    }
}

public enum Evaluation {
    /// Scores a classifier file on the test split of `manifestPath`.
    public static func classifier(model path: String, manifestPath: String) throws -> ClassifierEvaluation {
        let model = try InferenceModel(path: path)
        let test = try SplitReader(manifestPath: manifestPath, split: "test")
        let scored = try predictions(model, path: path, split: test)
        let k = model.classes
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: k), count: k)
        for (t, p) in zip(scored.labels, scored.predicted) where t < k { confusion[Int(t)][p] += 1 }
        let correct = (0..<k).reduce(0) { $0 + confusion[$1][$1] }
        let names = model.header.classes.count == k ? model.header.classes : (0..<k).map(String.init)
        return ClassifierEvaluation(
            rows: test.rows, accuracy: Double(correct) / Double(max(test.rows, 1)), classes: names,
            confusion: confusion,
            perClassAccuracy: (0..<k).map {
                let total = confusion[$0].reduce(0, +)
                return total == 0 ? 0 : Double(confusion[$0][$0]) / Double(total)
            })
    }

    /// Every row of a split through a classifier: true labels, predicted classes (arg max) and,
    /// when the data has id columns, the ids (rows × id columns).
    public static func predictions(_ model: InferenceModel, path: String, split: SplitReader) throws -> (
        labels: [Int32], predicted: [Int], ids: [Int32]
    ) {
        guard split.featureCount == model.spec.inputSize else {
            throw CortadoError.usage(
                "\(split.manifestPath): \(split.featureCount) features per row, \(path) takes \(model.spec.inputSize)")
        }
        let k = model.classes, d = split.featureCount, batch = 1024, c = split.idColumns
        var x = [Float](repeating: 0, count: batch * d), p = [Float](repeating: 0, count: batch * k)
        var y = [Int32](repeating: 0, count: split.rows), ids = [Int32](repeating: 0, count: split.rows * c)
        var predicted = [Int](repeating: 0, count: split.rows)
        var start = 0
        while start < split.rows {
            let n = min(batch, split.rows - start)
            try x.withUnsafeMutableBufferPointer { xb in
                try y.withUnsafeMutableBufferPointer { yb in
                    try ids.withUnsafeMutableBufferPointer { ib in
                        try split.read(
                            start..<(start + n), features: xb.baseAddress!, labels: yb.baseAddress! + start,
                            ids: c > 0 ? ib.baseAddress! + start * c : nil)
                    }
                }
            }
            x.withUnsafeBufferPointer { xb in
                p.withUnsafeMutableBufferPointer {
                    model.predict(xb.baseAddress!, batch: n, probabilities: $0.baseAddress!)
                }
            }
            for r in 0..<n {
                var best = 0
                for c in 1..<k where p[r * k + c] > p[r * k + best] { best = c }
                predicted[start + r] = best
            }
            start += n
        }
        return (y, predicted, ids)
    }

    /// Measures one variant: size, test accuracy (classifiers) or RMSE (recommenders), batch-1
    /// latency. `manifestPath` nil: size and precision only.
    public static func variant(recipe: String, path: String, manifestPath: String?) throws -> VariantMetrics {
        let file = try ModelFile.load(path)
        let bytes = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? file.bytes.count
        var row = VariantMetrics(
            recipe: recipe, file: (path as NSString).lastPathComponent, bytes: bytes, precision: file.header.precision)
        guard let manifestPath else { return row }
        let test = try SplitReader(manifestPath: manifestPath, split: "test")
        if file.header.recommender != nil {
            let m = try RecommenderModel(path: path)
            var sq = 0.0, n = 0
            for f in test.files {
                let r = try scorePairs(model: m, inputPath: f.path, csvOutput: nil)
                sq += (r.rmse ?? 0) * (r.rmse ?? 0) * Double(r.rows)
                n += r.rows
            }
            row.rmse = n > 0 ? (sq / Double(n)).squareRoot() : nil
            return row
        }
        row.accuracy = try classifier(model: path, manifestPath: manifestPath).accuracy
        let model = try InferenceModel(path: path)
        let x = try InferenceBench.rows(model: model, input: test.files[0].path, rows: 1)
        let b = InferenceBench.run(model: model, x: x, batches: [1], threads: 1, calls: 300, seconds: 0.05)
        row.latencyMsP50 = b.latencyMs["p50"]
        return row
    }

    /// The deployment rule: the smallest variant whose test accuracy is within 0.5 points
    /// (0.005) of the fp32 variant's (recommenders: RMSE within 1 % of fp32's); without fp32
    /// the best variant is the reference; without measurements, fp32 (else the first variant).
    public static let accuracyTolerance = 0.005
    public static let rmseTolerance = 0.01

    public static func deployment(_ rows: [VariantMetrics]) -> VariantMetrics? {
        guard !rows.isEmpty else { return nil }
        let fp32 = rows.first { $0.recipe == "fp32" }
        if rows.allSatisfy({ $0.accuracy != nil }) {
            let ref = fp32?.accuracy ?? rows.compactMap(\.accuracy).max()!
            return rows.filter { $0.accuracy! >= ref - accuracyTolerance }.min {
                ($0.bytes, $0.recipe) < ($1.bytes, $1.recipe)
            }
        }
        if rows.allSatisfy({ $0.rmse != nil }) {
            let ref = fp32?.rmse ?? rows.compactMap(\.rmse).min()!
            return rows.filter { $0.rmse! <= ref * (1 + rmseTolerance) }.min {
                ($0.bytes, $0.recipe) < ($1.bytes, $1.recipe)
            }
        }
        return fp32 ?? rows[0]
    }

    /// The rule in words, for the card.
    public static let deploymentRule =
        "the smallest variant whose test accuracy is within 0.5 points of the fp32 model's (recommenders: RMSE within 1 %); fp32 when none is measured"
}
