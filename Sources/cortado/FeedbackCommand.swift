import ArgumentParser
import CortadoCore
import CortadoData
import Foundation

/// `cortado feedback`: turning what the server saw, plus labels that came later, into data.
struct FeedbackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "feedback", abstract: "Served predictions + later labels → a labeled span and a drift report.",
        subcommands: [FeedbackJoinCommand.self])
}

struct FeedbackJoinCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "join",
        abstract: "Join prediction logs with a labels CSV by (request id, row); write the span and a drift report.",
        discussion: """
            LABELS.csv has a header with id and label (a class name or number), optionally row \
            (default 0) and time (ISO 8601, when the label arrived). The span is CSV in the model's \
            input format: request_id,row,model_version,predicted,LABEL, then x0… (feature vectors) or \
            the raw columns. Unlabeled, duplicate, conflicting and late rows are counted. The drift \
            report compares every logged row with the training manifest's profile: PSI and KS per \
            feature (image brightness and contrast for images), missing rates, unseen categories, \
            the label and prediction mix. See docs/loop.md.
            """)

    @Argument(help: "Prediction logs (predictions*.jsonl) written by cortado-infer serve --prediction-log.")
    var logs: [String]
    @Option(help: "Labels CSV: id,label[,row][,time].") var labels: String
    @Option(help: "The training data's manifest.json (or its folder): classes and the drift reference.")
    var manifest: String
    @Option(name: .out, help: "The span CSV to write.") var out: String
    @Option(help: "Drift report JSON (default: OUT with -drift.json).") var drift: String?
    @Option(help: "Only log lines of this model name.") var model: String?
    @Option(
        name: .customLong("max-label-delay"),
        help: "Seconds: labels arriving later than this after the prediction are late (left out).")
    var maxLabelDelay: Double?

    func run() throws {
        let manifestPath =
            manifest.hasSuffix(".json") ? manifest : (manifest as NSString).appendingPathComponent("manifest.json")
        var j = FeedbackJoin(predictionLogs: logs, labels: labels, manifestPath: manifestPath, out: out)
        j.model = model
        j.maxLabelDelay = maxLabelDelay
        let r = try j.run()
        let driftPath = drift ?? ((out as NSString).deletingPathExtension + "-drift.json")
        struct Report: Encodable {
            var join: FeedbackJoin.Counts
            var drift: DriftReport
        }
        try AtomicFile.write(try stableJSON(Report(join: r.counts, drift: r.drift)), to: driftPath)
        print(r.counts.line)
        for line in r.drift.lines { print(line) }
        print("wrote \(out) and \(driftPath)")
    }
}
