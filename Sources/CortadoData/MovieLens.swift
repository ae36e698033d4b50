import CortadoCore
import Foundation
import ZIPFoundation

/// `cortado prepare movielens`: the real MovieLens-100k (943 users, 1 682 items, 100 000
/// ratings), read from the RecBole wheel that `cluster/install-deps.sh` downloads (a wheel is a
/// zip; it is read in place, RecBole is not installed) or from a file — RecBole's `.inter`
/// (typed header `user_id:token item_id:token rating:float timestamp:float`) or GroupLens's
/// headerless `u.data`. Both hold the same rows in the same order.
///
/// The rows go, in file order, to a headerless u.data-style file in a scratch folder, which
/// `CSVPreparer` prepares as `jobs/ratings-schema.yaml` says: users and items → embedding ids,
/// rating the regression target, the time (Unix seconds) a numeric feature for the time-aware
/// biases (`TimeBias`), each user's latest rating → test and the one before →
/// validation, ties broken by `ties` and reported.
public struct MovieLensPreparer {
    /// Where the ratings sit inside the wheel.
    public static let wheelEntry = "recbole/dataset_example/ml-100k/ml-100k.inter"
    public static let interHeader = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
    /// The schema of `jobs/ratings-schema.yaml`, for the u.data column order.
    public static let schema = """
        columns:
          - {name: c0, type: categorical, encoding: ids, min_count: 1}
          - {name: c1, type: categorical, encoding: ids, min_count: 1}
          - {name: c2, type: numeric, transform: none}
          - {name: c3, type: numeric, transform: none}

        """

    public var source: String
    public var out: String
    public var ties = CSVPreparer.TieRule.fileOrder
    /// False: no validation split, the second-latest rating stays in training (the final fit).
    public var holdOutValidation = true
    /// Only the first N ratings of the file (tests on a slice of the real data).
    public var limit: Int?
    public var overwrite = false

    public init(source: String, out: String) {
        self.source = source
        self.out = out
    }

    public func run(log: (String) -> Void = { _ in }) throws -> DatasetManifest {
        if let limit, limit < 3 { throw CortadoError.usage("--limit: needs at least 3 ratings, got \(limit)") }
        let text = try Self.ratingsText(source: source)
        let rows = try Self.uData(text, origin: source, limit: limit)
        let scratch = NSTemporaryDirectory() + "cortado-movielens-\(getpid())-\(UInt64(monotonicSeconds() * 1e6))"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let data = scratch + "/ml-100k.data", schema = scratch + "/schema.yaml"
        try Data(rows.text.utf8).write(to: URL(fileURLWithPath: data))
        try Data(Self.schema.utf8).write(to: URL(fileURLWithPath: schema))
        log(
            "\(source): \(rows.count) ratings\(limit.map { " (the first \($0))" } ?? "") → user c0, item c1, rating c2, time c3"
        )

        var p = CSVPreparer(inputs: [data], out: out, label: "c2")
        p.task = "regression"
        p.delimiter = UInt8(ascii: "\t")
        p.header = false
        p.schemaPath = schema
        p.leaveLastOut = ("c0", "c3")
        p.ties = ties
        p.holdOutValidation = holdOutValidation
        p.overwrite = overwrite
        p.datasetName = "ml-100k"
        p.createdBy = "cortado prepare movielens"
        // The scratch file's checksum is recorded too (it is the prepared input); the source's
        // is the durable one.
        p.provenance = [(source as NSString).lastPathComponent: try SHA256.hex(fileAt: source)]
        // The schema is fixed here, so its echo (meant for editing) is left out.
        let schemaEcho = ["schema (", "missing_values:", "columns:", "  - "]
        return try p.run(log: { line in if !schemaEcho.contains(where: line.hasPrefix) { log(line) } })
    }

    /// The ratings text: the wheel's `.inter` entry, or the file itself.
    public static func ratingsText(source: String) throws -> String {
        guard FileManager.default.fileExists(atPath: source) else {
            throw CortadoError.io(
                "\(source): no such file (cluster/install-deps.sh downloads the RecBole wheel that holds MovieLens-100k)"
            )
        }
        guard source.hasSuffix(".whl") || source.hasSuffix(".zip") else {
            guard let d = FileManager.default.contents(atPath: source) else {
                throw CortadoError.io("\(source): cannot read")
            }
            return String(decoding: d, as: UTF8.self)
        }
        let archive: Archive
        do { archive = try Archive(url: URL(fileURLWithPath: source), accessMode: .read) } catch {
            throw CortadoError.data("\(source): not a readable zip/wheel (\(error))")
        }
        guard let entry = archive[wheelEntry] else {
            throw CortadoError.data(
                "\(source): has no \(wheelEntry) (expected the recbole==1.2.1 wheel; cluster/install-deps.sh fetches it)"
            )
        }
        var bytes = Data(capacity: Int(entry.uncompressedSize))
        do { _ = try archive.extract(entry) { bytes.append($0) } } catch {
            throw CortadoError.data("\(source): \(wheelEntry): cannot extract (\(error))")
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Checks the rows (4 tab-separated fields, integer ids, numeric rating and time) and
    /// returns them headerless, in file order; `.inter`'s typed header is checked and dropped.
    public static func uData(_ text: String, origin: String, limit: Int?) throws -> (text: String, count: Int) {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: true)[...]
        guard let first = lines.first else { throw CortadoError.data("\(origin): no ratings") }
        var lineNumber = 1
        if first.split(separator: "\t").first.map({ Int($0) == nil }) ?? true {
            let header = first.split(separator: "\t").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            guard header == interHeader else {
                throw CortadoError.data(
                    "\(origin):1: header \(header.joined(separator: " ")) is not \(interHeader.joined(separator: " "))")
            }
            lines = lines.dropFirst()
            lineNumber = 2
        }
        var out = "", count = 0
        for line in lines {
            if let limit, count >= limit { break }
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map {
                $0.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            guard f.count == 4, Int(f[0]) != nil, Int(f[1]) != nil, Double(f[2]) != nil, Double(f[3]) != nil else {
                throw CortadoError.data(
                    "\(origin):\(lineNumber): expected user, item, rating, time (tab-separated numbers), got '\(line.prefix(80))'"
                )
            }
            out += f.joined(separator: "\t") + "\n"
            count += 1
            lineNumber += 1
        }
        guard count > 0 else { throw CortadoError.data("\(origin): no ratings") }
        return (out, count)
    }
}
