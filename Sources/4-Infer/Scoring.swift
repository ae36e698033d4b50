import CortadoCore
import CortadoData
import Foundation

/// Scores an HDF5 features file (`/features` (rows, inputSize) float32, optional `/labels`)
/// in batches: accuracy when labels are present, and optionally a CSV of predictions.
public struct ScoreResult: Codable {
    public var rows: Int
    public var accuracy: Double?
    public var meanLoss: Double?
    public var seconds: Double
    public var rowsPerSecond: Double
}

public func score(model: InferenceModel, inputPath: String, batch: Int, csvOutput: String?) throws -> ScoreResult {
    guard batch > 0 else { throw CortadoError.usage("--batch must be positive, got \(batch)") }
    let h5 = try HDF5File.open(inputPath)
    try h5.expectType("features", .float32)
    let shape = try h5.shape(of: "features")
    let d = model.spec.inputSize, k = model.classes
    guard shape.count == 2, shape[1] == d else {
        throw CortadoError.data("\(inputPath): 'features' has shape \(shape), model \(model.path) expects [rows, \(d)]")
    }
    let rows = shape[0]
    let hasLabels = h5.hasDataset("labels")
    if hasLabels {
        try h5.expectType("labels", .int64)
        let ls = try h5.shape(of: "labels")
        guard ls == [rows] else { throw CortadoError.data("\(inputPath): 'labels' has shape \(ls), expected [\(rows)]") }
    }
    var x = [Float](repeating: 0, count: batch * d)
    var y = [Int32](repeating: 0, count: batch)
    var p = [Float](repeating: 0, count: batch * k)
    var csv: FileHandle?
    if let csvOutput {
        guard FileManager.default.createFile(atPath: csvOutput + ".tmp", contents: nil), let fh = FileHandle(forWritingAtPath: csvOutput + ".tmp") else {
            throw CortadoError.io("\(csvOutput): cannot create")
        }
        csv = fh
        let names = model.header.classes.count == k ? model.header.classes : (0..<k).map { "class\($0)" }
        fh.write(("row,predicted," + (hasLabels ? "label," : "") + names.map { "p_" + csvField($0) }.joined(separator: ",") + "\n").data(using: .utf8)!)
    }
    var correct = 0
    var lossSum = 0.0
    let t0 = monotonicSeconds()
    var r0 = 0
    while r0 < rows {
        let n = min(batch, rows - r0)
        try x.withUnsafeMutableBytes { try h5.readRows("features", start: r0, count: n, dtype: .float32, into: $0.baseAddress!) }
        if hasLabels { try y.withUnsafeMutableBytes { try h5.readRows("labels", start: r0, count: n, dtype: .int32, into: $0.baseAddress!) } }
        x.withUnsafeBufferPointer { xb in p.withUnsafeMutableBufferPointer { pb in
            model.predict(xb.baseAddress!, batch: n, probabilities: pb.baseAddress!)
        } }
        var lines = ""
        for i in 0..<n {
            var arg = 0
            for c in 1..<k where p[i * k + c] > p[i * k + arg] { arg = c }
            if hasLabels {
                let label = Int(y[i])
                guard label >= 0, label < k else { throw CortadoError.data("\(inputPath): label \(label) at row \(r0 + i) is outside 0..<\(k)") }
                if arg == label { correct += 1 }
                lossSum -= Double(log(max(p[i * k + label], 1e-30)))
            }
            if csv != nil {
                lines += "\(r0 + i),\(arg)," + (hasLabels ? "\(y[i])," : "") + (0..<k).map { String(format: "%.6g", p[i * k + $0]) }.joined(separator: ",") + "\n"
            }
        }
        csv?.write(lines.data(using: .utf8)!)
        r0 += n
    }
    let secs = monotonicSeconds() - t0
    if let csv, let csvOutput {
        try csv.synchronize()
        try csv.close()
        guard rename(csvOutput + ".tmp", csvOutput) == 0 else { throw CortadoError.io("\(csvOutput): rename failed") }
    }
    return ScoreResult(rows: rows, accuracy: hasLabels && rows > 0 ? Double(correct) / Double(rows) : nil,
                       meanLoss: hasLabels && rows > 0 ? lossSum / Double(rows) : nil,
                       seconds: secs, rowsPerSecond: Double(rows) / max(secs, 1e-9))
}

private func csvField(_ s: String) -> String {
    s.contains(",") || s.contains("\"") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
}
