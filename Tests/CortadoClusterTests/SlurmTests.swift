import CortadoCore
import CortadoData
import CortadoTestSupport
import Foundation
import XCTest

/// The job scripts on a real Slurm (slurm-wlm: munge, slurmctld, slurmd) that
/// cluster/slurm-up.sh starts on this machine: training to the spine's accuracy, an array
/// sweep, preemption with requeue and a bit-identical rerun, the srun launcher.
final class SlurmTests: XCTestCase, SlurmJobs {
    static let up: Support.Result? = try? Support.run(["bash", Support.repoRoot + "/cluster/slurm-up.sh"], timeout: 300)

    /// Full Fashion-MNIST, prepared once per test process (2 shards).
    static let fullData: String = {
        let dir = NSTemporaryDirectory() + "cortado-tests-\(getpid())/fashion-full"
        let r = try? Support.run(
            [Support.product("cortado"), "prepare", "fashion-mnist", "--out", dir, "--shards", "2"], timeout: 300)
        precondition(r?.status == 0, "preparing Fashion-MNIST failed: \(r?.output ?? "")")
        return dir + "/manifest.json"
    }()

    override func setUpWithError() throws { try requireStarted(Self.up, "cluster/slurm-up.sh", else: "no Slurm") }

    /// Cancels job `id` (all its steps and processes) and waits up to 60 s for it to leave the
    /// queue; `run` reaches the controller (the local Slurm, or the virtual cluster's).
    static func cancel(_ id: String, run: ([String]) throws -> Support.Result) {
        guard !id.isEmpty, (try? run(["squeue", "-h", "-j", id]))?.stdout.contains(id) == true else { return }
        _ = try? run(["scancel", "--full", id])
        let t0 = monotonicSeconds()
        while (try? run(["squeue", "-h", "-j", id]))?.stdout.contains(id) == true, monotonicSeconds() - t0 < 60 {
            Thread.sleep(forTimeInterval: 1)
        }
    }

    func testSbatchTrainsFashionMNISTToTheSpinesAccuracy() throws {
        let dir = Support.scratch("slurm-train")
        let id = try sbatch(
            dir, [], "train.sbatch", [Support.repoRoot + "/jobs/fashion-mlp.yaml", "--set", "data=\(Self.fullData)"])
        XCTAssertEqual(try wait(id), ["COMPLETED"], log(dir, "cortado-train-\(id).out"))
        let text = log(dir, "cortado-train-\(id).out")
        let summary =
            try JSONSerialization.jsonObject(with: Data(text.split(separator: "\n").last { $0.hasPrefix("{") }!.utf8))
            as! [String: Any]
        let test = summary["test"] as! [String: Double]
        XCTAssertGreaterThanOrEqual(test["fp32_accuracy"]!, 0.89, text)
        XCTAssertEqual(summary["world_size"] as? Int, 2, "ranks from the allocation")
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(dir)/runs/cortado-train-\(id)/model-int8.cmodel"))
    }

    /// Parallel CSV preparation as a batch job (2 ranks from the allocation) writes the same
    /// shards as one process.
    func testParallelPrepareJob() throws {
        let dir = Support.scratch("slurm-prepare")
        let gen = try Support.run([
            Support.product("cortado"), "prepare", "synthetic-ratings", "--out", dir + "/u.data", "--users", "300",
            "--items", "400", "--ratings", "12000"
        ])
        XCTAssertEqual(gen.status, 0, gen.output)
        let args = [
            dir + "/u.data", "--no-header", "--delimiter", "tab", "--label", "c2", "--task", "regression",
            "--leave-last-out", "c0,c3", "--schema", Support.repoRoot + "/jobs/ratings-schema.yaml", "--shards", "2"
        ]
        let id = try sbatch(dir, [], "prepare.sbatch", ["csv"] + args + ["--out", dir + "/slurm"])
        XCTAssertEqual(try wait(id), ["COMPLETED"], log(dir, "cortado-prepare-\(id).out"))
        let one = try Support.run([Support.product("cortado"), "prepare", "csv"] + args + ["--out", dir + "/one"])
        XCTAssertEqual(one.status, 0, one.output)
        for f in ["train-000.h5", "train-001.h5", "validation.h5", "test.h5"] {
            let a = try HDF5File.open("\(dir)/slurm/\(f)"), b = try HDF5File.open("\(dir)/one/\(f)")
            XCTAssertEqual(try a.readInt64s("categorical"), try b.readInt64s("categorical"), f)
            XCTAssertEqual(try a.readFloats("targets"), try b.readFloats("targets"), f)
        }
    }

    func testArraySweepRunsEveryTaskAndTheSummaryPicksTheBest() throws {
        let dir = Support.scratch("slurm-sweep")
        let id = try sbatch(
            dir, ["--array=0-2"], "sweep.sbatch",
            [
                Support.repoRoot + "/jobs/fashion-mlp.yaml", Support.repoRoot + "/jobs/sweep-mlp.txt",
                "--set", "data=\(Support.smallData)", "--set", "epochs=2", "--set", "emit=[]"
            ])
        XCTAssertEqual(try wait(id), ["COMPLETED", "COMPLETED", "COMPLETED"])
        let runs = (0..<3).map { "\(dir)/runs/cortado-sweep-\(id)_\($0)" }
        let r = try Support.run(["python3", Support.repoRoot + "/jobs/sweep-summary.py"] + runs)
        XCTAssertEqual(r.status, 0, r.output)
        var best = (-1.0, "")
        for run in runs {
            let s =
                try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: run + "/summary.json")))
                as! [String: Any]
            let acc = (s["validation"] as! [String: Double])["accuracy"]!
            if acc > best.0 { best = (acc, run) }
        }
        XCTAssertTrue(r.stdout.contains("best: \(best.1)"), r.stdout)
        XCTAssertTrue(
            r.stdout.contains("optimizer.learning_rate=0.02") && r.stdout.contains("optimizer.learning_rate=0.1"),
            r.stdout)
    }

    /// Preemption by a real time limit: `--time=1 --signal=B:USR1@55` makes Slurm send USR1 to
    /// the batch shell 5–35 s into each run (its timer ticks every 30 s); the script forwards
    /// it, the ranks checkpoint and exit 75, the script requeues the job, and each rerun resumes
    /// until the run's steps are done. The final parameters equal an uninterrupted run's bit for
    /// bit. The run is sized in steps, each paced to 20 ms (CORTADO_STEP_SLEEP_MS), so it lasts
    /// ~45 s of training on any machine; the test waits for as long as the job makes progress.
    func testTimeLimitPreemptionRequeuesAndTheRerunIsBitIdentical() throws {
        let dir = Support.scratch("slurm-preempt")
        let args = [
            Support.repoRoot + "/jobs/fashion-mlp.yaml", "--set", "data=\(Support.smallData)", "--set", "emit=[]",
            "--set", "epochs=40", "--set", "batch_size=32", "--set", "checkpoint.every_steps=0",
            "--set", "optimizer.schedule=constant"
        ]
        let id = try sbatch(
            dir,
            [
                "--time=1", "--signal=B:USR1@55",
                "--export=ALL,CORTADO_BIN=\(Support.productsDir),CORTADO_STEP_SLEEP_MS=20"
            ], "train.sbatch", args)
        let logName = "cortado-train-\(id).out"
        let states = try wait(id, stalledAfter: 300) { self.log(dir, logName).count }
        let text = log(dir, logName)
        XCTAssertEqual(states, ["COMPLETED"], text)
        XCTAssertTrue(text.contains("USR1 received, forwarding to the ranks"), text)
        XCTAssertTrue(text.contains("preempted (SIGUSR1 on rank 0, SIGUSR1 on rank 1)"), text)
        XCTAssertTrue(text.contains("cortado-train exited 75") && text.contains("requeueing job \(id)"), text)
        XCTAssertTrue(text.contains("restart 1 ") && text.contains("resumed from"), text)
        XCTAssertFalse(text.contains("DUE TO TIME LIMIT"), "a run outlived its time limit: \(text)")

        let whole = try Support.mpirun(
            2, args + ["--run-dir", dir + "/whole", "--set", "threads=1", "--json"], timeout: 300)
        XCTAssertEqual(whole.status, 0, whole.output)
        let steps = try Support.lastJSON(whole)["steps"] as! Int
        let name = String(format: "/checkpoints/step-%08d.h5", steps)
        let a = try HDF5File.open(dir + "/whole" + name),
            b = try HDF5File.open("\(dir)/runs/cortado-train-\(id)" + name)
        XCTAssertEqual(try a.readFloats("params"), try b.readFloats("params"))
        XCTAssertEqual(try a.readFloats("optimizer_state"), try b.readFloats("optimizer_state"))
    }

    func testSrunLauncher() throws {
        let dir = Support.scratch("slurm-srun")
        let id = try sbatch(
            dir, ["--export=ALL,CORTADO_BIN=\(Support.productsDir),CORTADO_LAUNCHER=srun"], "train.sbatch",
            [
                Support.repoRoot + "/jobs/fashion-mlp.yaml", "--set", "data=\(Support.smallData)", "--set", "epochs=1",
                "--set", "emit=[]"
            ])
        let text = log(dir, "cortado-train-\(id).out")
        XCTAssertEqual(try wait(id), ["COMPLETED"], text)
        XCTAssertTrue(
            log(dir, "cortado-train-\(id).out").contains("\"world_size\":2"), log(dir, "cortado-train-\(id).out"))
    }
}
