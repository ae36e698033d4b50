import CortadoCore
import CortadoData
import CortadoTestSupport
import Foundation
import XCTest

/// The bucketed, overlapped gradient exchange and ZeRO-1 change no result (issue 8): real
/// `mpirun` runs, each under a timeout, compared through their checkpoints.
final class ExchangeMPITests: XCTestCase {
    var data: String { Support.smallData }

    /// 784-64-32-10 with Adam (two moment arenas, so ZeRO-1 gathers and scatters both),
    /// 16 KiB buckets and 5-row blocks: the first layer's weight gradient (196 KiB) is
    /// computed in 13 row blocks, and the arena travels in 7 buckets of at least 16 KiB.
    func args(_ runDir: String, _ extra: [String]) -> [String] {
        [
            Support.repoRoot + "/jobs/fashion-mlp.yaml", "--run-dir", runDir, "--json",
            "--set", "data=\(data)", "--set", "threads=1", "--set", "emit=[]", "--set", "epochs=1",
            "--set",
            "model.layers=[{type: dense, units: 64}, {type: relu}, {type: dense, units: 32}, {type: relu}, {type: dense, units: 10}]",
            "--set", "optimizer.type=adam", "--set", "optimizer.learning_rate=0.002", "--set",
            "optimizer.weight_decay=0.0001",
            "--set", "optimizer.warmup_steps=0", "--set", "optimizer.schedule=constant",
            "--set", "batch_size=32", "--set", "distributed.bucket_kib=16", "--set", "distributed.block_rows=5"
        ] + extra
    }

    /// Runs and returns the final checkpoint's parameters and optimizer state.
    func train(_ np: Int, _ dir: String, _ extra: [String], expect fragment: String? = nil) throws -> (
        params: [Float], state: [Float]
    ) {
        let r = try Support.mpirun(np, args(dir, extra))
        XCTAssertEqual(r.status, 0, r.output)
        if let fragment { XCTAssertTrue(r.stdout.contains(fragment), "\(extra): no '\(fragment)' in\n\(r.stdout)") }
        let path = try XCTUnwrap(try Support.lastJSON(r)["checkpoint"] as? String)
        let h5 = try HDF5File.open(path)
        return (try h5.readFloats("params"), try h5.readFloats("optimizer_state"))
    }

    /// Two ranks: every value is a sum of two numbers in every mode, so overlapped buckets
    /// (polled or on a thread) and ZeRO-1 give exactly the plain allreduce's parameters and
    /// Adam moments; ZeRO-1's checkpoint holds the whole, unsharded state.
    func testOverlapAndZeroGiveBitIdenticalResultsOnTwoRanks() throws {
        let dir = Support.scratch("exchange-2")
        let plain = try train(2, dir + "/off", ["--set", "distributed.overlap=off"], expect: "one allreduce per step")
        let polled = try train(2, dir + "/test", ["--set", "distributed.overlap=test"], expect: "7 buckets")
        let threaded = try train(
            2, dir + "/thread", ["--set", "distributed.overlap=thread"], expect: "communication thread")
        let zero = try train(2, dir + "/zero", ["--set", "distributed.zero=true"], expect: "ZeRO-1")
        XCTAssertEqual(plain.params.count, 784 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10)
        XCTAssertEqual(plain.state.count, 2 * plain.params.count)
        for (name, run) in [("test", polled), ("thread", threaded), ("zero", zero)] {
            XCTAssertEqual(run.params, plain.params, "\(name): parameters differ from overlap: off")
            XCTAssertEqual(run.state, plain.state, "\(name): Adam moments differ from overlap: off")
        }
    }

    /// Three ranks: MPI may sum three numbers in another order per message size, so the modes
    /// agree to within float rounding: max |Δ| ≤ 1e-6 × max |value| after 9 steps, with
    /// gradient clipping on (ZeRO-1 computes the global norm from the ranks' slices).
    func testOverlapAndZeroAgreeWithinRoundingOnThreeRanks() throws {
        let dir = Support.scratch("exchange-3")
        let extra = ["--set", "batch_size=128", "--set", "optimizer.clip_norm=0.5"]
        let plain = try train(3, dir + "/off", extra + ["--set", "distributed.overlap=off"])
        for mode in ["test", "thread", "zero"] {
            let setting = mode == "zero" ? "distributed.zero=true" : "distributed.overlap=\(mode)"
            let run = try train(3, dir + "/" + mode, extra + ["--set", setting])
            for (what, a, b) in [("parameters", run.params, plain.params), ("optimizer state", run.state, plain.state)]
            {
                let scale = b.map { abs($0) }.max() ?? 0
                let diff = zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
                XCTAssertEqual(a.count, b.count)
                XCTAssertLessThanOrEqual(diff, 1e-6 * scale, "\(mode): \(what) differ by \(diff) (scale \(scale))")
            }
            XCTAssertNotEqual(run.params, [Float](repeating: 0, count: run.params.count))
        }
    }

    /// ZeRO-1 resume: 2 epochs ≡ 1 epoch + checkpoint + resume, bit for bit; the sharded state
    /// goes out of rank 0's checkpoint to every rank's slice.
    func testZeroResumesBitExactly() throws {
        let dir = Support.scratch("exchange-zero-resume")
        let zero = ["--set", "distributed.zero=true"]
        let full = try train(2, dir + "/full", zero + ["--set", "epochs=2"])
        _ = try train(2, dir + "/split", zero)
        let resumed = try train(2, dir + "/split", zero + ["--set", "epochs=2", "--resume"], expect: "resumed from")
        XCTAssertEqual(resumed.params, full.params)
        XCTAssertEqual(resumed.state, full.state)
    }

    /// Placement: ranks bound to one core each default to 1 BLAS thread; asking for more is
    /// warned about, naming the binding.
    func testBLASThreadsFollowTheBinding() throws {
        func dryRun(_ extra: [String]) throws -> Support.Result {
            try Support.run(
                [
                    "mpirun", "-np", "2", "--bind-to", "core", Support.product("cortado-train"),
                    Support.repoRoot + "/jobs/fashion-mlp.yaml", "--dry-run", "--set", "data=\(data)"
                ] + extra)
        }
        let plain = try dryRun([])
        XCTAssertEqual(plain.status, 0, plain.output)
        let rows = plain.stdout.split(separator: "\n").filter { $0.hasPrefix("0 ") || $0.hasPrefix("1 ") }
        XCTAssertEqual(rows.count, 2, plain.stdout)
        for row in rows {
            XCTAssertEqual(
                row.split(separator: " ", omittingEmptySubsequences: true)[3], "1",
                "BLAS threads of a rank bound to one core: \(row)")
        }
        XCTAssertFalse(plain.stdout.contains("warning: a rank is bound"), plain.stdout)
        let crowded = try dryRun(["--set", "threads=2"])
        XCTAssertEqual(crowded.status, 0, crowded.output)
        XCTAssertTrue(
            crowded.stdout.contains("warning: a rank is bound to 1 core(s) but runs 2 BLAS threads"), crowded.stdout)
    }
}
