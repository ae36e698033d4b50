import CortadoCore
import CortadoData
import CortadoTestSupport
import Foundation
import XCTest

/// Two hosts as network namespaces on a bridge (cluster/vcluster-up.sh), ranks launched into
/// them by mpirun's rsh agent, TCP only (cluster/vcluster-run.sh): the same job as on one host,
/// bit for bit, and faults that cross hosts.
final class VirtualClusterTests: XCTestCase {
    static let up: Support.Result? = try? Support.run(
        ["bash", Support.repoRoot + "/cluster/vcluster-up.sh", "2"], timeout: 60)

    override func setUpWithError() throws {
        try requireStarted(Self.up, "cluster/vcluster-up.sh", else: "no virtual cluster")
    }

    func args(_ runDir: String, _ extra: [String] = []) -> [String] {
        [
            Support.product("cortado-train"), Support.repoRoot + "/jobs/fashion-mlp.yaml", "--run-dir", runDir,
            "--json",
            "--set", "data=\(Support.smallData)", "--set", "threads=1", "--set", "epochs=2", "--set", "emit=[]",
            "--set", "model.layers=[{type: dense, units: 32}, {type: relu}, {type: dense, units: 10}]"
        ] + extra
    }

    func vrun(_ mpiOptions: [String], _ a: [String], timeout: Int = 120) throws -> (Support.Result, Double) {
        let t0 = monotonicSeconds()
        let r = try Support.run(
            ["bash", Support.repoRoot + "/cluster/vcluster-run.sh", "-np", "2", "--map-by", "node"] + mpiOptions + a,
            timeout: timeout)
        return (r, monotonicSeconds() - t0)
    }

    /// The job's processes still in a host's namespace (ranks, orted, mpirun) — not the
    /// multi-node Slurm's slurmd, which lives there by design.
    func namespacePIDs(_ host: String) throws -> String {
        let pids = try Support.run(["ip", "netns", "pids", "cortado-" + host]).stdout.split(separator: "\n").map(
            String.init)
        return pids.filter { pid in
            let comm =
                (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.trimmingCharacters(
                    in: .whitespacesAndNewlines) ?? ""
            return !comm.isEmpty && !comm.hasPrefix("slurm")
        }.joined(separator: " ")
    }

    func testTwoHostsOverTCPGiveTheOneHostParametersBitForBit() throws {
        let dir = Support.scratch("vc-same")
        let (multi, _) = try vrun([], args(dir + "/multi"))
        XCTAssertEqual(multi.status, 0, multi.output)
        let one = try Support.run(["mpirun", "-np", "2", "--bind-to", "none"] + args(dir + "/one"), timeout: 120)
        XCTAssertEqual(one.status, 0, one.output)
        let steps = try Support.lastJSON(one)["steps"] as! Int
        let name = String(format: "/checkpoints/step-%08d.h5", steps)
        XCTAssertEqual(
            try HDF5File.open(dir + "/multi" + name).readFloats("params"),
            try HDF5File.open(dir + "/one" + name).readFloats("params"))
    }

    /// `distributed.exchange: shm` over two hosts takes the hierarchical path (each host's
    /// slices summed in shared memory, then across hosts among equal local ranks): the same
    /// parameters as the one-host shm run, bit for bit (two ranks: a + b either way). ZeRO-1
    /// with shm across hosts is refused before step 0, naming the keys.
    func testSharedMemoryExchangeAcrossTwoHostsMatchesOneHost() throws {
        let dir = Support.scratch("vc-shm")
        let shm = ["--set", "distributed.exchange=shm"]
        let (multi, _) = try vrun([], args(dir + "/multi", shm))
        XCTAssertEqual(multi.status, 0, multi.output)
        XCTAssertTrue(multi.stdout.contains("1 ranks on each of 2 host(s)"), multi.stdout)
        let one = try Support.run(["mpirun", "-np", "2", "--bind-to", "none"] + args(dir + "/one", shm), timeout: 120)
        XCTAssertEqual(one.status, 0, one.output)
        XCTAssertTrue(one.stdout.contains("2 ranks on each of 1 host(s)"), one.stdout)
        let steps = try Support.lastJSON(one)["steps"] as! Int
        let name = String(format: "/checkpoints/step-%08d.h5", steps)
        XCTAssertEqual(
            try HDF5File.open(dir + "/multi" + name).readFloats("params"),
            try HDF5File.open(dir + "/one" + name).readFloats("params"))
        let (zero, _) = try vrun([], args(dir + "/zero", shm + ["--set", "distributed.zero=true"]))
        XCTAssertNotEqual(zero.status, 0, zero.output)
        XCTAssertTrue(
            zero.output.contains("distributed.exchange: shm with distributed.zero runs on one host"), zero.output)
    }

    func testKillingARankOnTheOtherHostEndsTheJobFast() throws {
        let dir = Support.scratch("vc-kill")
        let (r, seconds) = try vrun(["-x", "CORTADO_FAULT=kill@20:1"], args(dir + "/run"))
        XCTAssertNotEqual(r.status, 0)
        XCTAssertLessThan(seconds, 10, r.output)
        XCTAssertTrue(r.output.contains("node2") && r.output.contains("signal 9"), r.output)
        XCTAssertEqual(try namespacePIDs("node1"), "")
        XCTAssertEqual(try namespacePIDs("node2"), "")
    }

    /// A host's link cut mid-run: Open MPI's TCP keepalive (5 s + 3 × 1 s, set by
    /// vcluster-run.sh) ends the job on both sides within 60 s.
    func testCuttingAHostsLinkEndsTheJobWithinAMinute() throws {
        let dir = Support.scratch("vc-cut")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments =
            [Support.repoRoot + "/cluster/vcluster-run.sh", "-np", "2", "--map-by", "node"]
            + args(dir + "/run", ["--set", "epochs=100000"]) // never finishes before the cut: only the cut ends it
        var env = ProcessInfo.processInfo.environment
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"; env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        p.environment = env
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        Thread.sleep(forTimeInterval: 4)
        XCTAssertTrue(p.isRunning, "the job should still be training")
        XCTAssertEqual(
            try Support.run(["ip", "netns", "exec", "cortado-node2", "ip", "link", "set", "eth0", "down"]).status, 0)
        defer { _ = try? Support.run(["ip", "netns", "exec", "cortado-node2", "ip", "link", "set", "eth0", "up"]) }
        let t0 = monotonicSeconds()
        while p.isRunning && monotonicSeconds() - t0 < 90 { Thread.sleep(forTimeInterval: 0.25) }
        let seconds = monotonicSeconds() - t0
        if p.isRunning { p.terminate() }
        XCTAssertLessThan(seconds, 60)
        XCTAssertNotEqual(p.terminationStatus, 0)
        Thread.sleep(forTimeInterval: 2)
        XCTAssertEqual(try namespacePIDs("node1"), "")
        XCTAssertEqual(try namespacePIDs("node2"), "", "a rank or orted survived on the cut-off host")
    }
}
