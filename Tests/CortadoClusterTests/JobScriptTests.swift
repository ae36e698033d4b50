import CortadoCore
import CortadoData
import CortadoTestSupport
import Foundation
import XCTest

/// Job scripts that need no scheduler to check: syntax, and the PBS script's arguments.
final class JobScriptTests: XCTestCase {
    func testScriptsParseAndPBSArgumentHandling() throws {
        for s in ["train.sbatch", "sweep.sbatch", "prepare.sbatch", "train.pbs"] {
            let r = try Support.run(["bash", "-n", Support.repoRoot + "/jobs/" + s])
            XCTAssertEqual(r.status, 0, "\(s): \(r.output)")
        }
        let dir = Support.scratch("pbs")
        try "n1\nn1\nn2\n".write(toFile: dir + "/nodes", atomically: true, encoding: .utf8)
        let env = [
            "PBS_NODEFILE": dir + "/nodes", "PBS_JOBID": "42.pbs-server", "PBS_JOBNAME": "cortado-train",
            "PBS_O_WORKDIR": Support.repoRoot,
            "CORTADO_SPEC": "jobs/fashion-mlp.yaml", "CORTADO_ARGS": "--set epochs=5 --set batch_size=128",
            "CORTADO_DRY_RUN": "1"
        ]
        let r = try Support.run(["bash", Support.repoRoot + "/jobs/train.pbs"], env: env)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stdout.hasPrefix("mpirun -np 3 --hostfile \(dir)/nodes"), r.stdout)
        XCTAssertTrue(
            r.stdout.contains(
                "cortado-train jobs/fashion-mlp.yaml --run-dir runs/cortado-train-42 --set threads=1 --json --set epochs=5 --set batch_size=128"
            ), r.stdout)
        var bad = env; bad["CORTADO_SPEC"] = nil
        let missing = try Support.run(
            ["bash", Support.repoRoot + "/jobs/train.pbs"], env: bad.merging(["CORTADO_SPEC": ""]) { $1 })
        XCTAssertEqual(missing.status, 2)
        XCTAssertTrue(missing.stderr.contains("set CORTADO_SPEC"), missing.stderr)
        let nofile = try Support.run(
            ["bash", Support.repoRoot + "/jobs/train.pbs"], env: env.merging(["CORTADO_SPEC": "jobs/nope.yaml"]) { $1 })
        XCTAssertEqual(nofile.status, 2)
        XCTAssertTrue(nofile.stderr.contains("jobs/nope.yaml: no such file"), nofile.stderr)
    }
}
