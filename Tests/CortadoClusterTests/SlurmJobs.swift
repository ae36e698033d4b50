import CortadoCore
import CortadoTestSupport
import Foundation
import XCTest

/// Submitting, waiting for and reading Slurm jobs from a test (the local Slurm that
/// cluster/slurm-up.sh starts).
protocol SlurmJobs {}

extension SlurmJobs where Self: XCTestCase {
    /// Submits `script args` from `dir` (logs in dir/logs), returns the job id.
    func sbatch(_ dir: String, _ options: [String], _ script: String, _ args: [String]) throws -> String {
        try FileManager.default.createDirectory(atPath: dir + "/logs", withIntermediateDirectories: true)
        let r = try Support.run(
            ["sbatch", "--parsable", "--chdir=\(dir)", "--export=ALL,CORTADO_BIN=\(Support.productsDir)"]
                + options + [Support.repoRoot + "/jobs/" + script] + args)
        XCTAssertEqual(r.status, 0, r.output)
        let id =
            r.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ";").first.map(String.init) ?? ""
        // A test that fails or times out still ends its job and the job's ranks.
        addTeardownBlock { SlurmTests.cancel(id, run: { try Support.run($0) }) }
        return id
    }

    /// Waits until every job of `id` (an array's tasks too) has left the queue; returns their
    /// final states from `scontrol show job`. Gives up after `timeout` seconds, or, with
    /// `progress`, once that value (say, the log's length) has not changed for `stalledAfter`
    /// seconds: a slower machine takes longer but keeps making progress.
    func wait(_ id: String, timeout: Double = 400, stalledAfter: Double? = nil, progress: () -> Int = { 0 }) throws
        -> [String]
    {
        let t0 = monotonicSeconds()
        var last = progress(), lastChange = t0
        while monotonicSeconds() - (stalledAfter == nil ? t0 : lastChange) < (stalledAfter ?? timeout) {
            let q = try Support.run(["squeue", "-h", "-j", id, "-o", "%T"])
            if q.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { break }
            Thread.sleep(forTimeInterval: 1)
            let now = progress()
            if now != last { (last, lastChange) = (now, monotonicSeconds()) }
        }
        let s = try Support.run(["scontrol", "show", "job", id])
        return s.stdout.components(separatedBy: "JobState=").dropFirst().map { String($0.prefix { $0 != " " }) }
    }

    func log(_ dir: String, _ name: String) -> String {
        (try? String(contentsOfFile: dir + "/logs/" + name, encoding: .utf8)) ?? "(no log \(name))"
    }

}
