import CKernels
import COpenBLAS
import CortadoCore
import Foundation

/// The start-up check's self-test results, kept per machine and OpenBLAS build so that only the
/// first start on a node pays for them: each trial is a child process and 0.15 s of sgemm, which
/// a binary on a fallback kernel paid at every start (every `cortado` command, every rank; the
/// start-up times are in Benchmarks/RESULTS.md). One JSON file per identity under `CORTADO_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/cortado`, else `~/.cache/cortado`; `CORTADO_BLAS_CACHE=0` turns it off.
/// The identity is the CPU (its name and the features the check reads), the OpenBLAS library
/// file (path, size, modification time, build configuration), the self-test's version and the
/// test hooks' settings: any of them changing starts from a fresh self-test. A file that cannot
/// be read or written only means the trials run again.
public struct BLASTrialCache {
    /// Bump when `BLASSelfTest` or the trial's measurement changes.
    static let version = 1
    public static let offKey = "CORTADO_BLAS_CACHE"
    public static let dirKey = "CORTADO_CACHE_DIR"

    /// The file for this identity.
    public let path: String
    /// The identity, stored in the file and compared on load (the name is its hash).
    let identity: String

    /// nil when turned off or no cache folder can be named.
    public init?(environment env: [String: String], identity: String) {
        guard env[Self.offKey] != "0" else { return nil }
        let dir: String
        if let d = env[Self.dirKey], !d.isEmpty {
            dir = d
        } else if let x = env["XDG_CACHE_HOME"], !x.isEmpty {
            dir = x + "/cortado"
        } else if let h = env["HOME"], !h.isEmpty {
            dir = h + "/.cache/cortado"
        } else {
            return nil
        }
        self.identity = identity
        path = dir + "/blas-trials-" + SHA256.hex(Data(identity.utf8)).prefix(16) + ".json"
    }

    /// This process's identity: CPU, OpenBLAS library, self-test version, test hooks.
    public static func identity(cpu: CPUFeatures, environment env: [String: String]) -> String {
        var parts = [
            "v\(version)", cpuName(), "features \(cortado_cpu_features()) \(cpu.description)",
            "openblas \(openblas_get_config().map { String(cString: $0) } ?? "?")"
        ]
        // The library file this process mapped (the alternatives system may point elsewhere).
        if let maps = procFile("/proc/self/maps"),
            let line = maps.split(separator: "\n").first(where: { $0.contains("libopenblas") }),
            let slash = line.firstIndex(of: "/")
        {
            let file = String(line[slash...])
            var st = stat()
            if stat(file, &st) == 0 { parts.append("\(file) \(st.st_size) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)") }
        }
        for key in [BLASKernelCheck.simulateKey, BLASKernelCheck.failKey] { parts.append("\(key)=\(env[key] ?? "")") }
        return parts.joined(separator: "\n")
    }

    /// A /proc file whole (String(contentsOfFile:) stops after its first 4 KB page there).
    static func procFile(_ path: String) -> String? {
        guard let h = FileHandle(forReadingAtPath: path), let data = try? h.readToEnd() else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    /// The CPU's model name from /proc/cpuinfo ("" where there is none).
    static func cpuName() -> String {
        guard let text = procFile("/proc/cpuinfo"),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") })
        else { return "" }
        return String(line)
    }

    private struct Stored: Codable {
        var identity: String
        var trials: [BLASKernelTrial]
    }

    /// The stored trials by kernel name; empty when there are none for this identity.
    public func load() -> [String: BLASKernelTrial] {
        guard let data = FileManager.default.contents(atPath: path),
            let s = try? JSONDecoder().decode(Stored.self, from: data), s.identity == identity
        else { return [:] }
        return Dictionary(s.trials.map { ($0.kernel, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// Stores `trials` (atomically: ranks starting together each publish a whole file).
    public func store(_ trials: [String: BLASKernelTrial]) {
        let list = trials.values.sorted { $0.kernel < $1.kernel }
        guard let data = try? JSONEncoder().encode(Stored(identity: identity, trials: list)) else { return }
        try? FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try? data.write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}
