import CortadoModel
import CortadoTestSupport
import Foundation
import XCTest

/// The OpenBLAS kernel check through the real binaries: a generic kernel (simulated with the
/// test hook, since this machine's OpenBLAS may pick a good one) is replaced before MPI_Init
/// on every rank, a failing self-test moves on to the next kernel, a user's kernel stays.
final class BLASKernelMPITests: XCTestCase {
    /// This CPU's kernels, best first; the test needs two (a CPU with AVX2).
    func candidates() throws -> [String] {
        let c = BLASKernelPolicy.candidates(for: .current)
        guard c.count >= 2 else { throw XCTSkip("this CPU has no AVX2: no better kernel to choose") }
        return c
    }

    /// `env -u OPENBLAS_CORETYPE VARS… command`: the test process's own OPENBLAS_CORETYPE (if
    /// any) would count as the user's choice.
    func run(_ vars: [String], _ command: [String], timeout: Int = 120) throws -> Support.Result {
        try Support.run(["env", "-u", "OPENBLAS_CORETYPE"] + vars + command, timeout: timeout)
    }

    func testGenericKernelIsReplacedOnEveryRankBeforeMPIInit() throws {
        let c = try candidates()
        let dir = Support.scratch("blas-reexec")
        let r = try run(
            ["CORTADO_BLAS_SIMULATE_FALLBACK=Prescott", "CORTADO_BLAS_SELF_TEST_FAIL=\(c[0])"],
            ["mpirun", "-np", "2", "--bind-to", "none", Support.product("cortado-train")]
                + Support.smallMLP(dir + "/run", ["--set", "epochs=1"]))
        XCTAssertEqual(r.status, 0, r.output)
        let summary = try Support.lastJSON(r)
        XCTAssertEqual(summary["blas_kernel"] as? String, c[1], r.output)
        XCTAssertEqual(summary["blas_kernel_auto"] as? Bool, true)
        XCTAssertTrue(
            r.stdout.contains("BLAS: OpenBLAS kernel \(c[1]) (chosen automatically: OpenBLAS picked Prescott"),
            r.stdout)
        XCTAssertTrue(r.stdout.contains("failed: \(c[0]) (failure injected"), r.stdout)
    }

    func testDryRunNamesTheKernel() throws {
        let c = try candidates()
        let dir = Support.scratch("blas-dry-run")
        let r = try run(
            ["CORTADO_BLAS_SIMULATE_FALLBACK=Prescott"],
            ["mpirun", "-np", "2", "--bind-to", "none", Support.product("cortado-train")]
                + Support.smallMLP(dir + "/run", ["--dry-run"]))
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stdout.contains("BLAS: OpenBLAS kernel \(c[0]) (chosen automatically"), r.stdout)
    }

    func testUserKernelAndSwitchOffAreKept() throws {
        _ = try candidates()
        let user = try run(
            ["OPENBLAS_CORETYPE=Prescott"],
            [Support.product("cortado"), "bench", "sgemm", "--size", "256", "--seconds", "0.1", "--json"])
        XCTAssertEqual(user.status, 0, user.output)
        XCTAssertTrue(user.stdout.contains(#""kernel": "Prescott", "kernel_auto": false"#), user.output)
        XCTAssertEqual(user.stderr, "")
        let off = try run(
            ["CORTADO_BLAS_SIMULATE_FALLBACK=Prescott", "CORTADO_BLAS_AUTO=0"],
            [Support.product("cortado"), "bench", "sgemm", "--size", "256", "--seconds", "0.1", "--json"])
        XCTAssertEqual(off.status, 0, off.output)
        XCTAssertTrue(off.stdout.contains(#""kernel": "Prescott", "kernel_auto": false"#), off.output)
        XCTAssertTrue(off.stderr.contains("warning: OpenBLAS runs its generic Prescott kernel"), off.stderr)
        XCTAssertTrue(off.stderr.contains("GFLOP/s"), off.stderr)
    }

    /// The second start on a machine takes the self-tests from the cache file the first one
    /// wrote; an injected failure is another identity (the tests run again and the next kernel
    /// wins); CORTADO_BLAS_CACHE=0 leaves the file alone.
    func testSelfTestsAreCachedPerMachine() throws {
        let c = try candidates()
        let dir = Support.scratch("blas-trial-cache-run")
        let vars = ["CORTADO_BLAS_SIMULATE_FALLBACK=Prescott", "CORTADO_CACHE_DIR=\(dir)"]
        let bench = [Support.product("cortado"), "bench", "sgemm", "--size", "128", "--seconds", "0.05"]
        func files() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: dir).sorted() }
        let first = try run(vars, bench)
        XCTAssertEqual(first.status, 0, first.output)
        XCTAssertTrue(first.stdout.contains("OpenBLAS kernel \(c[0]) (chosen automatically"), first.stdout)
        XCTAssertFalse(first.stdout.contains("self-tests from"), first.stdout)
        XCTAssertEqual(try files().count, 1)
        let second = try run(vars, bench)
        XCTAssertEqual(second.status, 0, second.output)
        XCTAssertTrue(second.stdout.contains("OpenBLAS kernel \(c[0]) (chosen automatically"), second.stdout)
        XCTAssertTrue(second.stdout.contains("self-tests from \(dir)/\(try files()[0])"), second.stdout)
        let failing = try run(vars + ["CORTADO_BLAS_SELF_TEST_FAIL=\(c[0])"], bench)
        XCTAssertEqual(failing.status, 0, failing.output)
        XCTAssertTrue(failing.stdout.contains("OpenBLAS kernel \(c[1]) (chosen automatically"), failing.stdout)
        XCTAssertFalse(failing.stdout.contains("self-tests from"), failing.stdout)
        XCTAssertEqual(try files().count, 2)
        let off = try run(vars + ["CORTADO_BLAS_CACHE=0"], bench)
        XCTAssertEqual(off.status, 0, off.output)
        XCTAssertFalse(off.stdout.contains("self-tests from"), off.stdout)
    }
}
