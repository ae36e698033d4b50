import CortadoModel
import CortadoTestSupport
import Foundation
import XCTest

/// The OpenBLAS kernel decision (`BLASKernelPolicy.decide`) on made-up CPUs and self-test
/// results, and the self-test itself on this machine's kernel.
final class BLASKernelTests: XCTestCase {
    /// An Intel server with AVX-512, VNNI and BF16 (what OpenBLAS 0.3.21 misses).
    var xeon: CPUFeatures {
        var f = CPUFeatures()
        (f.avx, f.avx2, f.fma, f.avx512f, f.avx512bw, f.avx512dq, f.avx512vl) = (
            true, true, true, true, true, true, true
        )
        (f.avx512vnni, f.avx512bf16, f.intel) = (true, true, true)
        return f
    }

    /// Records which kernels were tried; `failing` fail, the others pass at `gflops[kernel]`.
    final class Trials {
        var tried = [String]()
        let failing: Set<String>
        init(failing: Set<String> = []) { self.failing = failing }
        func run(_ k: String) -> BLASKernelTrial {
            tried.append(k)
            let speed: Double = ["Prescott": 25, "Cooperlake": 150, "SkylakeX": 140, "Haswell": 100][k] ?? 50
            return failing.contains(k)
                ? BLASKernelTrial(kernel: k, passed: false, gflops: nil, detail: "sgemm 67x45x129 NT: wrong")
                : BLASKernelTrial(kernel: k, passed: true, gflops: speed)
        }
    }

    func testGenericKernelOnCapableCPUIsReplaced() {
        let t = Trials()
        let d = BLASKernelPolicy.decide(corename: "Prescott", cpu: xeon, environment: [:], trial: t.run)
        XCTAssertEqual(d.action, .reexec(kernel: "Cooperlake"))
        XCTAssertEqual(d.kernel, "Cooperlake")
        XCTAssertTrue(d.automatic)
        XCTAssertNil(d.warning)
        XCTAssertTrue(d.note.contains("Prescott (25.0 GFLOP/s)") && d.note.contains("Cooperlake"), d.note)
        XCTAssertEqual(t.tried, ["Cooperlake", "Prescott"])
    }

    func testSelfTestFailureFallsBackToTheNextKernel() {
        let t = Trials(failing: ["Cooperlake"])
        let d = BLASKernelPolicy.decide(corename: "Nehalem", cpu: xeon, environment: [:], trial: t.run)
        XCTAssertEqual(d.action, .reexec(kernel: "SkylakeX"))
        XCTAssertTrue(d.note.contains("failed: Cooperlake"), d.note)
        // Without AVX-512 BF16 the list starts at SkylakeX; all AVX-512 ones failing → Haswell.
        var noBF16 = xeon
        noBF16.avx512bf16 = false
        let t2 = Trials(failing: ["SkylakeX"])
        let d2 = BLASKernelPolicy.decide(corename: "Prescott", cpu: noBF16, environment: [:], trial: t2.run)
        XCTAssertEqual(d2.action, .reexec(kernel: "Haswell"))
        XCTAssertEqual(t2.tried.first, "SkylakeX")
    }

    func testEveryCandidateFailingKeepsTheKernelWithAMeasuredWarning() {
        let t = Trials(failing: ["Cooperlake", "SkylakeX", "Haswell", "Sandybridge"])
        let d = BLASKernelPolicy.decide(corename: "Prescott", cpu: xeon, environment: [:], trial: t.run)
        XCTAssertEqual(d.action, .keep)
        XCTAssertEqual(d.kernel, "Prescott")
        XCTAssertFalse(d.automatic)
        let w = try? XCTUnwrap(d.warning)
        XCTAssertTrue(w?.contains("25.0 GFLOP/s") == true && w?.contains("Haswell") == true, w ?? "")
    }

    func testUserKernelIsKept() {
        let t = Trials()
        let d = BLASKernelPolicy.decide(
            corename: "Prescott", cpu: xeon, environment: ["OPENBLAS_CORETYPE": "prescott"], trial: t.run)
        XCTAssertEqual(d.action, .keep)
        XCTAssertEqual(d.kernel, "Prescott")
        XCTAssertFalse(d.automatic)
        XCTAssertNil(d.warning)
        XCTAssertTrue(d.note.contains("OPENBLAS_CORETYPE=prescott"))
        XCTAssertEqual(t.tried, [])
    }

    func testAutomaticChoiceOffWarnsWithSpeed() {
        let t = Trials()
        let d = BLASKernelPolicy.decide(
            corename: "Prescott", cpu: xeon, environment: ["CORTADO_BLAS_AUTO": "0"], trial: t.run)
        XCTAssertEqual(d.action, .keep)
        XCTAssertEqual(t.tried, ["Prescott"])
        XCTAssertTrue(d.warning?.contains("25.0 GFLOP/s") == true && d.warning?.contains("CORTADO_BLAS_AUTO=0") == true)
    }

    func testNoAVXOrAGoodKernelIsKept() {
        let t = Trials()
        var old = CPUFeatures()
        old.avx = true
        for (core, cpu) in [("Sandybridge", old), ("Prescott", CPUFeatures()), ("SkylakeX", xeon), ("Haswell", xeon)] {
            let d = BLASKernelPolicy.decide(corename: core, cpu: cpu, environment: [:], trial: t.run)
            XCTAssertEqual(d.action, .keep, core)
            XCTAssertEqual(d.kernel, core)
            XCTAssertNil(d.warning)
            XCTAssertEqual(d.note, "picked by OpenBLAS")
        }
        // Zen on AMD's AVX-512 parts is OpenBLAS 0.3.21's deliberate choice, not a fallback.
        var zen4 = xeon
        (zen4.intel, zen4.amd) = (false, true)
        XCTAssertEqual(
            BLASKernelPolicy.decide(corename: "Zen", cpu: zen4, environment: [:], trial: t.run).action, .keep)
        XCTAssertEqual(t.tried, [])
        XCTAssertEqual(
            BLASKernelPolicy.candidates(for: zen4), ["Cooperlake", "SkylakeX", "Zen", "Haswell", "Sandybridge"])
    }

    func testAfterTheReexecTheChoiceIsReportedAndChecked() {
        let t = Trials()
        let env = [
            "OPENBLAS_CORETYPE": "SkylakeX", "CORTADO_BLAS_AUTO_CHOSEN": "SkylakeX", "CORTADO_BLAS_AUTO_NOTE": "n"
        ]
        let d = BLASKernelPolicy.decide(corename: "SkylakeX", cpu: xeon, environment: env, trial: t.run)
        XCTAssertEqual(
            d, BLASKernelDecision(action: .keep, kernel: "SkylakeX", automatic: true, note: "n", warning: nil))
        // OpenBLAS ignores a kernel it cannot run: that must not pass silently (nor re-exec again).
        let d2 = BLASKernelPolicy.decide(corename: "Prescott", cpu: xeon, environment: env, trial: t.run)
        XCTAssertEqual(d2.action, .keep)
        XCTAssertNotNil(d2.warning)
        XCTAssertEqual(t.tried, [])
    }

    /// The self-test passes with the kernel this process runs (and can fail: its reference is
    /// independent of BLAS).
    func testSelfTestPassesHere() {
        XCTAssertNil(BLASSelfTest.run())
    }

    /// The self-test cache: trials come back for the identity that stored them and for no
    /// other (another file, or a file whose stored identity differs); a corrupt file is a miss;
    /// the folder follows CORTADO_CACHE_DIR, XDG_CACHE_HOME, HOME; CORTADO_BLAS_CACHE=0 is off.
    func testTrialCacheKeepsTrialsPerIdentity() throws {
        let env = ["CORTADO_CACHE_DIR": Support.scratch("blas-trial-cache")]
        let a = try XCTUnwrap(BLASTrialCache(environment: env, identity: "cpu A"))
        XCTAssertEqual(a.load(), [:])
        let trials = [
            "SkylakeX": BLASKernelTrial(kernel: "SkylakeX", passed: true, gflops: 140.5, detail: ""),
            "Zen": BLASKernelTrial(kernel: "Zen", passed: false, gflops: nil, detail: "crashed (signal 4)")
        ]
        a.store(trials)
        XCTAssertEqual(try XCTUnwrap(BLASTrialCache(environment: env, identity: "cpu A")).load(), trials)
        let b = try XCTUnwrap(BLASTrialCache(environment: env, identity: "cpu B"))
        XCTAssertNotEqual(a.path, b.path)
        XCTAssertEqual(b.load(), [:])
        try FileManager.default.copyItem(atPath: a.path, toPath: b.path)
        XCTAssertEqual(b.load(), [:], "a file stored for another identity")
        try Data("{\"identity\":".utf8).write(to: URL(fileURLWithPath: a.path))
        XCTAssertEqual(a.load(), [:], "a corrupt file")

        XCTAssertNil(BLASTrialCache(environment: env.merging(["CORTADO_BLAS_CACHE": "0"]) { $1 }, identity: "x"))
        let xdg = BLASTrialCache(environment: ["XDG_CACHE_HOME": "/x", "HOME": "/h"], identity: "i")
        XCTAssertTrue(xdg?.path.hasPrefix("/x/cortado/blas-trials-") == true, xdg?.path ?? "nil")
        XCTAssertTrue(
            BLASTrialCache(environment: ["HOME": "/h"], identity: "i")?.path.hasPrefix("/h/.cache/cortado/") == true)
        XCTAssertNil(BLASTrialCache(environment: [:], identity: "i"))

        // The identity names the library file this process runs, and the test hooks.
        let id = BLASTrialCache.identity(cpu: .current, environment: [:])
        XCTAssertTrue(id.contains("libopenblas") && id.contains("OpenBLAS 0."), id)
        XCTAssertNotEqual(
            id, BLASTrialCache.identity(cpu: .current, environment: ["CORTADO_BLAS_SELF_TEST_FAIL": "Zen"]))
    }
}
