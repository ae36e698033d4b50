import CortadoCore
import CortadoData
import CortadoJob
import CortadoModel
import CortadoPipeline
import CortadoTestSupport
import CortadoTrain
import XCTest

/// `cortado inspect JOB.yaml|MODEL.cmodel`: the architecture table.
final class InspectTableTests: XCTestCase {
    func testJobSpecTableHasShapesParametersFLOPsAndFrozen() throws {
        let dir = Support.scratch("inspect")
        let job = dir + "/job.yaml"
        try """
        data: \(Support.smallData)
        model:
          layers: [{type: conv2d, filters: 4, kernel: 3, padding: 1}, {type: relu}, {type: max_pool, size: 2}, {type: flatten}, {type: dense, units: 10}]
        freeze: [0]
        """.write(toFile: job, atomically: true, encoding: .utf8)
        let r = try Support.run([Support.product("cortado"), "inspect", job])
        XCTAssertEqual(r.status, 0, r.output)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        let conv = try XCTUnwrap(lines.first { $0.hasPrefix("0 ") }, r.stdout)
        // conv: 4·1·3·3 + 4 = 40 parameters; 2·(4·28·28)·(1·3·3) FLOPs; frozen.
        XCTAssertTrue(
            conv.contains("[4, 28, 28]") && conv.contains(" 40 ") && conv.contains("56448") && conv.hasSuffix("yes"),
            conv)
        let dense = try XCTUnwrap(lines.first { $0.hasPrefix("4 ") }, r.stdout)
        XCTAssertTrue(dense.contains("[10]") && dense.contains("7850"), dense) // 784·10 + 10
        XCTAssertTrue(r.stdout.contains("7890 parameters (7850 trainable)"), r.stdout)
    }
}
