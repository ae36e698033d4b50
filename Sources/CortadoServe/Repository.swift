import CortadoCore
import CortadoData
import CortadoInfer
import CortadoModel
import Foundation

/// How each model version runs: batching, threads, the sparse policy.
public struct ServeOptions: Sendable {
    public var maxBatch = 64
    public var maxQueueDelayMicroseconds = 0
    /// Rows queued per version at most; more gets 503 with Retry-After.
    public var queueRows = 1024
    /// Inference threads per version, each with its own model instance.
    public var threads = 1
    public var sparse = "auto"
    /// A one-row request whose batch is known to take less than this runs on the connection's
    /// event loop when the version is idle (`BatchQueue.runInline`); 0: never. It saves the
    /// hand-off to an inference thread and back (measured in Benchmarks/RESULTS.md) and holds
    /// that event loop's other connections for at most this long.
    public var inlineMicroseconds = 500
    /// Versions named here become the default at first load when the repository names none
    /// (`--default NAME=VERSION`).
    public var initialDefaults: [String: Int] = [:]
    public init() {}
}

/// A loaded, warmed-up model version that takes traffic: its batching queue and what requests
/// and responses for it look like. Immutable once built; a request that resolved it finishes on
/// it even if a reload swaps the default meanwhile.
public final class ModelVersion: @unchecked Sendable {
    public enum Kind: Sendable {
        case classifier(classes: [String])
        case recommender(users: [String]?, items: [String]?, userCount: Int, itemCount: Int)
    }
    public let name: String
    public let version: Int
    public let path: String
    public let kind: Kind
    public let precision: String
    let decoder: RequestDecoder?
    let queue: BatchQueue

    init(
        name: String, version: Int, path: String, kind: Kind, precision: String, decoder: RequestDecoder?,
        queue: BatchQueue
    ) {
        self.name = name
        self.version = version
        self.path = path
        self.kind = kind
        self.precision = precision
        self.decoder = decoder
        self.queue = queue
    }

    /// The user id of a request value: a vocabulary string, or a number when the model has none.
    func userID(_ v: JSONScalar) -> Int32? {
        guard case .recommender(let users, _, let count, _) = kind else { return nil }
        let text: String
        switch v {
        case .string(let s): text = s
        case .number(let x) where x == x.rounded() && abs(x) < 1e12: text = String(Int64(x))
        default: return nil
        }
        if let users { return users.firstIndex(of: text).map { Int32($0 + 1) } }
        guard let id = Int32(text), id > 0, Int(id) < count else { return nil }
        return id
    }

    func itemName(_ id: Int32) -> String {
        guard case .recommender(_, let items, _, _) = kind else { return String(id) }
        return items.map { $0[Int(id) - 1] } ?? String(id)
    }
}

/// One model name: its loaded versions, the default, and the versions that failed to load.
public struct ModelEntry: Sendable {
    public var name: String
    public var versions: [Int: ModelVersion] = [:]
    public var defaultVersion: Int?
    /// Version → why it failed to load (kept until it loads).
    public var failures: [Int: String] = [:]
    /// Why the default is what it is ("default file", "aliases.json champion", …).
    public var defaultReason = ""
    /// A problem with the default file or aliases, reported in the index.
    public var defaultProblem: String?
}

/// What a reload did, for the log, the metrics and the admin response.
public struct LoadEvent: Sendable {
    public var model: String
    public var version: Int?
    public var ok: Bool
    public var message: String
}

/// The model repository `DIR/NAME/VERSION/model.cmodel` and the table of what is served.
/// Reloads run one at a time; the table swaps under a lock, so a request sees either the old
/// or the new entry, never half of one.
public final class ModelRepository: @unchecked Sendable {
    public let root: String
    let options: ServeOptions
    let metrics: ServeMetrics?
    private let lock = NSLock()
    private var table = [String: ModelEntry]()
    private let reloadLock = NSLock()

    public init(root: String, options: ServeOptions, metrics: ServeMetrics?) {
        self.root = root
        self.options = options
        self.metrics = metrics
    }

    /// Model names are single path components of letters, digits, '.', '_' and '-' that do
    /// not start with '.': no name can reach outside the repository folder.
    /// Checked on the bytes (every request checks a name, some twice): all allowed characters
    /// are ASCII, so a byte count is the character count.
    public static func validName(_ name: String) -> Bool {
        validName(name.utf8)
    }

    static func validName<S: Collection>(_ utf8: S) -> Bool where S.Element == UInt8 {
        guard let first = utf8.first, first != UInt8(ascii: "."), utf8.count <= 128 else { return false }
        return utf8.allSatisfy { c in
            (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
                || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: ".")
                || c == UInt8(ascii: "_") || c == UInt8(ascii: "-")
        }
    }

    public var snapshot: [String: ModelEntry] {
        lock.lock()
        defer { lock.unlock() }
        return table
    }

    public func entry(_ name: String) -> ModelEntry? {
        lock.lock()
        defer { lock.unlock() }
        return table[name]
    }

    /// Scans the repository (all models, or one) and loads what is new: each new version is
    /// loaded (the loader verifies the file's checksum), warmed up with a batch, and only then
    /// enters the table. The default moves only when the repository says so.
    @discardableResult
    public func reload(only: String? = nil, log: (String) -> Void) -> [LoadEvent] {
        reloadLock.lock()
        defer { reloadLock.unlock() }
        var events = [LoadEvent]()
        let names: [String]
        if let only {
            names = [only]
        } else {
            let listed = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
            names =
                listed.filter { name in
                    var dir: ObjCBool = false
                    return Self.validName(name)
                        && FileManager.default.fileExists(atPath: root + "/" + name, isDirectory: &dir) && dir.boolValue
                }
                .sorted()
            // Models whose folder is gone stop being served.
            for gone in Set(snapshot.keys).subtracting(names) {
                unload(gone)
                events.append(LoadEvent(model: gone, version: nil, ok: true, message: "folder removed: unloaded"))
            }
        }
        for name in names { events += reloadModel(name) }
        for e in events {
            log(e.message)
            metrics?.loadEvent(model: e.model, ok: e.ok)
        }
        return events
    }

    /// Removes a model from the table; its queues finish what they hold, then stop.
    public func unload(_ name: String) {
        lock.lock()
        let old = table.removeValue(forKey: name)
        lock.unlock()
        if let old { for v in old.versions.values { v.queue.stop() } }
    }

    /// Stops every queue after the requests it holds (shutdown).
    public func stopAll() {
        let all = snapshot
        for e in all.values { for v in e.versions.values { v.queue.stop() } }
        for e in all.values { for v in e.versions.values { v.queue.waitStopped() } }
    }

    /// Sets the default version by writing `DIR/NAME/default` (temp file + rename), then
    /// reloads the model: the admin request's choice survives a restart.
    public func setDefault(_ name: String, version: Int, log: (String) -> Void) throws -> [LoadEvent] {
        guard FileManager.default.fileExists(atPath: "\(root)/\(name)/\(version)/model.cmodel") else {
            throw CortadoError.usage("default_version: \(root)/\(name)/\(version)/model.cmodel does not exist")
        }
        try AtomicFile.write(Data("\(version)\n".utf8), to: "\(root)/\(name)/default")
        return reload(only: name, log: log)
    }

    private func reloadModel(_ name: String) -> [LoadEvent] {
        let dir = root + "/" + name
        var entry = entry(name) ?? ModelEntry(name: name)
        let onDisk = versionsOnDisk(dir)
        if !FileManager.default.fileExists(atPath: dir) {
            unload(name)
            return [LoadEvent(model: name, version: nil, ok: false, message: "\(name): no folder \(dir)")]
        }
        var events = loadNewVersions(onDisk, name: name, dir: dir, entry: &entry)
        let previous = entry.defaultVersion
        let (chosen, reason, problem) = chooseDefault(name: name, dir: dir, entry: entry)
        if let problem, problem != entry.defaultProblem {
            events.append(
                LoadEvent(
                    model: name, version: nil, ok: false,
                    message: "\(name): \(problem); keeping version \(chosen.map(String.init) ?? "none")"))
        }
        entry.defaultProblem = problem
        entry.defaultVersion = chosen
        entry.defaultReason = reason
        if chosen != previous, let chosen {
            events.append(
                LoadEvent(
                    model: name, version: chosen, ok: true, message: "\(name): default version \(chosen) (\(reason))"))
        }
        // Versions whose folder is gone are unloaded, except the default (still serving).
        var retired = [ModelVersion]()
        for (v, mv) in entry.versions where !onDisk.contains(v) && v != chosen {
            entry.versions[v] = nil
            retired.append(mv)
            events.append(
                LoadEvent(model: name, version: v, ok: true, message: "\(name) version \(v): folder removed, unloaded"))
        }
        for v in entry.failures.keys where !onDisk.contains(v) { entry.failures[v] = nil }
        lock.lock()
        table[name] = entry
        lock.unlock()
        for mv in retired { mv.queue.stop() }
        return events
    }

    /// The version folders of `dir` that hold a model.cmodel, ascending.
    private func versionsOnDisk(_ dir: String) -> [Int] {
        var onDisk = [Int]()
        for item in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
            // Canonical positive integers only ("3", not "03" or "+3").
            if let v = Int(item), v > 0, String(v) == item,
                FileManager.default.fileExists(atPath: "\(dir)/\(item)/model.cmodel")
            {
                onDisk.append(v)
            }
        }
        return onDisk.sorted()
    }

    /// Loads (checksum, warm-up) every version on disk that is not loaded yet into `entry`;
    /// a failure is reported once per distinct reason and the version stays out.
    private func loadNewVersions(_ onDisk: [Int], name: String, dir: String, entry: inout ModelEntry) -> [LoadEvent] {
        var events = [LoadEvent]()
        var added = [Int: ModelVersion]()
        for v in onDisk where entry.versions[v] == nil {
            let path = "\(dir)/\(v)/model.cmodel"
            do {
                let mv = try load(name: name, version: v, path: path)
                added[v] = mv
                entry.failures[v] = nil
                events.append(
                    LoadEvent(
                        model: name, version: v, ok: true,
                        message: "\(name) version \(v): loaded and warmed up (\(path))"))
            } catch {
                let why = (error as? CortadoError)?.message ?? "\(error)"
                if entry.failures[v] != why {
                    events.append(
                        LoadEvent(
                            model: name, version: v, ok: false, message: "\(name) version \(v): failed to load: \(why)")
                    )
                }
                entry.failures[v] = why
            }
        }
        for (v, mv) in added { entry.versions[v] = mv }
        return events
    }

    /// The default version: the `default` file, else the aliases' champion, else what is served
    /// now, else a --default flag, else (first load only) the highest version, said in the log.
    /// Returns it, why, and a problem with the files to report.
    private func chooseDefault(name: String, dir: String, entry: ModelEntry) -> (Int?, String, String?) {
        let previous = entry.defaultVersion
        var chosen: Int?, reason = "", problem: String?
        if let text = try? String(contentsOfFile: dir + "/default", encoding: .utf8) {
            let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if let v = Int(t), v > 0 {
                if entry.versions[v] != nil {
                    chosen = v
                    reason = "default file"
                } else {
                    problem =
                        "\(dir)/default names version \(v), which is not loaded"
                        + (entry.failures[v].map { " (\($0))" } ?? "")
                }
            } else {
                problem = "\(dir)/default: '\(t.prefix(20))' is not a positive version number"
            }
        } else if let data = FileManager.default.contents(atPath: dir + "/aliases.json") {
            if let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let c = obj["champion"] {
                if let v = (c as? NSNumber)?.intValue ?? (c as? String).flatMap({ Int($0) }), entry.versions[v] != nil {
                    chosen = v
                    reason = "aliases.json champion"
                } else {
                    problem = "\(dir)/aliases.json: champion \(c) is not a loaded version"
                }
            } else if (try? JSONSerialization.jsonObject(with: data)) == nil {
                problem = "\(dir)/aliases.json: not valid JSON"
            }
        }
        if chosen == nil, let p = previous, entry.versions[p] != nil {
            chosen = p
            reason = entry.defaultReason
        }
        if chosen == nil, let v = options.initialDefaults[name], entry.versions[v] != nil {
            chosen = v
            reason = "--default flag"
        }
        if chosen == nil, let v = entry.versions.keys.max() {
            chosen = v
            reason = "highest version at first load (no default file)"
        }
        return (chosen, reason, problem)
    }

    /// Loads one version: the file (checksum verified by the loader), one engine per thread,
    /// a warm-up batch through every engine, then its queue.
    func load(name: String, version: Int, path: String) throws -> ModelVersion {
        let file = try ModelFile.load(path)
        let threads = max(1, options.threads), maxBatch = max(1, options.maxBatch)
        var engines = [BatchEngine]()
        let kind: ModelVersion.Kind
        var decoder: RequestDecoder?
        let precision = file.header.precision
        if let spec = file.header.recommender {
            var history: Interactions?
            var models = [RecommenderModel]()
            for _ in 0..<threads { models.append(try RecommenderModel(path: path, maxBatch: 1024)) }
            if let data = file.header.metadata["data"], FileManager.default.fileExists(atPath: data) {
                history = try? models[0].interactions(manifestPath: data)
            }
            for m in models {
                let e = RecommenderEngine(model: m, history: history)
                let warm = BatchJob(rows: 1, input: .users([1], k: 10))
                e.run([warm])
                guard case .topK(_, let s) = warm.output, s.allSatisfy({ $0.allSatisfy(\.isFinite) }) else {
                    throw CortadoError.model("\(path): warm-up produced non-finite scores")
                }
                engines.append(e)
            }
            kind = .recommender(
                users: models[0].userNames, items: models[0].itemNames, userCount: spec.users, itemCount: spec.items)
        } else {
            guard let policy = InferenceModel.SparsePolicy(rawValue: options.sparse) else {
                throw CortadoError.usage("--sparse: '\(options.sparse)' is not auto, always or never")
            }
            for _ in 0..<threads {
                let m = try InferenceModel(file: file, path: path, sparse: policy)
                let e = ClassifierEngine(model: m, maxBatch: maxBatch)
                // Warm-up: a full batch through this thread's instance before it takes traffic.
                let d = m.spec.inputSize
                let warm = BatchJob(rows: maxBatch, input: .features([Float](repeating: 0.5, count: maxBatch * d)))
                e.run([warm])
                guard case .classes(let p, _) = warm.output, p.allSatisfy(\.isFinite) else {
                    throw CortadoError.model("\(path): warm-up produced non-finite probabilities")
                }
                engines.append(e)
            }
            let header = file.header
            let k = header.model.outputSize
            kind = .classifier(classes: header.classes.count == k ? header.classes : (0..<k).map { "class\($0)" })
            decoder = RequestDecoder(
                inputShape: header.model.inputShape, preprocessingJSON: header.metadata["preprocessing"])
        }
        let queue = BatchQueue(
            engines: engines, maxBatch: maxBatch, maxDelayMicroseconds: options.maxQueueDelayMicroseconds,
            capacity: options.queueRows, observer: metrics?.observer(model: name, version: version),
            inlineLimitMicroseconds: options.inlineMicroseconds)
        return ModelVersion(
            name: name, version: version, path: path, kind: kind, precision: precision, decoder: decoder, queue: queue)
    }
}
