import CortadoCore
import CortadoData
import Foundation
import XCTest

/// The job scripts on a real Slurm (slurm-wlm: munge, slurmctld, slurmd) that
/// cluster/slurm-up.sh starts on this machine: training to the spine's accuracy, an array
/// sweep, preemption with requeue and a bit-identical rerun, the srun launcher.
final class SlurmTests: XCTestCase {
    static let up: Support.Result? = try? Support.run(["bash", Support.repoRoot + "/cluster/slurm-up.sh"], timeout: 300)

    /// Full Fashion-MNIST, prepared once per test process (2 shards).
    static let fullData: String = {
        let dir = NSTemporaryDirectory() + "cortado-tests-\(getpid())/fashion-full"
        let r = try? Support.run([Support.product("cortado"), "prepare", "fashion-mnist", "--out", dir, "--shards", "2"], timeout: 300)
        precondition(r?.status == 0, "preparing Fashion-MNIST failed: \(r?.output ?? "")")
        return dir + "/manifest.json"
    }()

    override func setUpWithError() throws {
        let up = try XCTUnwrap(Self.up)
        XCTAssertEqual(up.status, 0, "cluster/slurm-up.sh: \(up.output)")
        try XCTSkipIf(up.status != 0, "no Slurm")
    }

    /// Submits `script args` from `dir` (logs in dir/logs), returns the job id.
    func sbatch(_ dir: String, _ options: [String], _ script: String, _ args: [String]) throws -> String {
        try FileManager.default.createDirectory(atPath: dir + "/logs", withIntermediateDirectories: true)
        let r = try Support.run(["sbatch", "--parsable", "--chdir=\(dir)", "--export=ALL,CORTADO_BIN=\(Support.productsDir)"]
                                + options + [Support.repoRoot + "/jobs/" + script] + args)
        XCTAssertEqual(r.status, 0, r.output)
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ";").first.map(String.init) ?? ""
    }

    /// Waits until every job of `id` (an array's tasks too) has left the queue; returns their
    /// final states from `scontrol show job`.
    func wait(_ id: String, timeout: Double = 400) throws -> [String] {
        let t0 = monotonicSeconds()
        while monotonicSeconds() - t0 < timeout {
            let q = try Support.run(["squeue", "-h", "-j", id, "-o", "%T"])
            if q.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { break }
            Thread.sleep(forTimeInterval: 1)
        }
        let s = try Support.run(["scontrol", "show", "job", id])
        return s.stdout.components(separatedBy: "JobState=").dropFirst().map { String($0.prefix { $0 != " " }) }
    }

    func log(_ dir: String, _ name: String) -> String {
        (try? String(contentsOfFile: dir + "/logs/" + name, encoding: .utf8)) ?? "(no log \(name))"
    }

    func testSbatchTrainsFashionMNISTToTheSpinesAccuracy() throws {
        let dir = Support.scratch("slurm-train")
        let id = try sbatch(dir, [], "train.sbatch", [Support.repoRoot + "/jobs/fashion-mlp.yaml", "--set", "data=\(Self.fullData)"])
        XCTAssertEqual(try wait(id), ["COMPLETED"], log(dir, "cortado-train-\(id).out"))
        let text = log(dir, "cortado-train-\(id).out")
        let summary = try JSONSerialization.jsonObject(with: Data(text.split(separator: "\n").last { $0.hasPrefix("{") }!.utf8)) as! [String: Any]
        let test = summary["test"] as! [String: Double]
        XCTAssertGreaterThanOrEqual(test["fp32_accuracy"]!, 0.89, text)
        XCTAssertEqual(summary["world_size"] as? Int, 2, "ranks from the allocation")
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(dir)/runs/cortado-train-\(id)/model-int8.cmodel"))
    }

    /// Parallel CSV preparation as a batch job (2 ranks from the allocation) writes the same
    /// shards as one process.
    func testParallelPrepareJob() throws {
        let dir = Support.scratch("slurm-prepare")
        let gen = try Support.run([Support.product("cortado"), "prepare", "synthetic-ratings", "--out", dir + "/u.data", "--users", "300", "--items", "400", "--ratings", "12000"])
        XCTAssertEqual(gen.status, 0, gen.output)
        let args = [dir + "/u.data", "--no-header", "--delimiter", "tab", "--label", "c2", "--task", "regression",
                    "--leave-last-out", "c0,c3", "--schema", Support.repoRoot + "/jobs/ratings-schema.yaml", "--shards", "2"]
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
        let id = try sbatch(dir, ["--array=0-2"], "sweep.sbatch",
                            [Support.repoRoot + "/jobs/fashion-mlp.yaml", Support.repoRoot + "/jobs/sweep-mlp.txt",
                             "--set", "data=\(Support.smallData)", "--set", "epochs=2", "--set", "emit=[]"])
        XCTAssertEqual(try wait(id), ["COMPLETED", "COMPLETED", "COMPLETED"])
        let runs = (0..<3).map { "\(dir)/runs/cortado-sweep-\(id)_\($0)" }
        let r = try Support.run(["python3", Support.repoRoot + "/jobs/sweep-summary.py"] + runs)
        XCTAssertEqual(r.status, 0, r.output)
        var best = (-1.0, "")
        for run in runs {
            let s = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: run + "/summary.json"))) as! [String: Any]
            let acc = (s["validation"] as! [String: Double])["accuracy"]!
            if acc > best.0 { best = (acc, run) }
        }
        XCTAssertTrue(r.stdout.contains("best: \(best.1)"), r.stdout)
        XCTAssertTrue(r.stdout.contains("optimizer.learning_rate=0.02") && r.stdout.contains("optimizer.learning_rate=0.1"), r.stdout)
    }

    /// Preemption by a real time limit: `--time=1 --signal=B:USR1@55` makes Slurm send USR1 to
    /// the batch shell 5–35 s into each run (its timer ticks every 30 s); the script forwards
    /// it, the ranks checkpoint and exit 75, the script requeues the job, and each rerun resumes
    /// — until ~45 s of training is done. The final parameters equal an uninterrupted run's bit
    /// for bit.
    func testTimeLimitPreemptionRequeuesAndTheRerunIsBitIdentical() throws {
        let dir = Support.scratch("slurm-preempt")
        let args = [Support.repoRoot + "/jobs/fashion-mlp.yaml", "--set", "data=\(Self.fullData)", "--set", "emit=[]", "--set", "epochs=60",
                    "--set", "checkpoint.every_steps=0", "--set", "optimizer.schedule=constant"]
        let id = try sbatch(dir, ["--time=1", "--signal=B:USR1@55"], "train.sbatch", args)
        let states = try wait(id, timeout: 900)
        let text = log(dir, "cortado-train-\(id).out")
        XCTAssertEqual(states, ["COMPLETED"], text)
        XCTAssertTrue(text.contains("USR1 received, forwarding to the ranks"), text)
        XCTAssertTrue(text.contains("preempted (SIGUSR1 on rank 0, SIGUSR1 on rank 1)"), text)
        XCTAssertTrue(text.contains("cortado-train exited 75") && text.contains("requeueing job \(id)"), text)
        XCTAssertTrue(text.contains("restart 1 ") && text.contains("resumed from"), text)
        XCTAssertFalse(text.contains("DUE TO TIME LIMIT"), "a run outlived its time limit: \(text)")

        let whole = try Support.mpirun(2, args + ["--run-dir", dir + "/whole", "--set", "threads=1", "--json"], timeout: 300)
        XCTAssertEqual(whole.status, 0, whole.output)
        let steps = try Support.lastJSON(whole)["steps"] as! Int
        let name = String(format: "/checkpoints/step-%08d.h5", steps)
        let a = try HDF5File.open(dir + "/whole" + name), b = try HDF5File.open("\(dir)/runs/cortado-train-\(id)" + name)
        XCTAssertEqual(try a.readFloats("params"), try b.readFloats("params"))
        XCTAssertEqual(try a.readFloats("optimizer_state"), try b.readFloats("optimizer_state"))
    }

    func testSrunLauncher() throws {
        let dir = Support.scratch("slurm-srun")
        let id = try sbatch(dir, ["--export=ALL,CORTADO_BIN=\(Support.productsDir),CORTADO_LAUNCHER=srun"], "train.sbatch",
                            [Support.repoRoot + "/jobs/fashion-mlp.yaml", "--set", "data=\(Support.smallData)", "--set", "epochs=1", "--set", "emit=[]"])
        let text = log(dir, "cortado-train-\(id).out")
        XCTAssertEqual(try wait(id), ["COMPLETED"], text)
        XCTAssertTrue(log(dir, "cortado-train-\(id).out").contains("\"world_size\":2"), log(dir, "cortado-train-\(id).out"))
    }
}

/// Job scripts that need no scheduler to check: syntax, and the PBS script's arguments.
final class JobScriptTests: XCTestCase {
    func testScriptsParseAndPBSArgumentHandling() throws {
        for s in ["train.sbatch", "sweep.sbatch", "prepare.sbatch", "train.pbs"] {
            let r = try Support.run(["bash", "-n", Support.repoRoot + "/jobs/" + s])
            XCTAssertEqual(r.status, 0, "\(s): \(r.output)")
        }
        let dir = Support.scratch("pbs")
        try "n1\nn1\nn2\n".write(toFile: dir + "/nodes", atomically: true, encoding: .utf8)
        let env = ["PBS_NODEFILE": dir + "/nodes", "PBS_JOBID": "42.pbs-server", "PBS_JOBNAME": "cortado-train", "PBS_O_WORKDIR": Support.repoRoot,
                   "CORTADO_SPEC": "jobs/fashion-mlp.yaml", "CORTADO_ARGS": "--set epochs=5 --set batch_size=128", "CORTADO_DRY_RUN": "1"]
        let r = try Support.run(["bash", Support.repoRoot + "/jobs/train.pbs"], env: env)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stdout.hasPrefix("mpirun -np 3 --hostfile \(dir)/nodes"), r.stdout)
        XCTAssertTrue(r.stdout.contains("cortado-train jobs/fashion-mlp.yaml --run-dir runs/cortado-train-42 --set threads=1 --json --set epochs=5 --set batch_size=128"), r.stdout)
        var bad = env; bad["CORTADO_SPEC"] = nil
        let missing = try Support.run(["bash", Support.repoRoot + "/jobs/train.pbs"], env: bad.merging(["CORTADO_SPEC": ""]) { $1 })
        XCTAssertEqual(missing.status, 2)
        XCTAssertTrue(missing.stderr.contains("set CORTADO_SPEC"), missing.stderr)
        let nofile = try Support.run(["bash", Support.repoRoot + "/jobs/train.pbs"], env: env.merging(["CORTADO_SPEC": "jobs/nope.yaml"]) { $1 })
        XCTAssertEqual(nofile.status, 2)
        XCTAssertTrue(nofile.stderr.contains("jobs/nope.yaml: no such file"), nofile.stderr)
    }
}

/// The multi-node Slurm of `cluster/slurm-up.sh 2`: one slurmd in each namespace host of the
/// virtual cluster, slurmctld in a head namespace, so a job spans two "hosts" over TCP and
/// cutting a host's link is a real node failure.
final class SlurmMultiNodeTests: XCTestCase {
    static let up: Support.Result? = try? Support.run(["bash", Support.repoRoot + "/cluster/slurm-up.sh", "2"], timeout: 300)

    override func setUpWithError() throws {
        let up = try XCTUnwrap(Self.up)
        XCTAssertEqual(up.status, 0, "cluster/slurm-up.sh 2: \(up.output)")
        try XCTSkipIf(up.status != 0, "no multi-node Slurm")
    }

    func vc(_ args: [String], timeout: Int = 60) throws -> Support.Result {
        try Support.run([Support.repoRoot + "/cluster/slurm-vc.sh"] + args, timeout: timeout)
    }

    func nodeStates() throws -> String { try vc(["sinfo", "-h", "-N", "-o", "%N:%t"]).stdout.split(separator: "\n").joined(separator: " ") }

    /// `sbatch -N 1-2 -n 2` runs on node1 and node2; node2's link is cut after the first epoch.
    /// Open MPI (keepalive set by the script) ends the job within 60 s naming the lost daemon,
    /// the script requeues it, Slurm marks node2 down, and the rerun resumes from the last
    /// checkpoint on node1 alone and finishes.
    func testLinkCutEndsTheJobAndTheRequeuedJobFinishesOnTheRemainingHost() throws {
        let dir = Support.scratch("slurm-vc-linkcut")
        try FileManager.default.createDirectory(atPath: dir + "/logs", withIntermediateDirectories: true)
        let r = try vc(["sbatch", "--parsable", "-N", "1-2", "-n", "2", "--chdir=\(dir)", "--export=ALL,CORTADO_BIN=\(Support.productsDir)",
                        Support.repoRoot + "/jobs/train.sbatch", Support.repoRoot + "/jobs/fashion-mlp.yaml", "--set", "data=\(SlurmTests.fullData)",
                        "--set", "epochs=6", "--set", "emit=[]", "--set", "checkpoint.every_steps=100"])
        XCTAssertEqual(r.status, 0, r.output)
        let id = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let logPath = "\(dir)/logs/cortado-train-\(id).out"
        func text() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
        var t0 = monotonicSeconds()
        while !text().contains("epoch 1/") && monotonicSeconds() - t0 < 180 { Thread.sleep(forTimeInterval: 0.2) }
        XCTAssertTrue(text().contains("restart 0 on node[1-2] (2 ranks)"), text())
        t0 = monotonicSeconds()
        XCTAssertEqual(try Support.run(["ip", "link", "set", "veth-c2", "down"]).status, 0)
        defer {
            _ = try? Support.run(["ip", "link", "set", "veth-c2", "up"])
            // node2 answers again and returns to service (ReturnToService=2) for later tests.
            let t = monotonicSeconds()
            while (try? nodeStates()).map({ !$0.contains("node2:idle") }) ?? true && monotonicSeconds() - t < 120 { Thread.sleep(forTimeInterval: 1) }
        }
        while !text().contains("cortado-train exited") && monotonicSeconds() - t0 < 120 { Thread.sleep(forTimeInterval: 0.2) }
        let ended = monotonicSeconds() - t0
        print("link cut → job ended after \(String(format: "%.1f", ended)) s")
        XCTAssertLessThan(ended, 60, text())
        XCTAssertTrue(text().contains("lost communication with a remote daemon"), text())
        while try vc(["squeue", "-h", "-j", id]).stdout.contains(id) && monotonicSeconds() - t0 < 400 { Thread.sleep(forTimeInterval: 1) }
        let job = try vc(["scontrol", "show", "job", id]).stdout
        let log = text()
        XCTAssertTrue(job.contains("JobState=COMPLETED") && job.contains("Restarts=1") && job.contains("NodeList=node1\n"), job + log)
        XCTAssertTrue(log.contains("failed (a lost host or rank?): requeueing job \(id)"), log)
        XCTAssertTrue(log.contains("restart 1 on node1 (2 ranks)") && log.contains("resumed from"), log)
        let summary = try JSONSerialization.jsonObject(with: Data(log.split(separator: "\n").last { $0.hasPrefix("{") }!.utf8)) as! [String: Any]
        XCTAssertGreaterThan((summary["test"] as! [String: Double])["fp32_accuracy"]!, 0.85, log)
    }
}

