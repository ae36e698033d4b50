import CortadoCompress
import CortadoCore
import CortadoData
import CortadoJob
import CortadoModel
import Foundation

/// Model files for the server tests, written in-process (no training): an MLP (int8 or fp32),
/// a model of raw CSV columns (its transforms in the `preprocessing` metadata, as a CSV-trained
/// model carries them) and a recommender.
enum ServeFixtures {
    /// A 784-16-10 MLP; `seed` makes versions differ.
    static func mlp(_ path: String, recipe: String, seed: UInt64) throws {
        let spec = ModelSpec(inputShape: [784], layers: [.dense(units: 16), .relu, .dense(units: 10)])
        let net = Network<Float>(spec: spec, maxBatch: 1)
        net.initialize(seed: seed)
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try net.params.array.withUnsafeBufferPointer {
            try ModelExport.write(
                path: path, recipe: try Recipe(recipe), model: spec, classes: (0..<10).map { "c\($0)" }, params: $0,
                metadata: [:])
        }
    }

    /// Columns age (numeric, z-score, clipped), color (one-hot of red/green/blue) and the label y
    /// (no/yes): 1 + 4 features, 2 classes.
    static func tabular(_ path: String) throws {
        var age = ColumnInfo(schema: ColumnSchema(name: "age", type: .numeric), role: "feature")
        age.mean = 40
        age.std = 12
        age.clipRange = [0, 90]
        age.imputeNumber = 38
        age.offset = 0
        age.width = 1
        var color = ColumnInfo(schema: ColumnSchema(name: "color", type: .categorical), role: "feature")
        color.vocabulary = ["red", "green", "blue"]
        color.offset = 1
        color.width = 4
        var y = ColumnInfo(schema: ColumnSchema(name: "y", type: .categorical), role: "label")
        y.vocabulary = ["no", "yes"]
        let pre = Preprocessing(
            columns: [age, color, y], csv: CSVDialect(delimiter: ",", header: true, missingValues: ["", "NA"]))
        let spec = ModelSpec(inputShape: [5], layers: [.dense(units: 8), .relu, .dense(units: 2)])
        let net = Network<Float>(spec: spec, maxBatch: 1)
        net.initialize(seed: 21)
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try net.params.array.withUnsafeBufferPointer {
            try ModelExport.write(
                path: path, recipe: try Recipe("fp32"), model: spec, classes: ["no", "yes"], params: $0,
                metadata: ["preprocessing": String(decoding: try stableJSON(pre, pretty: false), as: UTF8.self)])
        }
    }

    /// A recommender over 5 users and 12 items (ids 1…), no vocabulary: ids are numbers.
    static func recommender(_ path: String) throws -> RecommenderSpec {
        var spec = RecommenderSpec(userColumn: "u", itemColumn: "i", users: 6, items: 13, dim: 4)
        spec.initStd = 0.5
        let rec = Recommender<Float>(spec: spec, maxBatch: 4)
        rec.initialize(seed: 5, globalMean: 0.2)
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try rec.params.array.withUnsafeBufferPointer {
            try ModelExport.write(path: path, recipe: try Recipe("fp32"), recommender: spec, params: $0, metadata: [:])
        }
        return spec
    }

    /// An OIP request body for feature rows (rows, 784), floats as their shortest text.
    static func body(rows x: ArraySlice<Float>, d: Int, id: String) -> String {
        let n = x.count / d
        return
            "{\"id\":\"\(id)\",\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[\(n),\(d)],\"data\":["
            + x.map { $0.description }.joined(separator: ",") + "]}]}"
    }

    /// The FP32 output named `name` of an infer reply, as Floats.
    static func floats(_ reply: [String: Any], _ name: String) -> [Float] {
        let outs = reply["outputs"] as? [[String: Any]] ?? []
        let data = outs.first { $0["name"] as? String == name }?["data"] as? [Any] ?? []
        return data.map { Float(($0 as? NSNumber)?.doubleValue ?? .nan) }
    }

    static func output(_ reply: [String: Any], _ name: String) -> [Any] {
        let outs = reply["outputs"] as? [[String: Any]] ?? []
        return outs.first { $0["name"] as? String == name }?["data"] as? [Any] ?? []
    }
}
