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

/// `cortado compress` on a training checkpoint (not only a .cmodel): the architecture comes from
/// the checkpoint's job spec, shape and classes from the manifest.
final class CompressCheckpointTests: XCTestCase {
    /// Its fp32 file scores the test accuracy the trainer reported for the same parameters
    /// (to within an argmax tie flipped by BLAS batching), and records where it came from; a
    /// damaged checkpoint is refused naming the file.
    func testCompressingACheckpointReproducesTheTrainersAccuracy() throws {
        let dir = Support.scratch("compress-checkpoint")
        let r = try Support.mpirun(
            2,
            [
                Support.repoRoot + "/jobs/fashion-mlp.yaml", "--run-dir", dir + "/run", "--json",
                "--set", "data=\(Support.smallData)", "--set", "threads=1", "--set", "epochs=1", "--set",
                "batch_size=32",
                "--set", "model.layers=[{type: dense, units: 32}, {type: relu}, {type: dense, units: 10}]", "--set",
                "emit=[]"
            ])
        XCTAssertEqual(r.status, 0, r.output)
        let summary = try Support.lastJSON(r)
        let checkpoint = try XCTUnwrap(summary["checkpoint"] as? String)
        let trained = try XCTUnwrap((summary["test"] as? [String: Double])?["fp32_accuracy"])
        let c = try Support.run([
            Support.product("cortado"), "compress", checkpoint, "--data", Support.smallData, "--out", dir + "/c",
            "--recipe", "fp32", "--recipe", "int8", "--json", dir + "/c.json"
        ])
        XCTAssertEqual(c.status, 0, c.output)
        let rows = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/c.json")))
                as? [[String: Any]])
        let fp32 = try XCTUnwrap(rows.first { $0["recipe"] as? String == "fp32" }?["accuracy"] as? Double)
        XCTAssertEqual(fp32, trained, accuracy: 0.002, "fp32 from the checkpoint vs the trainer's test accuracy")
        XCTAssertGreaterThan(fp32, 0.6)
        XCTAssertEqual(try ModelFile.load(dir + "/c/model-fp32.cmodel").header.metadata["compressed_from"], checkpoint)

        var bytes = try Data(contentsOf: URL(fileURLWithPath: checkpoint))
        bytes[bytes.count - 100] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: dir + "/torn.h5"))
        let bad = try Support.run([
            Support.product("cortado"), "compress", dir + "/torn.h5", "--data", Support.smallData, "--out", dir + "/d"
        ])
        XCTAssertEqual(bad.status, 2, bad.output)
        XCTAssertTrue(bad.stderr.contains("torn.h5: checksum mismatch"), bad.stderr)
    }
}
