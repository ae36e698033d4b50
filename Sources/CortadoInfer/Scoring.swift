import CortadoCore
import CortadoData
import Foundation

/// What scoring a file reports.
public struct ScoreResult: Codable {
    public var rows: Int
    public var accuracy: Double?
    public var meanLoss: Double?
    public var seconds: Double
    public var rowsPerSecond: Double
}

/// A source of rows to score: fills up to `capacity` rows of features (and labels, when it has
/// them) and returns how many it wrote; 0 at the end.
protocol RowSource {
    var hasLabels: Bool { get }
    mutating func next(features: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Int32>, capacity: Int) throws
        -> Int
}

/// `/features` (rows, inputs) float32 and optional `/labels` int64 of an HDF5 file.
struct HDF5Rows: RowSource {
    let h5: HDF5File
    let rows: Int
    let hasLabels: Bool
    var at = 0

    init(path: String, model: InferenceModel) throws {
        h5 = try HDF5File.open(path)
        try h5.expectType("features", .float32)
        let shape = try h5.shape(of: "features")
        let d = model.spec.inputSize
        guard shape.count == 2, shape[1] == d else {
            throw CortadoError.data("\(path): 'features' has shape \(shape), model \(model.path) expects [rows, \(d)]")
        }
        rows = shape[0]
        hasLabels = h5.hasDataset("labels")
        if hasLabels {
            try h5.expectType("labels", .int64)
            let ls = try h5.shape(of: "labels")
            guard ls == [rows] else { throw CortadoError.data("\(path): 'labels' has shape \(ls), expected [\(rows)]") }
        }
    }

    mutating func next(features: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Int32>, capacity: Int) throws
        -> Int
    {
        let n = min(capacity, rows - at)
        guard n > 0 else { return 0 }
        try h5.readRows("features", start: at, count: n, dtype: .float32, into: features)
        if hasLabels { try h5.readRows("labels", start: at, count: n, dtype: .int32, into: labels) }
        at += n
        return n
    }
}

/// Raw CSV rows with the original columns, encoded by the transforms the model carries from
/// its training data's manifest (imputation, clipping, standardization, vocabularies).
struct CSVRows: RowSource {
    let tokenizer: CSVTokenizer
    let parser: RowParser
    let encoder: RowEncoder
    let classIds: [String: Int]
    let hasLabels: Bool
    var scratch: [Int64]

    init(path: String, model: InferenceModel) throws {
        guard let json = model.header.metadata["preprocessing"],
            let pre = try? JSONDecoder().decode(Preprocessing.self, from: Data(json.utf8))
        else {
            throw CortadoError.usage(
                "\(model.path): the model was not trained on CSV data, so it cannot read raw CSV rows (give an HDF5 file)"
            )
        }
        let delimiter = pre.csv.delimiter.utf8.first ?? UInt8(ascii: ",")
        let t = try CSVTokenizer(path: path, delimiter: delimiter)
        guard try t.next() else { throw CortadoError.data("\(path): empty file") }
        let header = (0..<t.fieldCount).map { t.string($0).trimmingCharacters(in: .whitespaces) }
        for c in pre.columns where c.role == "feature" && !header.contains(c.name) {
            throw CortadoError.data(
                "\(path): column '\(c.name)' that the model needs is not in the header (columns: \(header.joined(separator: ", ")))"
            )
        }
        // Columns aligned with this file's header; columns the model does not know are ignored.
        let aligned = header.map { name -> ColumnInfo in
            pre.columns.first { $0.name == name }
                ?? ColumnInfo(schema: ColumnSchema(name: name, type: .ignore), role: "ignored")
        }
        let labelIndex = aligned.firstIndex { $0.role == "label" }
        tokenizer = t
        parser = RowParser(
            columns: aligned, labelIndex: labelIndex, regression: false, missingTokens: pre.csv.missingValues)
        encoder = RowEncoder(columns: aligned)
        guard encoder.featureCount == model.spec.inputSize else {
            throw CortadoError.model(
                "\(model.path): its preprocessing makes \(encoder.featureCount) features, the network takes \(model.spec.inputSize)"
            )
        }
        classIds = Dictionary(
            uniqueKeysWithValues: (aligned.first { $0.role == "label" }?.vocabulary ?? []).enumerated().map { ($1, $0) }
        )
        hasLabels = labelIndex != nil
        scratch = [Int64](repeating: 0, count: max(encoder.categoricalCount, 1))
    }

    mutating func next(features: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Int32>, capacity: Int) throws
        -> Int
    {
        var n = 0
        while n < capacity, try tokenizer.next() {
            let row = try parser.parse(tokenizer)
            scratch.withUnsafeMutableBufferPointer {
                encoder.encode(row, features: features + n * encoder.featureCount, categorical: $0.baseAddress!)
            }
            if hasLabels {
                guard let id = row.labelString.flatMap({ classIds[$0] }) else {
                    throw CortadoError.data(
                        "\(tokenizer.here): label '\(row.labelString ?? "")' is not one of the model's classes")
                }
                labels[n] = Int32(id)
            }
            n += 1
        }
        return n
    }
}

/// IDX images (n, h, w) as features byte / 255 — the transform `cortado prepare` applies to
/// IDX data — with labels from an IDX1 file of the same length when given.
struct IDXRows: RowSource {
    let images: IDXArray
    let labels: IDXArray?
    let d: Int
    var at = 0
    var hasLabels: Bool { labels != nil }

    init(path: String, labels labelsPath: String?, model: InferenceModel) throws {
        images = try IDXArray.read(path, expectedRank: 3)
        d = images.dims[1] * images.dims[2]
        guard d == model.spec.inputSize else {
            throw CortadoError.data(
                "\(path): images are \(images.dims[1])x\(images.dims[2]) = \(d) features, model \(model.path) expects \(model.spec.inputSize)"
            )
        }
        labels = try labelsPath.map { try IDXArray.read($0, expectedRank: 1) }
        if let labels, labels.dims[0] != images.dims[0] {
            throw CortadoError.data("\(labelsPath!): \(labels.dims[0]) labels for \(images.dims[0]) images in \(path)")
        }
    }

    mutating func next(features: UnsafeMutablePointer<Float>, labels y: UnsafeMutablePointer<Int32>, capacity: Int)
        throws -> Int
    {
        let n = min(capacity, images.dims[0] - at)
        guard n > 0 else { return 0 }
        images.bytes.withUnsafeBufferPointer { b in
            for i in 0..<(n * d) { features[i] = Float(b[at * d + i]) / 255 }
        }
        if let labels { for i in 0..<n { y[i] = Int32(labels.bytes[at + i]) } }
        at += n
        return n
    }
}

/// Scores a file in batches: HDF5 (`/features`, optional `/labels`), raw CSV/TSV (columns by
/// name, transformed as in training) or IDX images (bytes / 255, as `cortado prepare` turns
/// them into features; labels from an IDX1 file when given). Accuracy when labels are
/// present; optionally the predictions as CSV, JSON lines or HDF5 (`PredictionWriter`).
public func score(model: InferenceModel, inputPath: String, batch: Int, csvOutput: String?, labelsPath: String? = nil)
    throws -> ScoreResult
{
    guard batch > 0 else { throw CortadoError.usage("--batch must be positive, got \(batch)") }
    let lower = inputPath.lowercased()
    var source: RowSource
    if lower.hasSuffix(".csv") || lower.hasSuffix(".tsv") || lower.hasSuffix(".txt") {
        source = try CSVRows(path: inputPath, model: model)
    } else if lower.contains("ubyte") || lower.hasSuffix(".idx") || lower.hasSuffix(".idx.gz") {
        source = try IDXRows(path: inputPath, labels: labelsPath, model: model)
    } else {
        source = try HDF5Rows(path: inputPath, model: model)
    }
    if labelsPath != nil, !(source is IDXRows) {
        throw CortadoError.usage("--labels: only for IDX input (HDF5 and CSV inputs carry their labels)")
    }
    let d = model.spec.inputSize, k = model.classes
    let hasLabels = source.hasLabels
    var x = [Float](repeating: 0, count: batch * d)
    var y = [Int32](repeating: 0, count: batch)
    var p = [Float](repeating: 0, count: batch * k)
    let names = model.header.classes.count == k ? model.header.classes : (0..<k).map { "class\($0)" }
    let writer = try csvOutput.map { try PredictionWriter(path: $0, classNames: names, hasLabels: hasLabels) }
    var arg = [Int](repeating: 0, count: batch)
    var correct = 0, rows = 0
    var lossSum = 0.0
    let t0 = monotonicSeconds()
    while true {
        let n = try x.withUnsafeMutableBufferPointer { xb in
            try y.withUnsafeMutableBufferPointer { yb in
                try source.next(features: xb.baseAddress!, labels: yb.baseAddress!, capacity: batch)
            }
        }
        if n == 0 { break }
        x.withUnsafeBufferPointer { xb in
            p.withUnsafeMutableBufferPointer { pb in
                model.predict(xb.baseAddress!, batch: n, probabilities: pb.baseAddress!)
            }
        }
        for i in 0..<n {
            arg[i] = 0
            for c in 1..<k where p[i * k + c] > p[i * k + arg[i]] { arg[i] = c }
            if hasLabels {
                let label = Int(y[i])
                guard label >= 0, label < k else {
                    throw CortadoError.data("\(inputPath): label \(label) at row \(rows + i) is outside 0..<\(k)")
                }
                if arg[i] == label { correct += 1 }
                lossSum -= Double(log(max(p[i * k + label], 1e-30)))
            }
        }
        try y.withUnsafeBufferPointer { yb in
            try p.withUnsafeBufferPointer { pb in
                try writer?.append(
                    first: rows, n: n, predicted: arg, labels: yb.baseAddress!, probabilities: pb.baseAddress!)
            }
        }
        rows += n
    }
    let secs = monotonicSeconds() - t0
    try writer?.finish()
    return ScoreResult(
        rows: rows, accuracy: hasLabels && rows > 0 ? Double(correct) / Double(rows) : nil,
        meanLoss: hasLabels && rows > 0 ? lossSum / Double(rows) : nil,
        seconds: secs, rowsPerSecond: Double(rows) / max(secs, 1e-9))
}
