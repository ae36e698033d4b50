import CortadoCore
import CortadoData
import CortadoTestSupport
import Foundation
import XCTest

/// The training-batch loader (`loader:` in the job spec), in real 2-rank runs: prefetching
/// changes no result, and chunked loading (bounded memory) trains, resumes mid-epoch bit for
/// bit, and holds less data.
final class LoaderTests: XCTestCase {
    func train(_ runDir: String, _ extra: [String]) throws -> (summary: [String: Any], stdout: String) {
        let r = try Support.mpirun(2, Support.smallMLP(runDir, ["--set", "emit=[fp32]"] + extra))
        XCTAssertEqual(r.status, 0, r.output)
        return (try Support.lastJSON(r), r.stdout)
    }

    func params(_ runDir: String, step: Int) throws -> [Float] {
        try HDF5File.open(runDir + String(format: "/checkpoints/step-%08d.h5", step)).readFloats("params")
    }

    func trainLosses(_ runDir: String) throws -> [Double] {
        try String(contentsOfFile: runDir + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map {
            (try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Double])["train_loss"]!
        }
    }

    /// Prefetch on (the default) and off: the same parameters and losses bit for bit, in memory
    /// and chunked; and chunked loading takes other rows than in-memory loading (the test can
    /// tell orders apart).
    func testPrefetchChangesNoResult() throws {
        let dir = Support.scratch("loader-prefetch")
        var finals = [String: [Float]]()
        for (name, extra) in [
            ("on", []), ("off", ["--set", "loader.prefetch=false"]),
            ("chunked-on", ["--set", "loader.chunk_rows=256"]),
            ("chunked-off", ["--set", "loader.chunk_rows=256", "--set", "loader.prefetch=false"])
        ] {
            let (s, stdout) = try train(dir + "/" + name, extra)
            XCTAssertEqual(s["steps"] as? Int, 108, name)
            XCTAssertTrue(
                stdout.contains(extra.contains("loader.prefetch=false") ? "assembled in the step" : "prefetched"),
                stdout)
            finals[name] = try params(dir + "/" + name, step: 108)
        }
        XCTAssertEqual(finals["on"], finals["off"], "in memory: prefetch must not change the parameters")
        XCTAssertEqual(try trainLosses(dir + "/on"), try trainLosses(dir + "/off"))
        XCTAssertEqual(finals["chunked-on"], finals["chunked-off"], "chunked: prefetch must not change the parameters")
        XCTAssertEqual(try trainLosses(dir + "/chunked-on"), try trainLosses(dir + "/chunked-off"))
        XCTAssertNotEqual(finals["on"], finals["chunked-on"], "chunked loading shuffles chunk-wise: another order")
    }

    /// Chunked loading trains about as well as in-memory loading, and a resume from a
    /// checkpoint in the middle of an epoch continues the chunk-wise order exactly: 108 steps
    /// in one run equal 40 steps + checkpoint + resume + 68 steps, bit for bit.
    func testChunkedLoadingTrainsAndResumesMidEpochExactly() throws {
        let dir = Support.scratch("loader-chunked")
        let chunked = [
            "--set", "loader.chunk_rows=256", "--set", "checkpoint.every_steps=20", "--set", "checkpoint.keep=10"
        ]
        let (full, stdout) = try train(dir + "/full", chunked)
        XCTAssertTrue(stdout.contains("chunks of 250 rows read ahead"), stdout)
        let (memory, _) = try train(dir + "/memory", [])
        let accuracy = { (s: [String: Any]) in (s["validation"] as! [String: Double])["accuracy"]! }
        XCTAssertGreaterThan(accuracy(full), 0.70)
        XCTAssertEqual(accuracy(full), accuracy(memory), accuracy: 0.04, "chunk-wise shuffling trains as well")
        let losses = try trainLosses(dir + "/full")
        XCTAssertLessThan(losses[1], losses[0], "loss falls")

        // A run folder holding only the full run's step-40 checkpoint (epoch 0, step 40 of 54).
        try FileManager.default.createDirectory(atPath: dir + "/split/checkpoints", withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            atPath: dir + "/full/checkpoints/step-00000040.h5", toPath: dir + "/split/checkpoints/step-00000040.h5")
        let (resumed, out) = try train(dir + "/split", chunked + ["--resume"])
        XCTAssertTrue(out.contains("at step 40"), out)
        XCTAssertEqual(resumed["steps"] as? Int, 108)
        XCTAssertEqual(try params(dir + "/split", step: 108), try params(dir + "/full", step: 108))
    }

    /// Chunked loading holds two chunks instead of the share: the start-up line's data item is
    /// smaller by about the share, and so is the peak RSS, up to what chunked reading adds on
    /// the loader thread (HDF5's decompression buffers for a shard chunk, a few MiB whatever
    /// the share): measured on 14 500 rows (43 MiB) a rank, so the difference stands well
    /// above that and the noise.
    func testChunkedLoadingLowersPeakMemoryByTheShare() throws {
        let dir = Support.scratch("loader-memory")
        let prep = try Support.run(
            [
                Support.product("cortado"), "prepare", "fashion-mnist", "--out", dir + "/data", "--shards", "4",
                "--limit", "30000", "--validation", "1000"
            ], timeout: 300)
        XCTAssertEqual(prep.status, 0, prep.output)
        var peak = [String: Double](), dataMiB = [String: Double]()
        for (name, extra) in [("memory", []), ("chunked", ["--set", "loader.chunk_rows=512"])] {
            let (s, stdout) = try train(
                dir + "/" + name,
                ["--set", "data=\(dir)/data/manifest.json", "--set", "epochs=1", "--set", "emit=[]"] + extra)
            peak[name] = s["peak_rss_mib_max"] as? Double
            let line = stdout.split(separator: "\n").first { $0.hasPrefix("memory/rank:") } ?? ""
            dataMiB[name] = line.components(separatedBy: "data ").dropFirst().first.flatMap {
                Double($0.prefix { $0 != " " })
            }
            XCTAssertTrue(line.contains("runtime (MPI, BLAS, libraries)"), String(line))
        }
        let share = Double(14_500 * (784 * 4 + 4)) / 1048576 // 14 500 training rows a rank
        XCTAssertEqual(dataMiB["memory"]! - dataMiB["chunked"]!, share, accuracy: 0.25 * share)
        XCTAssertLessThan(peak["chunked"]!, peak["memory"]! - 0.6 * share, "peak RSS: \(peak)")
    }
}
