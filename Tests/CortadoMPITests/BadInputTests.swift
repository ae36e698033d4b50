import CortadoCore
import CortadoData
import CortadoJob
import CortadoPipeline
import CortadoTestSupport
import CortadoTrain
import Foundation
import XCTest

/// The bad-input corpus, through the real binaries: every case is one line on stderr naming
/// the file (or key), exit code 2, no crash, no hang, and nothing of the user's overwritten.
final class BadInputTests: XCTestCase {
    /// Runs `cortado-train` on a copy of the small data set that `mutate` damaged.
    func trainOn(
        _ name: String, verifyChecksums: Bool = false, np: Int = 1,
        _ mutate: (String) throws -> Void
    ) throws -> Support.Result {
        let dir = Support.scratch("bad-" + name)
        let src = (Support.smallData as NSString).deletingLastPathComponent
        for f in try FileManager.default.contentsOfDirectory(atPath: src) {
            try FileManager.default.copyItem(atPath: src + "/" + f, toPath: dir + "/" + f)
        }
        try mutate(dir)
        var cmd = [Support.product("cortado-train")]
        if np > 1 { cmd = ["mpirun", "-np", String(np), "--bind-to", "none"] + cmd }
        return try Support.run(
            cmd + [
                Support.repoRoot + "/jobs/fashion-mlp.yaml", "--run-dir", dir + "/run",
                "--set", "data=\(dir)/manifest.json", "--set", "epochs=1", "--set", "threads=1",
                "--set", "verify_checksums=\(verifyChecksums)"
            ], timeout: 60)
    }

    func h5py(_ script: String) throws {
        let r = try Support.run(["python3", "-c", "import h5py, numpy as np\n" + script])
        XCTAssertEqual(r.status, 0, r.output)
    }

    func assertOneLine(_ r: Support.Result, _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 2, r.output, file: file, line: line)
        // Under mpirun, mpirun adds its own banner about the non-zero exit; ours is one line.
        let lines = r.stderr.split(separator: "\n").filter { $0.hasPrefix("cortado") }
        XCTAssertEqual(lines.count, 1, "expected one line: \(r.stderr)", file: file, line: line)
        if !r.stderr.contains("mpirun") {
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr, file: file, line: line)
        }
        for f in fragments { XCTAssertTrue(r.stderr.contains(f), "'\(r.stderr)' lacks '\(f)'", file: file, line: line) }
        XCTAssertFalse(r.output.contains("Backtrace") || r.output.contains("crashed"), r.output, file: file, line: line)
    }

    func testBadShards() throws {
        let cases: [(String, [String], Bool, (String) throws -> Void)] = [
            (
                "truncated", ["train-001.h5", "HDF5"], false,
                { d in XCTAssertEqual(truncate(d + "/train-001.h5", 3000), 0) }
            ),
            (
                "empty", ["train-002.h5", "not an HDF5 file"], false,
                { d in XCTAssertEqual(truncate(d + "/train-002.h5", 0), 0) }
            ),
            (
                "missing", ["train-003.h5", "no such file"], false,
                { d in try FileManager.default.removeItem(atPath: d + "/train-003.h5") }
            ),
            (
                "renamed", ["train-000.h5", "labels"], false,
                { d in try self.h5py("f = h5py.File('\(d)/train-000.h5', 'a'); f.move('labels', 'label')") }
            ),
            (
                "dtype", ["train-001.h5", "labels"], false,
                { d in
                    try self.h5py(
                        "f = h5py.File('\(d)/train-001.h5', 'a'); y = f['labels'][:]; del f['labels']; f['labels'] = y.astype('f4')"
                    )
                }
            ),
            (
                "width", ["train-002.h5", "features", "[875, 783]", "784"], false,
                { d in
                    try self.h5py(
                        "f = h5py.File('\(d)/train-002.h5', 'a'); x = f['features'][:, :783]; del f['features']; f['features'] = x"
                    )
                }
            ),
            (
                "label-range", ["train-001.h5", "label 12", "0..<10"], false,
                { d in
                    try self.h5py("f = h5py.File('\(d)/train-001.h5', 'a'); f['labels'][7] = 12")
                }
            ),
            (
                "nan", ["train-000.h5", "nan", "finite"], false,
                { d in
                    try self.h5py("f = h5py.File('\(d)/train-000.h5', 'a'); f['features'][5, 100] = np.nan")
                }
            ),
            (
                "checksum", ["train-000.h5", "SHA-256"], true,
                { d in
                    try self.h5py("f = h5py.File('\(d)/train-000.h5', 'a'); f['features'][5, 100] = 0.5")
                }
            ),
            (
                "manifest", ["manifest.json"], false,
                { d in
                    try "{\"format\": \"cortado-dataset\"".write(
                        toFile: d + "/manifest.json", atomically: true, encoding: .utf8)
                }
            )
        ]
        for (name, fragments, verify, mutate) in cases {
            let r = try trainOn(name, verifyChecksums: verify, mutate)
            assertOneLine(r, fragments)
        }
        // Bad data on one rank only (rank 1 owns train-002/003 of 4 shards): every rank stops
        // before step 0, one message names the rank and the file.
        let r = try trainOn("one-rank", np: 2) { d in
            try self.h5py("f = h5py.File('\(d)/train-003.h5', 'a'); f['features'][3, 3] = np.inf")
        }
        assertOneLine(r, ["rank 1", "train-003.h5", "inf"])
    }

    func testBadSpecsAndFiles() throws {
        let dir = Support.scratch("bad-spec")
        let train = Support.product("cortado-train"), job = Support.repoRoot + "/jobs/fashion-mlp.yaml"
        let base = ["--run-dir", dir + "/run", "--set", "data=\(Support.smallData)"]
        let cases: [([String], [String])] = [
            ([dir + "/nope.yaml"], ["nope.yaml", "cannot read job spec"]),
            ([job, "--set", "batch_size=0"] + base, ["batch_size", "must be positive"]),
            ([job, "--set", "optimizer.learning_rate=-1"] + base, ["optimizer.learning_rate"]),
            ([job, "--set", "epochs=two"] + base, ["epochs"]),
            ([job, "--set", "bogus=1"] + base, ["bogus: unknown key"]),
            ([job, "--set", "model.layers=[{type: dense, units: 7}]"] + base, ["model.layers.0", "10 classes"]),
            ([job, "--set", "data=\(dir)/missing/manifest.json", "--run-dir", dir + "/run"], ["missing/manifest.json"]),
            ([job, "--set", "init_from=\(dir)/none.cmodel"] + base, ["none.cmodel"])
        ]
        for (args, fragments) in cases { assertOneLine(try Support.run([train] + args, timeout: 60), fragments) }
    }

    /// A checkpoint the fuzzer made from a real one: libhdf5 asks for a 2^64-byte allocation
    /// while parsing it; the read must end in a clear error, not a crash.
    func testFuzzFoundCheckpointIsAnError() throws {
        let dir = Support.scratch("fuzz-ckpt")
        try Support.fixture("fuzz-checkpoint-hdf5-alloc.h5").write(to: URL(fileURLWithPath: dir + "/step-00000001.h5"))
        XCTAssertThrowsError(try Checkpoint.read(dir + "/step-00000001.h5")) {
            XCTAssertTrue("\($0)".contains("step-00000001.h5"), "\($0)")
        }
        // The fuzz harness's in-memory path (HDF5 core driver) rejects it the same way.
        XCTAssertThrowsError(
            try Checkpoint.parse(try Support.fixture("fuzz-checkpoint-hdf5-alloc.h5"), path: "image.h5")
        ) {
            XCTAssertTrue("\($0)".contains("image.h5"), "\($0)")
        }
    }

    /// Corrupt checkpoints: resume skips them with a warning; with none left it is an error.
    /// Bad model files given to cortado-infer: one line, exit 2.
    func testBadCheckpointsAndModels() throws {
        let dir = Support.scratch("bad-ckpt")
        let train = Support.product("cortado-train"), job = Support.repoRoot + "/jobs/fashion-mlp.yaml"
        let a = [
            job, "--run-dir", dir + "/run", "--set", "data=\(Support.smallData)", "--set", "epochs=1", "--set",
            "threads=1",
            "--set", "model.layers=[{type: dense, units: 10}]", "--set", "emit=[fp32]"
        ]
        XCTAssertEqual(try Support.run([train] + a).status, 0)
        let ck = try Checkpoint.checkpointFiles(runDir: dir + "/run").last!
        // The in-memory reader (used by the fuzzer) reads what the file reader reads.
        let onDisk = try Checkpoint.read(ck),
            inMemory = try Checkpoint.parse(try Data(contentsOf: URL(fileURLWithPath: ck)), path: ck)
        XCTAssertEqual(onDisk.params, inMemory.params)
        XCTAssertEqual(onDisk.optimizerState, inMemory.optimizerState)
        XCTAssertEqual(onDisk.step, inMemory.step)
        // Flip a byte inside the parameters: HDF5 still opens it, the payload checksum does not match.
        try h5py("f = h5py.File('\(ck)', 'a'); p = f['params']; p[3] = p[3] + 1")
        // The whole-file checksum catches the edit before libhdf5 parses anything …
        XCTAssertThrowsError(try Checkpoint.read(ck)) {
            XCTAssertTrue("\($0)".contains("checksum mismatch (torn or corrupted checkpoint)"), "\($0)")
        }
        // … and behind it (re-stamped, as a deliberate edit would be) the payload checksum does.
        try Checkpoint.stamp(ck)
        XCTAssertThrowsError(try Checkpoint.read(ck)) {
            XCTAssertTrue("\($0)".contains("payload checksum mismatch"), "\($0)")
        }
        try h5py("f = h5py.File('\(ck)', 'a'); f.attrs['format_version'] = 99")
        try Checkpoint.stamp(ck)
        XCTAssertThrowsError(try Checkpoint.read(ck)) { XCTAssertTrue("\($0)".contains("format_version 99"), "\($0)") }
        let r = try Support.run([train] + a + ["--resume"])
        assertOneLine(r, ["--resume: no checkpoint"])
        XCTAssertTrue(r.stdout.contains("warning: skipping checkpoint: \(ck)"), r.stdout)

        // A model whose tensor table points past the end of the file, with a valid checksum.
        let model = dir + "/run/model-fp32.cmodel"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: model))
        let headerLength = Int(bytes[12]) | Int(bytes[13]) << 8 | Int(bytes[14]) << 16
        var header = String(decoding: bytes[16..<(16 + headerLength)], as: UTF8.self)
        header = header.replacingOccurrences(of: "\"offset\":0", with: "\"offset\":9") // same length
        bytes.replaceSubrange(16..<(16 + headerLength), with: Data(header.utf8))
        bytes.removeLast(32)
        var h = SHA256()
        h.update(bytes)
        bytes.append(contentsOf: h.finalize())
        try bytes.write(to: URL(fileURLWithPath: dir + "/past.cmodel"))
        let infer = Support.product("cortado-infer"),
            test = (Support.smallData as NSString).deletingLastPathComponent + "/test.h5"
        assertOneLine(
            try Support.run([infer, dir + "/past.cmodel", "--input", test]),
            ["past.cmodel", "outside the", "data section"])
        var magic = try Data(contentsOf: URL(fileURLWithPath: model))
        magic[0] = 0
        try magic.write(to: URL(fileURLWithPath: dir + "/magic.cmodel"))
        assertOneLine(try Support.run([infer, dir + "/magic.cmodel", "--input", test]), ["magic.cmodel", "bad magic"])
        assertOneLine(try Support.run([infer, model, "--input", dir + "/run/job.json"]), ["job.json"])
    }
}
