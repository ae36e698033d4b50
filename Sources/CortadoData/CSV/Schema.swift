import CortadoCore
import Foundation

/// How one CSV column is read, cleaned and encoded. Written by the user in a schema file or
/// inferred from a sample; stored in the manifest with the statistics it produced.
public struct ColumnSchema: Codable, Equatable {
    public enum Kind: String, Codable, CaseIterable { case numeric, categorical, id, ignore }
    public enum Missing: String, Codable, CaseIterable {
        case drop, mean, median, mostFrequent = "most_frequent", constant, unknown
    }

    public var name: String
    public var type: Kind
    /// What a missing value becomes: drop the row, or impute.
    public var missing: Missing
    /// The value for `missing: constant`.
    public var constant: String?
    /// numeric: "zscore", "minmax" or "none".
    public var transform: String
    /// numeric: clip to these training-set quantiles, e.g. [0.01, 0.99], before the transform.
    public var clip: [Double]?
    /// numeric: a value that is not a number is an error ("error", strict) or missing ("missing").
    public var nonNumeric: String
    /// numeric: inf / -inf are an error or missing (NaN is a missing-value token by default).
    public var nonFinite: String
    /// categorical: "onehot" (float features) or "ids" (an integer column for embeddings).
    public var encoding: String
    /// categorical: values seen fewer times in training go to the unknown bucket (id 0).
    public var minCount: Int

    enum CodingKeys: String, CodingKey {
        case name, type, missing, constant, transform, clip, nonNumeric = "non_numeric", nonFinite = "non_finite",
            encoding
        case minCount = "min_count"
    }

    public init(name: String, type: Kind) {
        self.name = name
        self.type = type
        missing = type == .numeric ? .median : .unknown
        transform = "zscore"
        nonNumeric = "error"
        nonFinite = "error"
        encoding = "onehot"
        minCount = 1
    }

    /// Reads one `columns:` entry of a schema file, strictly.
    init(reading r: ConfigReader) throws {
        let name = try r.required("name", r.string)
        let typeName = try r.required("type", r.string)
        guard let type = Kind(rawValue: typeName) else {
            throw CortadoError.usage(
                "\(r.path).type: '\(typeName)' is not one of \(Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self.init(name: name, type: type)
        if let m = try r.string("missing") {
            guard let p = Missing(rawValue: m) else {
                throw CortadoError.usage(
                    "\(r.path).missing: '\(m)' is not one of \(Missing.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
            missing = p
        }
        constant = try r.string("constant")
        transform = try r.string("transform") ?? transform
        if let c = try r.list("clip") {
            clip = try c.enumerated().map { i, n in
                guard case .scalar(let s) = n, let v = Double(s), v >= 0, v <= 1 else {
                    throw CortadoError.usage("\(r.path).clip.\(i): expected a quantile in [0, 1]")
                }
                return v
            }
        }
        nonNumeric = try r.string("non_numeric") ?? nonNumeric
        nonFinite = try r.string("non_finite") ?? nonFinite
        encoding = try r.string("encoding") ?? encoding
        minCount = try r.int("min_count") ?? minCount
        try r.finish()
        try validate(path: r.path)
    }

    func validate(path: String) throws {
        func check(_ ok: Bool, _ key: String, _ why: String) throws {
            if !ok { throw CortadoError.usage("\(path).\(key): \(why) (column '\(name)')") }
        }
        try check(
            ["zscore", "minmax", "none"].contains(transform), "transform",
            "'\(transform)' is not one of zscore, minmax, none")
        try check(
            ["error", "missing"].contains(nonNumeric), "non_numeric", "'\(nonNumeric)' is not one of error, missing")
        try check(["error", "missing"].contains(nonFinite), "non_finite", "'\(nonFinite)' is not one of error, missing")
        try check(["onehot", "ids"].contains(encoding), "encoding", "'\(encoding)' is not one of onehot, ids")
        try check(minCount >= 1, "min_count", "must be at least 1")
        try check(clip.map { $0.count == 2 && $0[0] < $0[1] } ?? true, "clip", "needs two quantiles, low < high")
        try check(missing != .constant || constant != nil, "constant", "missing: constant needs a constant value")
        if type == .numeric {
            try check(
                [.drop, .mean, .median, .constant].contains(missing), "missing",
                "'\(missing.rawValue)' does not apply to a numeric column (drop, mean, median, constant)")
            if missing == .constant {
                try check(Double(constant ?? "") != nil, "constant", "'\(constant ?? "")' is not a number")
            }
        }
        if type == .categorical {
            try check(
                [.drop, .mostFrequent, .constant, .unknown].contains(missing), "missing",
                "'\(missing.rawValue)' does not apply to a categorical column (drop, most_frequent, constant, unknown)")
        }
    }

    /// The schema as a YAML flow mapping (what `cortado prepare csv` prints after inferring).
    public var yaml: String {
        var parts = ["name: \(yamlQuote(name))", "type: \(type.rawValue)"]
        switch type {
        case .numeric:
            parts += ["missing: \(missing.rawValue)", "transform: \(transform)"]
            if let clip { parts.append("clip: [\(clip[0]), \(clip[1])]") }
            parts.append("non_numeric: \(nonNumeric)")
        case .categorical:
            parts += ["missing: \(missing.rawValue)", "encoding: \(encoding)", "min_count: \(minCount)"]
        case .id, .ignore: break
        }
        if let constant { parts.append("constant: \(yamlQuote(constant))") }
        return "{" + parts.joined(separator: ", ") + "}"
    }
}

func yamlQuote(_ s: String) -> String {
    s.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." }) && !s.isEmpty
        ? s
        : "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
}

/// A schema file: `missing_values:` (tokens that mean "missing") and `columns:` (a list of
/// column entries; columns not listed are inferred).
public struct SchemaFile {
    public var missingValues: [String]?
    public var columns: [ColumnSchema]

    public static func load(_ path: String) throws -> SchemaFile {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw CortadoError.usage("\(path): cannot read schema")
        }
        let r = try ConfigReader(try ConfigNode.parse(text, origin: path), path: "")
        var out = SchemaFile(missingValues: nil, columns: [])
        if let mv = try r.list("missing_values") {
            out.missingValues = try mv.enumerated().map { i, n in
                guard case .scalar(let s) = n else {
                    throw CortadoError.usage("\(path): missing_values.\(i): expected a string")
                }
                return s
            }
        }
        for (i, n) in (try r.list("columns") ?? []).enumerated() {
            let c = try ColumnSchema(reading: try ConfigReader(n, path: "\(path): columns.\(i)"))
            if out.columns.contains(where: { $0.name == c.name }) {
                throw CortadoError.usage("\(path): columns.\(i): column '\(c.name)' listed twice")
            }
            out.columns.append(c)
        }
        try r.finish()
        return out
    }
}

/// Infers column types from the first rows: numeric when every non-missing value parses as a
/// finite number; categorical when there are few distinct values; otherwise ignored (free
/// text, ids).
public func inferSchema(header: [String], sample: [[String?]]) -> [ColumnSchema] {
    header.enumerated().map { j, name in
        let values = sample.compactMap { $0[j] }
        if !values.isEmpty && values.allSatisfy({ parseNumber($0).map { $0.isFinite } ?? false }) {
            return ColumnSchema(name: name, type: .numeric)
        }
        let distinct = Set(values).count
        if values.isEmpty || distinct <= max(2, min(100, values.count / 2)) {
            var c = ColumnSchema(name: name, type: .categorical)
            if distinct > 32 { c.encoding = "ids" }
            return c
        }
        return ColumnSchema(name: name, type: .ignore)
    }
}

/// Parses a whole field as a Double (leading/trailing spaces allowed), or nil.
public func parseNumber(_ s: String) -> Double? {
    Double(s.trimmingCharacters(in: .whitespaces))
}
