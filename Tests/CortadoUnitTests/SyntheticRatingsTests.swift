import CortadoCore
import CortadoData
import CortadoTestSupport
import Foundation
import XCTest

/// The MovieLens-shaped generator and the interaction-data path through `prepare csv`.
final class SyntheticRatingsTests: XCTestCase {
    func testShapeDeterminismAndLeaveLastOut() throws {
        let dir = Support.scratch("ratings")
        var g = SyntheticRatings()
        XCTAssertEqual(try g.write(to: dir + "/u.data"), 100_000)
        let text = try String(contentsOfFile: dir + "/u.data", encoding: .utf8)
        let rows = text.split(separator: "\n").map { $0.split(separator: "\t").map { Int($0)! } }
        XCTAssertEqual(rows.count, 100_000)
        XCTAssertEqual(Set(rows.map { $0[0] }), Set(1...943), "every user rates")
        XCTAssertTrue(rows.allSatisfy { (1...1682).contains($0[1]) && (1...5).contains($0[2]) })
        XCTAssertGreaterThanOrEqual(Dictionary(grouping: rows, by: { $0[0] }).values.map(\.count).min()!, 20)
        XCTAssertEqual(Set(rows.map { "\($0[0]):\($0[1])" }).count, 100_000, "a user rates an item once")
        let mean = Double(rows.map { $0[2] }.reduce(0, +)) / 1e5
        XCTAssertEqual(mean, 3.53, accuracy: 0.1, "MovieLens-like star mix")
        try g.write(to: dir + "/again")
        XCTAssertEqual(try String(contentsOfFile: dir + "/again", encoding: .utf8), text, "deterministic by seed")
        g.seed = 7
        try g.write(to: dir + "/other")
        XCTAssertNotEqual(try String(contentsOfFile: dir + "/other", encoding: .utf8), text)

        try Data(
            "columns:\n  - {name: c0, type: categorical, encoding: ids}\n  - {name: c1, type: categorical, encoding: ids}\n  - {name: c3, type: ignore}\n"
                .utf8
        )
        .write(to: URL(fileURLWithPath: dir + "/schema.yaml"))
        let prep = try Support.run([
            Support.product("cortado"), "prepare", "csv", dir + "/u.data", "--no-header", "--delimiter", "tab",
            "--label", "c2", "--task", "regression", "--leave-last-out", "c0,c3", "--schema", dir + "/schema.yaml",
            "--out", dir + "/ml"
        ])
        XCTAssertEqual(prep.status, 0, prep.output)
        let m = try DatasetManifest.load(dir + "/ml/manifest.json")
        XCTAssertEqual(m.task, "regression")
        XCTAssertEqual(m.splits["test"]?.rows, 943, "each user's latest rating")
        XCTAssertEqual(m.splits["validation"]?.rows, 943)
        XCTAssertEqual(m.categoricalColumns, ["c0", "c1"])
        XCTAssertEqual(try HDF5File.open(dir + "/ml/test.h5").shape(of: "categorical"), [943, 2])
        XCTAssertEqual(try validateDataFolder(manifestPath: dir + "/ml/manifest.json"), [])
    }
}
