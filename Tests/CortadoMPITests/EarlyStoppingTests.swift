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
    }
}
