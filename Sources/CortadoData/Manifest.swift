import CortadoCore
import Foundation

/// `manifest.json`: what a prepared data folder holds, written last by `cortado prepare`.
///
/// Everything that trains or scores on the data reads this first: the schema (feature shape,
/// classes), the transforms applied, the split seed, and each file's rows and SHA-256, so a
/// trainer can reject a shard that does not match before step 0.
public struct DatasetManifest: Codable, Equatable {
    public static let currentVersion = 1
    public static let formatName = "cortado-dataset"

    public var format: String = DatasetManifest.formatName
    public var formatVersion: Int = DatasetManifest.currentVersion
    public var name: String
    public var task: String // "classification"
    public var featureShape: [Int] // per row, e.g. [1, 28, 28]; stored flattened
    public var classes: [String]
    public var splitSeed: UInt64
    public var transforms: [String]
    public var statistics: [String: Double]
    public var splits: [String: Split] // "train", "validation", "test"
    public var source: [String: String] // source file → its SHA-256
    public var createdBy: String
    /// Tabular data (`cortado prepare csv`): every column with its schema, statistics and
    /// output position; the CSV dialect; the cleaning report; the integer columns in
    /// `/categorical`.
    public var columns: [ColumnInfo]?
    public var csv: CSVDialect?
    public var cleaning: CleaningReport?
    public var categoricalColumns: [String]?
    /// Text data (`cortado prepare text`): tokenizer settings and vocabulary; the splits hold id
    /// lists (`TextShard`).
    public var text: TextVocabulary?
    /// The training split's profile (class mix, feature summaries): the reference drift
    /// reports compare new data with (`cortado feedback join`).
    public var profile: DataProfile?

    public struct Split: Codable, Equatable {
        public var rows: Int
        public var files: [ShardFile]
        public init(rows: Int, files: [ShardFile]) { self.rows = rows; self.files = files }
    }

    public struct ShardFile: Codable, Equatable {
        public var path: String // relative to the manifest's folder
        public var rows: Int
        public var sha256: String
        public init(path: String, rows: Int, sha256: String) {
            self.path = path; self.rows = rows; self.sha256 = sha256
        }
    }

    public init(
        name: String, task: String, featureShape: [Int], classes: [String], splitSeed: UInt64, transforms: [String],
        statistics: [String: Double], splits: [String: Split], source: [String: String], createdBy: String
    ) {
        self.name = name; self.task = task; self.featureShape = featureShape; self.classes = classes
        self.splitSeed = splitSeed; self.transforms = transforms; self.statistics = statistics
        self.splits = splits; self.source = source; self.createdBy = createdBy
    }

    enum CodingKeys: String, CodingKey {
        case format, formatVersion = "format_version", name, task, featureShape = "feature_shape", classes
        case splitSeed = "split_seed", transforms, statistics, splits, source, createdBy = "created_by"
        case columns, csv, cleaning, categoricalColumns = "categorical_columns"
        case text, profile
    }

    public var featureCount: Int { featureShape.reduce(1, *) }

    /// The label column, for tabular data.
    public var labelColumn: ColumnInfo? { columns?.first { $0.role == "label" } }

    /// Loads and checks format and version; errors say which command writes a correct file.
    public static func load(_ path: String) throws -> DatasetManifest {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CortadoError.data("\(path): no such manifest (run `cortado prepare` to make one)")
        }
        return try parse(data, path: path)
    }

    /// Decodes and checks manifest bytes (`path` names them in errors); the fuzzer's entry.
    public static func parse(_ data: Data, path: String) throws -> DatasetManifest {
        let m: DatasetManifest
        do { m = try JSONDecoder().decode(DatasetManifest.self, from: data) } catch {
            throw CortadoError.data("\(path): not a Cortado manifest: \(describe(error))")
        }
        guard m.format == formatName else {
            throw CortadoError.data("\(path): format is '\(m.format)', expected '\(formatName)'")
        }
        guard m.formatVersion == currentVersion else {
            throw CortadoError.data(
                "\(path): manifest format_version \(m.formatVersion) is not supported (this build reads \(currentVersion)); re-run `cortado prepare`"
            )
        }
        return m
    }

    public func split(_ name: String, manifestPath: String) throws -> Split {
        guard let s = splits[name] else {
            throw CortadoError.data(
                "\(manifestPath): no '\(name)' split (have: \(splits.keys.sorted().joined(separator: ", ")))")
        }
        return s
    }
}

/// What cleaning did, in numbers (`cortado inspect` prints it).
public struct CleaningReport: Codable, Equatable {
    public var rowsRead = 0
    public var rowsWritten: [String: Int] = [:]
    public var dropped: [String: Int] = [:] // reason → rows
    public var duplicates = 0
    public var imputed: [String: Int] = [:] // column → values imputed (all splits)
    /// How leave-last-out chose each user's held-out rows, ties included (nil: a random split).
    public var leaveLastOut: LeaveLastOutReport?
    /// Categorical column → its values seen in validation/test but never in training.
    public var unseen: [String: UnseenValues]?

    enum CodingKeys: String, CodingKey {
        case rowsRead = "rows_read", rowsWritten = "rows_written", dropped, duplicates, imputed
        case leaveLastOut = "leave_last_out", unseen
    }

    public init() {}

    public mutating func merge(_ o: CleaningReport) {
        rowsRead += o.rowsRead
        duplicates += o.duplicates
        for (k, v) in o.rowsWritten { rowsWritten[k, default: 0] += v }
        for (k, v) in o.dropped { dropped[k, default: 0] += v }
        for (k, v) in o.imputed { imputed[k, default: 0] += v }
    }
}

/// Leave-last-out in numbers: how many users there were, how many got a test row, and how many
/// had two or more rows at their latest time — whose test row the tie rule picked.
public struct LeaveLastOutReport: Codable, Equatable, CustomStringConvertible {
    public var user: String
    public var time: String
    public var ties: String // a CSVPreparer.TieRule
    public var users: Int
    public var usersWithTestRow: Int
    public var usersTiedAtLatest: Int
    /// Whether each user's second-latest row went to validation (nil: manifests written before
    /// `--no-validation`, which always held it out) or stayed in training.
    public var validationHeldOut: Bool?

    enum CodingKeys: String, CodingKey {
        case user, time, ties, users, usersWithTestRow = "users_with_test_row"
        case usersTiedAtLatest = "users_tied_at_latest", validationHeldOut = "validation_held_out"
    }

    public var description: String {
        let rule = CSVPreparer.TieRule(rawValue: ties)?.explanation ?? ties
        return
            "leave-last-out by \(user) and \(time): \(users) users, \(usersWithTestRow) with a test row; \(usersTiedAtLatest) had 2+ rows at their latest time, tie broken by \(rule) (--ties \(ties))"
            + (validationHeldOut == false
                ? "; no validation split: second-latest rows stay in training (--no-validation)" : "")
    }
}

/// Values of a categorical column that only validation or test hold: they encode as unknown.
public struct UnseenValues: Codable, Equatable {
    public var values = 0
    public var validationRows = 0
    public var testRows = 0
    enum CodingKeys: String, CodingKey {
        case values, validationRows = "validation_rows", testRows = "test_rows"
    }
}

/// One line on the values only validation/test hold, or nil when there are none.
public func describeUnseen(_ unseen: [String: UnseenValues]) -> String? {
    let parts = unseen.sorted { $0.key < $1.key }.map { name, u in
        u.values == 0
            ? "\(name) none"
            : "\(name) \(u.values) value(s) in \(u.validationRows) validation and \(u.testRows) test rows"
    }
    return "unseen in training (encoded as unknown, id 0): " + parts.joined(separator: "; ")
}

/// What a model trained on tabular data carries from its manifest to read raw rows.
public struct Preprocessing: Codable {
    public var columns: [ColumnInfo]
    public var csv: CSVDialect

    public init(columns: [ColumnInfo], csv: CSVDialect) {
        self.columns = columns
        self.csv = csv
    }

    /// The `preprocessing` metadata value a model file of data prepared from CSV carries
    /// (its columns' transforms and dialect, as JSON); nil for data without them (IDX).
    public static func metadata(of manifest: DatasetManifest) throws -> String? {
        guard let columns = manifest.columns, let csv = manifest.csv else { return nil }
        return String(decoding: try stableJSON(Preprocessing(columns: columns, csv: csv), pretty: false), as: UTF8.self)
    }
}
