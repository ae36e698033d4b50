import CortadoCore
import CortadoData
import CortadoModel
import CortadoTestSupport
import Foundation
import XCTest

/// Convolutional models through the real binaries: determinism with dropout, and inference of
/// conv models (fp32, and int8 dense layers beside fp32 convolutions).
final class CNNTests: XCTestCase {
    func args(_ runDir: String) -> [String] {
        [
            Support.repoRoot + "/jobs/fashion-cnn.yaml", "--run-dir", runDir, "--json", "--set",
            "data=\(Support.smallData)",
            "--set", "threads=1", "--set", "epochs=1", "--set", "batch_size=32",
            "--set",
            "model.layers=[{type: conv2d, filters: 4, kernel: 3, stride: 2, padding: 1}, {type: relu}, {type: max_pool, size: 2},"
                + " {type: flatten}, {type: dense, units: 16}, {type: relu}, {type: dropout, rate: 0.3}, {type: dense, units: 10}]"
        ]
    }

    /// Same job, seed and world size → bit-identical parameters, dropout included.
    func testSameSeedGivesBitIdenticalParametersWithDropout() throws {
        let dir = Support.scratch("cnn-determinism")
        var params = [[Float]]()
        for run in ["a", "b"] {
            let r = try Support.mpirun(2, args(dir + "/" + run))
            XCTAssertEqual(r.status, 0, r.output)
            params.append(try HDF5File.open(dir + "/\(run)/checkpoints/step-00000054.h5").readFloats("params"))
        }
        XCTAssertEqual(params[0], params[1])
        let other = try Support.mpirun(2, args(dir + "/c") + ["--set", "seed=7"])
        XCTAssertEqual(other.status, 0, other.output)
        XCTAssertNotEqual(try HDF5File.open(dir + "/c/checkpoints/step-00000054.h5").readFloats("params"), params[0])
    }

    /// cortado-infer runs conv models and reproduces the accuracy the trainer reported.
    func testInferenceReproducesCNNAccuracy() throws {
        let dir = Support.scratch("cnn-infer")
        let r = try Support.mpirun(2, args(dir + "/run"))
        XCTAssertEqual(r.status, 0, r.output)
        let s = try Support.lastJSON(r)
        let test = s["test"] as! [String: Double]
        XCTAssertGreaterThan(test["fp32_accuracy"]!, 0.3, "one small epoch learns something (chance is 0.1)")
        XCTAssertEqual(
            test["fp32_model_accuracy"]!, test["fp32_accuracy"]!, accuracy: 1e-9, "dropout is off at inference")
        let models = s["models"] as! [String: String]
        let testFile = (Support.smallData as NSString).deletingLastPathComponent + "/test.h5"
        for (p, key) in [("fp32", "fp32_model_accuracy"), ("int8", "int8_model_accuracy")] {
            let inf = try Support.run([Support.product("cortado-infer"), models[p]!, "--input", testFile, "--json"])
            XCTAssertEqual(inf.status, 0, inf.output)
            XCTAssertEqual(try Support.lastJSON(inf)["accuracy"] as! Double, test[key]!, accuracy: 0.00006, p)
        }
        XCTAssertEqual(test["int8_model_accuracy"]!, test["fp32_accuracy"]!, accuracy: 0.02)
    }
}
