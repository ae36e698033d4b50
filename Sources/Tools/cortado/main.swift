import ArgumentParser
import CortadoCore
import CortadoData
import CortadoModel
import Foundation

/// `cortado`: the single-process tools (data preparation for now).
struct Cortado: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cortado",
        abstract: "Cortado's single-process tools: prepare data for cortado-train.",
        version: cortadoVersion,
        subcommands: [Prepare.self, Bench.self])
}

struct Prepare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn raw data into HDF5 shards plus manifest.json.",
        subcommands: [FashionMNIST.self])
}

struct FashionMNIST: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fashion-mnist",
        abstract: "Fashion-MNIST IDX gzip files → training shards, validation and test HDF5 files.")

    @Option(help: "Folder with the four IDX .gz files.")
    var source = FashionMNISTPreparer.defaultSource
    @Option(help: "Output folder (created).")
    var out: String
    @Option(help: "Number of training shards.")
    var shards = 1
    @Option(help: "Training rows held out for validation.")
    var validation = 5000
    @Option(help: "Seed of the validation split.")
    var seed: UInt64 = 42
    @Option(help: "Use only the first N training and test images (smoke tests).")
    var limit: Int?

    func run() throws {
        var p = FashionMNISTPreparer(out: out)
        p.source = source
        p.shards = shards
        p.validationRows = validation
        p.seed = seed
        p.limit = limit
        let t0 = monotonicSeconds()
        let m = try p.run(log: { print($0) })
        print(String(format: "prepared %@: %d train (%d shards), %d validation, %d test rows in %.1fs → %@/manifest.json",
                     m.name, m.splits["train"]?.rows ?? 0, shards, m.splits["validation"]?.rows ?? 0, m.splits["test"]?.rows ?? 0,
                     monotonicSeconds() - t0, out))
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Machine ceilings for the benchmarks.",
        subcommands: [SGEMM.self])
}

struct SGEMM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sgemm", abstract: "Measure OpenBLAS sgemm GFLOP/s (m = n = k = --size unless given).")
    @Option var size = 1024
    @Option var m: Int?
    @Option var n: Int?
    @Option var k: Int?
    @Option(help: "BLAS threads.") var threads = 1
    @Option var seconds = 1.0
    @Flag var json = false

    func run() throws {
        let (mm, nn, kk) = (m ?? size, n ?? size, k ?? size)
        let g = measureSGEMM(m: mm, n: nn, k: kk, threads: threads, seconds: seconds)
        if json {
            print(#"{"m": \#(mm), "n": \#(nn), "k": \#(kk), "threads": \#(threads), "gflops": \#(String(format: "%.2f", g))}"#)
        } else {
            print(String(format: "sgemm %dx%dx%d, %d thread(s): %.1f GFLOP/s", mm, nn, kk, threads, g))
        }
    }
}

do {
    var command = try Cortado.parseAsRoot()
    try command.run()
} catch let e as CortadoError {
    printError("cortado: \(e.message)")
    exit(e.exitCode)
} catch {
    Cortado.exit(withError: error)
}
