import CortadoCore
import CortadoData
import CortadoRegistry
import CortadoTestSupport
import Foundation
import XCTest

/// The loop's data side and its gate, in process: drift statistics against numpy
/// (Fixtures/make_golden_drift.py), the join's counting of everything it cannot join, errors
/// that name the file and line, gate files, and a verdict written even when nothing can be
/// scored.
final class FeedbackTests: XCTestCase {
    struct Golden: Decodable {
        struct Sample: Decodable { var values: [Double]; var psi: Double; var ks: Double }
        struct Mix: Decodable { var training: [Int]; var new: [Int]; var psi: Double }
        var reference: [Double]
        var summary: DistributionSummary
        var samples: [String: Sample]
        var mix: Mix
    }

    func testDriftStatisticsMatchNumpy() throws {
        let g = try JSONDecoder().decode(Golden.self, from: try Support.fixture("golden_drift.json"))
        var ref = g.reference
        let s = DistributionSummary(sorting: &ref)
        XCTAssertEqual(s.count, g.summary.count)
        assertClose(s.deciles, g.summary.deciles, rel: 1e-12, abs: 1e-14, "deciles")
        assertClose([s.mean, s.std], [g.summary.mean, g.summary.std], rel: 1e-10, abs: 1e-14, "mean, std")
        XCTAssertEqual(g.samples.count, 2)
        for (name, sample) in g.samples {
            XCTAssertEqual(s.psi(sample.values), sample.psi, accuracy: 1e-9, name)
            XCTAssertEqual(s.ksAtDeciles(sample.values), sample.ks, accuracy: 1e-12, name)
        }
        XCTAssertLessThan(g.samples["without_spike"]!.psi, g.samples["shifted"]!.psi)
        XCTAssertEqual(Drift.mix(g.mix.new, training: g.mix.training).psi, g.mix.psi, accuracy: 1e-12)
        XCTAssertEqual(Drift.mix(g.mix.new, training: g.mix.training).severity, "major")
    }

    /// A four-feature, three-class data set: just a manifest with a profile.
    func manifest(_ dir: String) throws -> String {
        var m = DatasetManifest(
            name: "tiny", task: "classification", featureShape: [4], classes: ["a", "b", "c"], splitSeed: 1,
            transforms: [], statistics: [:], splits: [:], source: [:], createdBy: "test")
        let x: [Float] = (0..<400).map { Float($0 % 17) / 17 }
        m.profile = x.withUnsafeBufferPointer {
            DataProfile.images($0, width: 4, labels: (0..<100).map { Int64($0 % 3) }, classes: 3)
        }
        let path = dir + "/manifest.json"
        try stableJSON(m).write(to: URL(fileURLWithPath: path))
        return path
    }

    func line(
        _ id: String, _ row: Int, model: String = "m", time: String = "2026-12-01T10:00:00.000Z", predicted: Int = 0
    )
        -> String
    {
        "{\"id\":\"\(id)\",\"row\":\(row),\"time\":\"\(time)\",\"model\":\"\(model)\",\"version\":3,\"input\":{\"input\":[0.1,0.2,0.3,0.4]},\"output\":{\"predicted\":\(predicted),\"class\":\"a\",\"probabilities\":[0.5,0.3,0.2]}}"
    }

    func testJoinCountsWhatItCannotJoin() throws {
        let dir = Support.scratch("feedback-join")
        let log = [
            line("r1", 0), line("r1", 1), line("r2", 0), line("r1", 0, predicted: 2), line("r3", 0, model: "other"),
            "{\"id\":\"torn\",\"row\":0,\"ti"
        ].joined(separator: "\n")
        try log.write(toFile: dir + "/predictions.jsonl", atomically: true, encoding: .utf8)
        let labels = """
            id,row,label,time
            r1,0,a,2026-12-01T11:00:00Z
            r1,0,a,2026-12-01T11:00:00Z
            r1,1,b,2026-12-01T11:00:00Z
            r1,1,c,2026-12-01T11:00:00Z
            r2,0,2,2026-12-11T10:00:00Z
            r9,0,a,2026-12-01T11:00:00Z

            """
        try labels.write(toFile: dir + "/labels.csv", atomically: true, encoding: .utf8)
        var j = FeedbackJoin(
            predictionLogs: [dir + "/predictions.jsonl"], labels: dir + "/labels.csv", manifestPath: try manifest(dir),
            out: dir + "/span.csv")
        j.model = "m"
        j.maxLabelDelay = 86400
        let r = try j.run()
        let c = r.counts
        XCTAssertEqual(
            [c.logLines, c.unreadableLines, c.otherModelLines, c.duplicatePredictions, c.predictions], [6, 1, 1, 1, 3])
        XCTAssertEqual(
            [c.labelRows, c.duplicateLabels, c.conflictingLabels, c.labelsWithoutPrediction, c.lateLabels],
            [6, 2, 1, 1, 1])
        XCTAssertEqual([c.joined, c.unlabeled], [1, 1])
        XCTAssertEqual(c.servedAccuracy, 1) // r1 row 0: the first logged prediction (class 0 = a)
        let span = try String(contentsOfFile: dir + "/span.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(span.count, 2)
        XCTAssertEqual(span[0], "request_id,row,model_version,predicted,label,x0,x1,x2,x3")
        XCTAssertEqual(span[1], "r1,0,3,a,a,0.1,0.2,0.3,0.4")
        XCTAssertEqual(r.drift.features.map(\.name), ["image_mean", "image_std"])
    }

    func testBadLabelNamesTheFileAndLine() throws {
        let dir = Support.scratch("feedback-bad-label")
        try line("r1", 0).write(toFile: dir + "/p.jsonl", atomically: true, encoding: .utf8)
        try "id,label\nr1,a\nr1,zebra\n".write(toFile: dir + "/labels.csv", atomically: true, encoding: .utf8)
        let j = FeedbackJoin(
            predictionLogs: [dir + "/p.jsonl"], labels: dir + "/labels.csv", manifestPath: try manifest(dir),
            out: dir + "/span.csv")
        XCTAssertThrowsError(try j.run()) {
            XCTAssertTrue("\($0)".contains("labels.csv:3") && "\($0)".contains("'zebra'"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/span.csv"), "nothing half-written")
        try "id,lable\nr1,a\n".write(toFile: dir + "/labels.csv", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try j.run()) { XCTAssertTrue("\($0)".contains("'id' and 'label'"), "\($0)") }
    }

    /// Tabular drift: a numeric column shifted, a categorical column with new values and more
    /// missing values than in training.
    func testTabularDriftFlagsShiftUnseenCategoriesAndMissingRate() throws {
        var m = DatasetManifest(
            name: "t", task: "classification", featureShape: [2], classes: ["no", "yes"], splitSeed: 1, transforms: [],
            statistics: [:], splits: [:], source: [:], createdBy: "test")
        var age = ColumnInfo(schema: ColumnSchema(name: "age", type: .numeric), role: "feature")
        age.count = 95
        age.missing = 5
        var plan = ColumnInfo(schema: ColumnSchema(name: "plan", type: .categorical), role: "feature")
        plan.count = 100
        plan.missing = 0
        plan.vocabulary = ["basic", "pro"]
        plan.vocabularyCounts = [80, 20]
        m.columns = [age, plan]
        m.csv = CSVDialect(delimiter: ",", header: true, missingValues: ["", "NA"])
        var ages = (0..<95).map { Double(20 + $0 % 40) }
        m.profile = DataProfile(
            rows: 100, labelCounts: [50, 50], features: ["age": DistributionSummary(sorting: &ages)])
        // New rows: everyone 20 years older; a third on a plan training never saw; a fifth
        // without an age.
        let rows: [[String: String?]] = (0..<90).map { i in
            [
                "age": i % 5 == 0 ? "NA" : String(40 + i % 40),
                "plan": i % 3 == 0 ? "enterprise" : (i % 2 == 0 ? "basic" : "pro")
            ]
        }
        let f = Dictionary(uniqueKeysWithValues: Drift.table(rows, manifest: m).map { ($0.name, $0) })
        let a = try XCTUnwrap(f["age"]), p = try XCTUnwrap(f["plan"])
        XCTAssertEqual(a.severity, "major")
        XCTAssertGreaterThan(a.psi!, DriftReport.majorPSI)
        XCTAssertEqual(a.newMissingRate!, 0.2, accuracy: 1e-12)
        XCTAssertEqual(a.trainMissingRate!, 0.05, accuracy: 1e-12)
        XCTAssertEqual(p.unseenShare!, 1.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(p.unseenExamples, ["enterprise"])
        XCTAssertEqual(p.severity, "major")
        // PSI over basic, pro and one bin for unseen values, against 0.8, 0.2 and 0 (→ 0.0001).
        let share = { (v: String) in Double(rows.filter { $0["plan"] == v }.count) / 90 }
        let pairs = [(share("basic"), 0.8), (share("pro"), 0.2), (share("enterprise"), 1e-4)]
        let expected = pairs.reduce(0.0) { $0 + ($1.0 - $1.1) * log($1.0 / $1.1) }
        XCTAssertEqual(p.psi!, expected, accuracy: 1e-12)
    }

    func testGateFileErrorsNameTheKey() throws {
        let dir = Support.scratch("gate-file")
        let path = dir + "/gate.yaml"
        try "floors: {overall: 0.8}\nregresion: {tolerance: 0.1}\n".write(
            toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Gate.load(path)) { XCTAssertTrue("\($0)".contains("regresion: unknown key"), "\($0)") }
        try "floors: {overall: 1.5}\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Gate.load(path)) { XCTAssertTrue("\($0)".contains("floors.overall"), "\($0)") }
        try "improvement: {slice: overall}\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Gate.load(path)) {
            XCTAssertTrue("\($0)".contains("'absolute' or 'relative'"), "\($0)")
        }
        let text =
            "floors: {split:test: 0.7}\nimprovement: {slice: split:test_span, relative: 0.05}\nregression: {tolerance: 0.02, min_rows: 50}\nserve: false\n"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let g = try Gate.load(path)
        XCTAssertEqual(g.floors.map(\.slice), ["split:test"])
        XCTAssertEqual(g.minRelativeImprovement, 0.05)
        XCTAssertEqual(g.regressionMinRows, 50)
        XCTAssertFalse(g.serve)
    }

    /// Floors, relative improvement and the per-slice tolerance; small slices are not gated.
    func testThresholdChecks() throws {
        var g = Gate()
        g.floors = [("split:test", 0.8)]
        g.improvementSlice = "split:test_span"
        g.minRelativeImprovement = 0.1
        g.regressionTolerance = 0.02
        g.regressionMinRows = 100
        let slices = [
            SliceResult(name: "split:test", rows: 1000, champion: 0.85, candidate: 0.84),
            SliceResult(name: "split:test_span", rows: 300, champion: 0.5, candidate: 0.54),
            SliceResult(name: "class:Bag", rows: 99, champion: 0.9, candidate: 0.5)
        ]
        let checks = try Evaluator.thresholdChecks(g, slices: slices, gatePath: "g.yaml")
        XCTAssertEqual(
            checks.map { "\($0.name) \($0.slice ?? "") \($0.passed)" },
            [
                "floor split:test true", "relative improvement split:test_span false", "no regression split:test true",
                "no regression split:test_span true"
            ])
        XCTAssertEqual(checks[1].observed!, 0.08, accuracy: 1e-12)
        g.floors = [("class:Coat", 0.5)]
        XCTAssertThrowsError(try Evaluator.thresholdChecks(g, slices: slices, gatePath: "g.yaml")) {
            XCTAssertTrue("\($0)".contains("slice 'class:Coat' does not exist"), "\($0)")
        }
    }

    /// TFX users' complaint: no approval record when thresholds are missing. Here a gate with no
    /// thresholds, and a candidate that does not exist, still give a verdict — a failing one.
    func testVerdictIsWrittenEvenWhenNothingCanBeScored() throws {
        let dir = Support.scratch("verdict-always")
        try "serve: false\n".write(toFile: dir + "/gate.yaml", atomically: true, encoding: .utf8)
        let e = Evaluator(
            candidate: dir + "/missing.cmodel", champion: dir + "/also-missing.cmodel", data: dir,
            gatePath: dir + "/gate.yaml", out: dir + "/verdict.json")
        let v = try e.run()
        XCTAssertFalse(v.passed)
        XCTAssertEqual(v.failedChecks.map(\.name), ["evaluation ran", "gate has thresholds"])
        XCTAssertTrue(v.decision.hasPrefix("kept champion"), v.decision)
        let written = try JSONDecoder().decode(
            Verdict.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/verdict.json")))
        XCTAssertEqual(written, v)
    }
}
