import CKernels
import COpenBLAS
import CortadoCore
import Foundation

/// What the CPU offers for OpenBLAS's kernels (cpuid, with the OS's register saving checked).
public struct CPUFeatures: Equatable, Sendable {
    public var avx = false, avx2 = false, fma = false
    public var avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false
    public var avx512vnni = false, avx512bf16 = false
    public var amd = false, intel = false

    public init() {}

    /// This machine's.
    public static var current: CPUFeatures {
        let bits = cortado_cpu_features()
        func has(_ b: Int) -> Bool { bits & UInt32(b) != 0 }
        var f = CPUFeatures()
        f.avx = has(CORTADO_CPU_AVX)
        f.avx2 = has(CORTADO_CPU_AVX2)
        f.fma = has(CORTADO_CPU_FMA)
        f.avx512f = has(CORTADO_CPU_AVX512F)
        f.avx512bw = has(CORTADO_CPU_AVX512BW)
        f.avx512dq = has(CORTADO_CPU_AVX512DQ)
        f.avx512vl = has(CORTADO_CPU_AVX512VL)
        f.avx512vnni = has(CORTADO_CPU_AVX512VNNI)
        f.avx512bf16 = has(CORTADO_CPU_AVX512BF16)
        f.amd = has(CORTADO_CPU_AMD)
        f.intel = has(CORTADO_CPU_INTEL)
        return f
    }

    /// What OpenBLAS's SkylakeX kernels need.
    public var hasAVX512: Bool { avx512f && avx512bw && avx512dq && avx512vl }
    /// 3: AVX-512, 2: AVX2 + FMA, 1: AVX, 0: SSE only.
    public var tier: Int { hasAVX512 ? 3 : (avx2 && fma) ? 2 : avx ? 1 : 0 }

    /// The flags as cpuid names them, for logs.
    public var description: String {
        let named: [(Bool, String)] = [
            (avx2, "avx2"), (fma, "fma"), (avx512f, "avx512f"), (avx512vnni, "avx512_vnni"),
            (avx512bf16, "avx512_bf16")
        ]
        let list = named.filter(\.0).map(\.1)
        return list.isEmpty ? "no AVX2" : list.joined(separator: " ")
    }
}

/// One self-test of a kernel in a child process: did the BLAS calls Cortado makes agree with a
/// double reference, and how fast was sgemm.
public struct BLASKernelTrial: Equatable, Sendable, Codable {
    public var kernel: String
    public var passed: Bool
    /// sgemm 512³, 1 thread; nil when the child did not get that far.
    public var gflops: Double?
    /// Why it failed (crash, wrong result, OpenBLAS ran another kernel), or "".
    public var detail: String

    public init(kernel: String, passed: Bool, gflops: Double?, detail: String = "") {
        (self.kernel, self.passed, self.gflops, self.detail) = (kernel, passed, gflops, detail)
    }
}

/// What the start-up check decided: run on (re-exec with `OPENBLAS_CORETYPE=kernel`), or keep
/// the kernel OpenBLAS runs now.
public struct BLASKernelDecision: Equatable, Sendable {
    public enum Action: Equatable, Sendable {
        case keep
        case reexec(kernel: String)
    }
    public var action: Action
    /// The kernel the process will run with.
    public var kernel: String
    /// Whether Cortado chose it (rather than OpenBLAS's own detection or the user).
    public var automatic: Bool
    /// How it came to be, for the start-up line ("picked by OpenBLAS", …).
    public var note: String
    /// A fallback that stays: printed as a warning, with its measured speed.
    public var warning: String?

    public init(action: Action, kernel: String, automatic: Bool, note: String, warning: String?) {
        (self.action, self.kernel, self.automatic, self.note, self.warning) = (action, kernel, automatic, note, warning)
    }
}

/// Choosing OpenBLAS's kernel: Debian's OpenBLAS (0.3.21) does not know recent CPUs and then
/// falls back to its generic Prescott kernel, 4–6× slower at sgemm (docs/blas.md). The choice
/// is a pure function of what OpenBLAS picked, the CPU, the environment and the self-tests, so
/// it is unit-tested; `BLASKernelCheck` applies it at start-up.
public enum BLASKernelPolicy {
    /// Environment variables the check reads and writes.
    public static let userKernelKey = "OPENBLAS_CORETYPE"
    /// `0` turns the automatic choice off.
    public static let autoKey = "CORTADO_BLAS_AUTO"
    /// Set on the re-exec: the kernel Cortado chose (also the guard against a second re-exec).
    public static let chosenKey = "CORTADO_BLAS_AUTO_CHOSEN"
    /// Set on the re-exec: how it was chosen, for the start-up line.
    public static let noteKey = "CORTADO_BLAS_AUTO_NOTE"

    /// The instruction-set tier of an OpenBLAS x86-64 kernel name (as `openblas_get_corename`
    /// spells it; case does not matter): 3 AVX-512, 2 AVX2, 1 AVX, 0 older (the generic ones).
    public static func tier(of corename: String) -> Int {
        switch corename.lowercased() {
        case "skylakex", "cooperlake", "sapphirerapids": return 3
        case "haswell", "zen": return 2
        case "sandybridge", "bulldozer", "piledriver", "steamroller", "excavator": return 1
        default: return 0
        }
    }

    /// Kernels worth trying on `cpu`, best first (each needs no more than the CPU has).
    public static func candidates(for cpu: CPUFeatures) -> [String] {
        var list = [String]()
        if cpu.tier >= 3 {
            if cpu.avx512bf16 { list.append("Cooperlake") }
            list.append("SkylakeX")
        }
        if cpu.tier >= 2 { list += cpu.amd ? ["Zen", "Haswell"] : ["Haswell"] }
        if cpu.tier >= 1 { list.append("Sandybridge") }
        return list
    }

    /// Whether OpenBLAS runs a generic kernel although the CPU has AVX2 or AVX-512: a kernel
    /// below the AVX2 tier on a CPU of that tier or above. (An AVX2 kernel on an AVX-512 CPU is
    /// not a fallback: OpenBLAS 0.3.21 picks Zen on AMD's AVX-512 parts on purpose.)
    public static func isFallback(corename: String, cpu: CPUFeatures) -> Bool {
        tier(of: corename) < 2 && cpu.tier >= 2
    }

    /// The decision. `corename`: what OpenBLAS runs now. `environment`: the process's.
    /// `trial(kernel)`: a self-test of `kernel` in a child process (also called with the
    /// current kernel, to measure a fallback that stays); only called when needed.
    public static func decide(
        corename: String, cpu: CPUFeatures, environment: [String: String],
        trial: (String) -> BLASKernelTrial
    ) -> BLASKernelDecision {
        if let chosen = environment[chosenKey] {
            // After the re-exec: what was chosen must be what runs.
            let note = environment[noteKey] ?? "chosen by Cortado"
            let ok = chosen.lowercased() == corename.lowercased()
            return BLASKernelDecision(
                action: .keep, kernel: corename, automatic: true, note: note,
                warning: ok ? nil : "OpenBLAS runs \(corename) although Cortado chose \(chosen)")
        }
        if let user = environment[userKernelKey], !user.isEmpty {
            return BLASKernelDecision(
                action: .keep, kernel: corename, automatic: false, note: "set by \(userKernelKey)=\(user)",
                warning: nil)
        }
        guard isFallback(corename: corename, cpu: cpu) else {
            return BLASKernelDecision(
                action: .keep, kernel: corename, automatic: false, note: "picked by OpenBLAS", warning: nil)
        }
        func speed(_ t: BLASKernelTrial) -> String {
            t.gflops.map { String(format: "%.1f GFLOP/s", $0) } ?? "speed not measured"
        }
        func stays(_ why: String) -> BLASKernelDecision {
            let current = trial(corename)
            return BLASKernelDecision(
                action: .keep, kernel: corename, automatic: false, note: "picked by OpenBLAS",
                warning:
                    "OpenBLAS runs its generic \(corename) kernel on a CPU with \(cpu.description) (sgemm \(speed(current)), 1 thread); \(why)"
            )
        }
        if environment[autoKey] == "0" {
            return stays("the automatic choice is off (\(autoKey)=0); set \(userKernelKey) to pick a kernel")
        }
        var failures = [String]()
        for k in candidates(for: cpu) {
            let t = trial(k)
            if t.passed {
                let before = trial(corename)
                let note =
                    "chosen automatically: OpenBLAS picked \(corename) (\(speed(before))); \(k) passed the self-test (\(speed(t)))"
                    + (failures.isEmpty ? "" : "; failed: " + failures.joined(separator: ", "))
                return BLASKernelDecision(
                    action: .reexec(kernel: k), kernel: k, automatic: true, note: note, warning: nil)
            }
            failures.append("\(k) (\(t.detail))")
        }
        return stays("no better kernel passed the self-test: " + failures.joined(separator: ", "))
    }
}

/// The quick correctness test of a kernel: the BLAS calls Cortado makes (sgemm with each
/// transposition it uses, beta 0 and 1, a 1-row product through sgemv, saxpy, sasum) against a
/// plain double reference, on sizes that reach the kernels' edge paths.
public enum BLASSelfTest {
    /// nil when every call agrees; otherwise which call and by how much.
    public static func run() -> String? {
        // (m, n, k, transA, transB, beta): the trainer's forward (NT: x · Wᵀ), weight gradient
        // (TN), input gradient (NN), batch-1 inference (m = 1) and an odd-sized block.
        let cases: [(Int, Int, Int, Bool, Bool, Float)] = [
            (67, 45, 129, false, true, 0), (64, 33, 97, true, false, 1), (70, 129, 33, false, false, 0),
            (1, 300, 257, false, true, 0), (1, 77, 65, false, false, 1), (256, 256, 256, false, false, 0)
        ]
        for (m, n, k, ta, tb, beta) in cases {
            let a = values(m * k, 3), b = values(k * n, 5)
            var c = values(m * n, 7)
            let c0 = c
            let lda = ta ? m : k, ldb = tb ? k : n
            c.withUnsafeMutableBufferPointer { cp in
                Float.gemm(
                    transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda, b: b, ldb: ldb,
                    beta: beta, c: cp.baseAddress!, ldc: n)
            }
            for i in 0..<m {
                for j in 0..<n {
                    var sum = 0.0, mag = 0.0
                    for p in 0..<k {
                        let x = Double(ta ? a[p * lda + i] : a[i * lda + p])
                        let y = Double(tb ? b[j * ldb + p] : b[p * ldb + j])
                        sum += x * y
                        mag += abs(x * y)
                    }
                    let ref = 0.5 * sum + Double(beta) * Double(c0[i * n + j])
                    if abs(Double(c[i * n + j]) - ref) > 1e-5 * (mag + 1) {
                        return
                            "sgemm \(m)x\(n)x\(k) \(ta ? "T" : "N")\(tb ? "T" : "N") beta \(beta): c[\(i),\(j)] = \(c[i * n + j]), reference \(ref)"
                    }
                }
            }
        }
        let x = values(1031, 11)
        var y = values(1031, 13)
        let y0 = y
        y.withUnsafeMutableBufferPointer { cblas_saxpy(1031, -1.5, x, 1, $0.baseAddress, 1) }
        for i in 0..<1031 where abs(Double(y[i]) - (Double(y0[i]) - 1.5 * Double(x[i]))) > 1e-5 {
            return "saxpy: y[\(i)] = \(y[i]), reference \(Double(y0[i]) - 1.5 * Double(x[i]))"
        }
        let s = Double(cblas_sasum(1031, x, 1)), ref = x.reduce(0.0) { $0 + abs(Double($1)) }
        if abs(s - ref) > 1e-4 * ref { return "sasum: \(s), reference \(ref)" }
        return nil
    }

    /// Deterministic values in [-1, 1) that differ by position (a mix-up shows).
    static func values(_ count: Int, _ seed: Int) -> [Float] {
        (0..<count).map { Float(($0 * seed + seed * 31) % 97) / 48.5 - 1 }
    }
}

/// The start-up check every binary that uses BLAS runs first (before MPI_Init and before any
/// BLAS call): it applies `BLASKernelPolicy`'s decision by re-executing the process with
/// `OPENBLAS_CORETYPE` set, which OpenBLAS reads only when it loads.
public enum BLASKernelCheck {
    /// Set in a self-test child: run `BLASSelfTest` and report instead of the program.
    static let childKey = "CORTADO_BLAS_SELF_TEST"
    /// Test hook: start as if OpenBLAS had picked this kernel by itself (it is forced with
    /// OPENBLAS_CORETYPE but not treated as the user's), so the fallback path runs on any CPU.
    static let simulateKey = "CORTADO_BLAS_SIMULATE_FALLBACK"
    static let simulatedKey = "CORTADO_BLAS_SIMULATED"
    /// Test hook: these kernels (comma-separated) fail their self-test.
    static let failKey = "CORTADO_BLAS_SELF_TEST_FAIL"

    /// The decision of this process's start-up check (nil before it ran).
    nonisolated(unsafe) public private(set) static var decision: BLASKernelDecision?

    /// What runs now, for logs: the start-up decision, or OpenBLAS's own pick.
    public static var status: BLASKernelDecision {
        decision
            ?? BLASKernelDecision(
                action: .keep, kernel: currentKernel, automatic: false, note: "start-up check not run", warning: nil)
    }

    /// The kernel name OpenBLAS reports.
    public static var currentKernel: String {
        openblas_get_corename().map { String(cString: $0) }?.trimmingCharacters(in: .whitespaces) ?? "unknown"
    }

    /// The start-up line's part: "OpenBLAS kernel SkylakeX (chosen automatically: …)".
    public static var summary: String {
        let s = status
        return "OpenBLAS kernel \(s.kernel) (\(s.note))"
    }

    /// Runs the check: in a self-test child, the test (and exits); otherwise decides and, when
    /// a better kernel passed, re-executes this program with it (does not return then).
    /// `printWarning`: print a fallback that stays to stderr (rank 0 only, under a launcher);
    /// the trainer puts it in its own start-up lines instead.
    public static func run(printWarning: Bool = true) {
        let env = ProcessInfo.processInfo.environment
        if env[childKey] != nil { exit(childMain(env)) }
        if let simulated = env[simulateKey], env[simulatedKey] == nil, env[BLASKernelPolicy.chosenKey] == nil,
            env[BLASKernelPolicy.userKernelKey] == nil
        {
            setenv(BLASKernelPolicy.userKernelKey, simulated, 1)
            setenv(simulatedKey, "1", 1)
            reexec()
        }
        var policyEnv = env
        if env[simulatedKey] != nil { policyEnv[BLASKernelPolicy.userKernelKey] = nil }
        // Trials come from the cache file when an earlier start on this machine ran them; the
        // file is found (and its identity computed) only when a trial is needed.
        let cpu = CPUFeatures.current
        var file: BLASTrialCache?, stored = [String: BLASKernelTrial](), trials = stored, opened = false
        var fromFile = false
        var d = BLASKernelPolicy.decide(corename: currentKernel, cpu: cpu, environment: policyEnv) { k in
            if !opened {
                opened = true
                file = BLASTrialCache(
                    environment: env, identity: BLASTrialCache.identity(cpu: cpu, environment: env))
                stored = file?.load() ?? [:]
                trials = stored
            }
            if let t = trials[k] {
                fromFile = fromFile || stored[k] != nil
                return t
            }
            let t = trial(k)
            trials[k] = t
            return t
        }
        if let file, trials.count > stored.count { file.store(trials) }
        if fromFile, let file { d.note += "; self-tests from \(file.path)" }
        decision = d
        if case let .reexec(kernel) = d.action {
            setenv(BLASKernelPolicy.userKernelKey, kernel, 1)
            setenv(BLASKernelPolicy.chosenKey, kernel, 1)
            setenv(BLASKernelPolicy.noteKey, d.note, 1)
            reexec()
            // exec failed: carry on with the kernel OpenBLAS picked, and say so.
            decision?.kernel = currentKernel
            decision?.automatic = false
            decision?.warning = "could not re-execute with \(BLASKernelPolicy.userKernelKey)=\(kernel): errno \(errno)"
        }
        if printWarning, let w = decision?.warning, isFirstRank(env) { printError("warning: \(w)") }
    }

    /// Rank 0 under mpirun or srun, or not launched by either.
    static func isFirstRank(_ env: [String: String]) -> Bool {
        let rank = env["OMPI_COMM_WORLD_RANK"] ?? env["PMIX_RANK"] ?? env["PMI_RANK"] ?? env["SLURM_PROCID"]
        return rank == nil || rank == "0"
    }

    static func reexec() {
        let argv = CommandLine.unsafeArgv
        execv("/proc/self/exe", argv)
    }

    /// The self-test child: which kernel OpenBLAS runs, the test, and the speed, as one line
    /// "ok|fail <kernel> <gflops> <detail>".
    static func childMain(_ env: [String: String]) -> Int32 {
        setBLASThreads(1)
        let wanted = env[BLASKernelPolicy.userKernelKey] ?? ""
        let running = currentKernel
        var failure = BLASSelfTest.run()
        if failure == nil, !wanted.isEmpty, wanted.lowercased() != running.lowercased() {
            failure = "OpenBLAS runs \(running) instead"
        }
        let injected = (env[failKey] ?? "").split(separator: ",").map { $0.lowercased() }
        if failure == nil, injected.contains(running.lowercased()) { failure = "failure injected by \(failKey)" }
        let gflops = measureSGEMM(m: 512, n: 512, k: 512, threads: 1, seconds: 0.15)
        print("\(failure == nil ? "ok" : "fail") \(running) \(String(format: "%.2f", gflops)) \(failure ?? "")")
        return 0
    }

    /// Runs this program as a self-test child with OPENBLAS_CORETYPE=kernel (a bad kernel may
    /// crash; the child takes that, not us), under a 30 s limit.
    static func trial(_ kernel: String) -> BLASKernelTrial {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        p.arguments = []
        var env = ProcessInfo.processInfo.environment
        env[childKey] = "1"
        env[BLASKernelPolicy.userKernelKey] = kernel
        env["OPENBLAS_NUM_THREADS"] = "1"
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch {
            return BLASKernelTrial(kernel: kernel, passed: false, gflops: nil, detail: "could not start: \(error)")
        }
        let deadline = monotonicSeconds() + 30
        while p.isRunning && monotonicSeconds() < deadline { usleep(5000) }
        if p.isRunning {
            p.terminate()
            return BLASKernelTrial(kernel: kernel, passed: false, gflops: nil, detail: "timed out")
        }
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        guard p.terminationReason == .exit, p.terminationStatus == 0 else {
            return BLASKernelTrial(
                kernel: kernel, passed: false, gflops: nil,
                detail: p.terminationReason == .uncaughtSignal
                    ? "crashed (signal \(p.terminationStatus))" : "exit \(p.terminationStatus)")
        }
        let line = text.split(separator: "\n").last(where: { $0.hasPrefix("ok ") || $0.hasPrefix("fail ") }) ?? ""
        let f = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false).map(String.init)
        guard f.count >= 3 else {
            return BLASKernelTrial(kernel: kernel, passed: false, gflops: nil, detail: "no report")
        }
        return BLASKernelTrial(
            kernel: kernel, passed: f[0] == "ok", gflops: Double(f[2]), detail: f.count > 3 ? f[3] : "")
    }
}
