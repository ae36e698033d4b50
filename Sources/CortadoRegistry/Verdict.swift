import CortadoCore
import CortadoData
import CortadoInfer
import CortadoModel
import Foundation

/// `verdict.json`: what `cortado evaluate` measured, every check with its threshold and
/// observed value, and what it decided. Written on every run — pass, fail or forced — next to
/// `--out` and into the registry (`REGISTRY/NAME/verdicts/`), where the report reads the loop's
/// history.
public struct Verdict: Codable, Equatable {
    public struct Side: Codable, Equatable {
        public var ref: String
        public var path: String?
        public var sha256: String?
        public var version: Int?
    }

    public struct Check: Codable, Equatable {
        public var name: String
        public var slice: String?
        public var threshold: Double?
        public var observed: Double?
        public var passed: Bool
        public var detail: String
    }

    public var format = "cortado-verdict"
    public var formatVersion = 1
    public var time: String
    public var user: String
    public var model: String?
    public var candidate: Side
    public var champion: Side
    public var data: String
    public var dataSHA256: String?
    public var gate: String
    public var gateSHA256: String?
    public var slices: [SliceResult] = []
    public var checks: [Check] = []
    public var passed = false
    public var forced = false
    public var reason: String?
    public var decision = ""
    public var wallSeconds = 0.0

    enum CodingKeys: String, CodingKey {
        case format, formatVersion = "format_version", time, user, model, candidate, champion, data
        case dataSHA256 = "data_sha256", gate, gateSHA256 = "gate_sha256", slices, checks, passed, forced, reason
        case decision, wallSeconds = "wall_sec"
    }

    public var failedChecks: [Check] { checks.filter { !$0.passed } }

    /// One line per check, then the decision.
    public var lines: [String] {
        checks.map { c in
            let t = c.threshold.map { String(format: "%.4f", $0) } ?? "-"
            let o = c.observed.map { String(format: "%.4f", $0) } ?? "-"
            return
                "\(c.passed ? "PASS" : "FAIL") \(c.name)\(c.slice.map { " [\($0)]" } ?? ""): observed \(o), threshold \(t): \(c.detail)"
        } + ["decision: \(decision)"]
    }
}

/// `cortado evaluate`: scores candidate and champion on the same held-out data, checks the
/// gate, writes the verdict, and on a pass (or `--force` with a reason) moves `champion`.
public struct Evaluator {
    public var candidate: String
    public var champion: String
    public var data: String
    public var gatePath: String
    public var registry: String?
    public var out: String
    public var force = false
    public var reason: String?
    public var promote = true
    public var inferBinary: String?

    public init(candidate: String, champion: String, data: String, gatePath: String, out: String) {
        self.candidate = candidate; self.champion = champion; self.data = data; self.gatePath = gatePath
        self.out = out
    }

    var manifestPath: String {
        data.hasSuffix(".json") ? data : (data as NSString).appendingPathComponent("manifest.json")
    }

    /// Runs the evaluation; the verdict is written whatever the outcome, then returned.
    public func run(log: (String) -> Void = { _ in }) throws -> Verdict {
        if force && (reason ?? "").isEmpty { throw CortadoError.usage("--force needs --reason (it is recorded)") }
        let gate = try Gate.load(gatePath)
        let start = monotonicSeconds()
        var v = Verdict(
            time: RegistryIO.now(), user: RegistryIO.user(), candidate: side(candidate), champion: side(champion),
            data: manifestPath, dataSHA256: try? SHA256.hex(fileAt: manifestPath), gate: gatePath,
            gateSHA256: try? SHA256.hex(fileAt: gatePath))
        v.model = v.candidate.path.flatMap { ModelReference.location(ofFile: $0)?.name }
        v.reason = reason
        do {
            try check(gate, into: &v, log: log)
        } catch let e as CortadoError {
            v.checks.append(.init(name: "evaluation ran", passed: false, detail: e.message))
        }
        if gate.floors.isEmpty && gate.minAbsoluteImprovement == nil && gate.minRelativeImprovement == nil
            && gate.regressionTolerance == nil
        {
            // A gate without thresholds blesses nothing (and says so), rather than everything.
            v.checks.append(
                .init(
                    name: "gate has thresholds", passed: false,
                    detail: "\(gatePath) sets no floors, improvement or regression tolerance"))
        }
        v.passed = !v.checks.isEmpty && v.checks.allSatisfy(\.passed)
        v.forced = force && !v.passed
        try decide(&v, log: log)
        v.wallSeconds = monotonicSeconds() - start
        try write(v)
        return v
    }

    func side(_ text: String) -> Verdict.Side {
        var s = Verdict.Side(ref: text)
        if let path = try? ModelReference.path(text, registry: registry) {
            s.path = path
            s.sha256 = try? SHA256.hex(fileAt: path)
            s.version = ModelReference.location(ofFile: path)?.version
        }
        return s
    }

    /// Loads both models, scores every slice, and appends the gate's checks.
    func check(_ gate: Gate, into v: inout Verdict, log: (String) -> Void) throws {
        let candPath = try ModelReference.path(candidate, registry: registry)
        let champPath = try ModelReference.path(champion, registry: registry)
        let cand = try InferenceModel(path: candPath), champ = try InferenceModel(path: champPath)
        v.checks.append(.init(name: "candidate loads", passed: true, detail: candPath))
        let sameShape = cand.spec.inputSize == champ.spec.inputSize && cand.classes == champ.classes
        v.checks.append(
            .init(
                name: "same inputs and classes as the champion", passed: sameShape,
                detail:
                    "candidate \(cand.spec.inputSize) → \(cand.classes), champion \(champ.spec.inputSize) → \(champ.classes)"
            ))
        guard sameShape else { return }
        v.slices = try Slicing.score(
            candidate: cand, candidatePath: candPath, champion: champ, championPath: champPath,
            manifestPath: manifestPath, columns: gate.sliceColumns)
        for s in v.slices {
            log(
                String(
                    format: "%@: %d rows, champion %.4f, candidate %.4f (%+.4f)", s.name, s.rows, s.champion,
                    s.candidate, s.delta))
        }
        v.checks += try Self.thresholdChecks(gate, slices: v.slices, gatePath: gatePath)
        if gate.serve { v.checks.append(serveCheck(cand, path: candPath)) }
    }

    /// The gate's floors, improvement and per-slice regression checks on scored slices.
    public static func thresholdChecks(_ gate: Gate, slices: [SliceResult], gatePath: String) throws -> [Verdict.Check]
    {
        var checks = [Verdict.Check]()
        let bySlice = Dictionary(uniqueKeysWithValues: slices.map { ($0.name, $0) })
        func slice(_ name: String) throws -> SliceResult {
            guard let s = bySlice[name] else {
                throw CortadoError.usage(
                    "\(gatePath): slice '\(name)' does not exist (have: \(slices.map(\.name).joined(separator: ", ")))"
                )
            }
            return s
        }
        for (name, floor) in gate.floors {
            let s = try slice(name)
            checks.append(
                .init(
                    name: "floor", slice: name, threshold: floor, observed: s.candidate, passed: s.candidate >= floor,
                    detail: "candidate accuracy at least the floor"))
        }
        if let name = gate.improvementSlice {
            let s = try slice(name)
            if let a = gate.minAbsoluteImprovement {
                checks.append(
                    .init(
                        name: "absolute improvement", slice: name, threshold: a, observed: s.delta,
                        passed: s.delta >= a,
                        detail: "candidate − champion"))
            }
            if let r = gate.minRelativeImprovement {
                let rel = s.champion > 0 ? s.delta / s.champion : .infinity
                checks.append(
                    .init(
                        name: "relative improvement", slice: name, threshold: r, observed: rel, passed: rel >= r,
                        detail: "(candidate − champion) / champion"))
            }
        }
        if let tol = gate.regressionTolerance {
            for s in slices where s.rows >= gate.regressionMinRows {
                checks.append(
                    .init(
                        name: "no regression", slice: s.name, threshold: -tol, observed: s.delta,
                        passed: s.delta >= -tol,
                        detail: "candidate − champion on a slice of \(s.rows) rows"))
            }
        }
        return checks
    }

    /// Sends the first test rows through `cortado-infer serve` and compares the classes.
    func serveCheck(_ model: InferenceModel, path: String) -> Verdict.Check {
        let binary =
            inferBinary
            ?? ((CommandLine.arguments[0] as NSString).deletingLastPathComponent as NSString)
            .appendingPathComponent("cortado-infer")
        do {
            let split = try SplitReader(manifestPath: manifestPath, split: "test")
            let n = min(8, split.rows), d = split.featureCount
            var x = [Float](repeating: 0, count: n * d), y = [Int32](repeating: 0, count: n)
            try x.withUnsafeMutableBufferPointer { xb in
                try y.withUnsafeMutableBufferPointer {
                    try split.read(0..<n, features: xb.baseAddress!, labels: $0.baseAddress!)
                }
            }
            var p = [Float](repeating: 0, count: n * model.classes)
            x.withUnsafeBufferPointer { xb in
                p.withUnsafeMutableBufferPointer {
                    model.predict(xb.baseAddress!, batch: n, probabilities: $0.baseAddress!)
                }
            }
            let k = model.classes
            let expected = (0..<n).map { r in (0..<k).max { p[r * k + $0] < p[r * k + $1] }! }
            let rows = (0..<n).map { Array(x[($0 * d)..<($0 * d + d)]) }
            if let problem = ServeCheck.run(binary: binary, model: path, rows: rows, expected: expected) {
                return .init(name: "serves", passed: false, detail: problem)
            }
            return .init(
                name: "serves", passed: true,
                detail: "loaded, warmed up and answered \(n) rows as evaluated in \(binary) serve; exited 0 on SIGTERM")
        } catch let e as CortadoError {
            return .init(name: "serves", passed: false, detail: e.message)
        } catch {
            return .init(name: "serves", passed: false, detail: "\(error)")
        }
    }

    /// Moves `champion` on a pass (or when forced), when both are versions of one registry model.
    func decide(_ v: inout Verdict, log: (String) -> Void) throws {
        let failed = v.failedChecks.map { $0.name + ($0.slice.map { " [\($0)]" } ?? "") }
        guard v.passed || force else {
            v.decision =
                "kept champion \(v.champion.version.map(String.init) ?? v.champion.ref): failed "
                + failed.joined(separator: ", ")
            return
        }
        guard promote else {
            v.decision = "passed; not promoted (--no-promote)"
            return
        }
        guard let path = v.candidate.path, let loc = ModelReference.location(ofFile: path) else {
            v.decision = "passed; not promoted: the candidate is not a registry version"
            return
        }
        let reg = Registry(root: loc.root)
        let why =
            force && !v.passed
            ? "forced by cortado evaluate (failed: \(failed.joined(separator: ", "))): \(reason ?? "")"
            : "cortado evaluate: every gate check passed (\(gatePath))" + (reason.map { ": \($0)" } ?? "")
        let before = try reg.aliases(loc.name)[ModelReference.defaultAlias]
        try reg.setAlias(name: loc.name, alias: ModelReference.defaultAlias, version: loc.version, reason: why)
        v.decision =
            "promoted: champion \(before.map(String.init) ?? "none") → \(loc.version)" + (v.forced ? " (forced)" : "")
        log(v.decision)
    }

    /// Writes `--out`, and a copy into the candidate's registry model folder.
    func write(_ v: Verdict) throws {
        let data = try stableJSON(v)
        try AtomicFile.write(data, to: out)
        guard let path = v.candidate.path, let loc = ModelReference.location(ofFile: path) else { return }
        let dir = (Registry(root: loc.root).modelDir(loc.name) as NSString).appendingPathComponent("verdicts")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let stamp = v.time.replacingOccurrences(of: ":", with: "").replacingOccurrences(of: "-", with: "")
        try AtomicFile.write(data, to: "\(dir)/\(stamp)-v\(loc.version)-\(getpid()).json")
    }
}
