import ArgumentParser
import CortadoCore
import CortadoData
import Foundation

/// `cortado prepare span`: a feedback span + a replay sample of the base data → fine-tuning data.
struct PrepareSpan: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "span",
        abstract: "A labeled feedback span (cortado feedback join) + a replay sample of the base data → shards.",
        discussion: """
            Splits: train (span training rows + --replay × as many base training rows, shuffled), \
            validation (base validation + --validation of the span), test (the base test split) \
            and test_span (--holdout of the span: the new traffic). Feature-vector classification \
            data (images); the base transforms carry over. See docs/loop.md.
            """)

    @Argument(help: "Span CSV files from cortado feedback join.") var spans: [String]
    @Option(help: "The base data folder (or its manifest.json) the champion was trained on.") var base: String
    @Option(name: .out, help: "Output folder (appears only when complete).") var out: String
    @Option(help: "Base training rows replayed per span training row.") var replay = 2.0
    @Option(help: "Share of the span held out as test_span.") var holdout = 0.3
    @Option(help: "Share of the span added to validation.") var validation = 0.1
    @Option(help: "Training shards.") var shards = 1
    @Option(help: "Seed for the split and the replay sample.") var seed: UInt64 = 42
    @Flag(help: "Replace an existing output folder.") var overwrite = false

    func run() throws {
        var p = SpanPreparer(spans: spans, base: base, out: out)
        p.replay = replay
        p.holdout = holdout
        p.validation = validation
        p.shards = shards
        p.seed = seed
        p.overwrite = overwrite
        _ = try p.run(log: { print($0) })
        print("wrote \(out)/manifest.json")
    }
}
