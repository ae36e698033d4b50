import ArgumentParser
import CortadoCore
import CortadoInfer
import CortadoModel
import Foundation

/// `cortado-infer`: scores data with a model file written by cortado-train (`score`, the
/// default, so `cortado-infer MODEL --input …` works as it always has) or serves a model
/// repository over HTTP (`serve`). Links no MPI.
struct Root: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cortado-infer",
        abstract: "Score data with a .cmodel, or serve a model repository over HTTP (cortado-infer serve --help).",
        version: cortadoVersion,
        subcommands: [Infer.self, Serve.self],
        defaultSubcommand: Infer.self)
}

/// Scoring: classes for classifiers, top-K items for recommenders.
struct Infer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "score",
        abstract: "Score data with a .cmodel (fp32 or int8): classes for classifiers, top-K items for recommenders.")

    @Argument(help: "Model file (.cmodel), or a registry reference: registry://NAME@ALIAS, registry://NAME/VERSION.")
    var model: String
    @Option(help: "Registry folder for registry:// references (default: $CORTADO_REGISTRY).")
    var registry: String?
    @Option(
        help:
            "Classifier: HDF5 file with /features (and /labels), a raw CSV, or IDX images (*-ubyte[.gz]). Recommender: HDF5 with /categorical (and /targets)."
    )
    var input: String?
    @Option(
        name: [.customLong("out"), .customShort("o"), .customLong("output")],
        help: "Write predictions here: .csv, .jsonl (JSON lines) or .h5 (HDF5), by extension.")
    var output: String?
    @Option(help: "IDX input: the IDX1 labels file, for accuracy.")
    var labels: String?
    @Option(help: "Rows per batch.")
    var batch = 1024
    @Option(help: "Recommender: comma-separated user ids (as in the raw data) to recommend for.")
    var users: String?
    @Option(name: .customLong("top-k"), help: "Recommender: items per user.")
    var topK = 10
    @Option(
        help: "Recommender: data folder manifest whose interactions are excluded (default: the model's training data).")
    var seen: String?
    @Option(help: "Text model: the text column of a .tsv/.csv --input (labels from --label-column, if present).")
    var textColumn = "text"
    @Option(help: "Text model: the label column of a .tsv/.csv --input.")
    var labelColumn = "label"
    @Flag(help: "Print JSON instead of text.")
    var json = false
    @Flag(
        help:
            "Benchmark instead of scoring: batch-1 latency p50/p90/p99 and rows/s per batch size (rows from --input, or random)."
    )
    var bench = false
    @Option(help: "--bench: batch sizes, comma-separated.")
    var batches = "1,4,16,64,256,1024,4096"
    @Option(help: "Pruned (CSR) layers: auto (sparse kernel below the measured density crossover), always, never.")
    var sparse = "auto"
    @Option(help: "BLAS threads (default 1; OPENBLAS_NUM_THREADS is ignored so runs compare).")
    var threads = 1

    mutating func run() throws {
        model = try ModelReference.path(model, registry: registry)
        guard threads > 0 else { throw CortadoError.usage("--threads must be positive, got \(threads)") }
        setBLASThreads(threads)
        let header = try ModelFile.load(model).header
        if header.recommender != nil { return try recommend() }
        if header.text != nil { return try classifyText() }
        guard let policy = InferenceModel.SparsePolicy(rawValue: sparse) else {
            throw CortadoError.usage("--sparse: '\(sparse)' is not auto, always or never")
        }
        if bench { return try runBench(policy) }
        guard let input else { throw CortadoError.usage("--input: required for a classifier model") }
        let m = try InferenceModel(path: model, sparse: policy)
        let r = try score(model: m, inputPath: input, batch: batch, csvOutput: output, labelsPath: labels)
        if json {
            var obj: [String: Any] = [
                "model": model, "input": input, "precision": m.header.precision,
                "rows": r.rows, "rows_per_sec": r.rowsPerSecond
            ]
            obj["accuracy"] = r.accuracy
            obj["output"] = output
            printJSON(obj)
        } else {
            print("model \(model) (\(m.header.precision), \(m.spec.layers.map(\.description).joined(separator: " ")))")
            print(String(format: "scored %d rows in %.3fs (%.0f rows/s)", r.rows, r.seconds, r.rowsPerSecond))
            if let a = r.accuracy { print(String(format: "accuracy %.4f", a)) }
            if let o = output { print("predictions: \(o)") }
        }
    }

    /// `--bench`: the numbers a user compares serving runtimes by, on this model and machine.
    func runBench(_ policy: InferenceModel.SparsePolicy) throws {
        let sizes = try batches.split(separator: ",").map { part -> Int in
            guard let b = Int(part.trimmingCharacters(in: .whitespaces)), b > 0, b <= 1 << 16 else {
                throw CortadoError.usage("--batches: '\(part)' is not a batch size in 1...65536")
            }
            return b
        }
        guard !sizes.isEmpty else { throw CortadoError.usage("--batches: give at least one batch size") }
        let m = try InferenceModel(path: model, sparse: policy)
        let x = try InferenceBench.rows(model: m, input: input, rows: max(sizes.max()!, 1024))
        let r = InferenceBench.run(model: m, x: x, batches: sizes, threads: threads)
        if !json { print(BLASKernelCheck.summary) }
        print(
            json ? String(decoding: try stableJSON(r, pretty: false), as: UTF8.self) : InferenceBench.text(r),
            terminator: json ? "\n" : "")
    }

    /// Text classifier: raw documents (.tsv/.csv/.tab, or lines with optional `__label__X`)
    /// through the model's own tokenizer, or a prepared split (.h5) by its ids.
    func classifyText() throws {
        guard let input else { throw CortadoError.usage("--input: required (documents .tsv/.txt or a prepared .h5)") }
        let m = try TextModel(path: model, maxBatch: batch)
        let t0 = monotonicSeconds()
        let r: (rows: Int, accuracy: Double?)
        if input.hasSuffix(".h5") {
            let s = try m.scorePrepared(path: input)
            r = (s.rows, s.accuracy)
        } else {
            let s = try m.scoreRaw(input: input, textColumn: textColumn, labelColumn: labelColumn, output: output)
            r = (s.rows, s.accuracy)
        }
        let seconds = monotonicSeconds() - t0
        if json {
            var obj: [String: Any] = [
                "model": model, "input": input, "precision": m.header.precision, "rows": r.rows,
                "rows_per_sec": Double(r.rows) / max(seconds, 1e-9)
            ]
            obj["accuracy"] = r.accuracy
            obj["output"] = output
            printJSON(obj)
        } else {
            print(
                "model \(model) (\(m.header.precision), text: \(m.vocabulary.vocabulary.count) words, dim \(m.spec.dim))"
            )
            print(String(format: "scored %d documents in %.3fs", r.rows, seconds))
            if let a = r.accuracy { print(String(format: "accuracy %.4f", a)) }
            if let o = output { print("predictions: \(o)") }
        }
    }

    /// Top-K items per user, leaving out what each user already interacted with; or, with
    /// --input, the scores (and RMSE) of an HDF5 file's (user, item) pairs.
    func recommend() throws {
        let m = try RecommenderModel(path: model, maxBatch: batch)
        if let input {
            let r = try scorePairs(model: m, inputPath: input, csvOutput: output)
            if json {
                var obj: [String: Any] = ["model": model, "input": input, "rows": r.rows]
                obj["rmse"] = r.rmse
                obj["unseen_user_days"] = r.unseenUserDays
                printJSON(obj)
            } else {
                print(
                    "scored \(r.rows) (user, item) pairs" + (r.rmse.map { String(format: ", RMSE %.4f", $0) } ?? "")
                        + (r.unseenUserDays.map { "; \($0) on a (user, day) not seen in training (per-day bias 0)" }
                            ?? ""))
            }
            return
        }
        guard let users else {
            throw CortadoError.usage(
                "--users or --input: a recommender needs users to recommend for, or pairs to score")
        }
        let manifest = seen ?? m.header.metadata["data"] ?? ""
        let history = try m.interactions(manifestPath: manifest)
        for name in users.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            guard let u = m.id(ofUser: name) else {
                throw CortadoError.usage("--users: '\(name)' is not a user the model knows")
            }
            let top = m.topK(user: u, k: topK, exclude: history.items(of: Int(u)))
            if json {
                printJSON([
                    "user": name, "items": top.map { m.itemName($0.item) }, "scores": top.map { Double($0.score) }
                ])
            } else {
                print(
                    "user \(name): "
                        + top.map { "\(m.itemName($0.item)) (\(String(format: "%.3f", $0.score)))" }.joined(
                            separator: ", "))
            }
        }
    }
}

/// One JSON object on one line, keys sorted, numbers as JSON numbers.
func printJSON(_ object: [String: Any]) {
    let data =
        (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
    print(String(decoding: data, as: UTF8.self))
}

// Before any BLAS call: may re-execute with a better OpenBLAS kernel (docs/blas.md).
BLASKernelCheck.run()
do {
    var command = try Root.parseAsRoot()
    if let serve = command as? Serve {
        try await serve.serve()
    } else {
        try command.run()
    }
} catch let e as CortadoError {
    printError("cortado-infer: \(e.message)")
    exit(e.exitCode)
} catch {
    Root.exit(withError: error)
}
