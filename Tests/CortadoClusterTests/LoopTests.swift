import CortadoCore
import CortadoData
import CortadoTestSupport
import Foundation
import XCTest

/// The loop end to end on the local Slurm: a champion serves; traffic drifts (a new camera:
/// lower contrast, brighter background); labels for part of it arrive; `feedback join` builds
/// the span and flags the drift; `jobs/retrain.sbatch` fine-tunes and pushes a candidate;
/// `cortado evaluate` passes it and promotes it; the server (polling the registry) switches
/// to it while a steady load sees no failed request. A second round with poisoned labels
/// yields a candidate the gate rejects: the champion and the served version stay.
final class LoopTests: XCTestCase, SlurmJobs {
    override func setUpWithError() throws { try requireStarted(SlurmTests.up, "cluster/slurm-up.sh", else: "no Slurm") }

    static let name = "fashion-mlp"
    /// The drift: x' = 0.3 + 0.5·x (pixels in [0, 1]).
    static func drift(_ byte: UInt8) -> Float { 0.3 + 0.5 * Float(byte) / 255 }

    /// Wall time of each step, for the summary.
    var steps = [(String, Double)]()
    func step<T>(_ what: String, _ body: () throws -> T) rethrows -> T {
        let t0 = monotonicSeconds()
        defer { steps.append((what, monotonicSeconds() - t0)) }
        return try body()
    }

    func cortado(_ args: [String], env: [String: String] = [:], timeout: Int = 300) throws -> Support.Result {
        try Support.run([Support.product("cortado")] + args, timeout: timeout, env: env)
    }

    func testFeedbackRetrainGateAndPromoteOnSlurm() throws {
        let dir = Support.scratch("loop"), reg = dir + "/registry", env = ["CORTADO_REGISTRY": reg]
        let base = dir + "/base"
        // Base data: the first 6000 training and test images; traffic comes from images after those.
        let prep = try step("prepare base data") {
            try cortado(["prepare", "fashion-mnist", "--out", base, "--limit", "6000", "--validation", "1000"])
        }
        XCTAssertEqual(prep.status, 0, prep.output)
        let train = try step("train champion (mpirun -np 2)") {
            try Support.mpirun(
                2,
                [
                    Support.repoRoot + "/jobs/fashion-mlp.yaml", "--set", "data=\(base)/manifest.json", "--set",
                    "epochs=4",
                    "--run-dir", dir + "/run0"
                ], timeout: 300)
        }
        XCTAssertEqual(train.status, 0, train.output)
        let push = try step("push champion") {
            try cortado(["registry", "push", dir + "/run0", "--name", Self.name, "--alias", "champion"], env: env)
        }
        XCTAssertEqual(push.status, 0, push.output)

        let server = try ServeProcess(
            models: reg, args: ["--poll", "0.5", "--prediction-log", dir + "/plog", "--cores", "1"], scratch: dir)
        defer { server.stop() }
        // The load sends an undrifted image: the log mixes old and new traffic, as in production.
        let load = SteadyLoad(server: server, model: Self.name, row: try image("t10k", 0, drifted: false).x)
        load.start()

        // Round 1: drifted traffic, 80 % of it labeled correctly.
        let r1 = try step("round 1: drifted traffic through the server") {
            try send(server, images: "t10k", range: 6000..<10000, prefix: "r1", labels: dir + "/labels1.csv", wrong: 0)
        }
        let cleanAccuracy = try deployedAccuracy(reg, version: 1)
        XCTAssertLessThan(r1.accuracy, cleanAccuracy - 0.2, "the drift should hurt the champion")
        let join1 = try join(dir, round: 1)
        XCTAssertTrue(join1.drifted.contains("image_mean") && join1.drifted.contains("image_std"), "\(join1.drifted)")
        try retrain(dir, round: 1, env: env, base: base)
        let v1 = try evaluate(dir, round: 1, env: env)
        XCTAssertEqual(v1.status, 0, v1.output)
        let verdict1 = try json(dir + "/verdict1.json")
        XCTAssertEqual(verdict1["passed"] as? Bool, true, v1.output)
        XCTAssertEqual(try aliases(reg)["champion"], 2)
        try step("server switches to version 2") { try waitForDefault(server, 2) }
        let after = try send(server, images: "train", range: 50000..<51000, prefix: "r1-after", labels: nil, wrong: 0)
        XCTAssertEqual(after.versions, ["2"])
        XCTAssertGreaterThan(after.accuracy, r1.accuracy + 0.2, "the new champion serves the drifted traffic better")

        // Round 2: more drifted traffic, labels poisoned (60 % of them a wrong class).
        let r2 = try step("round 2: drifted traffic through the server") {
            try send(
                server, images: "train", range: 40000..<44000, prefix: "r2", labels: dir + "/labels2.csv", wrong: 0.6)
        }
        _ = try join(dir, round: 2)
        try retrain(dir, round: 2, env: env, base: base)
        let v2 = try evaluate(dir, round: 2, env: env)
        XCTAssertEqual(v2.status, 3, "the gate must fail: \(v2.output)")
        let verdict2 = try json(dir + "/verdict2.json")
        XCTAssertEqual(verdict2["passed"] as? Bool, false)
        let failed = (verdict2["checks"] as? [[String: Any]] ?? []).filter { $0["passed"] as? Bool == false }
        XCTAssertTrue(failed.contains { ($0["slice"] as? String) == "split:test_span" }, "\(failed)")
        XCTAssertEqual(try aliases(reg)["champion"], 2, "the champion stays")
        Thread.sleep(forTimeInterval: 1.5) // three polls
        let still = try send(server, images: "train", range: 44000..<44500, prefix: "r2-after", labels: nil, wrong: 0)
        XCTAssertEqual(still.versions, ["2"], "the server keeps the champion")

        // A forced promotion (the reason recorded), then a rollback, both under the load.
        let forced = try cortado(
            [
                "evaluate", "--candidate", "registry://\(Self.name)/3", "--data", dir + "/feedback2", "--gate",
                Support.repoRoot + "/jobs/gate.yaml", "--out", dir + "/verdict-forced.json", "--force", "--reason",
                "drill: forced promotion"
            ], env: env)
        XCTAssertEqual(forced.status, 0, forced.output)
        XCTAssertEqual(try json(dir + "/verdict-forced.json")["forced"] as? Bool, true)
        XCTAssertEqual(try aliases(reg)["champion"], 3)
        try waitForDefault(server, 3)
        let history = try String(contentsOfFile: "\(reg)/\(Self.name)/alias-history.jsonl", encoding: .utf8)
        XCTAssertTrue(history.contains("drill: forced promotion"), history)
        let back = try cortado(["registry", "rollback", Self.name, "champion", "--reason", "drill over"], env: env)
        XCTAssertEqual(back.status, 0, back.output)
        try waitForDefault(server, 2)

        let counts = load.stop()
        XCTAssertGreaterThan(counts.ok, 50, "the load ran throughout")
        XCTAssertEqual(counts.failed, 0, "failed requests under load: \(counts.errors.prefix(3))")
        XCTAssertTrue(counts.versions.isSubset(of: ["1", "2", "3"]) && counts.versions.isSuperset(of: ["1", "2"]))

        let report = try step("report") {
            try cortado(["report", reg + "/" + Self.name, "--out", dir + "/report.html"])
        }
        XCTAssertEqual(report.status, 0, report.output)
        let dom = try Support.chromium(["--dump-dom", "file://" + dir + "/report.html"])
        XCTAssertEqual(dom.status, 0, dom.output)
        for row in [
            "data-candidate=\"2\" data-passed=\"true\"", "data-candidate=\"3\" data-passed=\"false\"",
            "data-version=\"3\"", "data-champion=\"2\"", "FORCED", "drill: forced promotion"
        ] {
            XCTAssertTrue(dom.stdout.contains(row), "the rendered report lacks \(row)")
        }
        summarize(dir, clean: cleanAccuracy, r1: r1.accuracy, after: after.accuracy, r2: r2.accuracy, load: counts)
    }

    // MARK: steps

    func join(_ dir: String, round: Int) throws -> (drifted: [String], report: [String: Any]) {
        let r = try step("round \(round): feedback join") {
            try cortado([
                "feedback", "join", dir + "/plog/predictions.jsonl", "--labels", dir + "/labels\(round).csv",
                "--manifest", dir + "/base", "--out", dir + "/span\(round).csv"
            ])
        }
        XCTAssertEqual(r.status, 0, r.output)
        print(r.stdout)
        let report = try json(dir + "/span\(round)-drift.json")
        return ((report["drift"] as? [String: Any])?["drifted"] as? [String] ?? [], report)
    }

    func retrain(_ dir: String, round: Int, env: [String: String], base: String) throws {
        let exports = [
            "CORTADO_BIN=\(Support.productsDir)", "CORTADO_REGISTRY=\(env["CORTADO_REGISTRY"]!)", "BASE_DATA=\(base)",
            "DATA_DIR=\(dir)/feedback\(round)", "CORTADO_RUN_DIR=\(dir)/retrain\(round)"
        ]
        let id = try sbatch(
            dir, ["--export=ALL," + exports.joined(separator: ",")], "retrain.sbatch", [dir + "/span\(round).csv"])
        let states = try step("round \(round): sbatch retrain.sbatch (prepare span, fine-tune on 2 ranks, push)") {
            try wait(id, timeout: 600)
        }
        XCTAssertEqual(states, ["COMPLETED"], log(dir, "cortado-retrain-\(id).out"))
        print(
            log(dir, "cortado-retrain-\(id).out").split(separator: "\n").filter { $0.hasPrefix("retrain.sbatch") }
                .joined(separator: "\n"))
    }

    func evaluate(_ dir: String, round: Int, env: [String: String]) throws -> Support.Result {
        let r = try step("round \(round): cortado evaluate") {
            try cortado(
                [
                    "evaluate", "--candidate", "registry://\(Self.name)@candidate", "--data", dir + "/feedback\(round)",
                    "--gate", Support.repoRoot + "/jobs/gate.yaml", "--out", dir + "/verdict\(round).json"
                ], env: env)
        }
        print(r.stdout)
        return r
    }

    // MARK: traffic

    struct Traffic {
        var accuracy: Double
        var versions: Set<String>
    }

    func image(_ set: String, _ i: Int, drifted: Bool = true) throws -> (x: [Float], y: Int) {
        let (x, y) = try Self.idx(set)
        let pixel = { (b: UInt8) in drifted ? Self.drift(b) : Float(b) / 255 }
        return ((0..<784).map { pixel(x.bytes[i * 784 + $0]) }, Int(y.bytes[i]))
    }

    nonisolated(unsafe) static var cache = [String: (IDXArray, IDXArray)]()
    static func idx(_ set: String) throws -> (IDXArray, IDXArray) {
        if let c = cache[set] { return c }
        let src = FashionMNISTPreparer.defaultSource
        let c = (
            try IDXArray.read("\(src)/\(set)-images-idx3-ubyte.gz", expectedRank: 3),
            try IDXArray.read("\(src)/\(set)-labels-idx1-ubyte.gz", expectedRank: 1)
        )
        cache[set] = c
        return c
    }

    /// Sends drifted images in requests of 16 rows (ids PREFIX-k) and writes labels for 80 % of
    /// the rows to `labels` (a share `wrong` of them replaced by another class).
    func send(
        _ server: ServeProcess, images set: String, range: Range<Int>, prefix: String, labels: String?, wrong: Double
    )
        throws -> Traffic
    {
        let classes = FashionMNISTPreparer.classes
        var rng = SeededRNG(seed: UInt64(range.lowerBound), stream: 9)
        var correct = 0, versions = Set<String>(), csv = "id,row,label,time\n"
        let now = ISO8601DateFormatter().string(from: Date())
        for (k, start) in stride(from: range.lowerBound, to: range.upperBound, by: 16).enumerated() {
            let rows = try (start..<min(start + 16, range.upperBound)).map { try image(set, $0) }
            let reply = try server.post(
                "/v2/models/\(Self.name)/infer",
                json: [
                    "id": "\(prefix)-\(k)",
                    "inputs": [
                        [
                            "name": "input", "datatype": "FP32", "shape": [rows.count, 784],
                            "data": rows.flatMap(\.x).map(Double.init)
                        ]
                    ]
                ] as [String: Any])
            XCTAssertEqual(reply.status, 200, reply.text)
            versions.insert(reply.header("X-Model-Version") ?? "?")
            let outputs = reply.json["outputs"] as? [[String: Any]] ?? []
            let predicted = outputs.first { $0["name"] as? String == "predicted" }?["data"] as? [Int] ?? []
            for (j, row) in rows.enumerated() {
                if predicted[safe: j] == row.y { correct += 1 }
                guard rng.uniform() < 0.8 else { continue }
                let y = rng.uniform() < wrong ? (row.y + 1 + rng.below(9)) % 10 : row.y
                csv += "\(prefix)-\(k),\(j),\(classes[y]),\(now)\n"
            }
        }
        if let labels { try csv.write(toFile: labels, atomically: true, encoding: .utf8) }
        return Traffic(accuracy: Double(correct) / Double(range.count), versions: versions)
    }

    func waitForDefault(_ server: ServeProcess, _ version: Int, timeout: Double = 30) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let r = try server.get("/v2/models/\(Self.name)")
            if (r.json["parameters"] as? [String: Any])?["default_version"] as? String == String(version)
                || (r.json["parameters"] as? [String: Any])?["default_version"] as? Int == version
            {
                return
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
        XCTFail(
            "the server did not make version \(version) its default within \(timeout) s: \(server.log.suffix(2000))")
    }

    func aliases(_ reg: String) throws -> [String: Int] {
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(reg)/\(Self.name)/aliases.json"))
        return try JSONDecoder().decode([String: Int].self, from: data)
    }

    func json(_ path: String) throws -> [String: Any] {
        try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
    }

    /// The deployed variant's test accuracy, as `registry push` measured it (metrics.json).
    func deployedAccuracy(_ reg: String, version: Int) throws -> Double {
        let m = try json("\(reg)/\(Self.name)/\(version)/metrics.json")
        let variants = m["variants"] as? [[String: Any]] ?? []
        let deployed = variants.first { $0["recipe"] as? String == m["deployed"] as? String }
        return try XCTUnwrap(deployed?["accuracy"] as? Double, "no deployed accuracy in metrics.json")
    }

    func summarize(_ dir: String, clean: Double, r1: Double, after: Double, r2: Double, load: SteadyLoad.Counts) {
        var lines = ["loop summary (\(dir))"]
        lines.append(
            String(format: "champion v1: test accuracy %.4f; served accuracy on drifted traffic %.4f", clean, r1))
        lines.append(
            String(format: "after promotion, v2 on new drifted traffic: %.4f; round 2 traffic (v2) %.4f", after, r2))
        lines.append("steady load: \(load.ok) requests, \(load.failed) failed, versions \(load.versions.sorted())")
        for (what, s) in steps { lines.append(String(format: "%7.1f s  %@", s, what)) }
        print(lines.joined(separator: "\n"))
    }
}

/// A bounded background load: one request at a time, one row each, until stopped; counts
/// statuses and the versions that answered.
final class SteadyLoad: @unchecked Sendable {
    struct Counts {
        var ok = 0, failed = 0
        var versions = Set<String>()
        var errors = [String]()
    }
    let server: ServeProcess, model: String, body: [String: Any]
    private let lock = NSLock()
    private var counts = Counts(), running = true
    private let done = DispatchSemaphore(value: 0)

    init(server: ServeProcess, model: String, row: [Float]) {
        self.server = server
        self.model = model
        body = [
            "inputs": [["name": "input", "datatype": "FP32", "shape": [1, row.count], "data": row.map(Double.init)]]
        ]
    }

    func start() {
        Thread.detachNewThread { [self] in
            while lock.withLock({ running }) {
                do {
                    let r = try server.post("/v2/models/\(model)/infer", json: body)
                    lock.withLock {
                        if r.status == 200 {
                            counts.ok += 1
                        } else {
                            counts.failed += 1; counts.errors.append("\(r.status) \(r.text)")
                        }
                        counts.versions.insert(r.header("X-Model-Version") ?? "?")
                    }
                } catch {
                    lock.withLock {
                        counts.failed += 1; counts.errors.append("\(error)")
                    }
                }
                usleep(20_000) // ~50 requests/s at most: a load, not a benchmark
            }
            done.signal()
        }
    }

    func stop() -> Counts {
        lock.withLock { running = false }
        done.wait()
        return lock.withLock { counts }
    }
}

extension Array {
    fileprivate subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}
