import CortadoCore
import CortadoData
import CortadoInfer
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
    public static func run(source: String, recipes: [Recipe], data: String, outDir: String, log: (String) -> Void) throws -> [CompressionRow] {
        let file = try ModelFile.load(source)
        guard file.header.recommender == nil else { throw CortadoError.usage("\(source): compress takes classifiers (recommenders: use emit: in the job spec)") }
        let spec = file.header.model
        var params = [Float]()
        do {
            for t in spec.parameterLayout.tensors { params += try file.floats(t.name, shape: t.shape) }
        } catch let e as CortadoError { throw CortadoError.model("\(source): \(e.message)") }
        let test = try SplitReader(manifestPath: data, split: "test")
        guard test.featureCount == spec.inputSize else {
            throw CortadoError.usage("\(data): \(test.featureCount) features per row, the model takes \(spec.inputSize)")
        }
        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
        var meta = file.header.metadata
        meta["compressed_from"] = source
        var rows = [CompressionRow]()
        for recipe in recipes {
            let path = (outDir as NSString).appendingPathComponent(recipe.fileName)
            try params.withUnsafeBufferPointer {
                try ModelExport.write(path: path, recipe: recipe, model: spec, classes: file.header.classes, params: $0, metadata: meta)
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
            let row = CompressionRow(recipe: recipe.description, path: path,
                                     bytes: (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0,
                                     parameters: Int(written.header.metadata["parameters"] ?? "") ?? 0,
                                     nonZeros: Int(written.header.metadata["non_zeros"] ?? "") ?? 0,
                                     accuracy: correct / Double(max(n, 1)), latencyMsP50: p50, rowsPerSecond: throughput)
            log(String(format: "  %@: %.4f", recipe.description, row.accuracy))
            rows.append(row)
        }
        return rows
    }

    /// Median batch-1 latency over 300 calls and batch-1024 rows/s over ≥ 0.3 s, on real rows.
    public static func speed(_ model: InferenceModel, test: String) throws -> (p50Ms: Double, rowsPerSecond: Double) {
        let h5 = try HDF5File.open(test)
        let d = model.spec.inputSize
        let available = try h5.shape(of: "features")[0]
        let b = min(1024, available)
        var x = [Float](repeating: 0, count: b * d)
        try x.withUnsafeMutableBufferPointer { try h5.readRows("features", start: 0, count: b, dtype: .float32, into: $0.baseAddress!) }
        var p = [Float](repeating: 0, count: b * model.classes)
        var times = [Double]()
        x.withUnsafeBufferPointer { xb in p.withUnsafeMutableBufferPointer { pb in
            for i in 0..<320 {
                let t0 = monotonicSeconds()
                model.predict(xb.baseAddress! + (i % b) * d, batch: 1, probabilities: pb.baseAddress!)
                if i >= 20 { times.append(monotonicSeconds() - t0) }   // 20 warm-up calls
            }
        } }
        times.sort()
        var done = 0
        let t0 = monotonicSeconds()
        x.withUnsafeBufferPointer { xb in p.withUnsafeMutableBufferPointer { pb in
            repeat { model.predict(xb.baseAddress!, batch: b, probabilities: pb.baseAddress!); done += b } while monotonicSeconds() - t0 < 0.3
        } }
        return (times[times.count / 2] * 1000, Double(done) / (monotonicSeconds() - t0))
    }

    /// The table `cortado compress` prints.
    public static func table(_ rows: [CompressionRow]) -> String {
        let base = Double(rows.first { $0.recipe == "fp32" }?.bytes ?? rows.first?.bytes ?? 1)
        let w = max(8, rows.map(\.recipe.count).max() ?? 0)
        func pad(_ s: String, _ n: Int, left: Bool = false) -> String {
            let fill = String(repeating: " ", count: max(0, n - s.count))
            return left ? s + fill : fill + s
        }
        var out = pad("variant", w, left: true) + pad("bytes", 10) + pad("× fp32", 8) + pad("params", 9) + pad("non-zeros", 11)
            + pad("accuracy", 10) + pad("b1 p50 ms", 11) + pad("b1024 rows/s", 14) + "\n"
        for r in rows {
            out += pad(r.recipe, w, left: true) + pad(String(r.bytes), 10) + pad(String(format: "%.3f", Double(r.bytes) / base), 8)
                + pad(String(r.parameters), 9) + pad(String(r.nonZeros), 11) + pad(String(format: "%.4f", r.accuracy), 10)
                + pad(String(format: "%.4f", r.latencyMsP50), 11) + pad(String(format: "%.0f", r.rowsPerSecond), 14) + "\n"
        }
        return out
    }
}
