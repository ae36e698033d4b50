import CortadoCore
import Foundation

/// A column as the manifest records it: its schema, its role, the training-split statistics,
/// and where it lands in the output. `RowEncoder` replays exactly these numbers, in
/// `cortado prepare` and in `cortado-infer` on raw CSV.
public struct ColumnInfo: Codable, Equatable {
    public var schema: ColumnSchema
    public var role: String                 // "feature", "label", "ignored"
    public var count: Int?                  // non-missing training values
    public var missing: Int?                // missing training values
    public var mean: Double?, std: Double?, min: Double?, max: Double?, median: Double?
    public var clipRange: [Double]?         // value bounds from the clip quantiles
    public var imputeNumber: Double?
    public var vocabulary: [String]?        // id = index + 1; 0 is "unknown"
    public var imputeCategory: String?
    public var offset: Int?                 // first feature column in /features
    public var width: Int?                  // feature columns it occupies
    public var categoricalIndex: Int?       // its column in /categorical (encoding: ids)

    enum CodingKeys: String, CodingKey {
        case schema, role, count, missing, mean, std, min, max, median, clipRange = "clip_range", imputeNumber = "impute_number"
        case vocabulary, imputeCategory = "impute_category", offset, width, categoricalIndex = "categorical_index"
    }

    public init(schema: ColumnSchema, role: String) {
        self.schema = schema
        self.role = role
    }

    public var name: String { schema.name }
}

/// The CSV dialect a data set was read with (stored so inference reads raw rows the same way).
public struct CSVDialect: Codable, Equatable {
    public var delimiter: String
    public var header: Bool
    public var missingValues: [String]

    enum CodingKeys: String, CodingKey { case delimiter, header, missingValues = "missing_values" }

    public init(delimiter: String, header: Bool, missingValues: [String]) {
        self.delimiter = delimiter
        self.header = header
        self.missingValues = missingValues
    }
}

/// One record's values after parsing and the checks that can fail on it.
public struct ParsedRow {
    public var numbers: [Double?]          // per column (nil: missing, or not numeric)
    public var strings: [String?]          // per column (nil: missing, or not categorical)
    public var label: Double = 0           // class id (after vocabulary) or regression target
    public var labelString: String?
    public var dropReason: String?         // a `missing: drop` column was missing
    public var missingColumns: [Int] = []  // columns to impute
}

/// Turns tokenized fields into typed values per the schema, with the bad-input checks that
/// name file:line and the column.
public struct RowParser {
    public let columns: [ColumnInfo]
    public let labelIndex: Int?
    public let regression: Bool
    let missingTokens: Set<String>

    public init(columns: [ColumnInfo], labelIndex: Int?, regression: Bool, missingTokens: [String]) {
        self.columns = columns
        self.labelIndex = labelIndex
        self.regression = regression
        self.missingTokens = Set(missingTokens)
    }

    func isMissing(_ s: String, quoted: Bool) -> Bool { !quoted && missingTokens.contains(s) || s.isEmpty }

    public func parse(_ t: CSVTokenizer) throws -> ParsedRow {
        guard t.fieldCount == columns.count else {
            throw CortadoError.data("\(t.here): \(t.fieldCount) fields, the header has \(columns.count)")
        }
        var row = ParsedRow(numbers: [Double?](repeating: nil, count: columns.count), strings: [String?](repeating: nil, count: columns.count))
        for (j, c) in columns.enumerated() where c.role != "ignored" {
            let raw = t.string(j).trimmingCharacters(in: .whitespaces)
            let missing = isMissing(raw, quoted: t.quoted[j])
            if j == labelIndex {
                guard !missing else { throw CortadoError.data("\(t.here): label column '\(c.name)' is missing") }
                if regression {
                    guard let v = Double(raw) else { throw CortadoError.data("\(t.here): label column '\(c.name)' value '\(raw)' is not a number") }
                    guard v.isFinite else { throw CortadoError.data("\(t.here): label column '\(c.name)' is not finite (\(raw))") }
                    row.label = v
                } else {
                    row.labelString = raw
                }
                continue
            }
            if missing {
                if c.schema.missing == .drop { row.dropReason = row.dropReason ?? "missing \(c.name)" } else { row.missingColumns.append(j) }
                continue
            }
            switch c.schema.type {
            case .numeric:
                guard let v = Double(raw) else {
                    if c.schema.nonNumeric == "error" {
                        throw CortadoError.data("\(t.here): column '\(c.name)': '\(raw.prefix(40))' is not a number (schema: non_numeric: missing to treat it as missing)")
                    }
                    if c.schema.missing == .drop { row.dropReason = row.dropReason ?? "non-numeric \(c.name)" } else { row.missingColumns.append(j) }
                    continue
                }
                if !v.isFinite {
                    if c.schema.nonFinite == "error" {
                        throw CortadoError.data("\(t.here): column '\(c.name)': non-finite value '\(raw)' (schema: non_finite: missing to impute it)")
                    }
                    if c.schema.missing == .drop { row.dropReason = row.dropReason ?? "non-finite \(c.name)" } else { row.missingColumns.append(j) }
                    continue
                }
                row.numbers[j] = v
            case .categorical:
                row.strings[j] = raw
            case .id, .ignore:
                break
            }
        }
        return row
    }
}

/// Encodes parsed rows into the output feature vector (and integer columns), with the
/// manifest's statistics: impute, clip, standardize, one-hot or id.
public struct RowEncoder {
    public let columns: [ColumnInfo]
    public let featureCount: Int
    public let categoricalCount: Int
    let ids: [[String: Int]]   // per column: value → id (1-based; 0 unknown)

    public init(columns: [ColumnInfo]) {
        self.columns = columns
        featureCount = columns.compactMap { c in c.offset.map { $0 + (c.width ?? 0) } }.max() ?? 0
        categoricalCount = columns.compactMap { $0.categoricalIndex }.count
        ids = columns.map { c in
            Dictionary(uniqueKeysWithValues: (c.vocabulary ?? []).enumerated().map { ($1, $0 + 1) })
        }
    }

    /// The id of a categorical value: its vocabulary id, or 0 (unknown / rare / unseen).
    public func id(_ j: Int, _ value: String?) -> Int {
        guard let value else {
            let c = columns[j]
            switch c.schema.missing {
            case .mostFrequent, .constant: return c.imputeCategory.flatMap { ids[j][$0] } ?? 0
            default: return 0
            }
        }
        return ids[j][value] ?? 0
    }

    /// Writes one row: features (featureCount) and categorical ids (categoricalCount).
    public func encode(_ row: ParsedRow, features: UnsafeMutablePointer<Float>, categorical: UnsafeMutablePointer<Int64>) {
        for (j, c) in columns.enumerated() where c.role == "feature" {
            switch c.schema.type {
            case .numeric:
                var v = row.numbers[j] ?? c.imputeNumber ?? 0
                if let r = c.clipRange { v = Swift.min(Swift.max(v, r[0]), r[1]) }
                switch c.schema.transform {
                case "zscore": v = (v - (c.mean ?? 0)) / ((c.std ?? 0) > 0 ? c.std! : 1)
                case "minmax":
                    let lo = c.clipRange?[0] ?? c.min ?? 0, hi = c.clipRange?[1] ?? c.max ?? 0
                    v = hi > lo ? (v - lo) / (hi - lo) : 0
                default: break
                }
                features[c.offset!] = Float(v)
            case .categorical:
                let k = id(j, row.strings[j])
                if let ci = c.categoricalIndex {
                    categorical[ci] = Int64(k)
                } else if let o = c.offset, let w = c.width {
                    for i in 0..<w { features[o + i] = 0 }
                    features[o + k] = 1
                }
            case .id, .ignore:
                break
            }
        }
    }
}
