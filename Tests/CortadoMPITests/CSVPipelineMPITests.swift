import CortadoCore
import CortadoData
import CortadoTestSupport
import Foundation
import XCTest

/// The CSV pipeline through the real binaries and mpirun: parallel prepare equals the
/// 1-process prepare, and a real data set goes raw CSV → shards → training → inference from raw
/// CSV rows.
final class CSVPipelineMPITests: XCTestCase {
    func testParallelPrepareIsIdenticalToOneProcess() throws {
        let dir = Support.scratch("csv-mpi")
        // Quoted newlines and commas everywhere, duplicates far apart (they straddle the ranks'
        // byte ranges), missing values, a rare category, a second file.
        var rng = SeededRNG(seed: 3)
        var a = "x1,x2,city,text,y\n", b = a
        var rows = [String]()
        for i in 0..<1500 {
            let city = ["Oslo", "Bergen, NO", "Troms\u{00F8}", "\"Quoted\" town", "Rare\(i % 97 == 0 ? "!" : "")"][
                i % 5]
            let x1 = i % 13 == 0 ? "NA" : String(format: "%.4f", rng.normal())
            let text = i % 4 == 0 ? "\"line one\nline two, \"\"quoted\"\"\"" : "plain"
            rows.append(
                "\(x1),\(i % 17 == 0 ? "" : String(rng.below(1000))),\"\(city.replacingOccurrences(of: "\"", with: "\"\""))\",\(text),c\(i % 3)"
            )
        }
        for i in stride(from: 0, to: 1500, by: 50) { rows.append(rows[i]) } // duplicates, late in the file
        a += rows[..<1000].joined(separator: "\n") + "\n"
        b += rows[1000...].joined(separator: "\n") + "\n"
        try Data(a.utf8).write(to: URL(fileURLWithPath: dir + "/a.csv"))
        try Data(b.utf8).write(to: URL(fileURLWithPath: dir + "/b.csv"))
        let schema =
            "columns:\n  - {name: x1, type: numeric, missing: median, clip: [0.05, 0.95]}\n  - {name: city, type: categorical, min_count: 2}\n  - {name: text, type: ignore}\n"
        try Data(schema.utf8).write(to: URL(fileURLWithPath: dir + "/schema.yaml"))
        func prepare(_ launcher: [String], _ out: String) throws {
            let r = try Support.run(
                launcher + [
                    Support.product("cortado"), "prepare", "csv", dir + "/a.csv", dir + "/b.csv",
                    "--out", dir + "/" + out, "--label", "y", "--shards", "3", "--schema", dir + "/schema.yaml"
                ],
                timeout: 120)
            XCTAssertEqual(r.status, 0, r.output)
        }
        try prepare([], "solo")
        try prepare(["mpirun", "-np", "2", "--bind-to", "none"], "np2")
        try prepare(["mpirun", "-np", "3", "--oversubscribe", "--bind-to", "none"], "np3")
        let solo = try preparedContents(dir + "/solo")
        let m = try DatasetManifest.load(dir + "/solo/manifest.json")
        XCTAssertEqual(m.cleaning?.duplicates, 30)
        XCTAssertEqual(m.cleaning?.rowsRead, 1530)
        XCTAssertEqual(m.splits.values.map(\.rows).reduce(0, +), 1500)
        for other in ["np2", "np3"] {
            let c = try preparedContents(dir + "/" + other)
            XCTAssertEqual(c.keys.sorted(), solo.keys.sorted(), other)
            for (k, v) in solo { XCTAssertTrue(c[k] == v, "\(other): \(k) differs") }
        }
        let v = try Support.run([Support.product("cortado"), "validate", dir + "/np3"])
        XCTAssertEqual(v.status, 0, v.output)
    }

    func testBreastCancerRawCSVToTrainedModelToRawCSVInference() throws {
        let dir = Support.scratch("cancer")
        let gen = try Support.run([
            "python3", Support.repoRoot + "/Tests/CortadoTestSupport/Fixtures/make_breast_cancer_csv.py", dir
        ])
        XCTAssertEqual(gen.status, 0, gen.output)
        let prep = try Support.run([
            "mpirun", "-np", "2", "--bind-to", "none", Support.product("cortado"), "prepare", "csv",
            dir + "/cancer.csv", "--out", dir + "/data", "--label", "diagnosis", "--shards", "2"
        ])
        XCTAssertEqual(prep.status, 0, prep.output)
        XCTAssertTrue(prep.stdout.contains("{name: patient, type: ignore}"), "ids are not features: \(prep.stdout)")
        let m = try DatasetManifest.load(dir + "/data/manifest.json")
        XCTAssertEqual(m.classes, ["benign", "malignant"])
        XCTAssertEqual(m.cleaning?.duplicates, 12)
        XCTAssertGreaterThan(m.cleaning?.imputed["mean_radius"] ?? 0, 10)
        let inspect = try Support.run([Support.product("cortado"), "inspect", dir + "/data"])
        XCTAssertTrue(inspect.stdout.contains("clinic [categorical] 4 values"), inspect.stdout)

        let train = try Support.mpirun(
            2,
            [
                Support.repoRoot + "/jobs/tabular-mlp.yaml", "--set", "data=\(dir)/data/manifest.json",
                "--run-dir", dir + "/run", "--json"
            ])
        XCTAssertEqual(train.status, 0, train.output)
        let s = try Support.lastJSON(train)
        let val = s["validation"] as! [String: Double]
        XCTAssertGreaterThan(val["accuracy"]!, 0.9)
        XCTAssertGreaterThan(val["auc"]!, 0.95, "binary task: ROC AUC reported")
        for p in ["fp32", "int8"] {
            let inf = try Support.run([
                Support.product("cortado-infer"), dir + "/run/model-\(p).cmodel", "--input", dir + "/holdout.csv",
                "--json"
            ])
            XCTAssertEqual(inf.status, 0, inf.output)
            let acc = try Support.lastJSON(inf)["accuracy"] as! Double
            XCTAssertGreaterThanOrEqual(acc, 0.93, "\(p) on the 60 raw holdout rows (the data set allows ≈ 0.95–0.98)")
        }
        // A raw file missing a column the model needs is a clear error.
        let cut = try String(contentsOfFile: dir + "/holdout.csv", encoding: .utf8).replacingOccurrences(
            of: "mean_radius", with: "radius_renamed")
        try Data(cut.utf8).write(to: URL(fileURLWithPath: dir + "/renamed.csv"))
        let bad = try Support.run([
            Support.product("cortado-infer"), dir + "/run/model-fp32.cmodel", "--input", dir + "/renamed.csv"
        ])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("column 'mean_radius' that the model needs is not in the header"), bad.stderr)
    }

    func testCLIBadInputExitsTwoWithOneLine() throws {
        let dir = Support.scratch("csv-cli")
        try Data("a,y\n1,x\n2,y,3\n".utf8).write(to: URL(fileURLWithPath: dir + "/r.csv"))
        for launcher in [[], ["mpirun", "-np", "2", "--bind-to", "none"]] {
            let r = try Support.run(
                launcher + [
                    Support.product("cortado"), "prepare", "csv", dir + "/r.csv", "--out", dir + "/out", "--label", "y"
                ], timeout: 60)
            XCTAssertEqual(r.status, 2, r.output)
            XCTAssertEqual(
                r.stderr.split(separator: "\n").filter { $0.contains("3 fields, the header has 2") }.count, 1, r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"))
        }
    }
}
