import CortadoCore
import CortadoData
import CortadoModel
import Foundation

/// A training job, read from YAML (see jobs/fashion-mlp.yaml and the README):
///
///     version: 1
///     data: data/fashion-mnist/manifest.json   # relative to the working directory
///     model:
///       layers: [{type: dense, units: 256}, {type: relu}, ...]
///       loss: softmax_cross_entropy
///     optimizer: {type: sgd, learning_rate: 0.05, momentum: 0.9, weight_decay: 0.0,
///                 schedule: cosine, warmup_steps: 0}
///     batch_size: 64          # per rank
///     accumulate_steps: 1     # micro-batches of batch_size per exchange and update
///     data_partitions: 6      # optional: fixed data order for any world size dividing 6
///     epochs: 10
///     seed: 42
///     checkpoint: {every_steps: 500, keep: 3}
///     run_dir: runs/fashion-mlp
///     threads: 1              # BLAS threads per rank; default cores / ranks on the host
///     emit: [fp32, int8]      # model files rank 0 writes at the end, by compression recipe
///                             # (fp16, bf16, prune0.9+int8, … see `Recipe`)
///     verify_checksums: true  # SHA-256 of each shard a rank reads, before step 0
///     teacher:                # optional: knowledge distillation (see `Teacher`)
///       model: runs/fashion-mlp/model-fp32.cmodel
///       temperature: 4.0
///       alpha: 0.7
///       cache: false          # run the teacher every batch (default: once, before step 0)
///     distributed:            # how the gradients of feed-forward models are summed
///       overlap: off          # off | test | thread (see `Distributed`)
///       bucket_kib: 256
///       block_rows: 512       # dense weight gradients in blocks of this many rows (0: whole)
///       zero: false           # ZeRO-1: optimizer state sharded across ranks
///       precision: fp32       # fp32 | bf16 | fp16: gradients travel in 16 bits (off by default)
///       exchange: mpi         # mpi | shm: summed through shared memory on each host
///     tensorboard: true       # RUN_DIR/tb/events.out.tfevents.* on rank 0 (default; false: off)
///     loader:                 # optional: how training batches are assembled (see `Loader`)
///       prefetch: true        # next batch on a loader thread (default)
///       chunk_rows: 0         # 0: the rank's whole share in memory; N: chunks of N rows
///
/// Unknown keys and wrong types are errors naming the key; `--set key.path=value` overrides.
public struct JobSpec: Codable, Equatable {
    public static let currentVersion = 1

    public var version = JobSpec.currentVersion
    public var data: String
    public var layers: [LayerSpec] = []
    public var loss = "softmax_cross_entropy"
    public var labelSmoothing = 0.0
    /// Stop when the validation metric has not improved for `patience` epochs; the best
    /// parameters are kept (RUN_DIR/checkpoints/best.h5) and become the emitted models.
    public var earlyStopping: EarlyStopping?
    /// Fine-tuning: start from an earlier model (.cmodel, fp32) or checkpoint (.h5); tensors
    /// whose name and shape match are copied, except those of `initExclude` layers (a new head).
    public var initFrom: String?
    public var initExclude: [Int] = []
    /// Layers whose parameters are not updated (a frozen body).
    public var freeze: [Int] = []
    public var optimizer = OptimizerSpec()
    public var batchSize = 64
    /// The training rows are split into this many fixed partitions, each with its own shuffle;
    /// a rank processes `data_partitions / ranks` of them and every global batch takes
    /// `batch_size × ranks / data_partitions` rows from each. The global batches are then the
    /// same on every world size that divides it, so a resume on another world size continues
    /// the uninterrupted run's data order (only the summation order changes). Default: ranks.
    public var dataPartitions: Int?
    /// Gradient accumulation: each optimizer step runs this many micro-batches of
    /// `batch_size` rows per rank, summing their gradients, then one exchange and one update:
    /// the same step as a batch `batch_size × accumulate_steps`, with the activation memory
    /// of `batch_size` and 1/K of the exchanges. Stored as nil when 1, so specs without it
    /// keep their canonical JSON (and checkpoint hashes).
    var accumulateStepsKey: Int?
    public var accumulateSteps: Int {
        get { accumulateStepsKey ?? 1 }
        set { accumulateStepsKey = newValue == 1 ? nil : newValue }
    }
    public var epochs = 1
    public var seed: UInt64 = 42
    public var checkpointEvery = 0 // steps; 0 = only at the end
    public var checkpointKeep = 3
    public var runDir = "runs/job"
    public var threads: Int?
    public var emit: [String] = ["fp32", "int8"]
    public var verifyChecksums = true
    /// A rank with no progress for this many seconds (a stuck peer leaves the others waiting
    /// in MPI forever) ends the job; 0 disables the watchdog.
    public var watchdogSeconds = 600.0
    /// A non-finite loss or gradient: `stop` (exit 7 naming the rank, keeping the last
    /// checkpoint) or `skip` (no update for that step, on every rank).
    public var nonFinite = NonFinitePolicy.stop
    /// The model family, `model.type`: what the trainer builds and which options apply.
    public var family: ModelFamily { recommender != nil ? .recommender : text != nil ? .text : .feedforward }
    /// `model.type: recommender` (then `layers` is empty): see `RecommenderOptions`.
    public var recommender: RecommenderOptions?
    /// `model.type: text` (then `layers` is empty): see `TextOptions`.
    public var text: TextOptions?

    /// A fastText-style text classifier on id lists from `cortado prepare text`:
    ///
    ///     model:
    ///       type: text
    ///       embedding_dim: 64
    ///       layers: []               # hidden head layers; a dense layer of one unit per
    ///                                # class is appended
    ///       init_scale: 1.0          # embeddings uniform in ±init_scale/dim
    ///       exchange: auto           # embedding gradients: auto | dense | sparse
    public struct TextOptions: Codable, Equatable {
        public var dim = 64
        public var hidden: [LayerSpec] = []
        public var initScale = 1.0
        public var exchange = EmbeddingExchange.auto
        enum CodingKeys: String, CodingKey { case dim, hidden, initScale = "init_scale", exchange }

        /// The architecture resolved against the data's vocabulary and classes.
        public func spec(manifest: DatasetManifest) throws -> TextSpec {
            guard let v = manifest.text else {
                throw CortadoError.usage("model.type: text needs data from `cortado prepare text` (no vocabulary)")
            }
            var s = TextSpec(rows: v.rows, dim: dim, layers: hidden + [.dense(units: manifest.classes.count)])
            s.initScale = initScale
            try s.validate(classes: manifest.classes.count)
            return s
        }
    }

    /// The dense gradient exchange of feed-forward models (the recommender has its own).
    public struct Distributed: Codable, Equatable {
        /// `off`: one blocking allreduce of the whole arena after backward. `test`: buckets of
        /// about `bucket_kib`, each started (MPI_Iallreduce) as soon as backward has finished
        /// it, progressed by MPI_Testall between layers (Open MPI here has no background
        /// progress). `thread`: the same buckets, each a blocking allreduce on a communication
        /// thread. The sums are the same in every mode (per bucket instead of per arena).
        /// Default `off`: on the 2-core VM this was measured on (Benchmarks/train-vs-pytorch.sh),
        /// both overlapped modes made steps slower. There is no idle core to progress MPI on,
        /// libnbc's non-blocking allreduce is slower than the blocking one, and the exchange
        /// time was mostly the wait for the other rank, which no overlap removes.
        public var overlap = OverlapMode.off
        public var bucketKiB = 256
        /// Dense weight gradients with more output rows than this are computed in blocks of
        /// this many rows, so a layer's first blocks can leave while the rest are computed
        /// (0: whole tensors). Used in every mode, so that every mode computes the same bits.
        /// Not smaller by default because a GEMM over fewer rows runs slower: for the wide
        /// MLP's 2048×2048 gradient at batch 256, 32 / 128 / 256 / 2048-row blocks ran at
        /// 71 / 83 / 87 / 88 GFLOP/s here, and 64 blocks of 32 rows cost the wide MLP 7 % of
        /// its step. With 512 the MLP's layers are not blocked at all.
        public var blockRows = 512
        /// ZeRO-1: each rank keeps the optimizer state of its 1/ranks slice of the arena; the
        /// gradients are reduce-scattered, each rank updates its slice of the parameters and
        /// the slices are allgathered (the same arithmetic; no overlap).
        public var zero = false
        /// The gradients' wire format (`ExchangePrecision`): fp32 (default), or bf16/fp16 —
        /// Horovod's `compression=fp16`, DDP's bf16 compress hook — which halve the bytes.
        /// fp32 is stored as absent, so the canonical JSON (and the checkpoint hashes) of
        /// specs that predate the key stay the same.
        public var precision: ExchangePrecision {
            get { precisionKey ?? .fp32 }
            set { precisionKey = newValue == .fp32 ? nil : newValue }
        }
        var precisionKey: ExchangePrecision?
        /// How the arena is summed (`ExchangeTransport`): MPI's allreduce (default), or `shm`,
        /// each host's ranks summing slices of each other's gradients in shared memory. Stored
        /// as absent when `mpi`, as `precision` is.
        public var exchange: ExchangeTransport {
            get { exchangeKey ?? .mpi }
            set { exchangeKey = newValue == .mpi ? nil : newValue }
        }
        var exchangeKey: ExchangeTransport?
        enum CodingKeys: String, CodingKey {
            case overlap, bucketKiB = "bucket_kib", blockRows = "block_rows", zero, precisionKey = "precision"
            case exchangeKey = "exchange"
        }

        public init() {}
        /// Keys a checkpoint's spec lacks (written by a build that predates them) take their
        /// defaults, so `cortado compress` still reads older checkpoints.
        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            overlap = try c.decodeIfPresent(OverlapMode.self, forKey: .overlap) ?? overlap
            bucketKiB = try c.decodeIfPresent(Int.self, forKey: .bucketKiB) ?? bucketKiB
            blockRows = try c.decodeIfPresent(Int.self, forKey: .blockRows) ?? blockRows
            zero = try c.decodeIfPresent(Bool.self, forKey: .zero) ?? zero
            precision = try c.decodeIfPresent(ExchangePrecision.self, forKey: .precisionKey) ?? precision
            exchange = try c.decodeIfPresent(ExchangeTransport.self, forKey: .exchangeKey) ?? exchange
        }
    }
    public var distributed = Distributed()

    /// The recommender's architecture as the spec gives it; table sizes come from the data.
    ///
    ///     model:
    ///       type: recommender
    ///       user_column: c0          # default: the data's first id column
    ///       item_column: c1          # default: the second
    ///       embedding_dim: 32
    ///       dot: true                # ⟨user, item⟩ term
    ///       bias: true               # global, user and item biases
    ///       mlp: [{type: dense, units: 64}, {type: relu}, {type: dense, units: 1}]
    ///       loss: mse                # mse (ratings) | bce (implicit, with sampled negatives)
    ///       negatives: 4
    ///       exclude_seen: true       # negatives avoid the user's training items
    ///       l2: 0.05                 # per-row L2 on the embedding rows a batch scores (RowL2)
    ///       l2_bias: 0               # the same for the user and item biases (0: exempt)
    ///       time_bias: none          # none | user_drift: (a + a_u)·dev_u(t) (TimeBias; mse)
    ///       time_column: c3          # numeric column with each rating's Unix time (seconds)
    ///       drift_beta: 0.4          # dev_u(t) = sign(t − t_u)·|t − t_u|^β, t in days
    ///       l2_drift: 0              # per-row L2 on the user drift a_u
    ///       user_day_bias: false     # + b_{u,day}: one bias per (user, UTC day) seen in training
    ///       l2_user_day: 0           # per-row L2 on b_{u,day}
    ///       exchange: auto           # embedding gradients: auto | dense | sparse
    public struct RecommenderOptions: Codable, Equatable {
        /// Table sizes are 0 and empty column names mean "the data's first / second id
        /// column" until `recommenderSpec(manifest:)` resolves them against the data.
        public var architecture = RecommenderSpec(userColumn: "", itemColumn: "", users: 0, items: 0, dim: 32)
        public var exchange = EmbeddingExchange.auto
        /// bce: draw each training negative from the items the user has no training
        /// interaction with (nil: true; false: uniformly from the catalogue, as the NCF paper).
        public var excludeSeen: Bool?
        /// Per-row L2 of the embedding rows and of the id biases each scored row looks up
        /// (`RowL2`; nil: 0, and not stored, so specs without them keep their canonical JSON).
        public var l2: Double?, l2Bias: Double?, l2Drift: Double?, l2UserDay: Double?
        enum CodingKeys: String, CodingKey {
            case architecture, exchange, excludeSeen = "exclude_seen", l2, l2Bias = "l2_bias", l2Drift = "l2_drift"
            case l2UserDay = "l2_user_day"
        }
        public var rowL2: RowL2 {
            RowL2(embeddings: l2 ?? 0, biases: l2Bias ?? 0, drift: l2Drift ?? 0, userDay: l2UserDay ?? 0)
        }
    }

    /// Gradual magnitude pruning during training: sparsity rises from 0 at `startStep` to
    /// `sparsity` at `endStep` (Zhu & Gupta's cubic schedule; 0 = two thirds of the run), the
    /// mask recomputed every `everySteps` and applied after every optimizer step.
    public struct Pruning: Codable, Equatable {
        public var sparsity = 0.9
        public var scope = PruningScope.global
        public var startStep = 0
        public var endStep = 0
        public var everySteps = 50
        enum CodingKeys: String, CodingKey {
            case sparsity, scope, startStep = "start_step", endStep = "end_step", everySteps = "every_steps"
        }
    }
    public var pruning: Pruning?

    /// Knowledge distillation: train on a teacher model's softened outputs as well as the labels
    /// (Hinton et al. 2015; the loss is `DistillationLoss`):
    ///
    ///     ℓ = (1 − alpha)·CE(softmax(z), y) + alpha·T²·KL(softmax(t/T) ‖ softmax(z/T))
    ///
    /// `model` is any classifier `.cmodel` (fp32, fp16, bf16 or int8 storage), its path
    /// relative to the working directory like `data`. Every rank runs the teacher on its own
    /// training rows with the inference runtime, so distillation adds no communication.
    public struct Teacher: Codable, Equatable {
        public var model: String
        public var temperature = 4.0
        public var alpha = 0.7
        /// Whether each rank computes the teacher's logits for all its training rows once,
        /// before step 0 (rows × classes floats), instead of on every batch; nil is the default,
        /// true. The soft targets agree with the per-batch teacher's bit for bit (int8 teachers)
        /// or to float rounding (fp32; see `TeacherLogits`); false saves that memory (many
        /// classes) at the cost of a teacher forward pass per step.
        public var cache: Bool?
        /// SHA-256 of the teacher file, filled in by the trainer before step 0 (not a spec key).
        /// Being part of the resolved spec, it makes the ranks agree on the teacher's bytes,
        /// goes into job.json, checkpoints and model metadata, and lets a resume refuse a
        /// different teacher.
        public var sha256: String?

        public init(model: String) { self.model = model }
    }
    public var teacher: Teacher?

    /// How training batches reach the step (`BatchLoader`). `prefetch` assembles the next
    /// batch on a loader thread while the current step computes (the same rows in the same
    /// order as without it, bit for bit). `chunkRows` > 0 keeps only two chunks of that many
    /// rows of the rank's share in memory, read ahead from the shards (for shares larger than
    /// memory); the data order is then chunk-wise (`ChunkedRows`), so it is part of the run
    /// like the seed. Validation and test rows stay in memory either way.
    public struct Loader: Codable, Equatable {
        public var prefetch = true
        public var chunkRows = 0
        enum CodingKeys: String, CodingKey { case prefetch, chunkRows = "chunk_rows" }
    }
    /// nil when the spec has no `loader:` section (the defaults; keeps older specs' hashes).
    public var loader: Loader?
    /// `tensorboard: false` stops rank 0 writing RUN_DIR/tb/events.out.tfevents.* (the
    /// scalars of metrics.jsonl, for TensorBoard). Stored only when false (nil: on), so the
    /// canonical JSON and hash of specs without the key are what they were.
    public var tensorboard: Bool?
    /// Whether rank 0 writes TensorBoard event files.
    public var writesTensorBoard: Bool { tensorboard != false }

    public struct EarlyStopping: Codable, Equatable {
        public var metric = "val_accuracy" // val_accuracy (higher is better) | val_loss (lower)
        public var patience = 3
        /// Compare the mean of the last `smooth` epochs' values instead of the last one (nil or
        /// 1: no smoothing). A validation hit rate over 943 users moves by ±0.01 from one epoch
        /// to the next by chance alone; stopping and the kept parameters follow that noise.
        public var smooth: Int?
    }

    /// `optimizer:`. The keys here are those every optimizer shares plus SGD's and Adam's
    /// (momentum, nesterov, beta1, beta2, eps): job.json and checkpoints have always held all
    /// of them, whatever the type, so they stay stored fields to keep that JSON and its hash.
    /// Which optimizer reads, checks and uses which key is its `OptimizerRule`'s business
    /// (Optimizers/); keys of optimizers added later live in `extra`.
    public struct OptimizerSpec: Codable, Equatable {
        /// An `OptimizerRegistry` name; `Optimizer` works on the parsed rule.
        public var type = "sgd"
        public var learningRate = 0.05
        public var momentum = 0.9
        public var weightDecay = 0.0
        /// A `LearningRateSchedule` raw value; `Optimizer` works on the parsed enum.
        public var schedule = LearningRateSchedule.constant.rawValue
        public var warmupSteps = 0
        public var nesterov = false
        public var beta1 = 0.9, beta2 = 0.999, eps = 1e-8
        public var decaySteps = 1000 // step schedule: multiply by gamma every decay_steps
        public var gamma = 0.1
        public var clipNorm = 0.0 // clip the global gradient norm (0 = off)
        /// Numeric keys of newer optimizers (RMSprop's `alpha`) as the spec gave them; encoded
        /// beside the keys above, and only those set, so older specs keep their canonical JSON.
        public var extra: [String: Double] = [:]

        public init() {}

        enum CodingKeys: String, CodingKey, CaseIterable {
            case type, learningRate = "learning_rate", momentum, weightDecay = "weight_decay", schedule, warmupSteps =
                "warmup_steps"
            case nesterov, beta1, beta2, eps, decaySteps = "decay_steps", gamma, clipNorm = "clip_norm"
        }

        /// Any key name, for `extra`.
        struct ExtraKey: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(_ s: String) { stringValue = s }
            init?(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            type = try c.decode(String.self, forKey: .type)
            learningRate = try c.decode(Double.self, forKey: .learningRate)
            momentum = try c.decode(Double.self, forKey: .momentum)
            weightDecay = try c.decode(Double.self, forKey: .weightDecay)
            schedule = try c.decode(String.self, forKey: .schedule)
            warmupSteps = try c.decode(Int.self, forKey: .warmupSteps)
            nesterov = try c.decode(Bool.self, forKey: .nesterov)
            beta1 = try c.decode(Double.self, forKey: .beta1)
            beta2 = try c.decode(Double.self, forKey: .beta2)
            eps = try c.decode(Double.self, forKey: .eps)
            decaySteps = try c.decode(Int.self, forKey: .decaySteps)
            gamma = try c.decode(Double.self, forKey: .gamma)
            clipNorm = try c.decode(Double.self, forKey: .clipNorm)
            let all = try decoder.container(keyedBy: ExtraKey.self)
            for k in all.allKeys where CodingKeys(rawValue: k.stringValue) == nil {
                extra[k.stringValue] = try all.decode(Double.self, forKey: k)
            }
        }

        public func encode(to encoder: Encoder) throws {
            // One container for both kinds of key (stableJSON sorts them anyway).
            var c = encoder.container(keyedBy: ExtraKey.self)
            func put<T: Encodable>(_ k: CodingKeys, _ v: T) throws { try c.encode(v, forKey: ExtraKey(k.rawValue)) }
            try put(.type, type); try put(.learningRate, learningRate); try put(.momentum, momentum)
            try put(.weightDecay, weightDecay); try put(.schedule, schedule); try put(.warmupSteps, warmupSteps)
            try put(.nesterov, nesterov); try put(.beta1, beta1); try put(.beta2, beta2); try put(.eps, eps)
            try put(.decaySteps, decaySteps); try put(.gamma, gamma); try put(.clipNorm, clipNorm)
            for (k, v) in extra where CodingKeys(rawValue: k) == nil { try c.encode(v, forKey: ExtraKey(k)) }
        }

        /// Reads the `optimizer:` section: the shared keys here, then every registered
        /// optimizer's own keys. Keys of another optimizer than `type` are read too (and kept,
        /// unused), as before the registry: `--set optimizer.type=adam` over a file written
        /// for SGD, with its momentum, keeps working.
        init(reading o: ConfigReader) throws {
            type = try o.string("type") ?? type
            _ = try OptimizerRegistry.parse(type, key: o.path + ".type")
            learningRate = try o.double("learning_rate") ?? learningRate
            weightDecay = try o.double("weight_decay") ?? weightDecay
            schedule = try o.string("schedule") ?? schedule
            _ = try LearningRateSchedule.parse(schedule, key: o.path + ".schedule")
            warmupSteps = try o.int("warmup_steps") ?? warmupSteps
            decaySteps = try o.int("decay_steps") ?? decaySteps
            gamma = try o.double("gamma") ?? gamma
            clipNorm = try o.double("clip_norm") ?? clipNorm
            for rule in OptimizerRegistry.rules { try rule.read(o, into: &self) }
            try o.finish()
        }

        /// The shared keys' checks, then every registered optimizer's on its own keys (each
        /// key is checked by its owner whatever the type, as before the registry).
        public func validate(path: String = "optimizer") throws {
            _ = try OptimizerRegistry.parse(type, key: path + ".type")
            _ = try LearningRateSchedule.parse(schedule, key: path + ".schedule")
            try check(decaySteps > 0 && gamma > 0, path, "decay_steps/gamma", "must be positive")
            try check(clipNorm >= 0, path, "clip_norm", "must be 0 (off) or positive")
            try check(learningRate > 0, path, "learning_rate", "must be positive, got \(learningRate)")
            try check(weightDecay >= 0, path, "weight_decay", "must be non-negative, got \(weightDecay)")
            try check(warmupSteps >= 0, path, "warmup_steps", "must be non-negative")
            for rule in OptimizerRegistry.rules { try rule.validate(self, path: path) }
        }
    }

    enum CodingKeys: String, CodingKey {
        case version, data, layers, loss, labelSmoothing = "label_smoothing", earlyStopping = "early_stopping",
            optimizer, pruning
        case initFrom = "init_from", initExclude = "init_exclude", freeze, batchSize = "batch_size", dataPartitions =
            "data_partitions", accumulateStepsKey = "accumulate_steps", epochs, seed
        case checkpointEvery = "checkpoint_every_steps", checkpointKeep = "checkpoint_keep", runDir = "run_dir"
        case threads, emit, verifyChecksums = "verify_checksums", recommender, text
        case watchdogSeconds = "watchdog_seconds", nonFinite = "non_finite", teacher, distributed, loader
        case tensorboard
    }

    /// Reads a job spec file, applies `--set` overrides in order, and validates every field.
    public static func load(path: String, overrides: [String] = []) throws -> JobSpec {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw CortadoError.usage("\(path): cannot read job spec")
        }
        var tree = try ConfigNode.parse(text, origin: path)
        for o in overrides { try tree.set(o) }
        return try JobSpec(tree: tree)
    }

    public init(tree: ConfigNode) throws {
        let r = try ConfigReader(tree, path: "")
        version = try r.int("version") ?? JobSpec.currentVersion
        guard version == JobSpec.currentVersion else {
            throw CortadoError.usage(
                "version: job spec version \(version) is not supported (this build reads \(JobSpec.currentVersion))")
        }
        data = try r.required("data", r.string)
        try readModel(try r.required("model", r.child))
        if let o = try r.child("optimizer") { optimizer = try OptimizerSpec(reading: o) }
        pruning = try r.child("pruning").map(Pruning.init(reading:))
        earlyStopping = try r.child("early_stopping").map(EarlyStopping.init(reading:))
        teacher = try r.child("teacher").map(Teacher.init(reading:))
        if let d = try r.child("distributed") { distributed = try Distributed(reading: d) }
        loader = try r.child("loader").map(Loader.init(reading:))
        try readRun(r)
        try r.finish()
        try validate()
    }

    /// `model:` — the family, its architecture and loss.
    private mutating func readModel(_ model: ConfigReader) throws {
        switch try model.choice("type") ?? ModelFamily.feedforward {
        case .feedforward:
            layers = try Self.parseLayers(try model.required("layers", model.list), path: "model.layers")
            loss = try model.string("loss") ?? loss
        case .recommender:
            layers = []
            recommender = try RecommenderOptions(reading: model)
        case .text:
            layers = []
            text = try TextOptions(reading: model)
        }
        labelSmoothing = try model.double("label_smoothing") ?? labelSmoothing
        try model.finish()
    }

    /// The run's top-level keys: data order, length, checkpoints, folders, threads, emit.
    private mutating func readRun(_ r: ConfigReader) throws {
        initFrom = try r.string("init_from")
        func intList(_ key: String) throws -> [Int] {
            try (try r.list(key) ?? []).enumerated().map { i, n in
                guard case .scalar(let s) = n, let v = Int(s) else {
                    throw CortadoError.usage("\(key).\(i): expected a layer index")
                }
                return v
            }
        }
        initExclude = try intList("init_exclude")
        freeze = try intList("freeze")
        batchSize = try r.int("batch_size") ?? batchSize
        dataPartitions = try r.int("data_partitions")
        accumulateSteps = try r.int("accumulate_steps") ?? 1
        epochs = try r.int("epochs") ?? epochs
        if let s = try r.int("seed") {
            guard s >= 0 else { throw CortadoError.usage("seed: must be non-negative, got \(s)") }
            seed = UInt64(s)
        }
        if let c = try r.child("checkpoint") {
            checkpointEvery = try c.int("every_steps") ?? checkpointEvery
            checkpointKeep = try c.int("keep") ?? checkpointKeep
            try c.finish()
        }
        runDir = try r.string("run_dir") ?? runDir
        threads = try r.int("threads")
        if let e = try r.list("emit") {
            emit = try e.enumerated().map { i, n in
                guard case .scalar(let s) = n else { throw CortadoError.usage("emit.\(i): expected a string") }
                return s
            }
        }
        verifyChecksums = try r.bool("verify_checksums") ?? verifyChecksums
        watchdogSeconds = try r.double("watchdog_seconds") ?? watchdogSeconds
        nonFinite = try r.choice("non_finite") ?? nonFinite
        if let tb = try r.bool("tensorboard") { tensorboard = tb ? nil : false }
    }

    /// The recommender's architecture resolved against its data: id columns by name (or the
    /// first two), table sizes from their vocabularies (+1 for the unknown id 0); validated.
    public func recommenderSpec(manifest: DatasetManifest) throws -> RecommenderSpec {
        guard var s = recommender?.architecture else { throw CortadoError.usage("model.type: not a recommender") }
        let ids = manifest.categoricalColumns ?? []
        func resolve(_ name: String, fallback: Int, key: String) throws -> String {
            if !name.isEmpty {
                guard ids.contains(name) else {
                    throw CortadoError.usage(
                        "model.\(key): '\(name)' is not an id column of \(data) (id columns: \(ids.joined(separator: ", ")))"
                    )
                }
                return name
            }
            guard fallback < ids.count else {
                throw CortadoError.usage(
                    "model.\(key): \(data) has \(ids.count) id columns (encoding: ids); a recommender needs a user and an item column"
                )
            }
            return ids[fallback]
        }
        s.userColumn = try resolve(s.userColumn, fallback: 0, key: "user_column")
        s.itemColumn = try resolve(s.itemColumn, fallback: 1, key: "item_column")
        func rows(_ c: String) -> Int { (manifest.columns?.first { $0.name == c }?.vocabulary?.count ?? 0) + 1 }
        s.users = rows(s.userColumn)
        s.items = rows(s.itemColumn)
        if var t = s.time {
            t.feature = try timeFeature(t.column, manifest: manifest)
            s.time = t
        }
        try s.validate()
        if s.loss == "mse" && manifest.task != "regression" {
            throw CortadoError.usage(
                "model.loss: mse needs ratings (a regression label); \(data) is \(manifest.task) — use loss: bce")
        }
        return s
    }

    /// The position in `/features` of `model.time_column`: a numeric feature column one wide.
    func timeFeature(_ name: String, manifest: DatasetManifest) throws -> Int {
        let numeric = (manifest.columns ?? []).filter { $0.role == "feature" && $0.schema.type == .numeric }
        guard let c = numeric.first(where: { $0.name == name }), let offset = c.offset, c.width ?? 1 == 1 else {
            throw CortadoError.usage(
                "model.time_column: '\(name)' is not a numeric feature column of \(data) (numeric columns: \(numeric.map(\.name).joined(separator: ", ")); prepare the time column with type: numeric, transform: none)"
            )
        }
        guard c.schema.transform == "none" else {
            throw CortadoError.usage(
                "model.time_column: '\(name)' of \(data) is prepared with transform: \(c.schema.transform); the time needs transform: none (Unix seconds)"
            )
        }
        return offset
    }

    /// Parses a layer list (`model.layers`, a recommender's `model.mlp`), naming `path.N` in errors.
    static func parseLayers(_ nodes: [ConfigNode], path: String) throws -> [LayerSpec] {
        try nodes.enumerated().map { i, n in
            let l = try ConfigReader(n, path: "\(path).\(i)")
            let layer = try LayerSpec.parse(l)
            try l.finish()
            return layer
        }
    }

    /// Cross-field checks, each naming its key.
    public func validate() throws {
        func check(_ ok: Bool, _ key: String, _ why: String) throws {
            if !ok { throw CortadoError.usage("\(key): \(why)") }
        }
        try check(batchSize > 0, "batch_size", "must be positive, got \(batchSize)")
        try check(dataPartitions.map { $0 > 0 } ?? true, "data_partitions", "must be positive")
        try check(
            (1...4096).contains(accumulateSteps), "accumulate_steps", "must be in 1...4096, got \(accumulateSteps)")
        try check(
            accumulateSteps == 1 || family == .feedforward, "accumulate_steps",
            "is supported for feed-forward models only (model.type: recommender sums sparse embedding rows per step)")
        try check(epochs > 0, "epochs", "must be positive, got \(epochs)")
        try check(
            checkpointEvery >= 0, "checkpoint.every_steps", "must be 0 (end only) or positive, got \(checkpointEvery)")
        try check(checkpointKeep >= 1, "checkpoint.keep", "must be at least 1, got \(checkpointKeep)")
        try optimizer.validate()
        try check(threads.map { $0 > 0 } ?? true, "threads", "must be positive")
        try check(watchdogSeconds >= 0, "watchdog_seconds", "must be 0 (off) or positive, got \(watchdogSeconds)")
        try check(labelSmoothing >= 0 && labelSmoothing < 1, "model.label_smoothing", "must be in [0, 1)")
        for (key, v) in [
            ("model.l2", recommender?.l2), ("model.l2_bias", recommender?.l2Bias),
            ("model.l2_drift", recommender?.l2Drift), ("model.l2_user_day", recommender?.l2UserDay)
        ] {
            if let v { try check(v >= 0 && v.isFinite, key, "must be 0 (off) or positive, got \(v)") }
        }
        for (key, list) in [("freeze", freeze), ("init_exclude", initExclude)] {
            if let bad = list.first(where: { $0 < 0 || $0 >= layers.count }) {
                try check(false, key, "layer \(bad) does not exist (the model has \(layers.count) layers)")
            }
        }
        if let p = pruning {
            try check(p.sparsity > 0 && p.sparsity < 1, "pruning.sparsity", "must be in (0, 1), got \(p.sparsity)")
            try check(
                p.startStep >= 0 && p.endStep >= 0 && (p.endStep == 0 || p.endStep > p.startStep),
                "pruning.start_step/end_step", "need 0 ≤ start < end (end 0: two thirds of the run)")
            try check(p.everySteps >= 1, "pruning.every_steps", "must be at least 1")
        }
        if let es = earlyStopping {
            let metrics = family.earlyStoppingMetrics
            try check(
                metrics.contains(es.metric), "early_stopping.metric",
                "'\(es.metric)' is not one of \(metrics.joined(separator: ", "))")
            try check(es.patience >= 1, "early_stopping.patience", "must be at least 1")
            try check((es.smooth ?? 1) >= 1, "early_stopping.smooth", "must be at least 1 (epochs averaged)")
        }
        if let t = teacher {
            try check(
                family.distills, "teacher",
                "distillation trains classifiers (soft targets over classes), not model.type \(family)")
            try check(!t.model.isEmpty, "teacher.model", "empty path (give a classifier .cmodel)")
            try check(t.temperature > 0, "teacher.temperature", "must be positive, got \(t.temperature)")
            try check(
                t.alpha >= 0 && t.alpha <= 1, "teacher.alpha",
                "must be in [0, 1] (the soft loss's weight), got \(t.alpha)")
        }
        try check(
            distributed.bucketKiB >= 4, "distributed.bucket_kib", "must be at least 4, got \(distributed.bucketKiB)")
        try check(
            distributed.blockRows >= 0, "distributed.block_rows",
            "must be 0 (whole tensors) or positive, got \(distributed.blockRows)")
        try check(
            !distributed.zero || family.shardsOptimizerState, "distributed.zero",
            "ZeRO-1 shards the dense exchange of feed-forward models; a \(family) exchanges sparse rows")
        if distributed.precision != .fp32 {
            let p = distributed.precision
            try check(
                family.shardsOptimizerState, "distributed.precision",
                "\(p) applies to the dense exchange of feed-forward models; a \(family) exchanges sparse rows")
            try check(
                distributed.overlap == .off, "distributed.precision",
                "\(p) gradients are exchanged after backward; set distributed.overlap: off (got \(distributed.overlap))"
            )
        }
        if distributed.exchange == .shm {
            try check(
                family.shardsOptimizerState, "distributed.exchange",
                "shm sums the dense exchange of feed-forward models; a \(family) exchanges sparse rows")
            try check(
                distributed.overlap == .off, "distributed.exchange",
                "shm sums the whole arena after backward; set distributed.overlap: off (got \(distributed.overlap))")
            try check(
                distributed.precision == .fp32, "distributed.exchange",
                "shm sums fp32 in place (nothing travels to halve); set distributed.precision: fp32 (got \(distributed.precision))"
            )
        }
        if let l = loader, l.chunkRows != 0 {
            try check(
                l.chunkRows > 0, "loader.chunk_rows",
                "must be 0 (whole share in memory) or positive, got \(l.chunkRows)")
            try check(family.loadsInChunks, "loader.chunk_rows", "a \(family) keeps its rows in memory (set 0)")
            try check(
                teacher == nil || teacher?.cache == false, "loader.chunk_rows",
                "a cached teacher holds logits for every training row; set teacher.cache: false with chunked loading")
        }
        for (i, e) in emit.enumerated() {
            let recipe: Recipe
            do { recipe = try Recipe(e) } catch let err as CortadoError {
                try check(false, "emit.\(i)", err.message); continue
            }
            try check(
                family.calibratesActivations || recipe.calibrationPercentile == nil, "emit.\(i)",
                "'\(e)': static int8 calibrates classifier activations; a recommender emits int8")
        }
    }

    /// The model architecture, with the input shape taken from the data's manifest.
    public func modelSpec(inputShape: [Int]) -> ModelSpec {
        ModelSpec(inputShape: inputShape, layers: layers, loss: loss)
    }

    /// Canonical JSON of the resolved spec: stored in checkpoints and hashed for the ranks'
    /// pre-flight agreement.
    public var canonicalJSON: String {
        String(decoding: (try? stableJSON(self, pretty: false)) ?? Data(), as: UTF8.self)
    }
}

/// `model.type`: a family of models, each with its own trainer task (CortadoTrain) and model
/// file section. What a family supports is declared here, once, for the spec's validation.
public enum ModelFamily: String, Codable, CaseIterable, CustomStringConvertible {
    /// Feed-forward classifiers and regressors over feature rows (`model.layers`).
    case feedforward
    /// Embedding recommenders over (user, item) id pairs (`RecommenderOptions`).
    case recommender
    /// Embedding-bag text classifiers over id lists (`TextOptions`).
    case text

    public var description: String { rawValue }
    /// Validation metrics `early_stopping.metric` can name.
    public var earlyStoppingMetrics: [String] {
        switch self {
        case .feedforward: ["val_accuracy", "val_loss"]
        case .recommender: ["val_rmse", "val_loss", "val_hr@10", "val_ndcg@10"]
        case .text: ["val_accuracy", "val_loss"]
        }
    }
    /// Whether a `teacher:` can distill into it (soft targets over classes).
    public var distills: Bool { self == .feedforward }
    /// Whether ZeRO-1 can shard its optimizer state (a dense gradient exchange).
    public var shardsOptimizerState: Bool { self == .feedforward }
    /// Whether its training rows can be read in chunks (`loader.chunk_rows`).
    public var loadsInChunks: Bool { self == .feedforward }
    /// Whether `int8-static` recipes can calibrate its activations.
    public var calibratesActivations: Bool { self == .feedforward }
}

/// `non_finite`: what a non-finite loss or gradient does — `stop` (exit 7 naming the rank,
/// keeping the last checkpoint) or `skip` (no update for that step, on every rank).
public enum NonFinitePolicy: String, Codable, CaseIterable { case stop, skip }

/// `distributed.overlap`: how the dense gradient exchange overlaps backward (`Distributed`).
public enum OverlapMode: String, Codable, CaseIterable { case off, test, thread }

/// `distributed.precision`: the format gradients travel in. `bf16` and `fp16` round each
/// rank's fp32 gradients to 16 bits (nearest, ties to even), send every slice to the rank that
/// owns it (an all-to-all), sum them there in fp32 in rank order, and allgather the sums
/// rounded to 16 bits again (with ZeRO-1 the owner updates from its fp32 sum instead): half the
/// bytes of fp32, and the same bits on every run. bf16 keeps fp32's range with 8 significant
/// bits; fp16 keeps 11 but flushes below 6e-8 and overflows above 65504.
public enum ExchangePrecision: String, Codable, CaseIterable { case fp32, bf16, fp16 }

/// `distributed.exchange`: how the dense gradient arena is summed. `mpi`: MPI's allreduce (or
/// reduce-scatter with ZeRO-1), whatever transport MPI picks. `shm`: the ranks of each host
/// share an MPI-3 window; each sums its slice of every rank's copy in rank order (the same
/// bits on every run), and hosts sum slices among the ranks with the same local rank.
public enum ExchangeTransport: String, Codable, CaseIterable { case mpi, shm }

/// `model.exchange` (recommenders): how embedding gradients travel — `auto` picks by the
/// measured crossover, `dense` sums whole tables, `sparse` exchanges touched rows.
public enum EmbeddingExchange: String, Codable, CaseIterable { case auto, dense, sparse }

/// `model.time_bias` (recommenders): none, or the time-aware user bias of `TimeBias`.
public enum TimeBiasOption: String, Codable, CaseIterable { case none, userDrift = "user_drift" }

// Each section reads its own keys, next to where they are declared above; errors name the
// key path (`ConfigReader`).
extension JobSpec.RecommenderOptions {
    init(reading model: ConfigReader) throws {
        var a = architecture
        a.userColumn = try model.string("user_column") ?? ""
        a.itemColumn = try model.string("item_column") ?? ""
        a.dim = try model.int("embedding_dim") ?? a.dim
        a.dot = try model.bool("dot") ?? a.dot
        a.bias = try model.bool("bias") ?? a.bias
        a.mlp = try JobSpec.parseLayers(try model.list("mlp") ?? [], path: "model.mlp")
        a.loss = try model.string("loss") ?? a.loss
        a.negatives = try model.int("negatives") ?? a.negatives
        a.initStd = try model.double("init_std") ?? a.initStd
        let column = try model.string("time_column"), beta = try model.double("drift_beta")
        let userDay = try model.bool("user_day_bias") ?? false
        switch try model.choice("time_bias") ?? TimeBiasOption.none {
        case .none:
            if column != nil || beta != nil || userDay {
                let key = column != nil ? "time_column" : beta != nil ? "drift_beta" : "user_day_bias"
                throw CortadoError.usage("model.\(key): needs time_bias: user_drift")
            }
        case .userDrift:
            guard let column else {
                throw CortadoError.usage(
                    "model.time_column: time_bias: user_drift needs the numeric column with each rating's Unix time")
            }
            a.time = TimeBias(column: column, beta: beta ?? 0.4)
            if userDay { a.time!.userDays = 0 } // counted from the training split
            try a.time!.validate(bias: a.bias)
            guard a.loss == "mse" else {
                throw CortadoError.usage("model.time_bias: user_drift is for ratings (loss: mse), got loss: \(a.loss)")
            }
        }
        architecture = a
        exchange = try model.choice("exchange") ?? exchange
        excludeSeen = try model.bool("exclude_seen")
        l2 = try model.double("l2")
        l2Bias = try model.double("l2_bias")
        l2Drift = try model.double("l2_drift")
        if l2Drift != nil && a.time == nil { throw CortadoError.usage("model.l2_drift: needs time_bias: user_drift") }
        l2UserDay = try model.double("l2_user_day")
        if l2UserDay != nil && a.time?.userDays == nil {
            throw CortadoError.usage("model.l2_user_day: needs user_day_bias: true")
        }
    }
}

extension JobSpec.TextOptions {
    init(reading model: ConfigReader) throws {
        dim = try model.int("embedding_dim") ?? dim
        guard dim > 0 else { throw CortadoError.usage("model.embedding_dim: must be positive, got \(dim)") }
        hidden = try JobSpec.parseLayers(try model.list("layers") ?? [], path: "model.layers")
        initScale = try model.double("init_scale") ?? initScale
        guard initScale > 0 else { throw CortadoError.usage("model.init_scale: must be positive") }
        exchange = try model.choice("exchange") ?? exchange
    }
}

extension JobSpec.Pruning {
    init(reading c: ConfigReader) throws {
        sparsity = try c.double("sparsity") ?? sparsity
        scope = try c.choice("scope") ?? scope
        startStep = try c.int("start_step") ?? startStep
        endStep = try c.int("end_step") ?? endStep
        everySteps = try c.int("every_steps") ?? everySteps
        try c.finish()
    }
}

extension JobSpec.EarlyStopping {
    init(reading e: ConfigReader) throws {
        metric = try e.string("metric") ?? metric
        patience = try e.int("patience") ?? patience
        smooth = try e.int("smooth")
        try e.finish()
    }
}

extension JobSpec.Teacher {
    init(reading t: ConfigReader) throws {
        self.init(model: try t.required("model", t.string))
        temperature = try t.double("temperature") ?? temperature
        alpha = try t.double("alpha") ?? alpha
        cache = try t.bool("cache")
        try t.finish()
    }
}

extension JobSpec.Distributed {
    init(reading d: ConfigReader) throws {
        self.init()
        overlap = try d.choice("overlap") ?? overlap
        bucketKiB = try d.int("bucket_kib") ?? bucketKiB
        blockRows = try d.int("block_rows") ?? blockRows
        zero = try d.bool("zero") ?? zero
        precision = try d.choice("precision") ?? precision
        exchange = try d.choice("exchange") ?? exchange
        try d.finish()
    }
}

extension JobSpec.Loader {
    init(reading l: ConfigReader) throws {
        prefetch = try l.bool("prefetch") ?? prefetch
        chunkRows = try l.int("chunk_rows") ?? chunkRows
        try l.finish()
    }
}
