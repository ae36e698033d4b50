import CortadoCore
import CortadoData
import CortadoJob
import CortadoModel
import Foundation

/// `lineage.json` of a registry version: where the model came from, recorded at push from the
/// run folder (job.json, summary.json, checkpoints, the data manifest), never typed by hand.
public struct Lineage: Codable, Equatable {
    public static let formatName = "cortado-lineage"
    public var format = Lineage.formatName
    public var formatVersion = 1
    public var name: String
    public var version: Int
    public var pushedAt: String
    public var pushedBy: String
    public var runDir: String
    public var data: DataRecord
    /// The resolved job spec (job.json as the trainer wrote it), as a JSON object.
    public var jobSpec: JSONValue
    public var cortadoVersion: String
    /// The commit of the git checkout the run folder sits in, read at push time (nil when
    /// the run folder is not inside a checkout or git is missing).
    public var gitCommit: String?
    /// Whether that checkout had uncommitted changes to tracked files at push time.
    public var gitDirty: Bool?
    public var checkpoint: FileRecord?
    public var worldSize: Int?
    public var steps: Int?
    public var wallSeconds: Double?
    /// `init_from` of a fine-tune; a registry version when the file lies in a registry.
    public var parent: ModelRecord?
    /// `teacher.model` of a distillation.
    public var teacher: ModelRecord?
    /// The variant copied to model.cmodel, and the rule that chose it.
    public var deployed: String
    public var deploymentRule: String
    /// SHA-256 of every file of the version folder except lineage.json itself.
    public var files: [String: String]
    /// SHA-256 over the sorted "name sha256" lines of `files`: the version's content hash.
    public var contentSHA256: String

    public struct DataRecord: Codable, Equatable {
        public var manifest: String
        public var sha256: String?
        public var name: String?
        public var splits: [String: Int]?
    }

    public struct FileRecord: Codable, Equatable {
        public var path: String
        public var sha256: String
        public var step: Int?
    }

    /// A model another one was made from: by registry version when it is one, else by file.
    public struct ModelRecord: Codable, Equatable {
        public var path: String
        public var sha256: String?
        /// `registry://NAME/VERSION` when the file is a registry version's.
        public var ref: String?
        public var registry: String?
    }

    enum CodingKeys: String, CodingKey {
        case format, formatVersion = "format_version", name, version, pushedAt = "pushed_at", pushedBy = "pushed_by"
        case runDir = "run_dir", data, jobSpec = "job_spec", cortadoVersion = "cortado_version"
        case gitCommit = "git_commit", gitDirty = "git_dirty", checkpoint, worldSize = "world_size", steps
        case wallSeconds = "wall_sec", parent, teacher, deployed, deploymentRule = "deployment_rule", files
        case contentSHA256 = "content_sha256"
    }

    static func contentHash(_ files: [String: String]) -> String {
        SHA256.hex(Data(files.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)\n" }.joined().utf8))
    }

    /// A model a run started from or distilled from, identified by registry version if it is one.
    static func record(model path: String) -> ModelRecord {
        var r = ModelRecord(path: path, sha256: try? SHA256.hex(fileAt: path))
        if let loc = ModelReference.location(ofFile: path) {
            r.ref =
                ModelReference(
                    name: loc.name, selector: .version(loc.version),
                    file: loc.file == ModelReference.deployedFile ? nil : loc.file
                ).description
            r.registry = loc.root
        }
        return r
    }
}

/// Any JSON value, to keep a job spec as an object inside lineage.json.
public indirect enum JSONValue: Codable, Equatable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let n =
            try? c.decode(Double.self)
        {
            self = .number(n)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a =
            try? c.decode([JSONValue].self)
        {
            self = .array(a)
        } else {
            self = .object(try c.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let n):
            if n == n.rounded(), abs(n) < 1e15 { try c.encode(Int64(n)) } else { try c.encode(n) }
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }
    public var string: String? {
        if case .string(let s) = self { return s }
        return nil
    }
    public var number: Double? {
        if case .number(let n) = self { return n }
        return nil
    }
}

/// What a run folder holds, as the registry and the report read it.
public struct RunFolder {
    public let path: String
    public let jobJSON: String
    public let job: JobSpec
    /// summary.json (the --json line), nil for runs written before the trainer wrote it.
    public let summary: [String: JSONValue]?
    /// metrics.jsonl, one object per epoch.
    public let epochs: [[String: Double]]
    /// recipe → model file, e.g. "int8" → RUN/model-int8.cmodel.
    public let models: [(recipe: String, path: String)]

    public init(_ path: String) throws {
        self.path = path
        let jobPath = (path as NSString).appendingPathComponent("job.json")
        guard let data = FileManager.default.contents(atPath: jobPath) else {
            throw CortadoError.usage("\(path): not a cortado-train run folder (no job.json)")
        }
        jobJSON = String(decoding: data, as: UTF8.self)
        do { job = try JSONDecoder().decode(JobSpec.self, from: data) } catch {
            throw CortadoError.model("\(jobPath): the job spec does not decode (\(describe(error)))")
        }
        let summaryPath = (path as NSString).appendingPathComponent("summary.json")
        summary =
            FileManager.default.fileExists(atPath: summaryPath)
            ? try RegistryIO.readJSON([String: JSONValue].self, summaryPath, what: "run summary (summary.json)") : nil
        epochs = try RunFolder.metrics((path as NSString).appendingPathComponent("metrics.jsonl"))
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        models = names.filter { $0.hasPrefix("model-") && $0.hasSuffix(".cmodel") }.sorted().map {
            (String($0.dropFirst(6).dropLast(7)), (path as NSString).appendingPathComponent($0))
        }
    }

    /// metrics.jsonl: numeric fields of each line (a missing file: no epochs).
    public static func metrics(_ path: String) throws -> [[String: Double]] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        var out = [[String: Double]]()
        for (i, line) in text.split(separator: "\n").enumerated()
        where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw CortadoError.data("\(path):\(i + 1): not a JSON object")
            }
            out.append(obj.compactMapValues { ($0 as? NSNumber)?.doubleValue })
        }
        return out
    }

    public func summaryNumber(_ key: String) -> Double? { summary?[key]?.number }
    public func summaryMap(_ key: String) -> [String: Double] {
        guard case .object(let o)? = summary?[key] else { return [:] }
        return o.compactMapValues(\.number)
    }
    public func summaryLists(_ key: String) -> [String: [Double]] {
        guard case .object(let o)? = summary?[key] else { return [:] }
        return o.compactMapValues {
            if case .array(let a) = $0 { return a.compactMap(\.number) }
            return nil
        }
    }
    public func summaryList(_ key: String) -> [Double] {
        if case .array(let a)? = summary?[key] { return a.compactMap(\.number) }
        return []
    }

    /// The checkpoint the run ended with (summary.json's, else the newest in checkpoints/).
    public var checkpointPath: String? {
        if let p = summary?["checkpoint"]?.string, FileManager.default.fileExists(atPath: p) { return p }
        return (try? Checkpoint.checkpointFiles(runDir: path))?.last
    }
}
