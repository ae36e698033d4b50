import CortadoCore
import Foundation

/// A column as the manifest records it: its schema, its role, the training-split statistics,
/// and where it lands in the output. `RowEncoder` replays exactly these numbers, in
/// `cortado prepare` and in `cortado-infer` on raw CSV.
public struct ColumnInfo: Codable, Equatable {
    public var schema: ColumnSchema
    public var role: String // "feature", "label", "ignored"
    public var count: Int? // non-missing training values
    public var missing: Int? // missing training values
    public var mean: Double?, std: Double?, min: Double?, max: Double?, median: Double?
    public var clipRange: [Double]? // value bounds from the clip quantiles
    public var imputeNumber: Double?
    public var vocabulary: [String]? // id = index + 1; 0 is "unknown"
    public var vocabularyCounts: [Int]? // training rows per vocabulary entry (drift reports)
    public var imputeCategory: String?
    public var offset: Int? // first feature column in /features
    public var width: Int? // feature columns it occupies
    public var categoricalIndex: Int? // its column in /categorical (encoding: ids)

    enum CodingKeys: String, CodingKey {
        case schema, role, count, missing, mean, std, min, max, median, clipRange = "clip_range", imputeNumber =
            "impute_number"
        case vocabulary, vocabularyCounts = "vocabulary_counts", imputeCategory = "impute_category", offset, width,
            categoricalIndex = "categorical_index"
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
    public var numbers: [Double?] // per column (nil: missing, or not numeric)
    public var strings: [String?] // per column (nil: missing, or not categorical)
    public var label: Double = 0 // class id (after vocabulary) or regression target
    public var labelString: String?
    public var dropReason: String? // a `missing: drop` column was missing
    public var missingColumns: [Int] = [] // columns to impute
}

/// Turns tokenized fields into typed values per the schema, with the bad-input checks that
/// name file:line and the column. Works on the field bytes: only categorical values and
/// labels become Strings (short ones stay inline, without allocation).
public struct RowParser {
    public let columns: [ColumnInfo]
    public let labelIndex: Int?
    public let regression: Bool
    let missingTokens: [[UInt8]]
    /// Per column, flattened out of `columns` so the per-field loop copies no ColumnInfo.
    let kinds: [ColumnSchema.Kind?] // nil: ignored
    let strictNumbers: [Bool], strictFinite: [Bool], dropOnMissing: [Bool]

    public init(columns: [ColumnInfo], labelIndex: Int?, regression: Bool, missingTokens: [String]) {
        self.columns = columns
        self.labelIndex = labelIndex
        self.regression = regression
        self.missingTokens = missingTokens.map { Array($0.utf8) }
        kinds = columns.map { $0.role == "ignored" ? nil : $0.schema.type }
        strictNumbers = columns.map { $0.schema.nonNumeric == "error" }
        strictFinite = columns.map { $0.schema.nonFinite == "error" }
        dropOnMissing = columns.map { $0.schema.missing == .drop }
    }

    /// A row buffer sized for these columns, to reuse across `parse` calls.
    public func makeRow() -> ParsedRow {
        ParsedRow(
            numbers: [Double?](repeating: nil, count: columns.count),
            strings: [String?](repeating: nil, count: columns.count))
    }

    public func parse(_ t: CSVTokenizer) throws -> ParsedRow {
        var row = makeRow()
        try parse(t, into: &row)
        return row
    }

    public func parse(_ t: CSVTokenizer, into row: inout ParsedRow) throws {
        guard t.fieldCount == columns.count else {
            throw CortadoError.data("\(t.here): \(t.fieldCount) fields, the header has \(columns.count)")
        }
        row.dropReason = nil
        row.labelString = nil
        row.missingColumns.removeAll(keepingCapacity: true)
        for j in 0..<kinds.count {
            row.numbers[j] = nil
            row.strings[j] = nil
            guard let kind = kinds[j] else { continue }
            try t.withField(j) { raw in
                let f = trimmed(raw)
                let missing = f.isEmpty || (!t.isQuoted(j) && missingTokens.contains { $0.elementsEqual(f) })
                if j == labelIndex {
                    guard !missing else {
                        throw CortadoError.data("\(t.here): label column '\(columns[j].name)' is missing")
                    }
                    if regression {
                        guard let v = parseDouble(f) else {
                            throw CortadoError.data(
                                "\(t.here): label column '\(columns[j].name)' value '\(text(f))' is not a number")
                        }
                        guard v.isFinite else {
                            throw CortadoError.data(
                                "\(t.here): label column '\(columns[j].name)' is not finite (\(text(f)))")
                        }
                        row.label = v
                    } else {
                        row.labelString = text(f)
                    }
                    return
                }
                if missing { return markMissing(j, "missing", &row) }
                switch kind {
                case .numeric:
                    guard let v = parseDouble(f) else {
                        if strictNumbers[j] {
                            throw CortadoError.data(
                                "\(t.here): column '\(columns[j].name)': '\(text(f).prefix(40))' is not a number (schema: non_numeric: missing to treat it as missing)"
                            )
                        }
                        return markMissing(j, "non-numeric", &row)
                    }
                    if !v.isFinite {
                        if strictFinite[j] {
                            throw CortadoError.data(
                                "\(t.here): column '\(columns[j].name)': non-finite value '\(text(f))' (schema: non_finite: missing to impute it)"
                            )
                        }
                        return markMissing(j, "non-finite", &row)
                    }
                    row.numbers[j] = v
                case .categorical:
                    row.strings[j] = text(f)
                case .id, .ignore:
                    break
                }
            }
        }
    }

    private func markMissing(_ j: Int, _ why: String, _ row: inout ParsedRow) {
        if dropOnMissing[j] {
            row.dropReason = row.dropReason ?? "\(why) \(columns[j].name)"
        } else {
            row.missingColumns.append(j)
        }
    }
}

/// The field without leading/trailing spaces and tabs.
@inline(__always)
func trimmed(_ b: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8> {
    var lo = 0, hi = b.count
    while lo < hi && (b[lo] == 0x20 || b[lo] == 0x09) { lo += 1 }
    while hi > lo && (b[hi - 1] == 0x20 || b[hi - 1] == 0x09) { hi -= 1 }
    return UnsafeBufferPointer(rebasing: b[lo..<hi])
}

@inline(__always) func text(_ b: UnsafeBufferPointer<UInt8>) -> String { String(decoding: b, as: UTF8.self) }

/// Parses the whole field as a Double with strtod (C locale rules: decimal point, exponents,
/// inf, nan); nil unless every byte is consumed.
///
/// Plain decimals with at most 15 significant digits and a power of ten within ±22 take
/// Clinger's fast path: mantissa and 10^k are exact doubles, so one multiply or divide gives
/// the correctly rounded result — the same bits strtod returns, several times faster.
@inline(__always)
public func parseDouble(_ b: UnsafeBufferPointer<UInt8>) -> Double? {
    if let v = fastDecimal(b) { return v }
    return strtodWhole(b)
}

private let exactPowersOfTen: [Double] = (0...22).map { k in (0..<k).reduce(1.0) { acc, _ in acc * 10 } }

@inline(__always)
func fastDecimal(_ b: UnsafeBufferPointer<UInt8>) -> Double? {
    var i = 0, n = b.count
    guard n > 0 else { return nil }
    var negative = false
    if b[0] == UInt8(ascii: "-") || b[0] == UInt8(ascii: "+") { negative = b[0] == UInt8(ascii: "-"); i = 1 }
    var mantissa: UInt64 = 0, digits = 0, scale = 0
    var sawDigit = false, sawPoint = false
    while i < n {
        let c = b[i]
        if c >= 48 && c <= 57 {
            sawDigit = true
            if mantissa == 0 && c == 48 { if sawPoint { scale -= 1 }; i += 1; continue }
            guard digits < 15 else { return nil }
            mantissa = mantissa * 10 + UInt64(c - 48)
            digits += 1
            if sawPoint { scale -= 1 }
        } else if c == UInt8(ascii: ".") && !sawPoint {
            sawPoint = true
        } else if (c == UInt8(ascii: "e") || c == UInt8(ascii: "E")) && sawDigit {
            var j = i + 1, eNeg = false, e = 0, eDigits = 0
            if j < n && (b[j] == UInt8(ascii: "-") || b[j] == UInt8(ascii: "+")) {
                eNeg = b[j] == UInt8(ascii: "-"); j += 1
            }
            while j < n && b[j] >= 48 && b[j] <= 57 && eDigits < 4 { e = e * 10 + Int(b[j] - 48); j += 1; eDigits += 1 }
            guard eDigits > 0, j == n else { return nil }
            scale += eNeg ? -e : e
            n = i
            break
        } else {
            return nil
        }
        i += 1
    }
    guard sawDigit, abs(scale) <= 22 else { return nil }
    var v = Double(mantissa)
    v = scale < 0 ? v / exactPowersOfTen[-scale] : v * exactPowersOfTen[scale]
    return negative ? -v : v
}

public func strtodWhole(_ b: UnsafeBufferPointer<UInt8>) -> Double? {
    guard !b.isEmpty, b.count < 64 else { return b.isEmpty ? nil : Double(text(b)) }
    return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buf -> Double? in
        for i in 0..<b.count { buf[i] = CChar(bitPattern: b[i]) }
        buf[b.count] = 0
        var end: UnsafeMutablePointer<CChar>?
        let v = strtod(buf.baseAddress!, &end)
        return end == buf.baseAddress! + b.count ? v : nil
    }
}

/// Encodes rows into the output feature vector (and integer columns), with the manifest's
/// statistics: impute, clip, standardize, one-hot or id. The columns are compiled once into a
/// flat list of operations with their constants. The core works on numbers (NaN = missing) and
/// final category ids (−1 = missing) indexed by column, which both the string path (inference,
/// `encode(_ row:)`) and the prepare spill path (ids already resolved) feed.
public struct RowEncoder {
    public let columns: [ColumnInfo]
    public let featureCount: Int
    public let categoricalCount: Int
    /// Per column: category value → id (1-based; 0 is unknown). Empty for other columns.
    public let ids: [[String: Int]]

    enum Op {
        /// v = clamp(value ?? impute, lo, hi); out = (v − shift) · scale
        case numeric(column: Int, offset: Int, impute: Double, lo: Double, hi: Double, shift: Double, scale: Double)
        case onehot(column: Int, offset: Int, width: Int, missingId: Int)
        case ids(column: Int, index: Int, missingId: Int)
    }
    let ops: [Op]

    public init(columns: [ColumnInfo]) {
        self.columns = columns
        featureCount = columns.compactMap { c in c.offset.map { $0 + (c.width ?? 0) } }.max() ?? 0
        categoricalCount = columns.compactMap { $0.categoricalIndex }.count
        let ids = columns.map { c in
            Dictionary(uniqueKeysWithValues: (c.vocabulary ?? []).enumerated().map { ($1, $0 + 1) })
        }
        self.ids = ids
        ops = columns.enumerated().compactMap { j, c -> Op? in
            guard c.role == "feature" else { return nil }
            switch c.schema.type {
            case .numeric:
                let lo = c.clipRange?[0] ?? -Double.infinity, hi = c.clipRange?[1] ?? Double.infinity
                var shift = 0.0, scale = 1.0
                switch c.schema.transform {
                case "zscore":
                    shift = c.mean ?? 0
                    scale = (c.std ?? 0) > 0 ? 1 / c.std! : 1
                case "minmax":
                    let a = c.clipRange?[0] ?? c.min ?? 0, b = c.clipRange?[1] ?? c.max ?? 0
                    shift = a
                    scale = b > a ? 1 / (b - a) : 0
                default: break
                }
                return .numeric(
                    column: j, offset: c.offset ?? 0, impute: c.imputeNumber ?? 0, lo: lo, hi: hi, shift: shift,
                    scale: scale)
            case .categorical:
                let missingId: Int
                switch c.schema.missing {
                case .mostFrequent, .constant: missingId = c.imputeCategory.flatMap { ids[j][$0] } ?? 0
                default: missingId = 0
                }
                if let ci = c.categoricalIndex { return .ids(column: j, index: ci, missingId: missingId) }
                return .onehot(column: j, offset: c.offset ?? 0, width: c.width ?? 1, missingId: missingId)
            case .id, .ignore:
                return nil
            }
        }
    }

    /// The core: numbers (NaN = missing) and final category ids (−1 = missing), both indexed
    /// by column → features (featureCount) and categorical ids (categoricalCount).
    @inline(__always)
    public func encode(
        numbers: UnsafePointer<Double>, ids categoryIds: UnsafePointer<Int32>,
        features: UnsafeMutablePointer<Float>, categorical: UnsafeMutablePointer<Int64>
    ) {
        for op in ops {
            switch op {
            case let .numeric(j, offset, impute, lo, hi, shift, scale):
                let raw = numbers[j]
                let v = Swift.min(Swift.max(raw.isNaN ? impute : raw, lo), hi)
                features[offset] = Float((v - shift) * scale)
            case let .onehot(j, offset, width, missingId):
                let k = categoryIds[j] < 0 ? missingId : Int(categoryIds[j])
                for i in 0..<width { features[offset + i] = 0 }
                features[offset + k] = 1
            case let .ids(j, index, missingId):
                categorical[index] = Int64(categoryIds[j] < 0 ? missingId : Int(categoryIds[j]))
            }
        }
    }

    /// Encodes a parsed row (strings looked up in the vocabularies; unseen and rare values get
    /// id 0, the unknown bucket).
    public func encode(
        _ row: ParsedRow, features: UnsafeMutablePointer<Float>, categorical: UnsafeMutablePointer<Int64>
    ) {
        let n = columns.count
        withUnsafeTemporaryAllocation(of: Double.self, capacity: n) { nums in
            withUnsafeTemporaryAllocation(of: Int32.self, capacity: n) { cats in
                for j in 0..<n {
                    nums[j] = row.numbers[j] ?? .nan
                    cats[j] = row.strings[j].map { Int32(ids[j][$0] ?? 0) } ?? -1
                }
                encode(numbers: nums.baseAddress!, ids: cats.baseAddress!, features: features, categorical: categorical)
            }
        }
    }
}
