import CortadoCore
import CortadoData
import CortadoModel
import CortadoTestSupport
import Foundation
import XCTest

/// Early stopping on the validation metric: the run stops when it stops improving, keeps the
/// best checkpoint, and emits the best parameters.
final class EarlyStoppingTests: XCTestCase {
    func testStopsAndKeepsTheBest() throws {
        let dir = Support.scratch("early")
        let r = try Support.mpirun(
            2,
            [
                Support.repoRoot + "/jobs/fashion-mlp.yaml", "--run-dir", dir + "/run", "--json",
                "--set", "data=\(Support.smallData)", "--set", "threads=1", "--set", "epochs=40",
                "--set", "batch_size=32", "--set", "optimizer.schedule=constant", "--set",
                "optimizer.learning_rate=0.1",
                "--set", "early_stopping={metric: val_loss, patience: 2}", "--set", "emit=[fp32]"
            ])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stdout.contains("early stopping: val_loss has not improved for 2 epochs"), r.stdout)
        let s = try Support.lastJSON(r)
        XCTAssertLessThan(s["steps"] as! Int, 40 * 54, "stopped before the last epoch")
        let lines = try String(contentsOfFile: dir + "/run/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        let losses = try lines.map {
            (try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Double])["val_loss"]!
        }
        XCTAssertGreaterThan(losses.suffix(2).min()!, losses.min()!, "the last two epochs did not improve")
        XCTAssertEqual(
            (s["validation"] as! [String: Double])["loss"]!, losses.min()!, accuracy: 1e-6,
            "the best parameters are restored")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/run/checkpoints/best.h5"))
        XCTAssertEqual(s["best_epoch"] as? Int, losses.firstIndex(of: losses.min()!)! + 1, "the epoch kept")
    }

    /// Data without validation rows (`prepare movielens --no-validation`, the final fit): early
    /// stopping is refused before step 0, naming the data; `early_stopping=null` trains the
    /// epochs asked for and reports no best epoch.
    func testNoValidationRowsRefuseEarlyStopping() throws {
        let wheel =
            (ProcessInfo.processInfo.environment["CORTADO_CACHE"] ?? "/var/cache/cortado")
            + "/recbole-1.2.1-py3-none-any.whl"
        let dir = Support.scratch("early-no-validation")
        let prep = try Support.run([
            Support.product("cortado"), "prepare", "movielens", "--source", wheel, "--limit", "3000",
            "--no-validation", "--out", dir + "/data", "--overwrite"
        ])
        XCTAssertEqual(prep.status, 0, prep.output)
        let args = [
            Support.repoRoot + "/jobs/recsys-mf.yaml", "--run-dir", dir + "/run", "--json", "--overwrite",
            "--set", "data=\(dir)/data/manifest.json", "--set", "threads=1", "--set", "emit=[]", "--set", "epochs=2"
        ]
        let refused = try Support.mpirun(2, args)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(
            refused.output.contains("early_stopping: \(dir)/data/manifest.json has no validation rows"), refused.output)
        XCTAssertFalse(refused.output.contains("epoch 1/"), "refused before step 0: \(refused.output)")
        let fixed = try Support.mpirun(2, args + ["--set", "early_stopping=null"])
        XCTAssertEqual(fixed.status, 0, fixed.output)
        let s = try Support.lastJSON(fixed)
        XCTAssertNil(s["best_epoch"])
        XCTAssertTrue(fixed.stdout.contains("epoch 2/2"), fixed.stdout)
        XCTAssertFalse(
            fixed.stdout.contains("val_rmse"), "no validation metrics without validation rows: \(fixed.stdout)")
        XCTAssertEqual((s["validation"] as? [String: Double])?.isEmpty, true)
    }
}
