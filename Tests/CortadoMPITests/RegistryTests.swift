import CortadoCore
import CortadoModel
import CortadoRegistry
import CortadoTestSupport
import Foundation
import XCTest

/// `cortado registry` on a real run (2 ranks, 1 epoch on the small data set): push → list →
/// show → alias → rollback → verify → export, immutability, parallel pushes, corruption caught
/// by verify and refused by every loader, and fine-tune lineage through `init_from: registry://`.
final class RegistryTests: XCTestCase {
    /// One small trained run shared by the tests of this class (fp32 + int8 emitted).
    static let run: String = {
        let dir = NSTemporaryDirectory() + "cortado-tests-\(getpid())/registry-run"
        let r = try? Support.mpirun(2, Support.smallMLP(dir, ["--set", "epochs=1", "--set", "emit=[fp32, int8]"]))
        precondition(r?.status == 0, "training the registry test run failed: \(r?.output ?? "no output")")
        return dir
    }()

    func cortado(_ args: [String], registry: String, timeout: Int = 120) throws -> Support.Result {
        try Support.run([Support.product("cortado")] + args, timeout: timeout, env: ["CORTADO_REGISTRY": registry])
    }

    func json(_ path: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: try Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
    }

    func testPushListShowAliasRollbackVerifyExport() throws {
        let reg = Support.scratch("registry-roundtrip") + "/reg"
        let p1 = try cortado(["registry", "push", Self.run, "--name", "fashion", "--alias", "candidate"], registry: reg)
        XCTAssertEqual(p1.status, 0, p1.output)
        XCTAssertTrue(p1.stdout.hasSuffix("version 1\n"), p1.stdout)
        let v1 = reg + "/fashion/1"
        for f in ["model.cmodel", "model-fp32.cmodel", "model-int8.cmodel", "card.md", "lineage.json", "metrics.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: v1 + "/" + f), f)
        }
        // The deployment rule: int8 is within 0.5 points of fp32 → the smaller int8 is deployed.
        let metrics = try json(v1 + "/metrics.json")
        let variants = metrics["variants"] as! [[String: Any]]
        let acc = Dictionary(
            uniqueKeysWithValues: variants.map { ($0["recipe"] as! String, $0["accuracy"] as! Double) })
        let expected = acc["int8"]! >= acc["fp32"]! - 0.005 ? "int8" : "fp32"
        XCTAssertEqual(metrics["deployed"] as? String, expected)
        XCTAssertEqual(
            try Data(contentsOf: URL(fileURLWithPath: v1 + "/model.cmodel")),
            try Data(contentsOf: URL(fileURLWithPath: v1 + "/model-\(expected).cmodel")))
        let confusion = (metrics["evaluation"] as! [String: Any])["confusion"] as! [[Int]]
        XCTAssertEqual(confusion.count, 10)
        XCTAssertEqual(confusion.flatMap { $0 }.reduce(0, +), (metrics["evaluation"] as! [String: Any])["rows"] as? Int)

        // Lineage: recorded from the run, not typed.
        let lineage = try json(v1 + "/lineage.json")
        let data = lineage["data"] as! [String: Any]
        XCTAssertEqual(data["manifest"] as? String, Support.smallData)
        XCTAssertEqual(data["sha256"] as? String, try SHA256.hex(fileAt: Support.smallData))
        XCTAssertEqual(lineage["world_size"] as? Int, 2)
        XCTAssertNotNil((lineage["checkpoint"] as? [String: Any])?["sha256"])
        XCTAssertNotNil(lineage["wall_sec"] as? Double)
        XCTAssertEqual((lineage["job_spec"] as? [String: Any])?["epochs"] as? Int, 1)
        XCTAssertNil(lineage["parent"])

        // The card: front matter, every section, no placeholder text.
        let card = try String(contentsOfFile: v1 + "/card.md", encoding: .utf8)
        XCTAssertTrue(card.hasPrefix("---\nmodel: \"fashion\"\nversion: 1\ntask: classification\n"), card)
        for s in [
            "## Intended use", "## Training data", "## Training procedure", "## Evaluation", "## Limitations",
            "| int8 |", "| Ankle boot |", "base_model: null", "Ranks: 2"
        ] {
            XCTAssertTrue(card.contains(s), "card lacks \(s):\n\(card)")
        }
        for bad in ["TODO", "TBD", "placeholder", "[More Information Needed]", "nan"] {
            XCTAssertFalse(card.contains(bad), "card contains \(bad)")
        }

        // Immutability: a second push is version 2; version 1 is untouched and read-only.
        let before = try SHA256.hex(fileAt: v1 + "/model.cmodel")
        let p2 = try cortado(["registry", "push", Self.run, "--name", "fashion"], registry: reg)
        XCTAssertEqual(p2.status, 0, p2.output)
        XCTAssertTrue(p2.stdout.hasSuffix("version 2\n"), p2.stdout)
        XCTAssertEqual(try SHA256.hex(fileAt: v1 + "/model.cmodel"), before)
        XCTAssertFalse(FileManager.default.isWritableFile(atPath: v1 + "/model.cmodel") && getuid() != 0)
        let mode = try FileManager.default.attributesOfItem(atPath: v1 + "/model.cmodel")[.posixPermissions] as! Int
        XCTAssertEqual(mode & 0o222, 0, "published files are read-only")

        let list = try cortado(["registry", "list"], registry: reg)
        XCTAssertEqual(list.status, 0, list.output)
        XCTAssertTrue(list.stdout.contains("fashion/1\t"), list.stdout)
        XCTAssertTrue(list.stdout.contains("fashion/2\t"), list.stdout)
        XCTAssertTrue(list.stdout.contains("@candidate"), list.stdout)

        // Aliases with history; rollback undoes the latest set.
        for (v, why) in [(1, "first"), (2, "better")] {
            let a = try cortado(
                ["registry", "alias", "set", "fashion", "champion", String(v), "--reason", why], registry: reg)
            XCTAssertEqual(a.status, 0, a.output)
        }
        XCTAssertEqual(try json(reg + "/fashion/aliases.json") as? [String: Int], ["champion": 2, "candidate": 1])
        let show = try cortado(["registry", "show", "fashion@champion"], registry: reg)
        XCTAssertTrue(show.stdout.contains("version: 2\n"), show.output)
        let rb = try cortado(["registry", "rollback", "fashion", "champion"], registry: reg)
        XCTAssertEqual(rb.status, 0, rb.output)
        XCTAssertTrue(rb.stdout.contains("fashion@champion: 2 → 1"), rb.stdout)
        XCTAssertEqual(try json(reg + "/fashion/aliases.json") as? [String: Int], ["champion": 1, "candidate": 1])
        let rb2 = try cortado(["registry", "rollback", "fashion", "champion"], registry: reg)
        XCTAssertNotEqual(rb2.status, 0)
        XCTAssertTrue(rb2.stderr.contains("no earlier version"), rb2.output)
        let history = try String(contentsOfFile: reg + "/fashion/alias-history.jsonl", encoding: .utf8)
            .split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(history.map { $0["alias"] as! String }, ["candidate", "champion", "champion", "champion"])
        XCTAssertEqual(history.map { $0["to"] as! Int }, [1, 1, 2, 1])
        XCTAssertEqual(history[2]["from"] as? Int, 1)
        XCTAssertEqual(history[2]["reason"] as? String, "better")
        XCTAssertEqual(history[3]["action"] as? String, "rollback")
        XCTAssertNotNil(history[0]["user"] as? String)
        XCTAssertNotNil(history[0]["time"] as? String)
        let bad = try cortado(["registry", "alias", "set", "fashion", "champion", "9"], registry: reg)
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("has no version 9"), bad.output)

        let verify = try cortado(["registry", "verify"], registry: reg)
        XCTAssertEqual(verify.status, 0, verify.output)
        XCTAssertTrue(verify.stdout.contains("OK: 2 version(s)"), verify.stdout)

        // Export: a model repository; the registry reference scores with cortado-infer.
        let out = Support.scratch("registry-export")
        let ex = try cortado(["registry", "export", "fashion@champion", "--out", out], registry: reg)
        XCTAssertEqual(ex.status, 0, ex.output)
        XCTAssertEqual(try json(out + "/fashion/aliases.json") as? [String: Int], ["champion": 1])
        let test = (Support.smallData as NSString).deletingLastPathComponent + "/test.h5"
        for model in [out + "/fashion/1/model.cmodel", "registry://fashion@champion", "registry://fashion/2"] {
            let infer = try Support.run(
                [Support.product("cortado-infer"), model, "--input", test, "--json"], env: ["CORTADO_REGISTRY": reg])
            XCTAssertEqual(infer.status, 0, infer.output)
            XCTAssertTrue(infer.stdout.contains("\"accuracy\""), infer.stdout)
        }
        let viaFlag = try Support.run([
            Support.product("cortado-infer"), "registry://fashion/1", "--registry", reg, "--input", test
        ])
        XCTAssertEqual(viaFlag.status, 0, viaFlag.output)
        let onnx = try cortado(
            ["export", "onnx", "registry://fashion/1/model-fp32.cmodel", "--out", out + "/m.onnx"], registry: reg)
        XCTAssertEqual(onnx.status, 0, onnx.output)
        let compress = try cortado(
            [
                "compress", "registry://fashion/1/model-fp32.cmodel", "--recipe", "fp16", "--data", Support.smallData,
                "--out", out + "/c"
            ],
            registry: reg)
        XCTAssertEqual(compress.status, 0, compress.output)
        // A reference to a missing alias is one clear line.
        let missing = try Support.run(
            [Support.product("cortado-infer"), "registry://fashion@nope", "--input", test],
            env: ["CORTADO_REGISTRY": reg])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("has no alias 'nope'"), missing.output)
    }

    func testParallelPushesGetDistinctVersions() throws {
        let reg = Support.scratch("registry-parallel") + "/reg"
        let n = 4
        var results = [Support.Result?](repeating: nil, count: n)
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: n) { i in
            let r = try? cortado(
                ["registry", "push", Self.run, "--name", "par", "--alias", "p\(i)"], registry: reg, timeout: 300)
            lock.lock()
            results[i] = r
            lock.unlock()
        }
        var versions = [Int]()
        for r in results {
            XCTAssertEqual(r?.status, 0, r?.output ?? "no result")
            if let line = r?.stdout.split(separator: "\n").last, line.hasPrefix("version "),
                let v = Int(line.dropFirst(8))
            {
                versions.append(v)
            }
        }
        XCTAssertEqual(versions.sorted(), Array(1...n))
        let entries = try FileManager.default.contentsOfDirectory(atPath: reg + "/par")
        XCTAssertFalse(entries.contains { $0.hasPrefix(".tmp") }, "\(entries)")
        XCTAssertEqual(try json(reg + "/par/aliases.json").count, n)
        XCTAssertEqual(
            try String(contentsOfFile: reg + "/par/alias-history.jsonl", encoding: .utf8).split(separator: "\n").count,
            n)
        let verify = try cortado(["registry", "verify"], registry: reg)
        XCTAssertEqual(verify.status, 0, verify.output)
    }

    func testCorruptedModelIsCaughtByVerifyAndRefusedByLoaders() throws {
        let dir = Support.scratch("registry-corrupt")
        let reg = dir + "/reg"
        let p = try cortado(["registry", "push", Self.run, "--name", "c", "--alias", "champion"], registry: reg)
        XCTAssertEqual(p.status, 0, p.output)
        // Flip one byte in the middle of each model file (what a bad disk or copy does).
        for f in ["model.cmodel", "model-fp32.cmodel"] {
            let path = reg + "/c/1/" + f
            chmod(path, 0o644)
            var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            bytes[bytes.count / 2] ^= 0x40
            try bytes.write(to: URL(fileURLWithPath: path))
        }
        let verify = try cortado(["registry", "verify"], registry: reg)
        XCTAssertNotEqual(verify.status, 0)
        XCTAssertTrue(verify.stderr.contains(reg + "/c/1/model.cmodel: SHA-256"), verify.output)
        XCTAssertTrue(verify.stderr.contains("model-fp32.cmodel: SHA-256"), verify.output)

        let test = (Support.smallData as NSString).deletingLastPathComponent + "/test.h5"
        let env = ["CORTADO_REGISTRY": reg]
        let infer = try Support.run(
            [Support.product("cortado-infer"), "registry://c@champion", "--input", test], env: env)
        XCTAssertNotEqual(infer.status, 0)
        XCTAssertTrue(infer.stderr.contains("checksum") || infer.stderr.contains("SHA-256"), infer.output)
        let onnx = try cortado(["export", "onnx", "registry://c/1", "--out", dir + "/m.onnx"], registry: reg)
        XCTAssertNotEqual(onnx.status, 0, onnx.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/m.onnx"))
        let compress = try cortado(
            [
                "compress", "registry://c/1/model-fp32.cmodel", "--recipe", "int8", "--data", Support.smallData,
                "--out", dir + "/cmp"
            ],
            registry: reg)
        XCTAssertNotEqual(compress.status, 0, compress.output)
        let export = try cortado(["registry", "export", "c/1", "--out", dir + "/exp"], registry: reg)
        XCTAssertNotEqual(export.status, 0)
        XCTAssertTrue(export.stderr.contains("fails verification"), export.output)
        let push = try cortado(["registry", "push", Self.run, "--name", "c"], registry: reg) // the run itself is fine
        XCTAssertEqual(push.status, 0, push.output)
        // The trainer refuses the corrupted version as init_from and as teacher.
        for key in ["init_from=registry://c/1", "teacher.model=registry://c@champion"] {
            let r = try Support.mpirun(
                2,
                Support.smallMLP(dir + "/ft-\(key.prefix(4))", ["--set", key, "--registry", reg, "--set", "epochs=1"]),
                timeout: 120)
            XCTAssertNotEqual(r.status, 0, key)
            XCTAssertTrue(r.stderr.contains("checksum") || r.stderr.contains("SHA-256"), "\(key): \(r.output)")
        }
    }

    func testFineTuneFromRegistryRecordsParentVersion() throws {
        let dir = Support.scratch("registry-finetune")
        let reg = dir + "/reg"
        let p = try cortado(["registry", "push", Self.run, "--name", "base", "--alias", "champion"], registry: reg)
        XCTAssertEqual(p.status, 0, p.output)
        // init_from: registry://base@champion trains, from the version's fp32 file.
        let ft = try Support.mpirun(
            2,
            Support.smallMLP(
                dir + "/ft",
                [
                    "--set", "epochs=1", "--set", "emit=[fp32]", "--set", "init_from=registry://base@champion",
                    "--registry", reg
                ]))
        XCTAssertEqual(ft.status, 0, ft.output)
        XCTAssertTrue(ft.stdout.contains("initialized 4 tensors from \(reg)/base/1/model-fp32.cmodel"), ft.stdout)
        let push = try cortado(["registry", "push", dir + "/ft", "--name", "tuned"], registry: reg)
        XCTAssertEqual(push.status, 0, push.output)
        let lineage = try json(reg + "/tuned/1/lineage.json")
        let parent = lineage["parent"] as! [String: Any]
        XCTAssertEqual(parent["ref"] as? String, "registry://base/1/model-fp32.cmodel")
        XCTAssertEqual(parent["sha256"] as? String, try SHA256.hex(fileAt: reg + "/base/1/model-fp32.cmodel"))
        let card = try String(contentsOfFile: reg + "/tuned/1/card.md", encoding: .utf8)
        XCTAssertTrue(card.contains("base_model: \"registry://base/1/model-fp32.cmodel\""), card)
        // The chain walks from the fine-tune to its parent version.
        let chain = try Registry(root: reg).chain("tuned", 1)
        XCTAssertEqual(chain.map(\.label), ["registry://tuned/1", "registry://base/1"])
        let show = try cortado(["registry", "show", "tuned/1", "--lineage"], registry: reg)
        XCTAssertEqual(show.status, 0, show.output)
        XCTAssertTrue(show.stdout.contains("registry://tuned/1: run"), show.stdout)
        XCTAssertTrue(show.stdout.contains("← registry://base/1: run \(Self.run)"), show.stdout)
    }
}
