import CortadoCore
import CortadoData
import CortadoModel
import Foundation
import XCTest

/// Real `mpirun` runs of the built cortado-train on real Fashion-MNIST rows. Every run is under
/// a timeout (Support.run); each test has its own run folder.
final class MPITests: XCTestCase {
    var data: String { Support.smallData }

    /// Small, fast settings: a 784-32-10 MLP, 1 BLAS thread per rank.
    func args(_ runDir: String, _ extra: [String] = []) -> [String] {
        [Support.repoRoot + "/jobs/fashion-mlp.yaml", "--run-dir", runDir, "--json",
         "--set", "data=\(data)", "--set", "threads=1", "--set", "verify_checksums=true",
         "--set", "model.layers=[{type: dense, units: 32}, {type: relu}, {type: dense, units: 10}]",
         "--set", "optimizer.warmup_steps=0", "--set", "batch_size=32"] + extra
    }

    func readGradient(_ path: String) throws -> [Float] { try HDF5File.open(path).readFloats("gradient") }

    /// The averaged gradient 2 ranks compute (8 rows each) equals the gradient one process
    /// computes on the 16 rows together.
    func testTwoRankGradientEqualsSingleProcessOnTheUnion() throws {
        let dir = Support.scratch("probe")
        let r1 = try Support.mpirun(1, args(dir + "/r1", ["--set", "batch_size=16", "--probe-gradient", dir + "/g1.h5"]))
        XCTAssertEqual(r1.status, 0, r1.output)
        let r2 = try Support.mpirun(2, args(dir + "/r2", ["--set", "batch_size=8", "--probe-gradient", dir + "/g2.h5"]))
        XCTAssertEqual(r2.status, 0, r2.output)
        let g1 = try readGradient(dir + "/g1.h5"), g2 = try readGradient(dir + "/g2.h5")
        XCTAssertEqual(g1.count, 784 * 32 + 32 + 32 * 10 + 10)
        XCTAssertGreaterThan(g1.map { abs($0) }.max()!, 1e-4, "gradient should not be zero")
        assertClose(g1, g2, rel: 1e-5, abs: 1e-7, "gradient np2 vs np1")
        XCTAssertEqual(try HDF5File.open(dir + "/g1.h5").doubleAttribute("loss"),
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
        for (key, v) in zip(["compute_s", "data_s", "allreduce_s", "update_s"], parts) { XCTAssertGreaterThan(v, 0, key) }
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
            let inf = try Support.run([Support.product("cortado-infer"), models[precision]!, "--input", testFile, "--json",
                                       "--output", dir + "/pred-\(precision).csv"])
            XCTAssertEqual(inf.status, 0, inf.output)
            let obj = try Support.lastJSON(inf)
            XCTAssertEqual(Double(obj["accuracy"] as! String)!, test[key]!, accuracy: 0.00006, precision)
            let csv = try String(contentsOfFile: dir + "/pred-\(precision).csv", encoding: .utf8).split(separator: "\n")
            XCTAssertEqual(csv.count, 4001)
            XCTAssertTrue(csv[0].hasPrefix("row,predicted,label,p_T-shirt/top"), String(csv[0]))
        }
    }

    /// -np 3 with --oversubscribe on 4 shards: uneven shard/rank split, same step count on every
    /// rank, and the run finishes.
    func testThreeRanksOnFourShards() throws {
        let dir = Support.scratch("np3")
        let r = try Support.run(["mpirun", "-np", "3", "--oversubscribe", "--bind-to", "none", Support.product("cortado-train")]
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
        func args(_ run: String, _ extra: [String]) -> [String] { self.args(run, ["--set", "optimizer.schedule=constant"] + extra) }
        let full = try Support.mpirun(2, args(dir + "/full", ["--set", "epochs=2"]))
        XCTAssertEqual(full.status, 0, full.output)
        let first = try Support.mpirun(2, args(dir + "/split", ["--set", "epochs=1"]))
        XCTAssertEqual(first.status, 0, first.output)
        let second = try Support.mpirun(2, args(dir + "/split", ["--set", "epochs=2", "--resume"]))
        XCTAssertEqual(second.status, 0, second.output)
        XCTAssertTrue(second.stdout.contains("resumed from \(dir)/split/checkpoints/step-00000054.h5 at step 54"), second.stdout)
        let metrics = try String(contentsOfFile: dir + "/split/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        let steps = try metrics.map { (try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Double])["step"]! }
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
        let r = try Support.mpirun(2, args(Support.scratch("badspec") + "/run", ["--set", "optimizer.lr=0.1"]), timeout: 60)
        XCTAssertEqual(r.status, 2, r.output)
        XCTAssertTrue(r.stderr.contains("optimizer.lr: unknown key"), r.stderr)
        XCTAssertEqual(r.stderr.components(separatedBy: "unknown key").count - 1, 1, "rank 0 alone reports: \(r.stderr)")
    }
}

/// Interop: what we write opens in h5dump and h5py, and the inference binary links no MPI.
final class InteropTests: XCTestCase {
    func testInferenceBinaryDoesNotLinkMPI() throws {
        let r = try Support.run(["ldd", Support.product("cortado-infer")])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertFalse(r.stdout.contains("libmpi"), r.stdout)
        XCTAssertTrue(r.stdout.contains("libhdf5"), r.stdout)
        let t = try Support.run(["ldd", Support.product("cortado-train")])
        XCTAssertTrue(t.stdout.contains("libmpi"), "the trainer should link MPI: \(t.stdout)")
    }

    func testShardsCheckpointsAndManifestOpenInH5dumpAndH5py() throws {
        let manifest = Support.smallData
        let dir = (manifest as NSString).deletingLastPathComponent
        let run = Support.scratch("interop") + "/run"
        let r = try Support.mpirun(2, [Support.repoRoot + "/jobs/fashion-mlp.yaml", "--run-dir", run, "--set", "data=\(manifest)",
                                       "--set", "epochs=1", "--set", "threads=1", "--set", "emit=[fp32]",
                                       "--set", "model.layers=[{type: dense, units: 10}]"])
        XCTAssertEqual(r.status, 0, r.output)
        let ckpt = run + "/checkpoints/step-00000027.h5"
        for f in [dir + "/train-000.h5", dir + "/test.h5", ckpt] {
            let h = try Support.run(["h5dump", "-H", f])
            XCTAssertEqual(h.status, 0, h.output)
            XCTAssertTrue(h.stdout.contains("DATASET"), h.stdout)
        }
        let script = Support.repoRoot + "/cluster/check-files.py"
        let p = try Support.run(["python3", script, manifest, ckpt])
        XCTAssertEqual(p.status, 0, p.output)
        XCTAssertTrue(p.stdout.contains("OK"), p.output)
    }
}

/// Convolutional models through the real binaries: determinism with dropout, and inference of
/// conv models (fp32, and int8 dense layers beside fp32 convolutions).
final class CNNTests: XCTestCase {
    func args(_ runDir: String) -> [String] {
        [Support.repoRoot + "/jobs/fashion-cnn.yaml", "--run-dir", runDir, "--json", "--set", "data=\(Support.smallData)",
         "--set", "threads=1", "--set", "epochs=1", "--set", "batch_size=32",
         "--set", "model.layers=[{type: conv2d, filters: 4, kernel: 3, stride: 2, padding: 1}, {type: relu}, {type: max_pool, size: 2},"
             + " {type: flatten}, {type: dense, units: 16}, {type: relu}, {type: dropout, rate: 0.3}, {type: dense, units: 10}]"]
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
        XCTAssertEqual(test["fp32_model_accuracy"]!, test["fp32_accuracy"]!, accuracy: 1e-9, "dropout is off at inference")
        let models = s["models"] as! [String: String]
        let testFile = (Support.smallData as NSString).deletingLastPathComponent + "/test.h5"
        for (p, key) in [("fp32", "fp32_model_accuracy"), ("int8", "int8_model_accuracy")] {
            let inf = try Support.run([Support.product("cortado-infer"), models[p]!, "--input", testFile, "--json"])
            XCTAssertEqual(inf.status, 0, inf.output)
            XCTAssertEqual(Double(try Support.lastJSON(inf)["accuracy"] as! String)!, test[key]!, accuracy: 0.00006, p)
        }
        XCTAssertEqual(test["int8_model_accuracy"]!, test["fp32_accuracy"]!, accuracy: 0.02)
    }
}

/// Early stopping on the validation metric: the run stops when it stops improving, keeps the
/// best checkpoint, and emits the best parameters.
final class EarlyStoppingTests: XCTestCase {
    func testStopsAndKeepsTheBest() throws {
        let dir = Support.scratch("early")
        let r = try Support.mpirun(2, [Support.repoRoot + "/jobs/fashion-mlp.yaml", "--run-dir", dir + "/run", "--json",
                                       "--set", "data=\(Support.smallData)", "--set", "threads=1", "--set", "epochs=40",
                                       "--set", "batch_size=32", "--set", "optimizer.schedule=constant", "--set", "optimizer.learning_rate=0.1",
                                       "--set", "early_stopping={metric: val_loss, patience: 2}", "--set", "emit=[fp32]"])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stdout.contains("early stopping: val_loss has not improved for 2 epochs"), r.stdout)
        let s = try Support.lastJSON(r)
        XCTAssertLessThan(s["steps"] as! Int, 40 * 54, "stopped before the last epoch")
        let lines = try String(contentsOfFile: dir + "/run/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        let losses = try lines.map { (try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Double])["val_loss"]! }
        XCTAssertGreaterThan(losses.suffix(2).min()!, losses.min()!, "the last two epochs did not improve")
        XCTAssertEqual((s["validation"] as! [String: Double])["loss"]!, losses.min()!, accuracy: 1e-6, "the best parameters are restored")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/run/checkpoints/best.h5"))
    }
}

/// Fine-tuning mechanics: `init_from` copies matching tensors, `init_exclude` leaves a fresh
/// head, `freeze` keeps the body bit-for-bit; `prepare --classes` makes class subsets.
final class FineTuningTests: XCTestCase {
    func testInitFromFreezeAndNewHead() throws {
        let dir = Support.scratch("finetune")
        let prep = try Support.run([Support.product("cortado"), "prepare", "fashion-mnist", "--out", dir + "/b", "--classes", "5,6,7,8,9",
                                    "--limit", "2000", "--validation", "100"])
        XCTAssertEqual(prep.status, 0, prep.output)
        let mb = try DatasetManifest.load(dir + "/b/manifest.json")
        XCTAssertEqual(mb.classes, ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"])
        XCTAssertEqual(Set(try HDF5File.open(dir + "/b/test.h5").readInt64s("labels")), Set(0..<5))

        let layers = "model.layers=[{type: dense, units: 32}, {type: relu}, {type: dense, units: 5}]"
        let common = [Support.repoRoot + "/jobs/fashion-mlp.yaml", "--json", "--set", "threads=1", "--set", "batch_size=32",
                      "--set", layers, "--set", "emit=[fp32]", "--set", "epochs=1"]
        // "Pre-train" on the same 5-class data (only the mechanics matter here).
        let pre = try Support.mpirun(2, common + ["--run-dir", dir + "/pre", "--set", "data=\(dir)/b/manifest.json"])
        XCTAssertEqual(pre.status, 0, pre.output)
        let ft = try Support.mpirun(2, common + ["--run-dir", dir + "/ft", "--set", "data=\(dir)/b/manifest.json",
                                                 "--set", "init_from=\(dir)/pre/model-fp32.cmodel", "--set", "init_exclude=[2]", "--set", "freeze=[0]"])
        XCTAssertEqual(ft.status, 0, ft.output)
        XCTAssertTrue(ft.stdout.contains("initialized 2 tensors from \(dir)/pre/model-fp32.cmodel; fresh: layers.2.weight, layers.2.bias"), ft.stdout)

        let source = try ModelFile.load(dir + "/pre/model-fp32.cmodel")
        let ckpt = try String(contentsOfFile: dir + "/ft/checkpoints/latest", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let after = try HDF5File.open(dir + "/ft/checkpoints/" + ckpt).readFloats("params")
        let layout = ModelSpec(inputShape: [1, 28, 28], layers: [.dense(units: 32), .relu, .dense(units: 5)]).parameterLayout
        for t in layout.tensors {
            let was = source.values(source.tensor(t.name)!, as: Float.self)
            let now = Array(after[t.offset..<(t.offset + t.count)])
            if t.name.hasPrefix("layers.0.") {
                XCTAssertEqual(now, was, "\(t.name) is frozen: bit-for-bit the pre-trained values")
            } else {
                XCTAssertNotEqual(now, was, "\(t.name) is the new head: initialized fresh and trained")
            }
        }
        // A spec naming a layer that does not exist fails before start, naming the key.
        let bad = try Support.mpirun(2, common + ["--run-dir", dir + "/bad", "--set", "data=\(dir)/b/manifest.json", "--set", "freeze=[7]"], timeout: 60)
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("freeze: layer 7 does not exist"), bad.stderr)
    }
}

/// Transfer: a small CNN pre-trained on Fashion-MNIST classes 0–4, fine-tuned on 416 images of
/// classes 5–9 with the convolutional body frozen and a new head, beats the same model trained
/// from scratch on the same small budget (13 steps).
final class TransferTests: XCTestCase {
    func testFineTunedBeatsScratchOnASmallBudget() throws {
        let dir = Support.scratch("transfer")
        for (name, classes, limit, val) in [("a", "0,1,2,3,4", "8000", "400"), ("b", "5,6,7,8,9", "1000", "100")] {
            let r = try Support.run([Support.product("cortado"), "prepare", "fashion-mnist", "--out", dir + "/" + name,
                                     "--classes", classes, "--limit", limit, "--validation", val])
            XCTAssertEqual(r.status, 0, r.output)
        }
        let layers = "model.layers=[{type: conv2d, filters: 16, kernel: 3, padding: 1}, {type: relu}, {type: max_pool, size: 2},"
            + " {type: conv2d, filters: 16, kernel: 3, padding: 1}, {type: relu}, {type: max_pool, size: 2}, {type: flatten}, {type: dense, units: 5}]"
        let common = [Support.repoRoot + "/jobs/fashion-cnn.yaml", "--json", "--set", "threads=1", "--set", "batch_size=16",
                      "--set", "optimizer.warmup_steps=0", "--set", "emit=[fp32]", "--set", layers]
        let pre = try Support.mpirun(2, common + ["--run-dir", dir + "/pre", "--set", "data=\(dir)/a/manifest.json", "--set", "epochs=3"])
        XCTAssertEqual(pre.status, 0, pre.output)
        func accuracy(_ extra: [String], _ run: String) throws -> Double {
            let r = try Support.mpirun(2, common + ["--run-dir", dir + "/" + run, "--set", "data=\(dir)/b/manifest.json", "--set", "epochs=1",
                                                    "--set", "optimizer.schedule=constant"] + extra)
            XCTAssertEqual(r.status, 0, r.output)
            return (try Support.lastJSON(r)["test"] as! [String: Double])["fp32_accuracy"]!
        }
        for lr in ["0.05", "0.1"] {
            let ft = try accuracy(["--set", "optimizer.learning_rate=\(lr)", "--set", "init_from=\(dir)/pre/model-fp32.cmodel",
                                   "--set", "init_exclude=[7]", "--set", "freeze=[0, 3]"], "ft-\(lr)")
            let scratch = try accuracy(["--set", "optimizer.learning_rate=\(lr)"], "scratch-\(lr)")
            XCTAssertGreaterThan(ft, scratch, "lr \(lr): fine-tuned \(ft) vs scratch \(scratch)")
        }
    }
}
