import CortadoCore
import CortadoData
import CortadoTestSupport
import Foundation
import XCTest

/// Gradient accumulation (`accumulate_steps: K`): K micro-batches of B per exchange give the
/// step a batch of B·K gives — the same rows, the same mean gradient, the same update — on two
/// ranks under mpirun, with the overlapped exchange on and off.
final class AccumulationMPITests: XCTestCase {
    func args(_ runDir: String, _ extra: [String]) -> [String] {
        [
            Support.repoRoot + "/jobs/fashion-mlp.yaml", "--run-dir", runDir, "--json",
            "--set", "data=\(Support.smallData)", "--set", "threads=1", "--set", "emit=[]", "--set", "epochs=1",
            "--set", "model.layers=[{type: dense, units: 32}, {type: relu}, {type: dense, units: 10}]",
            "--set", "optimizer.type=sgd", "--set", "optimizer.momentum=0.9", "--set", "optimizer.learning_rate=0.05",
            "--set", "optimizer.warmup_steps=0", "--set", "optimizer.schedule=constant",
            "--set", "distributed.bucket_kib=16"
        ] + extra
    }

    func train(_ dir: String, _ extra: [String]) throws -> (params: [Float], summary: [String: Any], out: String) {
        let r = try Support.mpirun(2, args(dir, extra), timeout: 120)
        XCTAssertEqual(r.status, 0, r.output)
        let summary = try Support.lastJSON(r)
        let path = try XCTUnwrap(summary["checkpoint"] as? String)
        return (try HDF5File.open(path).readFloats("params"), summary, r.stdout)
    }

    func testAccumulatedMicroBatchesEqualTheLargeBatch() throws {
        let dir = Support.scratch("accumulate")
        let large = try train(dir + "/b64", ["--set", "batch_size=64"])
        for overlap in ["off", "test"] {
            let acc = try train(
                dir + "/b16x4-" + overlap,
                ["--set", "batch_size=16", "--set", "accumulate_steps=4", "--set", "distributed.overlap=\(overlap)"])
            XCTAssertTrue(acc.out.contains("(4 micro-batches of 16 per exchange)"), acc.out)
            XCTAssertEqual(acc.summary["steps"] as? Int, large.summary["steps"] as? Int)
            let scale = large.params.map { abs($0) }.max() ?? 0
            let diff = zip(acc.params, large.params).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertEqual(acc.params.count, large.params.count)
            // Float rounding only: the same gradients summed in another order over ~27 steps.
            XCTAssertLessThanOrEqual(diff, 1e-5 * scale, "overlap \(overlap): parameters differ by \(diff)")
            let a = try XCTUnwrap((acc.summary["validation"] as? [String: Any])?["loss"] as? Double)
            let b = try XCTUnwrap((large.summary["validation"] as? [String: Any])?["loss"] as? Double)
            XCTAssertEqual(a, b, accuracy: 1e-4 * b)
        }
        // …and it is not the same as B alone (the test can fail).
        let small = try train(dir + "/b16", ["--set", "batch_size=16"])
        XCTAssertNotEqual(small.summary["steps"] as? Int, large.summary["steps"] as? Int)
    }
}
