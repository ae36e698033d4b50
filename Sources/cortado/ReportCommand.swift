import ArgumentParser
import CortadoCore
import CortadoModel
import CortadoRegistry
import Foundation

/// `cortado report`: a run or a registry version as one self-contained HTML file.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write one self-contained HTML file showing a run (or registry version) at a glance.",
        discussion: """
            RUN_DIR is a cortado-train run folder; a registry model folder (REGISTRY/NAME, its \
            champion) or version folder (REGISTRY/NAME/3) works too. Curves from metrics.jsonl, \
            throughput, step time and peak memory per rank, confusion matrix, compression table, \
            lineage. Inline SVG and CSS only: opens in any browser, offline. See docs/registry.md.
            """)
    @Argument(help: "Run folder, REGISTRY/NAME or REGISTRY/NAME/VERSION.") var source: String
    @Option(help: "A second run or version, shown side by side.") var compare: String?
    @Option(name: .out, help: "The HTML file to write.") var out: String
    @Option(help: "BLAS threads for scoring the test split.") var threads = 1

    func run() throws {
        setBLASThreads(threads)
        try RunReport.write(source, compare: compare, out: out, log: { printError("cortado report: \($0)") })
        print("wrote \(out)")
    }
}
