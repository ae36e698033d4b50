import CortadoCore
import CortadoData
import CortadoJob
import CortadoModel
import Foundation

/// A model registry over a plain folder (docs/registry.md), so that it can live on a cluster's
/// shared file system and be served directly (`cortado-infer serve --models REGISTRY`):
///
///     REGISTRY/NAME/VERSION/            1, 2, … immutable once published
///         model.cmodel                  the deployment variant (`Evaluation.deployment`)
///         model-<recipe>.cmodel         every variant the run emitted
///         card.md  lineage.json  metrics.json
///     REGISTRY/NAME/aliases.json        {"champion": 3, "candidate": 4}
///     REGISTRY/NAME/alias-history.jsonl append-only: time, user, alias, from, to, reason
///     REGISTRY/NAME/.lock               flock'ed by every writer of NAME
///
/// A push assembles the version in `NAME/.tmp-*` (every file fsynced), then, holding the lock,
/// renames it to the next free number: a reader never sees a half-written version and two
/// concurrent pushes never get the same number.
public struct Registry {
    public let root: String

    public init(root: String) { self.root = root }

    public func modelDir(_ name: String) -> String { (root as NSString).appendingPathComponent(name) }
    public func versionDir(_ name: String, _ v: Int) -> String {
        (modelDir(name) as NSString).appendingPathComponent(String(v))
    }

    public struct AliasEvent: Codable, Equatable {
        public var time: String
        public var user: String
        public var alias: String
        public var from: Int?
        public var to: Int
        public var reason: String
        /// "set" or "rollback" (rollback undoes the latest set that is still in effect).
        public var action: String
    }

    // MARK: push

    public struct PushOptions {
        public var alias: String?
        /// The data manifest to measure on (default: the job spec's `data`).
        public var data: String?
        public var license: String?
        public var intendedUse: String?
        public var reason: String?
        public init() {}
    }

    /// Publishes a run folder as the next version of `name`; returns the version number.
    @discardableResult
    public func push(
        runDir: String, name: String, options: PushOptions = PushOptions(), log: (String) -> Void = { _ in }
    )
        throws -> Int
    {
        guard ModelReference.isValidName(name) else {
            throw CortadoError.usage("--name: '\(name)' is not a model name (letters, digits, '-', '_', '.')")
        }
        if let a = options.alias, !ModelReference.isValidName(a) {
            throw CortadoError.usage("--alias: '\(a)' is not an alias name (letters, digits, '-', '_', '.')")
        }
        let run = try RunFolder(runDir)
        guard !run.models.isEmpty else {
            throw CortadoError.usage("\(runDir): no model-<recipe>.cmodel files (emit: in the job spec writes them)")
        }
        // Every model is loaded (size, offsets, SHA-256) before anything is copied.
        for m in run.models { _ = try ModelFile.load(m.path) }
        let manifestPath = options.data ?? run.job.data
        let haveData = FileManager.default.fileExists(atPath: manifestPath)
        var notMeasured: String?
        if !haveData {
            notMeasured = "the data manifest \(manifestPath) was not found at push (pass --data)"
            log("warning: \(notMeasured!): variants are not measured")
        }
        var variants = [VariantMetrics]()
        for m in run.models {
            let row = try Evaluation.variant(
                recipe: m.recipe, path: m.path, manifestPath: haveData ? manifestPath : nil)
            log(
                "  \(m.recipe): \(row.bytes) bytes"
                    + (row.accuracy.map { String(format: ", accuracy %.4f", $0) } ?? "")
                    + (row.rmse.map { String(format: ", RMSE %.4f", $0) } ?? "")
                    + (row.latencyMsP50.map { String(format: ", batch-1 p50 %.3f ms", $0) } ?? ""))
            variants.append(row)
        }
        let deployed = Evaluation.deployment(variants)!
        let deployedPath = run.models.first { $0.recipe == deployed.recipe }!.path
        let isRecommender = try ModelFile.load(deployedPath).header.recommender != nil
        var evaluation: ClassifierEvaluation?
        if haveData, !isRecommender {
            let reference = run.models.first { $0.recipe == "fp32" }?.path ?? deployedPath
            evaluation = try Evaluation.classifier(model: reference, manifestPath: manifestPath)
        }
        let manifest = haveData ? try? DatasetManifest.load(manifestPath) : nil
        let task = isRecommender ? "recommendation" : (manifest?.task ?? "classification")
        let metrics = VersionMetrics(
            task: task, validation: run.summaryMap("validation"), test: run.summaryMap("test"), variants: variants,
            deployed: deployed.recipe, evaluation: evaluation, notMeasured: notMeasured,
            samplesPerSecond: run.summaryNumber("samples_per_sec"), wallSeconds: run.summaryNumber("wall_sec"),
            peakRSSMiB: run.summaryList("peak_rss_mib"), stepMillisecondsByRank: run.summaryLists("step_ms_by_rank"),
            history: run.epochs)

        // Assemble in a temporary folder inside the model's folder (same file system: rename).
        let dir = modelDir(name)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let tmp = (dir as NSString).appendingPathComponent(".tmp-\(getpid())-\(UInt64.random(in: 0...UInt64.max))")
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: false)
        var published = false
        defer { if !published { try? FileManager.default.removeItem(atPath: tmp) } }
        var files = [String: String]()
        for m in run.models {
            let file = (m.path as NSString).lastPathComponent
            files[file] = try RegistryIO.copy(m.path, to: (tmp as NSString).appendingPathComponent(file))
        }
        files[ModelReference.deployedFile] = try RegistryIO.copy(
            deployedPath, to: (tmp as NSString).appendingPathComponent(ModelReference.deployedFile))
        let metricsData = try stableJSON(metrics, pretty: true)
        try RegistryIO.write(metricsData, to: (tmp as NSString).appendingPathComponent("metrics.json"))
        files["metrics.json"] = SHA256.hex(metricsData)

        let lineage = try makeLineage(
            run: run, name: name, manifestPath: manifestPath, manifest: manifest, deployed: deployed.recipe)
        // The version number is known only under the lock; card and lineage name it, so they
        // are written there (small files), then the folder is renamed.
        let version = try RegistryIO.withLock(dir) { () throws -> Int in
            let v = (RegistryIO.versions(in: dir).last ?? 0) + 1
            var lin = lineage
            lin.version = v
            let card = ModelCard.render(
                name: name, version: v, run: run, lineage: lin, metrics: metrics, manifest: manifest,
                license: options.license, intendedUse: options.intendedUse)
            let cardData = Data(card.utf8)
            try RegistryIO.write(cardData, to: (tmp as NSString).appendingPathComponent("card.md"))
            var all = files
            all["card.md"] = SHA256.hex(cardData)
            lin.files = all
            lin.contentSHA256 = Lineage.contentHash(all)
            try RegistryIO.write(
                try stableJSON(lin, pretty: true), to: (tmp as NSString).appendingPathComponent("lineage.json"))
            // Published files are read-only: versions are immutable.
            for f in (try FileManager.default.contentsOfDirectory(atPath: tmp)) {
                chmod((tmp as NSString).appendingPathComponent(f), 0o444)
            }
            try RegistryIO.fsync(tmp)
            let final = versionDir(name, v)
            guard rename(tmp, final) == 0 else {
                throw CortadoError.io(
                    "\(final): cannot publish (rename from \(tmp)): \(String(cString: strerror(errno)))")
            }
            published = true
            try RegistryIO.fsync(dir)
            if let a = options.alias {
                try setAliasLocked(
                    name: name, alias: a, version: v, reason: options.reason ?? "push of \(runDir)", action: "set")
            }
            return v
        }
        log("pushed \(runDir) as \(name)/\(version) (deployed: \(deployed.recipe)) → \(versionDir(name, version))")
        return version
    }

    func makeLineage(run: RunFolder, name: String, manifestPath: String, manifest: DatasetManifest?, deployed: String)
        throws -> Lineage
    {
        let spec: JSONValue = try JSONDecoder().decode(JSONValue.self, from: Data(run.jobJSON.utf8))
        let git = RegistryIO.gitCommit(run.path)
        var checkpoint: Lineage.FileRecord?
        if let ck = run.checkpointPath {
            checkpoint = Lineage.FileRecord(
                path: ck, sha256: try SHA256.hex(fileAt: ck), step: (try? Checkpoint.read(ck))?.step)
        }
        let metaWorld = run.models.first.flatMap { try? ModelFile.load($0.path).header.metadata["world_size"] }
        return Lineage(
            name: name, version: 0, pushedAt: RegistryIO.now(), pushedBy: RegistryIO.user(),
            runDir: URL(fileURLWithPath: run.path).standardizedFileURL.path,
            data: Lineage.DataRecord(
                manifest: manifestPath, sha256: try? SHA256.hex(fileAt: manifestPath), name: manifest?.name,
                splits: manifest?.splits.mapValues(\.rows)),
            jobSpec: spec, cortadoVersion: cortadoVersion, gitCommit: git?.commit, gitDirty: git?.dirty,
            checkpoint: checkpoint,
            worldSize: run.summaryNumber("world_size").map { Int($0) } ?? metaWorld.flatMap { Int($0) },
            steps: run.summaryNumber("steps").map { Int($0) } ?? checkpoint?.step,
            wallSeconds: run.summaryNumber("wall_sec"),
            parent: run.job.initFrom.map(Lineage.record(model:)),
            teacher: run.job.teacher.map { Lineage.record(model: $0.model) },
            deployed: deployed, deploymentRule: Evaluation.deploymentRule, files: [:], contentSHA256: "")
    }

    // MARK: reading

    /// The model names in the registry.
    public func names() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).filter {
            ModelReference.isValidName($0) && !RegistryIO.versions(in: modelDir($0)).isEmpty
        }.sorted()
    }

    public func versions(_ name: String) -> [Int] { RegistryIO.versions(in: modelDir(name)) }

    public func aliases(_ name: String) throws -> [String: Int] { try ModelReference.aliases(root: root, name: name) }

    public func history(_ name: String) throws -> [AliasEvent] {
        let path = (modelDir(name) as NSString).appendingPathComponent("alias-history.jsonl")
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return try text.split(separator: "\n").enumerated().map { i, line in
            do { return try JSONDecoder().decode(AliasEvent.self, from: Data(line.utf8)) } catch {
                throw CortadoError.model("\(path):\(i + 1): not an alias event (\(describe(error)))")
            }
        }
    }

    /// `NAME`, `NAME@ALIAS`, `NAME/VERSION` or a full `registry://` reference → (name, version).
    public func resolve(_ text: String) throws -> (name: String, version: Int) {
        let ref = try ModelReference.parse(ModelReference.isReference(text) ? text : ModelReference.scheme + text)
        let v = try ref.version(root: root)
        guard FileManager.default.fileExists(atPath: versionDir(ref.name, v)) else {
            throw CortadoError.usage("\(ref): model '\(ref.name)' has no version \(v) in \(root)")
        }
        return (ref.name, v)
    }

    public func lineage(_ name: String, _ v: Int) throws -> Lineage {
        try RegistryIO.readJSON(
            Lineage.self, (versionDir(name, v) as NSString).appendingPathComponent("lineage.json"), what: "lineage.json"
        )
    }

    public func metrics(_ name: String, _ v: Int) throws -> VersionMetrics {
        try RegistryIO.readJSON(
            VersionMetrics.self, (versionDir(name, v) as NSString).appendingPathComponent("metrics.json"),
            what: "metrics.json")
    }

    /// The chain of models a version came from: itself, its parent (`init_from`) or teacher,
    /// theirs, … as far as they are registry versions (a file outside a registry ends it).
    public func chain(_ name: String, _ v: Int) throws -> [(
        label: String, lineage: Lineage?, record: Lineage.ModelRecord?
    )] {
        var out = [(label: String, lineage: Lineage?, record: Lineage.ModelRecord?)]()
        var seen = Set<String>()
        var next: (Registry, String, Int, String)? = (self, name, v, "registry://\(name)/\(v)")
        while let current = next {
            let (reg, n, ver, label) = current
            if seen.contains(label) || out.count >= 64 { break }
            seen.insert(label)
            let lin = try reg.lineage(n, ver)
            out.append((label, lin, nil))
            next = nil
            for (kind, rec) in [("parent", lin.parent), ("teacher", lin.teacher)] {
                guard let rec else { continue }
                if let ref = rec.ref, let r = try? ModelReference.parse(ref), case .version(let pv) = r.selector {
                    let parentRegistry = Registry(root: rec.registry ?? reg.root)
                    if FileManager.default.fileExists(atPath: parentRegistry.versionDir(r.name, pv)) {
                        if next == nil { next = (parentRegistry, r.name, pv, "registry://\(r.name)/\(pv)") }
                        continue
                    }
                }
                out.append(("\(kind) (file, outside the registry): \(rec.path)", nil, rec))
            }
        }
        return out
    }

    // MARK: aliases

    /// Points `alias` at `version` (which must exist), recording the change.
    public func setAlias(name: String, alias: String, version: Int, reason: String?) throws {
        guard ModelReference.isValidName(alias) else {
            throw CortadoError.usage("'\(alias)' is not an alias name (letters, digits, '-', '_', '.')")
        }
        guard FileManager.default.fileExists(atPath: versionDir(name, version)) else {
            throw CortadoError.usage("model '\(name)' has no version \(version) in \(root)")
        }
        try RegistryIO.withLock(modelDir(name)) {
            try setAliasLocked(name: name, alias: alias, version: version, reason: reason ?? "", action: "set")
        }
    }

    /// Moves `alias` back to the version it held before its latest `set` still in effect.
    @discardableResult
    public func rollback(name: String, alias: String, reason: String?) throws -> (from: Int, to: Int) {
        guard FileManager.default.fileExists(atPath: modelDir(name)) else {
            throw CortadoError.usage("no model '\(name)' in \(root)")
        }
        return try RegistryIO.withLock(modelDir(name)) {
            // Replay: a set pushes, a rollback pops; the stack's top is the alias's value.
            var stack = [Int]()
            for e in try history(name) where e.alias == alias {
                if e.action == "rollback" { _ = stack.popLast() } else { stack.append(e.to) }
            }
            guard let current = try aliases(name)[alias] else {
                throw CortadoError.usage("model '\(name)' has no alias '\(alias)'")
            }
            guard stack.count >= 2, stack.last == current else {
                throw CortadoError.usage(
                    "\(name)@\(alias) (version \(current)) has no earlier version in alias-history.jsonl to roll back to"
                )
            }
            let to = stack[stack.count - 2]
            try setAliasLocked(name: name, alias: alias, version: to, reason: reason ?? "rollback", action: "rollback")
            return (current, to)
        }
    }

    /// Caller holds the lock: rewrites aliases.json atomically, then appends the event.
    func setAliasLocked(name: String, alias: String, version: Int, reason: String, action: String) throws {
        var map = try aliases(name)
        let from = map[alias]
        map[alias] = version
        let dir = modelDir(name)
        try AtomicFile.write(
            try stableJSON(map, pretty: true), to: (dir as NSString).appendingPathComponent("aliases.json"))
        let event = AliasEvent(
            time: RegistryIO.now(), user: RegistryIO.user(), alias: alias, from: from, to: version, reason: reason,
            action: action)
        var line = try stableJSON(event, pretty: false)
        line.append(UInt8(ascii: "\n"))
        let path = (dir as NSString).appendingPathComponent("alias-history.jsonl")
        guard
            let h = FileHandle(forUpdatingAtPath: path)
                ?? { () -> FileHandle? in
                    _ = FileManager.default.createFile(atPath: path, contents: nil) // a nil handle below reports it
                    return FileHandle(forUpdatingAtPath: path)
                }()
        else { throw CortadoError.io("\(path): cannot open for appending") }
        defer { try? h.close() }
        h.seekToEndOfFile()
        h.write(line)
        try h.synchronize()
    }

    // MARK: verify, export

    /// Re-checks versions (all, or one model's, or one version): every file against the
    /// SHA-256 in lineage.json, every model file loads (its own checksum), aliases point at
    /// versions. Returns one line per problem.
    public func verify(_ only: String? = nil) throws -> (checked: Int, problems: [String]) {
        var targets = [(String, Int)]()
        if let only {
            if only.contains("@") || only.contains("/") {
                let r = try resolve(only)
                targets = [(r.name, r.version)]
            } else {
                guard !versions(only).isEmpty else { throw CortadoError.usage("no model '\(only)' in \(root)") }
                targets = versions(only).map { (only, $0) }
            }
        } else {
            for n in names() { targets += versions(n).map { (n, $0) } }
        }
        var problems = [String]()
        for (name, v) in targets {
            let dir = versionDir(name, v)
            let lin: Lineage
            do { lin = try lineage(name, v) } catch let e as CortadoError {
                problems.append(e.message); continue
            }
            let present = Set((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [])
            for (file, sha) in lin.files.sorted(by: { $0.key < $1.key }) {
                let path = (dir as NSString).appendingPathComponent(file)
                guard present.contains(file) else { problems.append("\(path): missing"); continue }
                let actual = (try? SHA256.hex(fileAt: path)) ?? "unreadable"
                if actual != sha {
                    problems.append(
                        "\(path): SHA-256 \(actual.prefix(16))… does not match lineage.json's \(sha.prefix(16))…")
                    continue
                }
                if file.hasSuffix(".cmodel") {
                    do { _ = try ModelFile.load(path) } catch let e as CortadoError { problems.append(e.message) }
                }
            }
            for extra in present.subtracting(lin.files.keys).subtracting(["lineage.json"]).sorted() {
                problems.append("\((dir as NSString).appendingPathComponent(extra)): not recorded in lineage.json")
            }
            if Lineage.contentHash(lin.files) != lin.contentSHA256 {
                problems.append("\(dir)/lineage.json: content_sha256 does not match its file list")
            }
        }
        let models = Set(targets.map(\.0)).sorted()
        for name in models {
            for (a, v) in try aliases(name) where !FileManager.default.fileExists(atPath: versionDir(name, v)) {
                problems.append("\(modelDir(name))/aliases.json: '\(a)' points at version \(v), which does not exist")
            }
        }
        return (targets.count, problems)
    }

    /// Copies version(s) into `out` as a model repository (`out/NAME/VERSION/…` and
    /// `out/NAME/aliases.json` with `champion` → the exported version), verified first.
    public func export(_ text: String, to out: String) throws -> String {
        let (name, v) = try resolve(text)
        let check = try verify("\(name)/\(v)")
        guard check.problems.isEmpty else {
            throw CortadoError.model("\(name)/\(v) fails verification: \(check.problems[0])")
        }
        let dest = ((out as NSString).appendingPathComponent(name) as NSString).appendingPathComponent(String(v))
        guard !FileManager.default.fileExists(atPath: dest) else {
            throw CortadoError.usage("\(dest) already exists")
        }
        let tmp = dest + ".tmp-\(getpid())"
        try? FileManager.default.removeItem(atPath: tmp)
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        for f in try FileManager.default.contentsOfDirectory(atPath: versionDir(name, v)) {
            _ = try RegistryIO.copy(
                (versionDir(name, v) as NSString).appendingPathComponent(f),
                to: (tmp as NSString).appendingPathComponent(f))
        }
        guard rename(tmp, dest) == 0 else {
            throw CortadoError.io("\(dest): rename failed: \(String(cString: strerror(errno)))")
        }
        let aliasPath = ((out as NSString).appendingPathComponent(name) as NSString).appendingPathComponent(
            "aliases.json")
        var map = (try? ModelReference.aliases(root: out, name: name)) ?? [:]
        map[ModelReference.defaultAlias] = v
        try AtomicFile.write(try stableJSON(map, pretty: true), to: aliasPath)
        return dest
    }
}
