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
}
