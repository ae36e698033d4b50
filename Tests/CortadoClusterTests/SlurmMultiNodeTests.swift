import CortadoCore
import CortadoData
import CortadoTestSupport
import Foundation
import XCTest

/// The multi-node Slurm of `cluster/slurm-up.sh 2`: one slurmd in each namespace host of the
/// virtual cluster, slurmctld in a head namespace, so a job spans two "hosts" over TCP and
/// cutting a host's link is a real node failure.
final class SlurmMultiNodeTests: XCTestCase {
    static let up: Support.Result? = try? Support.run(
        ["bash", Support.repoRoot + "/cluster/slurm-up.sh", "2"], timeout: 300)

    override func setUpWithError() throws {
        try requireStarted(Self.up, "cluster/slurm-up.sh 2", else: "no multi-node Slurm")
    }

    func vc(_ args: [String], timeout: Int = 60) throws -> Support.Result {
        try Support.run([Support.repoRoot + "/cluster/slurm-vc.sh"] + args, timeout: timeout)
    }

    func nodeStates() throws -> String {
        try vc(["sinfo", "-h", "-N", "-o", "%N:%t"]).stdout.split(separator: "\n").joined(separator: " ")
    }

    /// `sbatch -N 1-2 -n 2` runs on node1 and node2; node2's link is cut after the first epoch.
    /// Open MPI (keepalive set by the script) ends the job within 60 s naming the lost daemon,
    /// the script requeues it, Slurm marks node2 down, and the rerun resumes from the last
    /// checkpoint on node1 alone and finishes.
    func testLinkCutEndsTheJobAndTheRequeuedJobFinishesOnTheRemainingHost() throws {
        let dir = Support.scratch("slurm-vc-linkcut")
        try FileManager.default.createDirectory(atPath: dir + "/logs", withIntermediateDirectories: true)
        let r = try vc([
            "sbatch", "--parsable", "-N", "1-2", "-n", "2", "--chdir=\(dir)",
            "--export=ALL,CORTADO_BIN=\(Support.productsDir)",
            Support.repoRoot + "/jobs/train.sbatch", Support.repoRoot + "/jobs/fashion-mlp.yaml", "--set",
            "data=\(SlurmTests.fullData)",
            "--set", "epochs=6", "--set", "emit=[]", "--set", "checkpoint.every_steps=100"
        ])
        XCTAssertEqual(r.status, 0, r.output)
        let id = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        addTeardownBlock { SlurmTests.cancel(id) { try self.vc($0) } }
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
            while (try? nodeStates()).map({ !$0.contains("node2:idle") }) ?? true && monotonicSeconds() - t < 120 {
                Thread.sleep(forTimeInterval: 1)
            }
        }
        while !text().contains("cortado-train exited") && monotonicSeconds() - t0 < 120 {
            Thread.sleep(forTimeInterval: 0.2)
        }
        let ended = monotonicSeconds() - t0
        print("link cut → job ended after \(String(format: "%.1f", ended)) s")
        XCTAssertLessThan(ended, 60, text())
        XCTAssertTrue(text().contains("lost communication with a remote daemon"), text())
        while try vc(["squeue", "-h", "-j", id]).stdout.contains(id) && monotonicSeconds() - t0 < 400 {
            Thread.sleep(forTimeInterval: 1)
        }
        let job = try vc(["scontrol", "show", "job", id]).stdout
        let log = text()
        XCTAssertTrue(
            job.contains("JobState=COMPLETED") && job.contains("Restarts=1") && job.contains("NodeList=node1\n"),
            job + log)
        XCTAssertTrue(log.contains("failed (a lost host or rank?): requeueing job \(id)"), log)
        XCTAssertTrue(log.contains("restart 1 on node1 (2 ranks)") && log.contains("resumed from"), log)
        let summary =
            try JSONSerialization.jsonObject(with: Data(log.split(separator: "\n").last { $0.hasPrefix("{") }!.utf8))
            as! [String: Any]
        XCTAssertGreaterThan((summary["test"] as! [String: Double])["fp32_accuracy"]!, 0.85, log)
    }
}
