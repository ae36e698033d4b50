import CortadoCore
import CortadoData
import CortadoModel
import CortadoJob
import CortadoPipeline
import CortadoTrain
import Foundation
import XCTest

/// Helpers shared by the test targets (unit, MPI, cluster): fixtures, scratch folders, and child processes with timeouts.
public enum Support {
    /// The folder holding the built executables (next to the test bundle).
    public static var productsDir: String {
        let exe =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = (exe as NSString).deletingLastPathComponent
        while !dir.isEmpty, dir != "/",
            !FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent("cortado-train"))
        {
            dir = (dir as NSString).deletingLastPathComponent
        }
        return dir
    }

    public static func product(_ name: String) -> String { (productsDir as NSString).appendingPathComponent(name) }

    /// The repository root (for jobs/…).
    public static var repoRoot: String {
        var dir = (#filePath as NSString).deletingLastPathComponent
        while !FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent("Package.swift")) {
            dir = (dir as NSString).deletingLastPathComponent
        }
        return dir
    }

    public static func fixture(_ name: String) throws -> Data {
        guard
            let url = Bundle.module.url(forResource: "Fixtures/" + name, withExtension: nil)
                ?? Bundle.module.url(forResource: name, withExtension: nil)
        else {
            throw CortadoError.io("fixture \(name) not found")
        }
        return try Data(contentsOf: url)
    }

    /// This test process's folder for scratch folders, caches and shared fixtures.
    public static var scratchRoot: String { NSTemporaryDirectory() + "cortado-tests-\(getpid())" }

    /// A fresh scratch folder for one test.
    public static func scratch(_ name: String) -> String {
        let dir = scratchRoot + "/" + name
        try? FileManager.default.removeItem(atPath: dir)
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    public struct Result {
        public var status: Int32
        public var stdout: String
        public var stderr: String
        public var output: String { stdout + stderr }
    }

    /// The interpreter of the venv `cluster/install-deps.sh` makes (CORTADO_VENV moves it, as
    /// for that script), once it imports `modules`; otherwise an error that fails the test and
    /// says how to make it.
    public static func venvPython(importing modules: String) throws -> String {
        let python = (ProcessInfo.processInfo.environment["CORTADO_VENV"] ?? "/opt/cortado-venv") + "/bin/python"
        let r = try run([python, "-c", "import " + modules], timeout: 120)
        guard r.status == 0 else {
            throw CortadoError.io(
                "\(python) cannot import \(modules): run cluster/install-deps.sh, which makes the venv (\(r.output.trimmingCharacters(in: .whitespacesAndNewlines)))"
            )
        }
        return python
    }

    /// Runs a command under coreutils `timeout` (SIGTERM, then SIGKILL 5 s later), with no
    /// standard input, reading both pipes before waiting so a chatty child cannot block.
    public static func run(_ args: [String], timeout: Int = 180, env: [String: String] = [:], cwd: String? = nil) throws
        -> Result
    {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        p.arguments = ["--kill-after=5", String(timeout)] + args
        var environment = ProcessInfo.processInfo.environment
        environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        environment["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        // The binaries' BLAS self-test cache (BLASTrialCache): one per test process, not the
        // user's home.
        environment["CORTADO_CACHE_DIR"] = scratchRoot + "/cache"
        for (k, v) in env { environment[k] = v }
        p.environment = environment
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        p.standardInput = FileHandle.nullDevice
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        final class Box: @unchecked Sendable { var data = Data() }
        let errBox = Box()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            errBox.data = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        let errData = errBox.data
        p.waitUntilExit()
        return Result(
            status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self))
    }

    /// `mpirun -np N cortado-train ARGS…`, one BLAS thread per rank, under a timeout.
    public static func mpirun(_ np: Int, _ args: [String], timeout: Int = 180) throws -> Result {
        try run(["mpirun", "-np", String(np), "--bind-to", "none", product("cortado-train")] + args, timeout: timeout)
    }

    /// A small real Fashion-MNIST data set (first 4 000 images, 4 shards, 500 validation rows),
    /// prepared once per test process.
    public static let smallData: String = {
        let dir = scratchRoot + "/fashion-small"
        let r = try? run(
            [
                product("cortado"), "prepare", "fashion-mnist", "--out", dir, "--shards", "4",
                "--limit", "4000", "--validation", "500"
            ], timeout: 300)
        precondition(r?.status == 0, "preparing test data failed: \(r?.output ?? "no output")")
        return dir + "/manifest.json"
    }()

    /// cortado-train arguments for a small, fast run on `smallData`: a 784-32-10 MLP, batch 32,
    /// 1 BLAS thread, 2 epochs at a constant learning rate (split and resumed runs then see the
    /// same schedule), JSON summary; `extra` overrides.
    public static func smallMLP(_ runDir: String, _ extra: [String] = []) -> [String] {
        [
            repoRoot + "/jobs/fashion-mlp.yaml", "--run-dir", runDir, "--json", "--set", "data=\(smallData)", "--set",
            "threads=1",
            "--set", "epochs=2", "--set", "batch_size=32", "--set",
            "model.layers=[{type: dense, units: 32}, {type: relu}, {type: dense, units: 10}]",
            "--set", "optimizer.warmup_steps=0", "--set", "optimizer.schedule=constant"
        ] + extra
    }

    /// Debian's chromium, headless, with a fresh profile (reports are checked in a real browser).
    public static func chromium(_ args: [String]) throws -> Result {
        try run(
            [
                "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
                "--user-data-dir=" + scratch("chromium-profile")
            ] + args, timeout: 120)
    }

    /// The last line of stdout parsed as a JSON object (cortado-train --json).
    public static func lastJSON(_ r: Result) throws -> [String: Any] {
        guard let line = r.stdout.split(separator: "\n").last,
            let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        else {
            throw CortadoError.data("no JSON summary line in output:\n\(r.output)")
        }
        return obj
    }
}

/// Element-wise closeness with a relative tolerance and an absolute floor, reporting the first
/// offending index at the caller's line.
public func assertClose<T: BinaryFloatingPoint>(
    _ a: [T], _ b: [T], rel: Double, abs floor: Double = 1e-12, _ what: String,
    file: StaticString = #filePath, line: UInt = #line
) {
    XCTAssertEqual(a.count, b.count, "\(what): sizes", file: file, line: line)
    for i in 0..<min(a.count, b.count) {
        let x = Double(a[i]), y = Double(b[i])
        if Swift.abs(x - y) > max(rel * max(Swift.abs(x), Swift.abs(y)), floor) {
            XCTFail("\(what)[\(i)]: \(x) vs \(y)", file: file, line: line)
            return
        }
    }
}

/// Job specs from YAML text in tests: parsed with `--set`-style overrides, or expected to fail
/// with an error containing `fragment`.
public extension XCTestCase {
    /// Fails (and skips the test) unless the script that stands up a cluster (`up`, run once
    /// per test process) succeeded; the failure shows the script's output.
    func requireStarted(
        _ up: Support.Result?, _ script: String, else reason: String,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let up = try XCTUnwrap(up, "\(script) did not run", file: file, line: line)
        XCTAssertEqual(up.status, 0, "\(script): \(up.output)", file: file, line: line)
        try XCTSkipIf(up.status != 0, reason, file: file, line: line)
    }

    func spec(_ text: String, _ overrides: [String] = []) throws -> JobSpec {
        var tree = try ConfigNode.parse(text, origin: "job.yaml")
        for o in overrides { try tree.set(o) }
        return try JobSpec(tree: tree)
    }

    func expectError(_ text: String, _ overrides: [String] = [], contains fragment: String, line: UInt = #line) {
        XCTAssertThrowsError(try spec(text, overrides), line: line) {
            XCTAssertTrue("\($0)".contains(fragment), "'\($0)' lacks '\(fragment)'", line: line)
        }
    }
}

/// Writes `file` to `path` with `bytes` at byte `at` and its checksum made valid again, so
/// only the loader's own checks can catch the damage.
public func damageModelFile(_ file: ModelFile, at: Int, with bytes: Data, to path: String) throws {
    var body = Data(file.bytes.prefix(file.bytes.count - 32))
    let start = body.startIndex + at
    body.replaceSubrange(start..<(start + bytes.count), with: bytes)
    var h = SHA256()
    h.update(body)
    body.append(contentsOf: h.finalize())
    try body.write(to: URL(fileURLWithPath: path))
}

/// A little-endian float32 .npy file (format 1.0) of `shape`, C order.
public func writeNPY(_ values: [Float], shape: [Int], to path: String) throws {
    precondition(values.count == shape.reduce(1, *))
    var header =
        "{'descr': '<f4', 'fortran_order': False, 'shape': (\(shape.map(String.init).joined(separator: ", ")),), }"
    let unpadded = 10 + header.utf8.count + 1
    header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
    var d = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
    withUnsafeBytes(of: UInt16(header.utf8.count).littleEndian) { d.append(contentsOf: $0) }
    d.append(contentsOf: Array(header.utf8))
    values.map { $0.bitPattern.littleEndian }.withUnsafeBytes { d.append(contentsOf: $0) }
    try AtomicFile.write(d, to: path)
}

/// Every dataset of every split file of a prepared folder (features, labels, and the id
/// columns or token lists where present), plus the manifest without its shard checksums (HDF5
/// files differ in a few bytes from run to run): what "the same output" means for prepare.
public func preparedContents(_ dir: String) throws -> [String: [Double]] {
    var m = try DatasetManifest.load(dir + "/manifest.json")
    var out = [String: [Double]]()
    for (_, split) in m.splits {
        for f in split.files {
            let h5 = try HDF5File.open(dir + "/" + f.path)
            out[f.path + "/features"] = try h5.readFloats("features").map(Double.init)
            out[f.path + "/labels"] = try h5.readInt64s("labels").map(Double.init)
            for name in ["categorical", "offsets"] where h5.hasDataset(name) {
                out[f.path + "/" + name] = try h5.readInt64s(name).map(Double.init)
            }
            if h5.hasDataset("ids") {
                let n = try h5.elementCount(of: "ids", elementSize: 4)
                var ids = [Int32](repeating: 0, count: max(n, 1))
                try ids.withUnsafeMutableBytes { try h5.readAll("ids", dtype: .int32, into: $0.baseAddress!) }
                out[f.path + "/ids"] = ids.prefix(n).map(Double.init)
            }
        }
    }
    for k in m.splits.keys { for i in m.splits[k]!.files.indices { m.splits[k]!.files[i].sha256 = "" } }
    out["manifest"] = try stableJSON(m).map(Double.init)
    return out
}
