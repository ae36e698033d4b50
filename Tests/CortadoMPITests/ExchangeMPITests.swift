import CortadoCore
import CortadoData
import CortadoTestSupport
import Foundation
import XCTest

/// The bucketed, overlapped gradient exchange, ZeRO-1 (issue 8) and the shared-memory exchange
/// (issue 17), alone and with ZeRO-1, change no result: real `mpirun` runs, each under a
/// timeout, compared through their checkpoints.
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
    /// (polled or on a thread), ZeRO-1 and the shared-memory exchange (with and without
    /// ZeRO-1) give exactly the plain allreduce's parameters and Adam moments; ZeRO-1's
    /// checkpoint holds the whole, unsharded state.
    func testOverlapAndZeroGiveBitIdenticalResultsOnTwoRanks() throws {
        let dir = Support.scratch("exchange-2")
        let plain = try train(2, dir + "/off", ["--set", "distributed.overlap=off"], expect: "one allreduce per step")
        let polled = try train(2, dir + "/test", ["--set", "distributed.overlap=test"], expect: "7 buckets")
        let threaded = try train(
            2, dir + "/thread", ["--set", "distributed.overlap=thread"], expect: "communication thread")
        let zero = try train(2, dir + "/zero", ["--set", "distributed.zero=true"], expect: "ZeRO-1")
        let shm = try train(2, dir + "/shm", ["--set", "distributed.exchange=shm"], expect: "shared memory (2 ranks")
        let zeroShm = try train(
            2, dir + "/zero-shm", ["--set", "distributed.zero=true", "--set", "distributed.exchange=shm"],
            expect: "allgather, both through shared memory")
        XCTAssertEqual(plain.params.count, 784 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10)
        XCTAssertEqual(plain.state.count, 2 * plain.params.count)
        for (name, run) in [
            ("test", polled), ("thread", threaded), ("zero", zero), ("shm", shm), ("zero+shm", zeroShm)
        ] {
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
        let settings = [
            "test": ["distributed.overlap=test"], "thread": ["distributed.overlap=thread"],
            "zero": ["distributed.zero=true"], "shm": ["distributed.exchange=shm"],
            "zero-shm": ["distributed.zero=true", "distributed.exchange=shm"]
        ]
        for (mode, set) in settings.sorted(by: { $0.key < $1.key }) {
            let run = try train(3, dir + "/" + mode, extra + set.flatMap { ["--set", $0] })
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
    /// goes out of rank 0's checkpoint to every rank's slice. The same for the shared-memory
    /// exchange, plain on 2 ranks and with ZeRO-1 on 3 (uneven slices).
    func testZeroResumesBitExactly() throws {
        let zero = ["--set", "distributed.zero=true"], shm = ["--set", "distributed.exchange=shm"]
        for (np, name, set) in [(2, "zero", zero), (2, "shm", shm), (3, "zero-shm", zero + shm)] {
            let dir = Support.scratch("exchange-\(name)-resume")
            let full = try train(np, dir + "/full", set + ["--set", "epochs=2"])
            _ = try train(np, dir + "/split", set)
            let resumed = try train(np, dir + "/split", set + ["--set", "epochs=2", "--resume"], expect: "resumed from")
            XCTAssertEqual(resumed.params, full.params, "\(name) on \(np) ranks: resumed parameters differ")
            XCTAssertEqual(resumed.state, full.state, "\(name) on \(np) ranks: resumed optimizer state differs")
        }
    }

    /// The shared-memory exchange sums every value in one fixed order (rank order), so two
    /// identical runs on 3 ranks give the same bits, plain and with ZeRO-1.
    func testSharedMemoryRerunsAreBitIdenticalOnThreeRanks() throws {
        let dir = Support.scratch("exchange-shm-rerun")
        let shm = ["--set", "distributed.exchange=shm", "--set", "batch_size=64"]
        for (name, set) in [("shm", shm), ("zero-shm", shm + ["--set", "distributed.zero=true"])] {
            let a = try train(3, dir + "/\(name)-a", set, expect: "shared memory")
            let b = try train(3, dir + "/\(name)-b", set)
            XCTAssertEqual(a.params, b.params, "\(name): parameters differ between two identical runs")
            XCTAssertEqual(a.state, b.state, "\(name): optimizer state differs between two identical runs")
        }
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
