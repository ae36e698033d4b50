import CortadoCore
import CortadoData
import CortadoInfer
import CortadoJob
import CortadoCompress
import CortadoModel
import Foundation

/// `cortado compress`: one trained fp32 model → one file per recipe, each loaded back by the
/// inference runtime and measured the way a user compares them: file size, parameters,
/// non-zeros, test accuracy, batch-1 latency (median) and batch-1024 throughput, on 1 thread
/// unless BLAS is told otherwise.
public struct CompressionRow: Codable {
    public var recipe: String
    public var path: String
    public var bytes: Int
    public var parameters: Int
    public var nonZeros: Int
    public var accuracy: Double
    public var latencyMsP50: Double
    public var rowsPerSecond: Double

    enum CodingKeys: String, CodingKey {
        case recipe, path, bytes, parameters, accuracy
        case nonZeros = "non_zeros", latencyMsP50 = "batch1_latency_ms_p50", rowsPerSecond = "batch1024_rows_per_sec"
    }
}

public enum CompressionReport {
    /// Writes `source` (an fp32 classifier .cmodel) compressed by each recipe into `outDir` and
    /// measures every file on the test split of the manifest at `data`.
    public static func run(source: String, recipes: [Recipe], data: String, outDir: String, log: (String) -> Void)
        throws -> [CompressionRow]
    {
        let file = try ModelFile.load(source)
        guard file.header.recommender == nil else {
            throw CortadoError.usage("\(source): compress takes classifiers (recommenders: use emit: in the job spec)")
        }
        let spec = file.header.model
        var params = [Float]()
        do {
            for t in spec.parameterLayout.tensors { params += try file.floats(t.name, shape: t.shape) }
        } catch let e as CortadoError { throw CortadoError.model("\(source): \(e.message)") }
        return try run(
            model: spec, classes: file.header.classes, params: params, metadata: file.header.metadata, source: source,
            recipes: recipes, data: data, outDir: outDir, log: log)
    }

    /// The same from parameters in memory (a checkpoint's): `metadata` goes into every file,
    /// with `compressed_from: source`.
    public static func run(
        model spec: ModelSpec, classes: [String], params: [Float], metadata: [String: String], source: String,
        recipes: [Recipe], data: String, outDir: String, log: (String) -> Void
    ) throws -> [CompressionRow] {
        let test = try SplitReader(manifestPath: data, split: "test")
        guard test.featureCount == spec.inputSize else {
            throw CortadoError.usage(
                "\(data): \(test.featureCount) features per row, the model takes \(spec.inputSize)")
        }
        // Calibration rows for static int8: the first 2 048 training rows (a spread of every
        // class after the preparation's shuffle).
        var calibration = [Float]()
        if recipes.contains(where: { $0.calibrationPercentile != nil }) {
            let train = try SplitReader(manifestPath: data, split: "train")
            let n = min(2048, train.rows)
            calibration = [Float](repeating: 0, count: n * spec.inputSize)
            try calibration.withUnsafeMutableBufferPointer {
                try train.read(0..<n, features: $0.baseAddress!, labels: nil, targets: nil, ids: nil)
            }
        }
        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
        var meta = metadata
        meta["compressed_from"] = source
        var rows = [CompressionRow]()
        for recipe in recipes {
            let path = (outDir as NSString).appendingPathComponent(recipe.fileName)
            try params.withUnsafeBufferPointer {
                let params = $0
                try calibration.withUnsafeBufferPointer { c in
                    try ModelExport.write(
                        path: path, recipe: recipe, model: spec, classes: classes, params: params, metadata: meta,
                        calibration: (c.baseAddress ?? UnsafePointer(bitPattern: 8)!, c.count / spec.inputSize))
                }
            }
            let model = try InferenceModel(path: path)
            var correct = 0.0, n = 0
            for f in test.files {
                let s = try score(model: model, inputPath: f.path, batch: 1024, csvOutput: nil)
                correct += (s.accuracy ?? 0) * Double(s.rows)
                n += s.rows
            }
            let (p50, throughput) = try speed(model, test: test.files[0].path)
            let written = try ModelFile.load(path)
            let row = CompressionRow(
                recipe: recipe.description, path: path,
                bytes: (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0,
                parameters: Int(written.header.metadata["parameters"] ?? "") ?? 0,
                nonZeros: Int(written.header.metadata["non_zeros"] ?? "") ?? 0,
                accuracy: correct / Double(max(n, 1)), latencyMsP50: p50, rowsPerSecond: throughput)
            log(String(format: "  %@: %.4f", recipe.description, row.accuracy))
            rows.append(row)
        }
        return rows
    }

    /// Median batch-1 latency and batch-1024 rows/s, on the test split's first rows
    /// (`cortado-infer --bench` measures more batch sizes the same way).
    public static func speed(_ model: InferenceModel, test: String) throws -> (p50Ms: Double, rowsPerSecond: Double) {
        let r = InferenceBench.run(
            model: model, x: try InferenceBench.rows(model: model, input: test, rows: 1024),
            batches: [1024], threads: 1, calls: 500)
        return (r.latencyMs["p50"] ?? 0, r.throughput[0].rowsPerSecond)
    }

    /// The table `cortado compress` prints.
    public static func table(_ rows: [CompressionRow]) -> String {
        let base = Double(rows.first { $0.recipe == "fp32" }?.bytes ?? rows.first?.bytes ?? 1)
        let w = max(8, rows.map(\.recipe.count).max() ?? 0)
        func pad(_ s: String, _ n: Int, left: Bool = false) -> String {
            let fill = String(repeating: " ", count: max(0, n - s.count))
            return left ? s + fill : fill + s
        }
        var out =
            pad("variant", w, left: true) + pad("bytes", 10) + pad("× fp32", 8) + pad("params", 9)
            + pad("non-zeros", 11)
            + pad("accuracy", 10) + pad("b1 p50 ms", 11) + pad("b1024 rows/s", 14) + "\n"
        for r in rows {
            out +=
                pad(r.recipe, w, left: true) + pad(String(r.bytes), 10)
                + pad(String(format: "%.3f", Double(r.bytes) / base), 8)
                + pad(String(r.parameters), 9) + pad(String(r.nonZeros), 11)
                + pad(String(format: "%.4f", r.accuracy), 10)
                + pad(String(format: "%.4f", r.latencyMsP50), 11) + pad(String(format: "%.0f", r.rowsPerSecond), 14)
                + "\n"
        }
        return out
    }
}
