import CortadoCore
import CortadoData
import CortadoJob
import CortadoPipeline
import CortadoTestSupport
import CortadoTrain
import Foundation
import XCTest

/// Failures under `mpirun`: whatever goes wrong on one rank ends every rank within seconds,
/// non-zero, with one message naming the rank and the cause; checkpoints survive; preemption
/// checkpoints and resumes bit-exactly. Faults come from the CORTADO_FAULT test hook.
final class ReliabilityMPITests: XCTestCase {
    var data: String { Support.smallData }

    /// A 784-32-10 MLP, 1 BLAS thread per rank, checkpoints every 10 steps, a 3 s watchdog;
    /// constant learning rate so split runs see the same schedule.
    func args(_ runDir: String, _ extra: [String] = []) -> [String] {
        [
            Support.repoRoot + "/jobs/fashion-mlp.yaml", "--run-dir", runDir, "--json",
            "--set", "data=\(data)", "--set", "threads=1", "--set", "epochs=2", "--set", "batch_size=32",
            "--set", "model.layers=[{type: dense, units: 32}, {type: relu}, {type: dense, units: 10}]",
            "--set", "optimizer.warmup_steps=0", "--set", "optimizer.schedule=constant",
            "--set", "checkpoint.every_steps=10", "--set", "watchdog_seconds=3", "--set", "emit=[]"
        ] + extra
    }

    func mpirun(_ np: Int, _ a: [String], fault: String? = nil) throws -> (Support.Result, Double) {
        var cmd = ["mpirun", "-np", String(np), "--bind-to", "none"]
        if let fault { cmd += ["-x", "CORTADO_FAULT=\(fault)"] }
        let t0 = monotonicSeconds()
        let r = try Support.run(cmd + [Support.product("cortado-train")] + a, timeout: 90)
        return (r, monotonicSeconds() - t0)
    }

    /// No process of this run is left.
    func assertNoneLeft(_ runDir: String, file: StaticString = #filePath, line: UInt = #line) throws {
        // "[c]" keeps pgrep (and the timeout wrapping it) from matching its own command line.
        let r = try Support.run(["pgrep", "-f", "[c]ortado-train .*\(runDir)"])
        XCTAssertNotEqual(r.status, 0, "processes left: \(r.stdout)", file: file, line: line)
    }

    func checkpoint(_ runDir: String, _ step: Int) throws -> HDF5File {
        try HDF5File.open(runDir + String(format: "/checkpoints/step-%08d.h5", step))
    }

    /// One fault per case, on rank 1 at step 25 (after the step-20 checkpoint): an error, a NaN
    /// loss, a hang (stops calling collectives), SIGKILL. Every process is gone fast, the exit
    /// code is non-zero, the message names rank 1 and the cause, and the step-20 checkpoint
    /// loads and resumes.
    func testAFailureOnOneRankEndsEveryRankFastNamingIt() throws {
        let cases: [(fault: String, code: Int32?, says: [String])] = [
            ("throw@25:1", 4, ["rank 1", "step 25", "injected I/O error"]),
            ("nan@25:1", 7, ["rank 1", "non-finite loss at step 25"]),
            (
                "hang@25:1", 6,
                ["rank 1", "no progress for", "computing a step", "rank 0", "waiting in the gradient exchange"]
            ),
            ("kill@25:1", nil, ["rank 1", "signal 9"])
        ]
        for c in cases {
            let run = Support.scratch("fault-" + c.fault.prefix(4))
            let (r, seconds) = try mpirun(2, args(run + "/run"), fault: c.fault)
            if let code = c.code {
                XCTAssertEqual(r.status, code, "\(c.fault): \(r.output)")
            } else {
                XCTAssertNotEqual(r.status, 0, c.fault)
            }
            for s in c.says { XCTAssertTrue(r.stderr.contains(s), "\(c.fault): stderr lacks '\(s)': \(r.stderr)") }
            // Start-up (≈ 1 s) + 25 steps + detection; the watchdog case waits its 3 s deadline.
            XCTAssertLessThan(seconds, 12, "\(c.fault) took \(seconds) s")
            try assertNoneLeft(run + "/run")
            let ck = try checkpoint(run + "/run", 20)
            XCTAssertEqual(try ck.intAttribute("step"), 20, c.fault)
        }
        // The last checkpoint of a failed run resumes.
        let run = NSTemporaryDirectory() + "cortado-tests-\(getpid())/fault-thro/run"
        let (r, _) = try mpirun(2, args(run, ["--resume"]))
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stdout.contains("resumed from \(run)/checkpoints/step-00000020.h5 at step 20"), r.stdout)
    }

    /// A non-finite loss with `non_finite: skip`: every rank skips that update, training goes on.
    func testNonFiniteSkipPolicy() throws {
        let run = Support.scratch("skip") + "/run"
        let (r, _) = try mpirun(2, args(run, ["--set", "non_finite=skip"]), fault: "nan@25:1")
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(
            r.stdout.contains("non-finite loss at step 25: update skipped on every rank (1 so far)"), r.stdout)
    }

    /// SIGTERM to one rank only: all ranks stop at the next step boundary, rank 0 writes a
    /// checkpoint, every rank exits 75; `--resume` then finishes with parameters and optimizer
    /// state bit-identical to an uninterrupted run.
    func testPreemptionOfOneRankCheckpointsAndResumesBitExactly() throws {
        let dir = Support.scratch("preempt")
        let (full, _) = try mpirun(2, args(dir + "/full"))
        XCTAssertEqual(full.status, 0, full.output)
        let (pre, seconds) = try mpirun(2, args(dir + "/split"), fault: "signal@30:1")
        XCTAssertEqual(pre.status, 75, pre.output)
        XCTAssertTrue(pre.stderr.contains("preempted (SIGTERM on rank 1) at step 31"), pre.stderr)
        XCTAssertLessThan(seconds, 15)
        XCTAssertEqual(try checkpoint(dir + "/split", 31).intAttribute("step"), 31)
        let (resumed, _) = try mpirun(2, args(dir + "/split", ["--resume"]))
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertTrue(resumed.stdout.contains("at step 31"), resumed.stdout)
        let steps = try Support.lastJSON(full)["steps"] as! Int
        let a = try checkpoint(dir + "/full", steps), b = try checkpoint(dir + "/split", steps)
        XCTAssertEqual(try a.readFloats("params"), try b.readFloats("params"))
        XCTAssertEqual(try a.readFloats("optimizer_state"), try b.readFloats("optimizer_state"))
    }

    /// SIGKILL while rank 0 writes the step-30 checkpoint (its temporary file is complete but
    /// not renamed): the job ends, `latest` still names step 20, and resume starts there.
    /// Then a torn newest checkpoint (truncated) is skipped with a warning.
    func testKillDuringCheckpointAndTornCheckpointFallBack() throws {
        let run = Support.scratch("ckptkill") + "/run"
        let (r, seconds) = try mpirun(2, args(run), fault: "ckptkill@30:0")
        XCTAssertNotEqual(r.status, 0, r.output)
        XCTAssertLessThan(seconds, 12)
        try assertNoneLeft(run)
        XCTAssertEqual(try String(contentsOfFile: run + "/checkpoints/latest", encoding: .utf8), "step-00000020.h5\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: run + "/checkpoints/step-00000030.h5"))
        let (resumed, _) = try mpirun(2, args(run, ["--resume"]))
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertTrue(
            resumed.stdout.contains("resumed from \(run)/checkpoints/step-00000020.h5 at step 20"), resumed.stdout)

        // Tear the newest checkpoint: resume warns and takes the one before.
        let files = try Checkpoint.checkpointFiles(runDir: run)
        let newest = files.last!, previous = files[files.count - 2]
        let size = try FileManager.default.attributesOfItem(atPath: newest)[.size] as! Int
        XCTAssertEqual(truncate(newest, off_t(size / 2)), 0)
        let (again, _) = try mpirun(2, args(run, ["--resume", "--set", "epochs=3"]))
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertTrue(again.stdout.contains("warning: skipping checkpoint: \(newest)"), again.stdout)
        XCTAssertTrue(again.stdout.contains("resumed from \(previous)"), again.stdout)
    }

    /// Resume on another world size (2 → 1, 1 → 2, 2 → 3) with `data_partitions: 6`: the global
    /// batches are the same rows as in the uninterrupted run, so only the floating-point
    /// summation order differs — the parameters stay within 1e-4 relative (L2) of it and the
    /// accuracy is the same. Without partitions that divide (4 → 3 here by default), resume
    /// still works, keeps the global batch and warns that the data order changed.
    func testResumeOnADifferentWorldSize() throws {
        let dir = Support.scratch("worldsize")
        func accuracy(_ r: Support.Result) throws -> Double {
            (try Support.lastJSON(r)["validation"] as! [String: Double])["accuracy"]!
        }
        func params(_ run: String) throws -> [Float] {
            try Checkpoint.newest(runDir: run, warn: { _ in })!.checkpoint.params
        }
        for (from, to) in [(2, 1), (1, 2), (2, 3)] {
            let run = "\(dir)/\(from)-\(to)"
            // Global batch 60 = 6 partitions × 10 rows, whichever world size starts the run.
            let p = ["--set", "data_partitions=6", "--set", "batch_size=\(60 / from)"]
            let (whole, _) = try mpirun(from, args(run + "-whole", p + ["--set", "epochs=4"]))
            XCTAssertEqual(whole.status, 0, whole.output)
            let (first, _) = try mpirun(from, args(run, p + ["--set", "epochs=2"]))
            XCTAssertEqual(first.status, 0, first.output)
            let (second, _) = try mpirun(to, args(run, p + ["--set", "epochs=4", "--resume"]))
            XCTAssertEqual(second.status, 0, second.output)
            XCTAssertTrue(
                second.stdout.contains(
                    "resuming a \(from)-rank run on \(to) ranks: batch_size \(60 / from) → \(60 / to) per rank (global batch 60 → 60); same data order"
                ), second.stdout)
            XCTAssertFalse(second.stdout.contains("warning: checkpoint was written"), second.stdout)
            let a = try params(run), b = try params(run + "-whole")
            XCTAssertEqual(a.count, b.count)
            let diff = zip(a, b).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
            let norm = b.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
            XCTAssertLessThan(diff / norm, 1e-4, "\(from) → \(to): parameters drifted")
            XCTAssertGreaterThan(
                diff, 0, "\(from) → \(to): bit-identical is not expected across world sizes (summation order)")
            XCTAssertEqual(try accuracy(second), try accuracy(whole), accuracy: 0.004, "\(from) → \(to)")
        }
        // Default partitions (= ranks): 2 → 3 does not divide, so the order changes, with a warning.
        let run = dir + "/default"
        XCTAssertEqual(try mpirun(2, args(run, ["--set", "epochs=2"])).0.status, 0)
        let (second, _) = try mpirun(3, args(run, ["--set", "epochs=4", "--resume"]))
        XCTAssertEqual(second.status, 0, second.output)
        XCTAssertTrue(
            second.stdout.contains("2 data partitions do not divide among 3 ranks: new data order"), second.stdout)
        XCTAssertTrue(second.stdout.contains("warning: checkpoint was written by 2 ranks"), second.stdout)
        let (whole, _) = try mpirun(2, args(run + "-whole", ["--set", "epochs=4"]))
        // 500 validation rows and 4 short epochs: a loose bound; the README has full-data figures.
        XCTAssertEqual(try accuracy(second), try accuracy(whole), accuracy: 0.05)
    }

    /// A second signal does not wait for a step boundary: a rank stuck in a step exits at once.
    func testSecondSignalExitsAtOnce() throws {
        let run = Support.scratch("twice") + "/run"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Support.product("cortado-train"))
        p.arguments = args(run, ["--set", "watchdog_seconds=0"])
        p.environment = ProcessInfo.processInfo.environment.merging(["CORTADO_FAULT": "hang@5:0"]) { $1 }
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        Thread.sleep(forTimeInterval: 3) // well into the hang at step 5
        XCTAssertTrue(p.isRunning)
        kill(p.processIdentifier, SIGTERM)
        Thread.sleep(forTimeInterval: 0.5)
        XCTAssertTrue(p.isRunning, "the first signal only requests a stop at the next step boundary")
        kill(p.processIdentifier, SIGTERM)
        let t0 = monotonicSeconds()
        while p.isRunning && monotonicSeconds() - t0 < 5 { Thread.sleep(forTimeInterval: 0.05) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 128 + SIGTERM)
    }
}
