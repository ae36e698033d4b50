import CortadoCore
import CortadoData
import CortadoModel
import CortadoTestSupport
import Foundation
import XCTest

/// Real `mpirun` runs of the built cortado-train on real Fashion-MNIST rows. Every run is under
/// a timeout (Support.run); each test has its own run folder.
final class MPITests: XCTestCase {
    var data: String { Support.smallData }

    /// Small, fast settings: a 784-32-10 MLP, 1 BLAS thread per rank.
    func args(_ runDir: String, _ extra: [String] = []) -> [String] {
        [
            Support.repoRoot + "/jobs/fashion-mlp.yaml", "--run-dir", runDir, "--json",
            "--set", "data=\(data)", "--set", "threads=1", "--set", "verify_checksums=true",
            "--set", "model.layers=[{type: dense, units: 32}, {type: relu}, {type: dense, units: 10}]",
            "--set", "optimizer.warmup_steps=0", "--set", "batch_size=32"
        ] + extra
    }

    func readGradient(_ path: String) throws -> [Float] { try HDF5File.open(path).readFloats("gradient") }

    /// The averaged gradient 2 ranks compute (8 rows each) equals the gradient one process
    /// computes on the 16 rows together.
    func testTwoRankGradientEqualsSingleProcessOnTheUnion() throws {
        let dir = Support.scratch("probe")
        let r1 = try Support.mpirun(
            1, args(dir + "/r1", ["--set", "batch_size=16", "--probe-gradient", dir + "/g1.h5"]))
        XCTAssertEqual(r1.status, 0, r1.output)
        let r2 = try Support.mpirun(2, args(dir + "/r2", ["--set", "batch_size=8", "--probe-gradient", dir + "/g2.h5"]))
        XCTAssertEqual(r2.status, 0, r2.output)
        let g1 = try readGradient(dir + "/g1.h5"), g2 = try readGradient(dir + "/g2.h5")
        XCTAssertEqual(g1.count, 784 * 32 + 32 + 32 * 10 + 10)
        XCTAssertGreaterThan(g1.map { abs($0) }.max()!, 1e-4, "gradient should not be zero")
        assertClose(g1, g2, rel: 1e-5, abs: 1e-7, "gradient np2 vs np1")
        XCTAssertEqual(
            try HDF5File.open(dir + "/g1.h5").doubleAttribute("loss"),
            try HDF5File.open(dir + "/g2.h5").doubleAttribute("loss"), accuracy: 1e-5)
    }

    /// -np 2: trains, writes metrics, checkpoint and both model files; cortado-infer (which
    /// links no MPI) reproduces the test accuracies the trainer reported.
    func testTwoRanksTrainAndInferenceReproducesAccuracy() throws {
        let dir = Support.scratch("np2")
        let r = try Support.mpirun(2, args(dir + "/run", ["--set", "epochs=3", "--set", "checkpoint.every_steps=20"]))
        XCTAssertEqual(r.status, 0, r.output)
        let s = try Support.lastJSON(r)
        XCTAssertEqual(s["world_size"] as? Int, 2)
        XCTAssertEqual(s["steps"] as? Int, 3 * (1750 / 32))
        let val = s["validation"] as! [String: Double], test = s["test"] as! [String: Double]
        XCTAssertGreaterThan(val["accuracy"]!, 0.70, "3 epochs on 3 500 rows should reach 70 %")
        XCTAssertGreaterThan(val["top5_accuracy"]!, val["accuracy"]!, "10 classes: top-5 accuracy reported")
        XCTAssertEqual(test["fp32_model_accuracy"]!, test["fp32_accuracy"]!, accuracy: 1e-9)
        XCTAssertEqual(test["int8_model_accuracy"]!, test["fp32_accuracy"]!, accuracy: 0.01)

        let lines = try String(contentsOfFile: dir + "/run/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 3)
        let last = try JSONSerialization.jsonObject(with: Data(lines[2].utf8)) as! [String: Double]
        XCTAssertEqual(last["epoch"], 3)
        XCTAssertGreaterThan(last["samples_per_sec"]!, 0)
        // The epoch's step-time split: every part measured, together within the epoch's time.
        let parts = ["compute_s", "data_s", "allreduce_s", "update_s"].map { last[$0] ?? -1 }
        for (key, v) in zip(["compute_s", "data_s", "allreduce_s", "update_s"], parts) {
            XCTAssertGreaterThan(v, 0, key)
        }
        XCTAssertLessThanOrEqual(parts.reduce(0, +), last["epoch_sec"]!)
        XCTAssertGreaterThan(last["epoch_samples_per_sec"]!, 0)
        let stepMs = s["step_ms"] as! [String: Double]
        XCTAssertEqual(stepMs.keys.sorted(), ["compute", "data", "exchange", "update"])
        // Every rank's own split: rank 0's entries are the figures above; each rank computed.
        let byRank = s["step_ms_by_rank"] as! [String: [Double]]
        XCTAssertEqual(byRank.keys.sorted(), ["compute", "data", "exchange", "update"])
        for (key, values) in byRank {
            XCTAssertEqual(values.count, 2, key)
            XCTAssertEqual(values[0], stepMs[key]!, accuracy: 1e-9 * max(1, stepMs[key]!), key)
        }
        XCTAssertTrue(byRank["compute"]!.allSatisfy { $0 > 0 }, "\(byRank)")
        XCTAssertTrue(r.output.contains("ms/step by rank: compute "), r.output)
        XCTAssertGreaterThan(s["samples_per_sec_steady"] as! Double, 0, "3 epochs: a steady-state rate")
        let ckpts = try FileManager.default.contentsOfDirectory(atPath: dir + "/run/checkpoints").sorted()
        XCTAssertEqual(ckpts, ["latest", "step-00000140.h5", "step-00000160.h5", "step-00000162.h5"], "keep: 3")

        let models = s["models"] as! [String: String]
        let testFile = (data as NSString).deletingLastPathComponent + "/test.h5"
        for (precision, key) in [("fp32", "fp32_model_accuracy"), ("int8", "int8_model_accuracy")] {
            let inf = try Support.run([
                Support.product("cortado-infer"), models[precision]!, "--input", testFile, "--json",
                "--output", dir + "/pred-\(precision).csv"
            ])
            XCTAssertEqual(inf.status, 0, inf.output)
            let obj = try Support.lastJSON(inf)
            XCTAssertEqual(obj["accuracy"] as! Double, test[key]!, accuracy: 0.00006, precision)
            let csv = try String(contentsOfFile: dir + "/pred-\(precision).csv", encoding: .utf8).split(separator: "\n")
            XCTAssertEqual(csv.count, 4001)
            XCTAssertTrue(csv[0].hasPrefix("row,predicted,label,p_T-shirt/top"), String(csv[0]))
        }
    }

    /// -np 3 with --oversubscribe on 4 shards: uneven shard/rank split, same step count on every
    /// rank, and the run finishes.
    func testThreeRanksOnFourShards() throws {
        let dir = Support.scratch("np3")
        let r = try Support.run(
            ["mpirun", "-np", "3", "--oversubscribe", "--bind-to", "none", Support.product("cortado-train")]
                + args(dir + "/run", ["--set", "epochs=2", "--set", "emit=[int8]"]), timeout: 240)
        XCTAssertEqual(r.status, 0, r.output)
        let s = try Support.lastJSON(r)
        XCTAssertEqual(s["world_size"] as? Int, 3)
        XCTAssertEqual(s["steps"] as? Int, 2 * (3500 / 3 / 32))
        XCTAssertGreaterThan((s["validation"] as! [String: Double])["accuracy"]!, 0.65)
        XCTAssertEqual((s["models"] as! [String: String]).keys.sorted(), ["int8"])
        XCTAssertTrue(r.stdout.contains("3 ranks"), r.stdout)
    }

    /// 2N steps ≡ N steps + checkpoint + resume + N steps, bit for bit in parameters and
    /// momentum, and the resumed run continues from the checkpoint's step.
    func testResumeContinuesFromCheckpointBitExactly() throws {
        let dir = Support.scratch("resume")
        // A constant learning rate: a cosine schedule depends on the total step count, which
        // the two halves would see differently.
        func args(_ run: String, _ extra: [String]) -> [String] {
            self.args(run, ["--set", "optimizer.schedule=constant"] + extra)
        }
        let full = try Support.mpirun(2, args(dir + "/full", ["--set", "epochs=2"]))
        XCTAssertEqual(full.status, 0, full.output)
        let first = try Support.mpirun(2, args(dir + "/split", ["--set", "epochs=1"]))
        XCTAssertEqual(first.status, 0, first.output)
        let second = try Support.mpirun(2, args(dir + "/split", ["--set", "epochs=2", "--resume"]))
        XCTAssertEqual(second.status, 0, second.output)
        XCTAssertTrue(
            second.stdout.contains("resumed from \(dir)/split/checkpoints/step-00000054.h5 at step 54"), second.stdout)
        let metrics = try String(contentsOfFile: dir + "/split/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        let steps = try metrics.map {
            (try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Double])["step"]!
        }
        XCTAssertEqual(steps, [54, 108], "the resumed run logs only epoch 2")

        let a = try HDF5File.open(dir + "/full/checkpoints/step-00000108.h5")
        let b = try HDF5File.open(dir + "/split/checkpoints/step-00000108.h5")
        XCTAssertEqual(try a.readFloats("params"), try b.readFloats("params"))
        XCTAssertEqual(try a.readFloats("optimizer_state"), try b.readFloats("optimizer_state"))
        XCTAssertEqual(try a.intAttribute("step"), 108)

        // Without --resume or --overwrite, an existing run is not clobbered.
        let again = try Support.mpirun(2, args(dir + "/split", ["--set", "epochs=1"]))
        XCTAssertEqual(again.status, 2)
        XCTAssertTrue(again.stderr.contains("already holds checkpoints"), again.stderr)
    }

    /// A rank-specific failure before step 0 (one shard is missing) ends every rank, fast,
    /// with one message naming the rank and the file.
    func testMissingShardFailsAllRanksNamingTheFile() throws {
        let dir = Support.scratch("missing")
        let src = (data as NSString).deletingLastPathComponent
        for f in try FileManager.default.contentsOfDirectory(atPath: src) where f != "train-003.h5" {
            try FileManager.default.copyItem(atPath: src + "/" + f, toPath: dir + "/" + f)
        }
        var a = args(dir + "/run")
        a[a.firstIndex(of: "data=\(data)")!] = "data=\(dir)/manifest.json"
        let t0 = monotonicSeconds()
        let r = try Support.mpirun(2, a, timeout: 60)
        XCTAssertLessThan(monotonicSeconds() - t0, 30)
        XCTAssertEqual(r.status, 2, r.output)
        XCTAssertTrue(r.stderr.contains("train-003.h5: no such file"), r.stderr)
    }

    func testBadSpecFailsBeforeStartWithTheKey() throws {
        let r = try Support.mpirun(
            2, args(Support.scratch("badspec") + "/run", ["--set", "optimizer.lr=0.1"]), timeout: 60)
        XCTAssertEqual(r.status, 2, r.output)
        XCTAssertTrue(r.stderr.contains("optimizer.lr: unknown key"), r.stderr)
        XCTAssertEqual(
            r.stderr.components(separatedBy: "unknown key").count - 1, 1, "rank 0 alone reports: \(r.stderr)")
    }
}
