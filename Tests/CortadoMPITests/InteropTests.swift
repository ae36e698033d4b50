import CortadoCore
import CortadoData
import CortadoModel
import CortadoTestSupport
import Foundation
import XCTest

/// Interop: what we write opens in h5dump and h5py, and the inference binary links no MPI.
final class InteropTests: XCTestCase {
    func testInferenceBinaryDoesNotLinkMPI() throws {
        let r = try Support.run(["ldd", Support.product("cortado-infer")])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertFalse(r.stdout.contains("libmpi"), r.stdout)
        XCTAssertTrue(r.stdout.contains("libhdf5"), r.stdout)
        let t = try Support.run(["ldd", Support.product("cortado-train")])
        XCTAssertTrue(t.stdout.contains("libmpi"), "the trainer should link MPI: \(t.stdout)")
    }

    func testShardsCheckpointsAndManifestOpenInH5dumpAndH5py() throws {
        let manifest = Support.smallData
        let dir = (manifest as NSString).deletingLastPathComponent
        let run = Support.scratch("interop") + "/run"
        let r = try Support.mpirun(
            2,
            [
                Support.repoRoot + "/jobs/fashion-mlp.yaml", "--run-dir", run, "--set", "data=\(manifest)",
                "--set", "epochs=1", "--set", "threads=1", "--set", "emit=[fp32]",
                "--set", "model.layers=[{type: dense, units: 10}]"
            ])
        XCTAssertEqual(r.status, 0, r.output)
        let ckpt = run + "/checkpoints/step-00000027.h5"
        for f in [dir + "/train-000.h5", dir + "/test.h5", ckpt] {
            let h = try Support.run(["h5dump", "-H", f])
            XCTAssertEqual(h.status, 0, h.output)
            XCTAssertTrue(h.stdout.contains("DATASET"), h.stdout)
        }
        let script = Support.repoRoot + "/cluster/check-files.py"
        let p = try Support.run(["python3", script, manifest, ckpt])
        XCTAssertEqual(p.status, 0, p.output)
        XCTAssertTrue(p.stdout.contains("OK"), p.output)
    }
}
