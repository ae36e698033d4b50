import CortadoCore
import CortadoData
import CortadoModel
import CortadoTestSupport
import Foundation
import XCTest

/// Transfer: a small CNN pre-trained on Fashion-MNIST classes 0–4, fine-tuned on 416 images of
/// classes 5–9 with the convolutional body frozen and a new head, beats the same model trained
/// from scratch on the same small budget (13 steps).
final class TransferTests: XCTestCase {
    func testFineTunedBeatsScratchOnASmallBudget() throws {
        let dir = Support.scratch("transfer")
        for (name, classes, limit, val) in [("a", "0,1,2,3,4", "8000", "400"), ("b", "5,6,7,8,9", "1000", "100")] {
            let r = try Support.run([
                Support.product("cortado"), "prepare", "fashion-mnist", "--out", dir + "/" + name,
                "--classes", classes, "--limit", limit, "--validation", val
            ])
            XCTAssertEqual(r.status, 0, r.output)
        }
        let layers =
            "model.layers=[{type: conv2d, filters: 16, kernel: 3, padding: 1}, {type: relu}, {type: max_pool, size: 2},"
            + " {type: conv2d, filters: 16, kernel: 3, padding: 1}, {type: relu}, {type: max_pool, size: 2}, {type: flatten}, {type: dense, units: 5}]"
        let common = [
            Support.repoRoot + "/jobs/fashion-cnn.yaml", "--json", "--set", "threads=1", "--set", "batch_size=16",
            "--set", "optimizer.warmup_steps=0", "--set", "emit=[fp32]", "--set", layers
        ]
        let pre = try Support.mpirun(
            2, common + ["--run-dir", dir + "/pre", "--set", "data=\(dir)/a/manifest.json", "--set", "epochs=3"])
        XCTAssertEqual(pre.status, 0, pre.output)
        func accuracy(_ extra: [String], _ run: String) throws -> Double {
            let r = try Support.mpirun(
                2,
                common + [
                    "--run-dir", dir + "/" + run, "--set", "data=\(dir)/b/manifest.json", "--set", "epochs=1",
                    "--set", "optimizer.schedule=constant"
                ] + extra)
            XCTAssertEqual(r.status, 0, r.output)
            return (try Support.lastJSON(r)["test"] as! [String: Double])["fp32_accuracy"]!
        }
        for lr in ["0.05", "0.1"] {
            let ft = try accuracy(
                [
                    "--set", "optimizer.learning_rate=\(lr)", "--set", "init_from=\(dir)/pre/model-fp32.cmodel",
                    "--set", "init_exclude=[7]", "--set", "freeze=[0, 3]"
                ], "ft-\(lr)")
            let scratch = try accuracy(["--set", "optimizer.learning_rate=\(lr)"], "scratch-\(lr)")
            XCTAssertGreaterThan(ft, scratch, "lr \(lr): fine-tuned \(ft) vs scratch \(scratch)")
        }
    }
}
