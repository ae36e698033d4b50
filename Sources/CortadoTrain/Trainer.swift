import COpenBLAS
import CortadoCore
import CortadoData
import CortadoJob
import CortadoModel
import CortadoMPI
import Foundation

/// Command-line options of cortado-train that are not part of the job spec.
public struct TrainOptions {
    public var specPath: String
    public var overrides: [String] = []
    public var runDir: String?
    public var resume = false
    public var overwrite = false
    public var json = false
    /// Test hook: run one step on global rows [rank·B, (rank+1)·B), write the averaged gradient
    /// arena to this HDF5 file, and stop.
    public var probeGradient: String?
    /// Print what each rank would run with (host, cores, BLAS threads, shards, transport) and stop.
    public var dryRun = false
    /// Registry root for `registry://` references in `init_from` and `teacher.model` (default:
    /// the CORTADO_REGISTRY environment variable).
    public var registry: String?

    public init(specPath: String) { self.specPath = specPath }
}

/// What a finished run reports (the `--json` line).
public struct TrainSummary: Codable {
    public var runDir: String
    public var worldSize: Int
    public var steps: Int
    public var checkpoint: String?
    public var models: [String: String]
    public var validation: [String: Double]
    public var test: [String: Double]
    public var samplesPerSecond: Double
    /// Samples per second over the epochs after this run's first (start-up effects such as
    /// first-touch page faults excluded); nil when the run had a single epoch.
    public var steadySamplesPerSecond: Double?
    /// Training FLOPs per sample (forward + backward), for FLOP-rate reports.
    public var flopsPerSample: Double
    public var peakRSSMiBMax: Double
    /// Each rank's peak RSS, in rank order (rank 0 also holds the end phase and, with ZeRO-1,
    /// gathers the whole optimizer state for each checkpoint).
    public var peakRSSMiB: [Double] = []
    public var wallSeconds: Double
    /// Mean milliseconds per step on rank 0: batch assembly, or with `loader.prefetch` the wait
    /// for the loader thread's batch ("data"), forward+backward
    /// ("compute", without data), gradient exchange ("exchange": the allreduce including the
    /// wait for the slowest rank), optimizer update ("update").
    public var stepMilliseconds: [String: Double] = [:]
    /// The same split for every rank, in rank order ("compute", "data", "exchange", "update"):
    /// a straggler shows as the rank with the most compute and the least exchange, since the
    /// others' exchange time is mostly waiting for it.
    public var stepMillisecondsByRank: [String: [Double]] = [:]
    /// The OpenBLAS kernel rank 0 ran (`openblas_get_corename`), and whether Cortado's start-up
    /// check chose it (docs/blas.md); optional so summaries written before them still decode.
    public var blasKernel: String?
    public var blasKernelAuto: Bool?
    /// The epoch whose parameters early stopping kept (1-based; nil without it, and for a
    /// resumed run's epochs before the resume): what a final fit without validation trains for.
    public var bestEpoch: Int?

    enum CodingKeys: String, CodingKey {
        case runDir = "run_dir", worldSize = "world_size", steps, checkpoint, models, validation, test
        case samplesPerSecond = "samples_per_sec", steadySamplesPerSecond = "samples_per_sec_steady", flopsPerSample =
            "train_flops_per_sample", peakRSSMiBMax = "peak_rss_mib_max", peakRSSMiB = "peak_rss_mib", wallSeconds =
            "wall_sec"
        case stepMilliseconds = "step_ms", stepMillisecondsByRank = "step_ms_by_rank"
        case blasKernel = "blas_kernel", blasKernelAuto = "blas_kernel_auto", bestEpoch = "best_epoch"
    }
}

/// The SPMD training loop. Every rank runs the same code on its own rows; the only
/// communication is one in-place allreduce of the gradient arena per step (plus small
/// reductions for metrics and set-up agreement).
public final class Trainer {
    let comm: Communicator
    let options: TrainOptions
    let services: TrainerServices
    var log: (String) -> Void
    /// ZeRO-1's sharding of the optimizer state (distributed.zero), set before step 0.
    var zero: ZeroSharding?

    public init(comm: Communicator, options: TrainOptions, services: TrainerServices = TrainerServices()) {
        self.comm = comm
        self.options = options
        self.services = services
        let isRoot = comm.rank == 0
        log = { line in if isRoot { print(line); fflush(stdout) } }
    }

    /// Runs the job, phase by phase: set-up, resume, the epochs (steps, then evaluation), the
    /// finish. Errors thrown from here are the same on every rank (set-up failures are agreed
    /// with `comm.agree`; a non-finite loss is seen by all ranks at the same step).
    public func run() throws -> TrainSummary? {
        let wallStart = monotonicSeconds()
        // ---- set-up: everything that can fail fails here, on all ranks together ----
        let (agreed, resumeFrom) = try readSpec()
        var spec = agreed
        let data = try openData(spec: &spec, resumeFrom: resumeFrom)
        let (threads, cores) = chooseBLASThreads(spec: spec)
        if let probe = options.probeGradient {
            return try probeGradient(spec: spec, model: data.model, reader: data.train, out: probe)
        }
        let share = RankShare(
            partitions: spec.dataPartitions ?? comm.size, batch: spec.batchSize, totalRows: data.train.rows, comm: comm)
        if options.dryRun {
            describePlacement(threads: threads, cores: cores, rows: share.rows, reader: data.train)
            return nil
        }
        let stepsPerEpoch = try planSteps(spec: spec, data: data, share: share)
        try comm.agree("preparing run folder \(spec.runDir)") {
            if comm.rank == 0 { try prepareRunDir(spec.runDir, spec: spec) }
        }
        // What the process holds before any data: MPI, BLAS, the Swift runtime and libraries.
        let runtimeBytes = comm.allreduceMax(currentRSSBytes())
        let task = try buildTask(spec: spec, data: data, share: share, stepsPerEpoch: stepsPerEpoch)
        var run = try makeRun(spec: spec, task: task, stepsPerEpoch: stepsPerEpoch)
        run.hasValidation = data.validation.rows > 0
        // ---- resume, then the hooks that ride along ----
        if options.resume { try resume(&run) }
        let pruning = spec.pruning.map {
            PruningHook($0, task: task, totalSteps: run.totalSteps, step: run.step, log: log)
        }
        logStart(run, data: data, share: share, threads: threads, runtimeBytes: runtimeBytes)
        let hooks = makeHooks(run, pruning: pruning, wallStart: wallStart)
        // ---- the epochs ----
        try comm.agree("starting the loader") {
            try task.beginTraining(at: run.step * run.micro, end: run.totalSteps * run.micro)
        }
        while run.step < run.totalSteps {
            if try epoch(&run, hooks: hooks) { break }
        }
        // ---- the end: final checkpoint, test metrics, model files ----
        return try finish(&run, data: data, hooks: hooks, wallStart: wallStart)
    }

    /// Every rank's mean step split in milliseconds (collective): each rank's own clocks.
    func stepSplitByRank(_ compute: Double, _ data: Double, _ exchange: Double, _ update: Double, steps: Int)
        -> [String: [Double]]
    {
        let keys = ["compute", "data", "exchange", "update"], size = comm.size
        var values = [Double](repeating: 0, count: keys.count * size)
        for (k, v) in [compute, data, exchange, update].enumerated() {
            values[k * size + comm.rank] = 1000 * v / Double(max(steps, 1))
        }
        comm.allreduceSum(&values)
        return Dictionary(
            uniqueKeysWithValues: keys.enumerated().map { ($1, Array(values[$0 * size..<($0 + 1) * size])) })
    }

    /// The end-of-run line on balance: each rank's compute and exchange per step. A rank that
    /// computes longer than the others makes them wait in the exchange, whatever the network
    /// (a straggling node shows here as the rank with the most compute and the least exchange).
    func straggler(compute: [Double], exchange: [Double]) -> String {
        let list = { (v: [Double]) in v.map { String(format: "%.3f", $0) }.joined(separator: " ") }
        let slowest = compute.indices.max { compute[$0] < compute[$1] }!
        let mean = compute.reduce(0, +) / Double(compute.count)
        return String(
            format:
                "ms/step by rank: compute %@, exchange %@ (rank %d computes longest, %+.1f %% over the mean; beyond the transfer, a rank's exchange is waiting for the slower one)",
            list(compute), list(exchange), slowest, 100 * (compute[slowest] / max(mean, 1e-12) - 1))
    }

    /// The start-up line on how gradients are summed, with ZeRO-1's memory saving per rank.
    func exchangeSummary(spec: JobSpec, task: TrainingTask, stateMultiple: Int) -> String {
        guard let zero else {
            return task.exchangeDescription.isEmpty
                ? "gradient exchange: one allreduce per step" : task.exchangeDescription
        }
        let full = Double(4 * stateMultiple * zero.count) / 1048576,
            mine = Double(4 * stateMultiple * zero.mine.count) / 1048576
        if let half = zero.half {
            // Sent per rank: the 16-bit all-to-all, then the slice's fp32 parameters to the others.
            let sent = half.bytesSent(allgather: false) + 4 * zero.mine.count * (comm.size - 1)
            return String(
                format:
                    "gradient exchange: ZeRO-1 with %@ gradients (16-bit all-to-all, fp32 sum and update of this rank's slice, fp32 allgather): %.2f MiB sent per rank per step (fp32: %.2f); optimizer state %.2f MiB/rank instead of %.2f",
                half.precision.rawValue, Double(sent) / 1048576,
                Double(8 * zero.count * (comm.size - 1) / comm.size) / 1048576, mine, full)
        }
        return String(
            format:
                "gradient exchange: ZeRO-1 (reduce-scatter, update of this rank's slice, allgather%@): optimizer state %.2f MiB/rank instead of %.2f (%.2f MiB saved)",
            zero.arena is SharedMemoryExchange ? ", both through shared memory" : "", mine, full, full - mine)
    }

    /// `--dry-run`: every rank reports where it runs and what it will read; rank 0 prints the
    /// table. For debugging a placement before spending an allocation on it.
    func describePlacement(threads: Int, cores: Int, rows: Range<Int>, reader: SplitReader) {
        let allowed = Placement.allowedList ?? "?"
        var base = 0, shards = [String]()
        for f in reader.files {
            let lo = max(rows.lowerBound, base), hi = min(rows.upperBound, base + f.rows)
            if lo < hi { shards.append("\((f.path as NSString).lastPathComponent)[\(lo - base)..<\(hi - base)]") }
            base += f.rows
        }
        let mine = [
            comm.hostname, allowed == "0-\(cores - 1)" ? "all (\(allowed))" : allowed,
            String(threads), "\(rows.count) rows: " + shards.joined(separator: " ")
        ].joined(separator: "\t")
        let all = comm.allgather(mine).map {
            $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        }
        let hosts = all.map { $0[0] }
        let btl = ProcessInfo.processInfo.environment["OMPI_MCA_btl"].map { " (OMPI_MCA_btl=\($0))" } ?? ""
        func pad(_ s: String, _ n: Int) -> String {
            s.padding(toLength: max(n, s.count + 1), withPad: " ", startingAt: 0)
        }
        log(
            pad("rank", 6) + pad("host", 14) + pad("cores bound", 14) + pad("BLAS threads", 14)
                + pad("transport to rank 0", 24) + "data")
        for (r, f) in all.enumerated() {
            let transport = r == 0 ? "-" : (hosts[r] == hosts[0] ? "shared memory (vader)" : "tcp") + btl
            log(pad(String(r), 6) + pad(f[0], 14) + pad(f[1], 14) + pad(f[2], 14) + pad(transport, 24) + f[3])
        }
        log("BLAS: \(BLASKernelCheck.summary)")
        if let w = BLASKernelCheck.status.warning { log("warning: \(w)") }
        let perHost = Dictionary(grouping: hosts, by: { $0 }).mapValues(\.count)
        for (h, n) in perHost.sorted(by: { $0.key < $1.key }) where n * threads > cores {
            log("warning: \(h): \(n) ranks × \(threads) BLAS threads exceed its \(cores) cores")
        }
    }

    /// Ranks compare what they are about to run: binary version, resolved job spec, data
    /// manifest. A mismatch fails on every rank, naming both values.
    func preflight(spec: JobSpec, manifest: DatasetManifest) throws {
        let manifestHash = SHA256.hex((try? stableJSON(manifest, pretty: false)) ?? Data())
        let mine =
            "version=\(cortadoVersion) spec=\(SHA256.hex(Data(spec.canonicalJSON.utf8)).prefix(16)) manifest=\(manifestHash.prefix(16))"
        let all = comm.allgather(mine)
        if let (r, other) = all.enumerated().first(where: { $0.element != all[0] }) {
            throw CortadoError(
                .distributed, "ranks disagree before step 0: rank 0 has \(all[0]), rank \(r) has \(other)")
        }
    }

    /// Creates the run folder and refuses to mix a new run into an old one.
    func prepareRunDir(_ runDir: String, spec: JobSpec) throws {
        try ensureWritableDirectory(Checkpoint.folder(runDir: runDir))
        let existing = try Checkpoint.checkpointFiles(runDir: runDir)
        if !existing.isEmpty && !options.resume {
            guard options.overwrite else {
                throw CortadoError.usage(
                    "\(runDir) already holds checkpoints: pass --resume to continue, --overwrite to start over, or another --run-dir"
                )
            }
            for f in existing { unlink(f) }
            unlink((Checkpoint.folder(runDir: runDir) as NSString).appendingPathComponent("latest"))
        }
        if !options.resume {
            unlink((runDir as NSString).appendingPathComponent("metrics.jsonl"))
            unlink((runDir as NSString).appendingPathComponent("summary.json"))
            // A new run's TensorBoard events replace the old run's (metrics.jsonl does too).
            try? FileManager.default.removeItem(atPath: (runDir as NSString).appendingPathComponent("tb"))
        }
        try AtomicFile.write(
            Data(spec.canonicalJSON.utf8),
            to: (runDir as NSString).appendingPathComponent("job.json"))
    }

    /// Rank 0 writes a checkpoint (`best`: checkpoints/best.h5, the best by the early-stopping
    /// metric, outside the rotation); a failure here cannot be agreed (the others are already
    /// in the next step's allreduce), so it takes the abort path. Collective under ZeRO-1:
    /// every rank calls it, and rank 0 gathers the sharded optimizer state for the file.
    @discardableResult
    func writeCheckpoint(
        spec: JobSpec, step: Int, stepsPerEpoch: Int, task: TrainingTask, opt: Optimizer, best: Bool = false
    ) -> String? {
        let gathered = zero?.gatherState(opt.state, multiple: Optimizer.stateMultiple(spec.optimizer.type))
        defer { gathered?.deallocate() }
        guard comm.rank == 0 else { return nil }
        let state = UnsafeBufferPointer(gathered ?? opt.state.buffer), params = UnsafeBufferPointer(task.params.buffer)
        let what = best ? "best checkpoint" : "checkpoint"
        do {
            // Under the process-wide HDF5 lock: a chunked loader thread may be reading shards.
            return try HDF5File.serialized {
                if best {
                    let path = (Checkpoint.folder(runDir: spec.runDir) as NSString).appendingPathComponent("best.h5")
                    try Checkpoint.writeFile(
                        path, step: step, stepsPerEpoch: stepsPerEpoch, worldSize: comm.size,
                        dataPartitions: spec.dataPartitions ?? comm.size,
                        jobSpecJSON: spec.canonicalJSON, layout: task.layout, params: params, optimizerState: state)
                    return path
                }
                return try Checkpoint.write(
                    runDir: spec.runDir, step: step, stepsPerEpoch: stepsPerEpoch, worldSize: comm.size,
                    dataPartitions: spec.dataPartitions ?? comm.size, jobSpecJSON: spec.canonicalJSON,
                    layout: task.layout,
                    params: params, optimizerState: state, keep: spec.checkpointKeep)
            }
        } catch let e as CortadoError {
            comm.abort("\(what) at step \(step): \(e.message)", code: e.exitCode)
        } catch {
            comm.abort("\(what) at step \(step): \(error)", code: 4)
        }
    }

    /// Copies every tensor of an earlier model (.cmodel, fp32) or checkpoint (.h5) whose name
    /// and shape match into `net`, except excluded layers; returns a one-line report.
    func loadInitial(_ path: String, layout: ParameterLayout, params: Arena<Float>, exclude: Set<Int>) throws -> String
    {
        var source = [String: (shape: [Int], values: [Float])]()
        if path.hasSuffix(".h5") {
            let ck = try Checkpoint.read(path)
            for t in ck.layout.tensors { source[t.name] = (t.shape, Array(ck.params[t.offset..<(t.offset + t.count)])) }
        } else {
            let file = try ModelFile.load(path)
            guard file.header.precision == "fp32" else {
                throw CortadoError.model("\(path): fine-tune from an fp32 model, not \(file.header.precision)")
            }
            for t in file.header.tensors where t.dtype == .float32 {
                source[t.name] = (t.shape, file.values(t, as: Float.self))
            }
        }
        var loaded = [String](), fresh = [String]()
        for t in layout.tensors {
            let parts = t.name.split(separator: ".")
            let layer = parts.count > 1 ? Int(parts[1]) ?? -1 : -1
            guard !exclude.contains(layer), let s = source[t.name], s.shape == t.shape else {
                fresh.append(t.name); continue
            }
            for j in 0..<t.count { params.base[t.offset + j] = s.values[j] }
            loaded.append(t.name)
        }
        guard !loaded.isEmpty else {
            throw CortadoError.model("\(path): no tensor matches the model by name and shape")
        }
        return
            "initialized \(loaded.count) tensors from \(path); fresh: \(fresh.isEmpty ? "none" : fresh.joined(separator: ", "))"
    }

    /// One step on global rows [rank·B, (rank+1)·B); rank 0 writes the averaged gradient.
    func probeGradient(spec: JobSpec, model: ModelSpec, reader: SplitReader, out: String) throws -> TrainSummary? {
        let B = spec.batchSize
        let rows = comm.rank * B..<(comm.rank + 1) * B
        let data = try comm.agree("loading probe rows") {
            try LocalData(reader: reader, range: rows, verifyChecksums: false)
        }
        let net = Network<Float>(spec: model, maxBatch: B, gradientExtras: 2)
        net.initialize(seed: spec.seed)
        comm.broadcast(net.params.base, count: net.layout.count)
        let r = net.step(data.features.baseAddress!, labels: data.labels.baseAddress!, batch: B, train: true)
        let n = net.layout.count
        net.grads.base[n] = Float(r.lossSum)
        comm.allreduceSum(net.grads.base, count: n + 2)
        for i in 0..<n { net.grads.base[i] /= Float(comm.size) }
        try comm.agree("writing \(out)") {
            guard comm.rank == 0 else { return }
            let h5 = try HDF5File.create(out)
            try h5.write("gradient", net.grads.base, dtype: .float32, shape: [n])
            try h5.setAttribute("loss", Double(net.grads.base[n]) / Double(B * comm.size))
            try h5.setAttribute("world_size", Int64(comm.size))
        }
        return nil
    }
}

/// The kernel's view of this process's binding (what mpirun --bind-to, srun --cpu-bind or
/// taskset set): /proc/self/status's Cpus_allowed_list, e.g. "0-1,4".
enum Placement {
    static var allowedList: String? {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        return status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") }
            .map { $0.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces) }
    }

    /// The cores this process may run on (empty when the list cannot be read).
    static var allowedCores: [Int] {
        (allowedList ?? "").split(separator: ",").flatMap { part -> [Int] in
            let ends = part.split(separator: "-").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard let lo = ends.first, let hi = ends.last, lo <= hi else { return [] }
            return Array(lo...hi)
        }
    }
}

/// Appends one JSON object as a line (metrics.jsonl); best effort, the run goes on without it.
func appendLine(_ path: String, _ object: [String: Double]) {
    guard let data = try? stableJSON(object.mapValues { $0.isFinite ? $0 : -1 }, pretty: false) else { return }
    if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
    guard let fh = FileHandle(forWritingAtPath: path) else { return }
    fh.seekToEndOfFile()
    fh.write(data + Data("\n".utf8))
    try? fh.close()
}
