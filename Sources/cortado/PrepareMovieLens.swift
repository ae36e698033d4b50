import ArgumentParser
import CortadoCore
import CortadoData
import Foundation

extension CSVPreparer.TieRule: ExpressibleByArgument {}

/// `cortado prepare movielens`: the real MovieLens-100k from the RecBole wheel (or a file),
/// prepared for the recommender jobs with leave-last-out by time (docs/data.md).
struct PrepareMovieLens: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "movielens",
        abstract: "MovieLens-100k (RecBole wheel, ml-100k.inter or u.data) → recommender data, leave-last-out by time.",
        discussion: """
            cluster/install-deps.sh downloads the wheel to \(defaultWheel). Each user's latest \
            rating → test, the one before → validation; ties at the same second are broken by \
            --ties and reported (counts in the manifest and `cortado inspect`).
            """)

    static let defaultWheel =
        (ProcessInfo.processInfo.environment["CORTADO_CACHE"] ?? "/var/cache/cortado")
        + "/recbole-1.2.1-py3-none-any.whl"

    @Option(help: "The recbole-1.2.1 wheel, an ml-100k.inter file or a u.data file.")
    var source = defaultWheel
    @Option(name: .out, help: "Output folder (appears only when complete).") var out: String
    @Option(help: "Leave-last-out tie rule: file-order (the later row in the file is later) or random (seeded hash).")
    var ties = CSVPreparer.TieRule.fileOrder
    @Flag(
        help:
            "No validation split: each user's second-latest rating stays in training. For the final fit after tuning on the split with validation: train for the epochs that run chose (early_stopping: null)."
    )
    var noValidation = false
    @Option(help: "Only the first N ratings (a slice, for tests).") var limit: Int?
    @Flag(help: "Replace an existing output folder.") var overwrite = false

    func run() throws {
        var p = MovieLensPreparer(source: source, out: out)
        p.ties = ties
        p.limit = limit
        p.holdOutValidation = !noValidation
        p.overwrite = overwrite
        _ = try p.run(log: { print($0) })
    }
}
