import ArgumentParser
import CortadoCore
import CortadoInfer
import Foundation

/// `cortado-infer`: scores data with a model file written by cortado-train. Links no MPI.
struct Infer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cortado-infer",
        abstract: "Score an HDF5 features file with a .cmodel (fp32 or int8).",
        version: cortadoVersion)

    @Argument(help: "Model file (.cmodel).")
    var model: String
    @Option(help: "HDF5 file with /features (rows, inputs) and optionally /labels.")
    var input: String
    @Option(help: "Write predictions (class and probabilities) as CSV here.")
    var output: String?
    @Option(help: "Rows per batch.")
    var batch = 1024
    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func run() throws {
        let m = try InferenceModel(path: model)
        let r = try score(model: m, inputPath: input, batch: batch, csvOutput: output)
        if json {
            var obj: [String: String] = ["model": model, "input": input, "precision": m.header.precision,
                                         "rows": String(r.rows), "rows_per_sec": String(format: "%.1f", r.rowsPerSecond)]
            if let a = r.accuracy { obj["accuracy"] = String(format: "%.4f", a) }
            if let o = output { obj["output"] = o }
            print(String(decoding: try stableJSON(obj, pretty: false), as: UTF8.self))
        } else {
            print("model \(model) (\(m.header.precision), \(m.spec.layers.map(\.description).joined(separator: " ")))")
            print(String(format: "scored %d rows in %.3fs (%.0f rows/s)", r.rows, r.seconds, r.rowsPerSecond))
            if let a = r.accuracy { print(String(format: "accuracy %.4f", a)) }
            if let o = output { print("predictions: \(o)") }
        }
    }
}

do {
    var command = try Infer.parseAsRoot()
    try command.run()
} catch let e as CortadoError {
    printError("cortado-infer: \(e.message)")
    exit(e.exitCode)
} catch {
    Infer.exit(withError: error)
}
