import ArgumentParser
import CortadoCompress
import CortadoCore
import CortadoData
import CortadoModel
import CortadoMPI
import CortadoONNX
import CortadoJob
import CortadoPipeline
import Foundation

/// `cortado`: the single-process tools: data preparation (also under mpirun), inspection, validation, benchmarks.
struct Cortado: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cortado",
        abstract: "Cortado's single-process tools: prepare data for cortado-train.",
        version: cortadoVersion,
        subcommands: [
            Prepare.self, Inspect.self, Validate.self, Compress.self, Export.self, Bench.self,
            RegistryCommand.self, ReportCommand.self, FeedbackCommand.self, EvaluateCommand.self
        ])
}

struct Prepare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn raw data into HDF5 shards plus manifest.json.",
        subcommands: [
            FashionMNIST.self, CSV.self, SyntheticRatingsCommand.self, PrepareText.self, PrepareMovieLens.self,
            PrepareSpan.self
        ])
}

struct FashionMNIST: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fashion-mnist",
        abstract: "Fashion-MNIST IDX gzip files → training shards, validation and test HDF5 files.")

    @Option(help: "Folder with the four IDX .gz files.")
    var source = FashionMNISTPreparer.defaultSource
    @Option(name: .out, help: "Output folder (created).")
    var out: String
    @Option(help: "Number of training shards.")
    var shards = 1
    @Option(help: "Training rows held out for validation.")
    var validation = 5000
    @Option(help: "Seed of the validation split.")
    var seed: UInt64 = 42
    @Option(help: "Use only the first N training and test images (smoke tests).")
    var limit: Int?
    @Option(help: "Keep only these classes, e.g. 0,1,2,3,4 (relabelled in this order).")
    var classes: String?

    func run() throws {
        var p = FashionMNISTPreparer(out: out)
        p.source = source
        p.shards = shards
        p.validationRows = validation
        p.seed = seed
        p.limit = limit
        if let classes {
            p.classes = try classes.split(separator: ",").map {
                guard let c = Int($0.trimmingCharacters(in: .whitespaces)) else {
                    throw CortadoError.usage("--classes: '\($0)' is not a number")
                }
                return c
            }
        }
        let t0 = monotonicSeconds()
        let m = try p.run(log: { print($0) })
        print(
            String(
                format: "prepared %@: %d train (%d shards), %d validation, %d test rows in %.1fs → %@/manifest.json",
                m.name, m.splits["train"]?.rows ?? 0, shards, m.splits["validation"]?.rows ?? 0,
                m.splits["test"]?.rows ?? 0,
                monotonicSeconds() - t0, out))
    }
}

struct CSV: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "csv",
        abstract: "CSV/TSV files → cleaned, encoded, standardized HDF5 shards (runs under mpirun too).",
        discussion: """
            Types are inferred from the first rows and printed as a schema you can save, edit and \
            pass back with --schema. Statistics come from the training split only. Under \
            `mpirun -np N cortado prepare csv …` ranks split the files by bytes; the output is \
            identical to the 1-process run.
            """)

    @Argument(help: "Input files (same header).") var inputs: [String]
    @Option(name: .out, help: "Output folder (appears only when complete).") var out: String
    @Option(help: "Label column.") var label: String
    @Option(help: "classification or regression (inferred from the label if omitted).") var task: String?
    @Option(help: "Training shards.") var shards = 1
    @Option(help: "Rows per training shard (instead of --shards).") var shardRows: Int?
    @Option(help: "Split fractions, e.g. train=0.8,validation=0.1,test=0.1.") var split =
        "train=0.8,validation=0.1,test=0.1"
    @Option(help: "Schema file (YAML): column types, missing-value policies, transforms.") var schema: String?
    @Option(help: "Field delimiter: a character, or 'tab'.") var delimiter = ","
    @Flag(help: "The files have no header line (columns are named c0, c1, …).") var noHeader = false
    @Option(help: "Comma-separated tokens that mean missing (default: empty, NA, N/A, NaN, nan, null, NULL, ?).")
    var missing: String?
    @Option(help: "Seed of the split.") var seed: UInt64 = 42
    @Flag(help: "Keep exact-duplicate rows.") var keepDuplicates = false
    @Option(help: "Interaction data: USER,TIME — each user's last row → test, the one before → validation.")
    var leaveLastOut: String?
    @Option(help: "Leave-last-out tie rule: file-order (the later row in the file is later) or random (seeded hash).")
    var ties = CSVPreparer.TieRule.fileOrder
    @Flag(
        help:
            "With --leave-last-out: no validation split, each user's second-latest row stays in training (the final fit after tuning)."
    )
    var noValidation = false
    @Flag(help: "Replace an existing output folder.") var overwrite = false

    func run() throws {
        let comm: Collective = Communicator.launchedByMPI ? Communicator() : Solo()
        defer { (comm as? Communicator)?.finalize() }
        var p = CSVPreparer(inputs: inputs, out: out, label: label)
        p.task = task
        p.shards = shards
        p.shardRows = shardRows
        var fractions = [String: Double]()
        for part in split.split(separator: ",") {
            let kv = part.split(separator: "=")
            guard kv.count == 2, let v = Double(kv[1]), ["train", "validation", "val", "test"].contains(String(kv[0]))
            else {
                throw CortadoError.usage("--split: '\(part)' is not train=F, validation=F or test=F")
            }
            fractions[kv[0] == "val" ? "validation" : String(kv[0])] = v
        }
        p.split = (fractions["train"] ?? 0, fractions["validation"] ?? 0, fractions["test"] ?? 0)
        p.schemaPath = schema
        let d = delimiter == "tab" || delimiter == "\\t" ? "\t" : delimiter
        guard d.utf8.count == 1, let byte = d.utf8.first, byte != UInt8(ascii: "\""), byte != UInt8(ascii: "\n") else {
            throw CortadoError.usage("--delimiter: '\(delimiter)' must be one ASCII character (or 'tab')")
        }
        p.delimiter = byte
        p.header = !noHeader
        if let missing {
            p.missingValues = missing.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        }
        p.seed = seed
        p.dedup = !keepDuplicates
        if let lo = leaveLastOut {
            let parts = lo.split(separator: ",").map(String.init)
            guard parts.count == 2 else {
                throw CortadoError.usage("--leave-last-out: expected USER,TIME column names")
            }
            p.leaveLastOut = (parts[0], parts[1])
        } else if noValidation {
            throw CortadoError.usage(
                "--no-validation: only with --leave-last-out (a random split takes --split validation=0)")
        }
        p.holdOutValidation = !noValidation
        p.ties = ties
        p.overwrite = overwrite
        try onEveryRank(comm) { log in _ = try p.run(comm: comm, log: log) }
    }
}

struct SyntheticRatingsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synthetic-ratings",
        abstract: "Write MovieLens-100k-shaped ratings (u.data-style TSV) with a planted low-rank structure.",
        discussion:
            "Prepare it like the real u.data: cortado prepare csv FILE --no-header --delimiter tab --label c2 --leave-last-out c0,c3 …"
    )
    @Option(name: .out, help: "Output TSV file.") var out: String
    @Option var users = 943
    @Option var items = 1682
    @Option var ratings = 100_000
    @Option(help: "Rank of the planted preference structure.") var rank = 8
    @Option(help: "How strongly taste steers which items a user rates (0: popularity only).") var affinity = 4.0
    @Option var seed: UInt64 = 42

    func run() throws {
        var g = SyntheticRatings()
        g.users = users; g.items = items; g.ratings = ratings; g.rank = rank; g.affinity = affinity; g.seed = seed
        let n = try g.write(to: out)
        print("wrote \(out): \(n) ratings, \(users) users, \(items) items")
    }
}

struct Compress: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compress a trained fp32 model by recipes and compare the variants.",
        discussion: """
            Recipes: fp32, fp16, bf16, int8, and prune<sparsity>[/layer]+<precision>, e.g. prune0.9+int8 \
            (global magnitude pruning of dense/conv weights, stored as CSR when at least half zero). \
            Prints: variant, file size, parameters, non-zeros, test accuracy, batch-1 latency (p50), \
            batch-1024 throughput, measured by the inference runtime on the manifest's test split.
            """)

    @Argument(
        help:
            "An fp32 model file (cortado-train's model-fp32.cmodel), a training checkpoint (.h5), or a registry reference (registry://NAME/VERSION/model-fp32.cmodel)."
    )
    var model: String
    @Option(help: "Registry folder for registry:// references (default: $CORTADO_REGISTRY).")
    var registry: String?
    @Option(
        name: .customLong("recipe"),
        help: "A recipe (repeat for several; default: fp32, fp16, int8, prune0.5+int8, prune0.9+int8).")
    var recipes: [String] = []
    @Option(help: "The data set's manifest.json (its test split is scored).")
    var data: String
    @Option(name: .out, help: "Folder for the compressed files.")
    var out: String
    @Option(help: "BLAS threads.")
    var threads = 1
    @Option(help: "Also write the table as JSON here.")
    var json: String?

    mutating func run() throws {
        model = try ModelReference.path(model, registry: registry)
        setBLASThreads(threads)
        let list = try (recipes.isEmpty ? ["fp32", "fp16", "int8", "prune0.5+int8", "prune0.9+int8"] : recipes).map(
            Recipe.init)
        let rows =
            model.hasSuffix(".h5")
            ? try compressCheckpoint(list)
            : try CompressionReport.run(source: model, recipes: list, data: data, outDir: out, log: { print($0) })
        print(CompressionReport.table(rows), terminator: "")
        if let json { try AtomicFile.write(try stableJSON(rows, pretty: true), to: json) }
    }
}

extension Compress {
    /// A checkpoint (verified as `--resume` would) holds the parameters and the job spec; the
    /// architecture comes from that spec and the input shape and classes from `--data`'s
    /// manifest, which must be the data set it was trained on (the layout is checked).
    func compressCheckpoint(_ recipes: [Recipe]) throws -> [CompressionRow] {
        let ck = try Checkpoint.read(model)
        let job: JobSpec
        do { job = try JSONDecoder().decode(JobSpec.self, from: Data(ck.jobSpecJSON.utf8)) } catch {
            throw CortadoError.model("\(model): the checkpoint's job spec does not decode: \(error)")
        }
        guard job.family == .feedforward else {
            throw CortadoError.usage("\(model): compress takes classifiers (recommenders: use emit: in the job spec)")
        }
        let manifest = try SplitReader(manifestPath: data, split: "test").manifest
        let spec = job.modelSpec(inputShape: manifest.featureShape)
        guard spec.parameterLayout == ck.layout else {
            throw CortadoError.model(
                "\(model): its parameter layout does not match the model its job spec describes on \(data)'s \(manifest.featureShape) features"
            )
        }
        let meta = try ModelMetadata.make(
            spec: job, specJSON: ck.jobSpecJSON, manifest: manifest, data: data, step: ck.step,
            worldSize: ck.worldSize)
        return try CompressionReport.run(
            model: spec, classes: manifest.classes, params: ck.params, metadata: meta, source: model,
            recipes: recipes, data: data, outDir: out, log: { print($0) })
    }
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a trained model to another runtime's format.",
        subcommands: [ExportONNX.self])
}

struct ExportONNX: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "onnx",
        abstract: "Write a classifier .cmodel as an fp32 ONNX model (opset 17) for ONNX Runtime.",
        discussion: """
            Input 'input' (batch, features) float32, output 'probabilities' (batch, classes), as \
            cortado-infer. Any storage exports (int8 weights are dequantized); recommenders do not. \
            To check it against cortado-infer's predictions with ONNX Runtime, see \
            docs/inference.md (ONNX export).
            """)
    @Argument(help: "A classifier model file (.cmodel) or a registry reference (registry://NAME@ALIAS).")
    var model: String
    @Option(name: .out, help: "The ONNX file to write.") var out: String
    @Option(help: "Registry folder for registry:// references (default: $CORTADO_REGISTRY).")
    var registry: String?

    func run() throws {
        let s = try ONNXExport.export(model: try ModelReference.path(model, registry: registry), to: out)
        print("wrote \(s.path): \(s.bytes) bytes, opset \(s.opset), \(s.nodes) nodes, \(s.parameters) parameters")
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Describe a data folder (manifest: splits, columns, statistics, cleaning report) or a model (job spec or .cmodel: layers, shapes, parameters, FLOPs, frozen)."
    )
    @Argument(help: "Data folder (or its manifest.json), job spec (.yaml), or model file (.cmodel).") var data: String

    func run() throws {
        if [".yaml", ".yml", ".cmodel"].contains(where: data.hasSuffix) {
            return print(try ModelTable.describe(path: data), terminator: "")
        }
        let path = data.hasSuffix(".json") ? data : (data as NSString).appendingPathComponent("manifest.json")
        print(try describeManifest(try DatasetManifest.load(path)), terminator: "")
    }
}

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-check every file of a prepared data folder: checksums, shapes, dtypes, labels.")
    @Argument(help: "Data folder (or its manifest.json).") var data: String

    func run() throws {
        let path = data.hasSuffix(".json") ? data : (data as NSString).appendingPathComponent("manifest.json")
        let problems = try validateDataFolder(manifestPath: path)
        for p in problems { printError("cortado validate: \(p)") }
        if !problems.isEmpty { throw CortadoError.data("\(path): \(problems.count) problem(s)") }
        print("OK: \(path)")
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
        let blas = BLASKernelCheck.status
        if json {
            print(
                #"{"m": \#(mm), "n": \#(nn), "k": \#(kk), "threads": \#(threads), "gflops": \#(String(format: "%.2f", g)), "kernel": "\#(blas.kernel)", "kernel_auto": \#(blas.automatic)}"#
            )
        } else {
            print(String(format: "sgemm %dx%dx%d, %d thread(s): %.1f GFLOP/s", mm, nn, kk, threads, g))
            print(BLASKernelCheck.summary)
        }
    }
}

// Before any BLAS call (and MPI_Init under mpirun): may re-execute with a better OpenBLAS kernel.
BLASKernelCheck.run()
do {
    var command = try Cortado.parseAsRoot()
    try command.run()
} catch let e as CortadoError {
    if !e.message.isEmpty { printError("cortado: \(e.message)") }
    exit(e.exitCode)
} catch {
    Cortado.exit(withError: error)
}

extension NameSpecification {
    /// Where a command writes: `--out` in every Cortado command; `-o` and `--output` are
    /// accepted as aliases.
    static var out: NameSpecification { [.customLong("out"), .customShort("o"), .customLong("output")] }
}

/// Runs a command body on every rank (a `cortado prepare` under mpirun): only rank 0 prints
/// and reports an error (the others fail quietly with the same exit code).
func onEveryRank(_ comm: Collective, _ body: (_ log: (String) -> Void) throws -> Void) throws {
    let isRoot = comm.rank == 0
    do {
        try body { if isRoot { print($0) } }
    } catch let e as CortadoError where !isRoot {
        throw CortadoError(e.kind, "") // rank 0 reports
    }
}
