import CortadoCore
import CortadoRegistry
import CortadoTestSupport
import Foundation
import XCTest

/// cortado-train's TensorBoard event files, read back by TensorBoard's own reader
/// (`EventAccumulator`, from the `tensorboard` PyPI package in cluster/install-deps.sh's venv):
/// the scalars equal metrics.jsonl's (to float32, the event format's precision).
final class TensorBoardTests: XCTestCase {
    static let python =
        (ProcessInfo.processInfo.environment["CORTADO_TB_VENV"] ?? "/opt/cortado-tb-venv") + "/bin/python"

    func testEventFilesMatchMetricsLog() throws {
        XCTAssertTrue(
            FileManager.default.isExecutableFile(atPath: Self.python), "\(Self.python): run cluster/install-deps.sh")
        let dir = Support.scratch("tensorboard")
        let r = try Support.mpirun(2, Support.smallMLP(dir + "/run", ["--set", "emit=[fp32]"]))
        XCTAssertEqual(r.status, 0, r.output)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/run/tb")
        XCTAssertEqual(files.count, 1, "\(files)")
        XCTAssertTrue(files[0].hasPrefix("events.out.tfevents."))
        let job = try String(contentsOfFile: dir + "/run/job.json", encoding: .utf8)
        XCTAssertFalse(
            job.contains("\"tensorboard\""), "the default is not encoded: job.json and its hash stay as before")

        let script = """
            import json, sys
            from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
            acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
            acc.Reload()
            print(json.dumps({t: [[e.step, e.value] for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}))
            """
        let read = try Support.run([Self.python, "-c", script, dir + "/run/tb"], timeout: 120)
        XCTAssertEqual(read.status, 0, read.output)
        let scalars = try JSONSerialization.jsonObject(with: Data(read.stdout.utf8)) as! [String: [[Double]]]
        let epochs = try RunFolder.metrics(dir + "/run/metrics.jsonl")
        XCTAssertEqual(epochs.count, 2)
        let keys = Set(epochs.flatMap(\.keys)).subtracting(["step"])
        XCTAssertEqual(Set(scalars.keys), keys)
        for k in keys {
            let expected = epochs.map { [$0["step"]!, Double(Float($0[k]!))] }
            XCTAssertEqual(scalars[k]?.map { $0[0] }, expected.map { $0[0] }, k)
            for (got, want) in zip(scalars[k] ?? [], expected) {
                XCTAssertEqual(got[1], want[1], accuracy: abs(want[1]) * 1e-6, "\(k) at step \(want[0])")
            }
        }

        // tensorboard: false turns it off and is recorded in the spec.
        let off = try Support.mpirun(
            2,
            Support.smallMLP(dir + "/off", ["--set", "emit=[fp32]", "--set", "epochs=1", "--set", "tensorboard=false"]))
        XCTAssertEqual(off.status, 0, off.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/off/tb"))
        XCTAssertTrue(
            try String(contentsOfFile: dir + "/off/job.json", encoding: .utf8).contains("\"tensorboard\":false"))
    }
}
