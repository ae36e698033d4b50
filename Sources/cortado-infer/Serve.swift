import ArgumentParser
import CortadoCore
import CortadoModel
import CortadoServe
import Foundation

/// `cortado-infer serve`: the Open Inference Protocol over HTTP for a model repository
/// (docs/serving.md).
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract:
            "Serve a model repository (DIR/NAME/VERSION/model.cmodel) over HTTP: KServe v2 / Open Inference Protocol.")

    @Option(help: "The model repository: DIR/NAME/VERSION/model.cmodel, default version in DIR/NAME/default.")
    var models: String
    @Option(help: "Address to bind (loopback unless told otherwise).")
    var host = "127.0.0.1"
    @Option(help: "Port (0: a free one; the chosen port is printed as 'listening on http://HOST:PORT').")
    var port = 8080
    @Option(name: .customLong("max-batch-size"), help: "Dynamic batching: rows per batch at most.")
    var maxBatchSize = 64
    @Option(name: .customLong("max-queue-delay-us"), help: "Dynamic batching: how long a batch waits to fill (µs).")
    var maxQueueDelayUs = 0
    @Option(
        name: .customLong("inline-us"),
        help:
            "A lone row whose one-row batch takes less than this (µs) runs on the connection's event loop when the version is idle (0: never)."
    )
    var inlineUs = ServeOptions().inlineMicroseconds
    @Option(name: .customLong("queue-rows"), help: "Rows queued per model version at most; more get 503 + Retry-After.")
    var queueRows = 1024
    @Option(help: "CPU cores the server may use (default: all).")
    var cores = ProcessInfo.processInfo.activeProcessorCount
    @Option(help: "Inference threads per model version (default: the cores); BLAS threads = cores / threads.")
    var threads: Int?
    @Option(help: "Pruned (CSR) layers: auto, always, never (as cortado-infer score).")
    var sparse = "auto"
    @Option(help: "Require 'Authorization: Bearer TOKEN' (all but /v2/health/*). Or set CORTADO_SERVE_TOKEN.")
    var token: String?
    @Option(name: .customLong("max-body-bytes"), help: "Request bodies larger than this get 413.")
    var maxBodyBytes = 16 << 20
    @Option(name: .customLong("request-timeout"), help: "Seconds a request may take before 504.")
    var requestTimeout = 30.0
    @Option(
        name: .customLong("prediction-log"),
        help: "Folder for the prediction log (predictions.jsonl); off unless given.")
    var predictionLog: String?
    @Option(name: .customLong("prediction-sample"), help: "Fraction of requests the prediction log keeps (0…1).")
    var predictionSample = 1.0
    @Option(name: .customLong("prediction-log-max-mb"), help: "Rotate the prediction log at this size (MiB).")
    var predictionLogMaxMB = 64
    @Option(
        name: .customLong("default"),
        help: "NAME=VERSION: the default at first load when the repository names none (repeatable).")
    var defaults: [String] = []
    @Option(help: "Rescan the repository every SECONDS (0: only on SIGHUP or POST /v2/repository/models/NAME/load).")
    var poll = 0.0

    func validate() throws {
        guard port >= 0, port < 65536 else { throw ValidationError("--port: \(port) is not in 0...65535") }
        guard cores > 0 else { throw ValidationError("--cores must be positive") }
        if let t = threads, t <= 0 || t > cores {
            throw ValidationError("--threads: \(t) must be in 1...\(cores) (--cores)")
        }
        guard maxBatchSize > 0, maxBatchSize <= 65536 else {
            throw ValidationError("--max-batch-size must be in 1...65536")
        }
        guard maxQueueDelayUs >= 0 else { throw ValidationError("--max-queue-delay-us must be ≥ 0") }
        guard queueRows > 0 else { throw ValidationError("--queue-rows must be positive") }
        guard inlineUs >= 0 else { throw ValidationError("--inline-us must be ≥ 0") }
        guard (0...1).contains(predictionSample) else { throw ValidationError("--prediction-sample must be in 0...1") }
        guard poll >= 0, poll.isFinite else { throw ValidationError("--poll must be ≥ 0 seconds") }
        guard requestTimeout > 0 else { throw ValidationError("--request-timeout must be positive") }
        guard ["auto", "always", "never"].contains(sparse) else {
            throw ValidationError("--sparse: '\(sparse)' is not auto, always or never")
        }
    }

    func serve() async throws {
        var c = ServerConfig(models: models)
        c.host = host
        c.port = port
        let t = threads ?? cores
        c.options.threads = t
        c.options.maxBatch = maxBatchSize
        c.options.maxQueueDelayMicroseconds = maxQueueDelayUs
        c.options.queueRows = queueRows
        c.options.inlineMicroseconds = inlineUs
        c.options.sparse = sparse
        for d in defaults {
            let parts = d.split(separator: "=")
            guard parts.count == 2, let v = Int(parts[1]), v > 0 else {
                throw CortadoError.usage("--default: '\(d)' is not NAME=VERSION")
            }
            c.options.initialDefaults[String(parts[0])] = v
        }
        c.token = token ?? ProcessInfo.processInfo.environment["CORTADO_SERVE_TOKEN"]
        c.maxBodyBytes = maxBodyBytes
        c.requestTimeout = requestTimeout
        c.predictionLog = predictionLog
        c.predictionSampleRate = predictionSample
        c.predictionLogMaxBytes = predictionLogMaxMB << 20
        c.pollSeconds = poll
        // threads × BLAS threads never exceed the cores: no oversubscription.
        setBLASThreads(max(1, cores / t))
        try await ModelServer.run(c)
    }
}
