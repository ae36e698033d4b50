import CortadoTestSupport
import Foundation
import XCTest

/// cluster/check-graph.py, the CI check that the package graph only points down, shown failing
/// on bad graphs (an upward edge, the inference binary reaching MPI, a folder not named after
/// its target) and passing on the same graph once mended. The real package is checked by
/// cluster/test.sh before the build (running SwiftPM from inside `swift test` would wait on
/// the build folder's lock).
final class PackageGraphTests: XCTestCase {
    let script = Support.repoRoot + "/cluster/check-graph.py"

    func graph() throws -> [String: Any] {
        let data = try Support.fixture("graph-upward-edge.json")
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    func check(_ g: [String: Any]) throws -> Support.Result {
        let path = Support.scratch("graph") + "/describe.json"
        try JSONSerialization.data(withJSONObject: g).write(to: URL(fileURLWithPath: path))
        return try Support.run(["python3", script, "--describe", path], timeout: 60)
    }

    /// Applies `change` to the target called `name`.
    func editing(_ g: [String: Any], _ name: String, _ change: (inout [String: Any]) -> Void) -> [String: Any] {
        var g = g
        g["targets"] = (g["targets"] as? [[String: Any]] ?? []).map { t in
            var t = t
            if t["name"] as? String == name { change(&t) }
            return t
        }
        return g
    }

    func removingUpwardEdge(_ g: [String: Any]) -> [String: Any] {
        editing(g, "CortadoTrain") { t in
            t["target_dependencies"] = (t["target_dependencies"] as? [String])?.filter { $0 != "CortadoInfer" }
        }
    }

    func testUpwardEdgeFailsNamingIt() throws {
        let r = try check(try graph())
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.stderr.contains("CortadoTrain (tier 3) -> CortadoInfer (tier 3)"), r.stderr)
    }

    func testMendedGraphPasses() throws {
        let r = try check(removingUpwardEdge(try graph()))
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stdout.contains("all pointing down"), r.stdout)
    }

    func testInferenceBinaryReachingMPIFails() throws {
        let g = editing(removingUpwardEdge(try graph()), "CortadoInfer") { t in
            t["target_dependencies"] = (t["target_dependencies"] as? [String] ?? []) + ["CortadoMPI"]
        }
        let r = try check(g)
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.stderr.contains("cortado-infer reaches CortadoMPI"), r.stderr)
    }

    func testFolderNotNamedAfterTargetFails() throws {
        let g = editing(removingUpwardEdge(try graph()), "CortadoData") { t in t["path"] = "Sources/1-Data" }
        let r = try check(g)
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.stderr.contains("CortadoData: folder Sources/1-Data is not Sources/CortadoData"), r.stderr)
    }
}
