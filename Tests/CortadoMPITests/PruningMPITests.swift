import CortadoCompress
import CortadoCore
import CortadoInfer
import CortadoJob
import CortadoModel
import CortadoPipeline
import CortadoTestSupport
import CortadoTrain
import Foundation
import XCTest

/// Gradual pruning under mpirun: the mask is identical on every rank (the parameters are), it
/// stays applied after every step, the final sparsity is exact, a resumed run is bit-identical,
/// and the emitted sparse int8 model scores close to the dense one.
final class PruningMPITests: XCTestCase {
    func args(_ runDir: String, _ extra: [String] = []) -> [String] {
        [
            Support.repoRoot + "/jobs/fashion-mlp-pruned.yaml", "--run-dir", runDir, "--json", "--set",
            "data=\(Support.smallData)",
            "--set", "threads=1", "--set", "epochs=4", "--set", "batch_size=32", "--set", "optimizer.warmup_steps=0",
            "--set", "optimizer.schedule=constant", "--set", "pruning.every_steps=5", "--set", "pruning.end_step=60",
            "--set", "checkpoint.every_steps=20", "--set", "emit=[fp32, prune0.9+int8]"
        ] + extra
    }

    func testMasksHoldAcrossStepsRanksAndResume() throws {
        let dir = Support.scratch("pruning")
        let whole = try Support.mpirun(2, args(dir + "/whole"), timeout: 180)
        XCTAssertEqual(whole.status, 0, whole.output)
        let summary = try Support.lastJSON(whole)
        let steps = summary["steps"] as! Int
        XCTAssertGreaterThan(steps, 60, "the run must go past the schedule's end")
        // Exactly 90 % of the prunable weights are zero at the end, after ≥ 40 more steps of updates.
        let ck = try Checkpoint.newest(runDir: dir + "/whole", warn: { _ in })!.checkpoint
        let pruner = Pruner(layout: ck.layout, scope: .global)
        let zeros = ck.params.withUnsafeBufferPointer { pruner.zeros($0.baseAddress!) }
        XCTAssertEqual(zeros, Int((Double(pruner.prunableCount) * 0.9).rounded()), whole.stdout)
        XCTAssertTrue(
            whole.stdout.contains("pruning: \(zeros) of \(pruner.prunableCount) prunable weights are zero (90.0%)"),
            whole.stdout)
        // Both ranks hold the same masked parameters: rank 1's view equals rank 0's checkpoint,
        // seen through a resume that must continue bit-exactly.
        let split = dir + "/split"
        let first = try Support.mpirun(2, args(split, ["--set", "epochs=1"]), timeout: 180)
        XCTAssertEqual(first.status, 0, first.output)
        let second = try Support.mpirun(2, args(split, ["--resume"]), timeout: 180)
        XCTAssertEqual(second.status, 0, second.output)
        let resumed = try Checkpoint.newest(runDir: split, warn: { _ in })!.checkpoint
        XCTAssertEqual(resumed.step, ck.step)
        XCTAssertEqual(resumed.params, ck.params, "resume through the pruning schedule is not bit-exact")
        XCTAssertEqual(resumed.optimizerState, ck.optimizerState)
        // The sparse int8 file: CSR, and within 2 points of the dense fp32 file on the test split.
        let test = summary["test"] as! [String: Double]
        let dense = test["fp32_model_accuracy"]!, sparse = test["prune0.9+int8_model_accuracy"]!
        XCTAssertEqual(sparse, dense, accuracy: 0.02, "\(test)")
        XCTAssertNotNil(try ModelFile.load(dir + "/whole/model-prune0.9+int8.cmodel").tensor("layers.0.weight.indptr"))
    }

}
