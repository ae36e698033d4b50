import CortadoCore
import CortadoData
import CortadoModel
import CortadoTestSupport
import Foundation
import XCTest

/// Fine-tuning mechanics: `init_from` copies matching tensors, `init_exclude` leaves a fresh
/// head, `freeze` keeps the body bit-for-bit; `prepare --classes` makes class subsets.
final class FineTuningTests: XCTestCase {
    func testInitFromFreezeAndNewHead() throws {
        let dir = Support.scratch("finetune")
        let prep = try Support.run([
            Support.product("cortado"), "prepare", "fashion-mnist", "--out", dir + "/b", "--classes", "5,6,7,8,9",
            "--limit", "2000", "--validation", "100"
        ])
        XCTAssertEqual(prep.status, 0, prep.output)
        let mb = try DatasetManifest.load(dir + "/b/manifest.json")
        XCTAssertEqual(mb.classes, ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"])
        XCTAssertEqual(Set(try HDF5File.open(dir + "/b/test.h5").readInt64s("labels")), Set(0..<5))

        let layers = "model.layers=[{type: dense, units: 32}, {type: relu}, {type: dense, units: 5}]"
        let common = [
            Support.repoRoot + "/jobs/fashion-mlp.yaml", "--json", "--set", "threads=1", "--set", "batch_size=32",
            "--set", layers, "--set", "emit=[fp32]", "--set", "epochs=1"
        ]
        // "Pre-train" on the same 5-class data (only the mechanics matter here).
        let pre = try Support.mpirun(2, common + ["--run-dir", dir + "/pre", "--set", "data=\(dir)/b/manifest.json"])
        XCTAssertEqual(pre.status, 0, pre.output)
        let ft = try Support.mpirun(
            2,
            common + [
                "--run-dir", dir + "/ft", "--set", "data=\(dir)/b/manifest.json",
                "--set", "init_from=\(dir)/pre/model-fp32.cmodel", "--set", "init_exclude=[2]", "--set", "freeze=[0]"
            ])
        XCTAssertEqual(ft.status, 0, ft.output)
        XCTAssertTrue(
            ft.stdout.contains(
                "initialized 2 tensors from \(dir)/pre/model-fp32.cmodel; fresh: layers.2.weight, layers.2.bias"),
            ft.stdout)

        let source = try ModelFile.load(dir + "/pre/model-fp32.cmodel")
        let ckpt = try String(contentsOfFile: dir + "/ft/checkpoints/latest", encoding: .utf8).trimmingCharacters(
            in: .whitespacesAndNewlines)
        let after = try HDF5File.open(dir + "/ft/checkpoints/" + ckpt).readFloats("params")
        let layout = ModelSpec(inputShape: [1, 28, 28], layers: [.dense(units: 32), .relu, .dense(units: 5)])
            .parameterLayout
        for t in layout.tensors {
            let was = source.values(source.tensor(t.name)!, as: Float.self)
            let now = Array(after[t.offset..<(t.offset + t.count)])
            if t.name.hasPrefix("layers.0.") {
                XCTAssertEqual(now, was, "\(t.name) is frozen: bit-for-bit the pre-trained values")
            } else {
                XCTAssertNotEqual(now, was, "\(t.name) is the new head: initialized fresh and trained")
            }
        }
        // A spec naming a layer that does not exist fails before start, naming the key.
        let bad = try Support.mpirun(
            2, common + ["--run-dir", dir + "/bad", "--set", "data=\(dir)/b/manifest.json", "--set", "freeze=[7]"],
            timeout: 60)
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("freeze: layer 7 does not exist"), bad.stderr)
    }
}
