import CortadoCore

/// A recommender over (user id, item id) pairs, as written under `model:` with
/// `type: recommender`: matrix factorization and neural collaborative filtering in one form.
///
///     score(u, i) = b + b_u + b_i            (bias: true)
///                 + ⟨U[u], V[i]⟩             (dot: true — two-tower / MF / GMF term)
///                 + MLP([U[u]; V[i]])        (mlp: layers on the concatenation, ending in 1 unit)
///                 + (a + a_u) · dev_u(t)     (time_bias: user_drift — `TimeBias`)
///                 + b_{u,day(t)}             (user_day_bias: true — `TimeBias.userDays`)
///
/// Explicit ratings train with `mse` on the score; implicit feedback with `bce` on the score as
/// a logit, each positive paired with `negatives` sampled items (`NegativeSampler`: by default
/// none of the user's training items).
/// Ids come from the data's `encoding: ids` columns: 0 is the unknown id, so tables have
/// vocabulary + 1 rows. Training may add a per-row L2 penalty (`RowL2`), which is not part of
/// the spec (a model file does not need it).
public struct RecommenderSpec: Codable, Equatable {
    public var userColumn: String
    public var itemColumn: String
    public var users: Int
    public var items: Int
    public var dim: Int
    public var dot = true
    public var bias = true
    public var mlp: [LayerSpec] = []
    public var loss = "mse"
    public var negatives = 4
    public var initStd = 0.05
    /// Time-aware biases (nil: none). Optional, so files and specs without them keep their
    /// canonical JSON.
    public var time: TimeBias?

    enum CodingKeys: String, CodingKey {
        case userColumn = "user_column", itemColumn = "item_column", users, items, dim, dot, bias, mlp, loss, negatives
        case initStd = "init_std", time
    }

    public init(userColumn: String, itemColumn: String, users: Int, items: Int, dim: Int) {
        self.userColumn = userColumn; self.itemColumn = itemColumn
        self.users = users; self.items = items; self.dim = dim
    }

    /// The MLP tower as a feed-forward model on the concatenated embeddings (2·dim inputs).
    public var tower: ModelSpec { ModelSpec(inputShape: [2 * dim], layers: mlp, loss: loss) }

    /// Rows scored per positive in training: the positive and its sampled negatives.
    public var rowsPerExample: Int { loss == "bce" ? 1 + negatives : 1 }

    public func validate() throws {
        func check(_ ok: Bool, _ key: String, _ why: String) throws {
            if !ok { throw CortadoError.usage("model.\(key): \(why)") }
        }
        try check(
            users > 1 && items > 1, "user_column/item_column",
            "the id columns need vocabularies (got \(users - 1) users, \(items - 1) items)")
        try check(dim > 0, "embedding_dim", "must be positive, got \(dim)")
        try check(
            ["mse", "bce"].contains(loss), "loss",
            "'\(loss)' is not one of mse (explicit ratings), bce (implicit feedback)")
        try check(loss == "mse" || negatives >= 1, "negatives", "bce needs at least 1 sampled negative per positive")
        try check(
            dot || bias || !mlp.isEmpty, "dot", "with no mlp and no biases the model needs dot: true")
        try check(initStd > 0, "init_std", "must be positive")
        if let time { try time.validate(bias: bias) }
        guard !mlp.isEmpty else { return }
        var shape = tower.inputShape
        for (i, l) in mlp.enumerated() {
            switch l.outputShape(shape) {
            case .success(let out): shape = out
            case .failure(let p): throw CortadoError.usage("model.mlp.\(i) (\(l)): input shape \(shape): \(p.why)")
            }
        }
        try check(shape == [1], "mlp.\(mlp.count - 1)", "the tower must end in 1 output (the score), got \(shape)")
    }

    /// Parameter table: the MLP tower ("mlp.layers.N.…") and the global bias first — the dense
    /// part, allreduced — then each embedding table followed by its id bias: the sparse part,
    /// whose rows a step touches only for the ids in its batch.
    public var parameterLayout: ParameterLayout {
        var tensors = tower.parameterLayout.tensors.map {
            TensorSpec(name: "mlp." + $0.name, shape: $0.shape, offset: $0.offset)
        }
        var offset = tower.parameterLayout.count
        func add(_ name: String, _ shape: [Int]) {
            tensors.append(TensorSpec(name: name, shape: shape, offset: offset))
            offset += shape.reduce(1, *)
        }
        add("global_bias", [1])
        if time != nil { add("global_drift", [1]) }
        add("user_embedding", [users, dim]); add("user_bias", [users])
        if time != nil { add("user_drift", [users]); add("user_mean_day", [users]) }
        add("item_embedding", [items, dim]); add("item_bias", [items])
        if let n = time?.userDays {
            // Row 0 stands for every (user, day) not seen in training: never trained, always 0.
            add("user_day_bias", [n + 1]); add("user_day_user", [n + 1]); add("user_day_day", [n + 1])
        }
        return ParameterLayout(tensors: tensors, count: offset)
    }

    /// Values before the first embedding table: the densely exchanged part of the arena.
    public var denseCount: Int { tower.parameterLayout.count + (time != nil ? 2 : 1) }

    /// Tensors that hold data, not trained parameters: the optimizer leaves them alone (not
    /// even weight decay) and every recipe stores them in fp32 (a mean rating day in fp16
    /// would be off by hours).
    /// The (user, UTC day) index of `user_day_bias` is data too (two fp32 columns: a user id
    /// or day number below 2^24 is exact in fp32, and fp16 would scramble it).
    public static let constantTensors: Set<String> = ["user_mean_day", "user_day_user", "user_day_day"]

    /// FLOPs per scored row, forward only (dot, biases, tower).
    public var forwardFLOPs: Double {
        Double(dot ? 2 * dim : 0) + 3 + (mlp.isEmpty ? 0 : tower.forwardFLOPsPerLayer.reduce(0, +))
    }
}

/// Time-aware user biases after Koren's timeSVD ("Collaborative filtering with temporal
/// dynamics", KDD 2009, eq. 7–8): a rating at time t (in days) adds
///
///     (a + a_u) · dev_u(t),   dev_u(t) = sign(t − t_u) · |t − t_u|^β
///
/// where t_u is user u's mean training rating day (a constant of the model: `user_mean_day`),
/// a a global drift and a_u the user's own (`user_drift`), both trained. It extrapolates to a
/// rating later than every training one (the leave-last-out test rating), which per-day biases
/// cannot. Rows carry their time as a numeric feature column holding Unix seconds
/// (`column`); the model works in days since `origin` (the training rows' mean day, set
/// from the data at training) so that Float keeps sub-minute resolution. Scoring without a
/// time (`cortado-infer` top-K for a user) uses dev = 0: the user's mean day, which shifts
/// every item of a user equally and leaves rankings unchanged.
///
/// Optionally (`userDays` set: `model.user_day_bias: true`) a per-(user, day) bias b_{u,day}
/// (Koren's b_{u,t}): one trained row per (user, UTC day of the Unix time) pair that has a
/// training rating, indexed by the constant tensors `user_day_user`/`user_day_day`; a pair not
/// seen in training scores with 0 (row 0). On MovieLens-100k's leave-last-out split most test
/// ratings fall on a day on which the user also rated training items.
public struct TimeBias: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, CaseIterable, Sendable { case userDrift = "user_drift" }
    public var kind = Kind.userDrift
    /// The numeric feature column with the rating's time in Unix seconds, and its position in
    /// `/features` (resolved against the data's manifest).
    public var column: String
    public var feature = 0
    /// β of dev_u (Koren: 0.4).
    public var beta = 0.4
    /// Day (Unix seconds / 86 400) that model time 0 stands for.
    public var origin = 0.0
    /// Number of (user, day) rows of the per-day bias (nil: no per-day bias; the job spec
    /// leaves it 0 until training counts the pairs). Optional, so files without it keep their
    /// canonical JSON.
    public var userDays: Int?
    public static let secondsPerDay = 86_400.0

    enum CodingKeys: String, CodingKey { case kind, column, feature, beta, origin, userDays = "user_days" }

    public init(column: String, beta: Double = 0.4) {
        self.column = column
        self.beta = beta
    }

    public func validate(bias: Bool) throws {
        guard bias else {
            throw CortadoError.usage("model.time_bias: \(kind.rawValue) is a bias term; it needs bias: true")
        }
        guard beta > 0 && beta <= 1 else {
            throw CortadoError.usage("model.drift_beta: must be in (0, 1], got \(beta)")
        }
        if let n = userDays, n < 0 {
            throw CortadoError.usage("model.user_day_bias: \(n) (user, day) rows, expected ≥ 0")
        }
        guard !column.isEmpty, feature >= 0 else {
            throw CortadoError.usage(
                "model.time_column: \(kind.rawValue) needs the numeric column with each rating's time")
        }
    }

    /// Model time (days since `origin`) of a Unix timestamp in seconds.
    @inlinable public func day(seconds: Double) -> Double { seconds / Self.secondsPerDay - origin }

    /// The UTC day number of a Unix timestamp in seconds (the per-day bias's day).
    @inlinable public static func utcDay(seconds: Double) -> Int { Int((seconds / secondsPerDay).rounded(.down)) }

    /// The per-day bias's dictionary key of (user, UTC day).
    @inlinable public static func userDayKey(user: Int32, day: Int) -> Int64 {
        Int64(user) << 32 | (Int64(day) & 0xFFFF_FFFF)
    }
}

/// Per-row L2 regularization of the embedding tables and id biases, as in SGD matrix
/// factorization (Koren, Bell & Volinsky, "Matrix factorization techniques for recommender
/// systems", 2009): every scored row (u, i) adds
///
///     embeddings·(‖U[u]‖² + ‖V[i]‖²) + biases·(b_u² + b_i²) + drift·a_u² + userDay·b_{u,day}²
///
/// to its loss, so only the rows a batch looks up are pulled toward 0, each as often as it is
/// scored — frequent users and items more than rare ones, where optimizer weight decay shrinks
/// every row (and the global bias and tower) at every step, seen or not. `biases: 0` leaves the
/// id biases free (they start at the fitted baseline for ratings). The global bias and the tower
/// are never penalized here (optimizer `weight_decay` covers the tower if wanted).
public struct RowL2: Equatable, Sendable {
    public var embeddings: Double
    public var biases: Double
    /// The same on each scored row's user drift a_u (`TimeBias`).
    public var drift: Double
    /// The same on each scored row's per-day bias b_{u,day} (`TimeBias.userDays`).
    public var userDay: Double
    public init(embeddings: Double = 0, biases: Double = 0, drift: Double = 0, userDay: Double = 0) {
        self.embeddings = embeddings
        self.biases = biases
        self.drift = drift
        self.userDay = userDay
    }
    public var isZero: Bool { embeddings == 0 && biases == 0 && drift == 0 && userDay == 0 }
}

/// The recommender's parameters, gradients and per-batch buffers: one parameter arena and one
/// gradient arena (the tower is a `Network` on views of their first part), buffers sized once
/// for `maxBatch` rows. `forward`/`backward` allocate nothing.
public final class Recommender<T: Real> {
    public let spec: RecommenderSpec
    public let layout: ParameterLayout
    public let maxBatch: Int
    public let params: Arena<T>
    /// Same layout as `params` plus `gradientExtras` trailing slots.
    public let grads: Arena<T>
    public let tower: Network<T>?
    /// Offsets of the tables in the arenas.
    public let globalBias: Int, userEmbedding: Int, userBias: Int, itemEmbedding: Int, itemBias: Int
    /// Offsets of the time terms (`TimeBias`; −1 without them): a, a_u, t_u.
    public let globalDrift: Int, userDrift: Int, userMeanDay: Int
    /// Offsets of the per-day bias and its (user, day) index columns (−1 without them).
    public let userDayBias: Int, userDayUser: Int, userDayDay: Int
    /// (user, UTC day) key → row of `user_day_bias`, built from the index columns by
    /// `indexUserDays` (empty until then: every row scores with 0).
    public private(set) var userDayIndex: [Int64: Int32] = [:]
    /// (maxBatch): each row's per-day bias row from the last `forward` (0: none), for backward.
    @usableFromInline let dayRows: UnsafeMutablePointer<Int32>
    /// (maxBatch, 2·dim): [U[u]; V[i]] per row, and its gradient.
    @usableFromInline let concat: Arena<T>, dConcat: Arena<T>, dDot: Arena<T>
    /// (maxBatch): scores, their gradient, the dot term.
    @usableFromInline let scores: Arena<T>, dScores: Arena<T>, dotTerm: Arena<T>
    /// (maxBatch): dev_u(t) of each row (0 without times), for the backward pass.
    @usableFromInline let deviation: Arena<T>
    /// Added to the training loss by `step` (none by default).
    public var l2 = RowL2()

    public init(spec: RecommenderSpec, maxBatch: Int, gradientExtras: Int = 0) {
        self.spec = spec
        layout = spec.parameterLayout
        self.maxBatch = maxBatch
        params = Arena(count: layout.count)
        grads = Arena(count: layout.count + gradientExtras)
        let towerCount = spec.tower.parameterLayout.count
        tower =
            spec.mlp.isEmpty
            ? nil
            : Network(
                spec: spec.tower, maxBatch: maxBatch,
                params: Arena(viewOf: params, offset: 0, count: towerCount),
                grads: Arena(viewOf: grads, offset: 0, count: towerCount))
        let layout = self.layout
        func offset(_ name: String) -> Int { layout.tensor(name)!.offset }
        globalBias = offset("global_bias")
        userEmbedding = offset("user_embedding"); userBias = offset("user_bias")
        itemEmbedding = offset("item_embedding"); itemBias = offset("item_bias")
        func optional(_ name: String) -> Int { layout.tensor(name)?.offset ?? -1 }
        globalDrift = optional("global_drift"); userDrift = optional("user_drift")
        userMeanDay = optional("user_mean_day")
        userDayBias = optional("user_day_bias"); userDayUser = optional("user_day_user")
        userDayDay = optional("user_day_day")
        dayRows = .allocate(capacity: maxBatch)
        dayRows.initialize(repeating: 0, count: maxBatch)
        deviation = Arena(count: maxBatch)
        let width = 2 * spec.dim
        concat = Arena(count: maxBatch * width); dConcat = Arena(count: maxBatch * width);
        dDot = Arena(count: maxBatch * width)
        scores = Arena(count: maxBatch); dScores = Arena(count: maxBatch); dotTerm = Arena(count: maxBatch)
    }

    deinit { dayRows.deallocate() }

    /// Rebuilds `userDayIndex` from the arena's index columns (after they are written or
    /// loaded). Row 0 is the unseen pair and is never indexed.
    public func indexUserDays() {
        guard let n = spec.time?.userDays else { return }
        let p = params.base
        var index = [Int64: Int32](minimumCapacity: n)
        for r in stride(from: 1, through: n, by: 1) {
            index[TimeBias.userDayKey(user: Int32(p[userDayUser + r]), day: Int(p[userDayDay + r]))] = Int32(r)
        }
        userDayIndex = index
    }

    /// The per-day bias row of `user` at Unix time `seconds`: 0 when the pair has no row
    /// (not seen in training, or no per-day bias). No allocation.
    @inlinable public func userDayRow(user: Int32, seconds: Double) -> Int32 {
        userDayIndex[TimeBias.userDayKey(user: user, day: TimeBias.utcDay(seconds: seconds))] ?? 0
    }

    /// Tower weights He-normal (as `Network`), embeddings normal(0, init_std), biases 0, the
    /// global bias `globalMean` (the training targets' mean for ratings) — from `seed` alone.
    public func initialize(seed: UInt64, globalMean: T = 0) {
        params.zero()
        tower?.initialize(seed: seed)
        var rng = SeededRNG(seed: seed, stream: 0xE3B)
        for t in [
            userEmbedding..<(userEmbedding + spec.users * spec.dim),
            itemEmbedding..<(itemEmbedding + spec.items * spec.dim)
        ] {
            for j in t { params.base[j] = T(rng.normal() * spec.initStd) }
        }
        params.base[globalBias] = globalMean
    }

    /// Scores `batch` (user, item) pairs at `days` (batch; model days, `TimeBias.day`; nil: each
    /// user's mean day, dev = 0); returns (batch) scores (logits for bce), valid until the next
    /// call. `days` is read only by a model with time terms; `userDays` (batch; `userDayRow`;
    /// nil: all 0) only by one with the per-day bias.
    @inlinable @discardableResult
    public func forward(
        users: UnsafePointer<Int32>, items: UnsafePointer<Int32>, days: UnsafePointer<T>? = nil,
        userDays: UnsafePointer<Int32>? = nil, batch: Int
    ) -> UnsafeMutablePointer<T> {
        precondition(batch <= maxBatch, "batch \(batch) exceeds maxBatch \(maxBatch)")
        let p = params.base, d = spec.dim, width = 2 * d, x = concat.base, s = scores.base
        embeddingForward(out: x, outStride: width, table: p + userEmbedding, ids: users, batch: batch, dim: d)
        embeddingForward(out: x + d, outStride: width, table: p + itemEmbedding, ids: items, batch: batch, dim: d)
        for r in 0..<batch { s[r] = p[globalBias] }
        if spec.bias {
            for r in 0..<batch { s[r] += p[userBias + Int(users[r])] + p[itemBias + Int(items[r])] }
        }
        if let time = spec.time { driftForward(users: users, days: days, batch: batch, beta: T(time.beta)) }
        if userDayBias >= 0 {
            if let userDays {
                dayRows.update(from: userDays, count: batch)
            } else {
                dayRows.update(repeating: 0, count: batch)
            }
            for r in 0..<batch where dayRows[r] != 0 { s[r] += p[userDayBias + Int(dayRows[r])] }
        }
        if spec.dot {
            dotForward(out: dotTerm.base, a: x, b: x + d, stride: width, batch: batch, dim: d)
            for r in 0..<batch { s[r] += dotTerm.base[r] }
        }
        if let tower {
            let o = tower.forward(x, batch: batch)
            for r in 0..<batch { s[r] += o[r] }
        }
        return s
    }

    /// Adds (a + a_u) · dev_u(t) to `scores` and keeps dev_u(t) (batch) for `backward`.
    @inlinable
    func driftForward(users: UnsafePointer<Int32>, days: UnsafePointer<T>?, batch: Int, beta: T) {
        let p = params.base, s = scores.base, dev = deviation.base
        guard let days else {
            deviation.buffer.update(repeating: 0)
            return
        }
        for r in 0..<batch {
            let u = Int(users[r]), x = days[r] - p[userMeanDay + u]
            dev[r] = x == 0 ? 0 : (x > 0 ? 1 : -1) * T.exp(beta * T.log(Swift.abs(x)))
            s[r] += (p[globalDrift] + p[userDrift + u]) * dev[r]
        }
    }

    /// Back-propagates `dScores` (batch) through the last `forward`; accumulates into `grads`
    /// (embedding rows only for the batch's ids). t_u (`user_mean_day`) gets no gradient.
    @inlinable
    public func backward(
        users: UnsafePointer<Int32>, items: UnsafePointer<Int32>, batch: Int, dScores ds: UnsafePointer<T>
    ) {
        let g = grads.base, d = spec.dim, width = 2 * d, x = concat.base, dx = dConcat.base
        for r in 0..<batch { g[globalBias] += ds[r] }
        if spec.bias {
            for r in 0..<batch { g[userBias + Int(users[r])] += ds[r]; g[itemBias + Int(items[r])] += ds[r] }
        }
        if spec.time != nil {
            let dev = deviation.base
            for r in 0..<batch {
                let gd = ds[r] * dev[r]
                g[globalDrift] += gd; g[userDrift + Int(users[r])] += gd
            }
        }
        if userDayBias >= 0 {
            // Row 0 (unseen pair) is never read and gets no gradient: it stays 0.
            for r in 0..<batch where dayRows[r] != 0 { g[userDayBias + Int(dayRows[r])] += ds[r] }
        }
        if let tower {
            tower.backward(x, batch: batch, dLogits: ds, dInput: dx)
        } else {
            dConcat.buffer.update(repeating: 0)
        }
        if spec.dot {
            dotBackward(dA: dDot.base, dB: dDot.base + d, dOut: ds, a: x, b: x + d, stride: width, batch: batch, dim: d)
            for j in 0..<(batch * width) { dx[j] += dDot.base[j] }
        }
        embeddingBackward(dTable: g + userEmbedding, dOut: dx, dOutStride: width, ids: users, batch: batch, dim: d)
        embeddingBackward(dTable: g + itemEmbedding, dOut: dx + d, dOutStride: width, ids: items, batch: batch, dim: d)
    }

    /// Forward, loss and (when `train`) backward for one batch of scored rows with their
    /// targets (ratings for mse, 1/0 for bce); gradients are of the mean loss over the rows.
    @inlinable
    public func step(
        users: UnsafePointer<Int32>, items: UnsafePointer<Int32>, days: UnsafePointer<T>? = nil,
        userDays: UnsafePointer<Int32>? = nil, targets: UnsafePointer<T>, batch: Int, train: Bool
    ) -> (lossSum: Double, correct: Int) {
        let s = forward(users: users, items: items, days: days, userDays: userDays, batch: batch)
        let dS: UnsafeMutablePointer<T>? = train ? dScores.base : nil
        let r =
            spec.loss == "bce"
            ? BinaryCrossEntropy.evaluate(
                logits: s, targets: targets, batch: batch, dLogits: dS, gradScale: 1 / T(batch))
            : MeanSquaredError.evaluate(
                predictions: s, targets: targets, batch: batch, dPredictions: dS, gradScale: 1 / T(batch))
        if train {
            backward(users: users, items: items, batch: batch, dScores: dScores.base)
            if !l2.isZero { l2Backward(users: users, items: items, batch: batch, scale: 1 / T(batch)) }
        }
        return r
    }

    /// The `l2` penalty of a batch, summed over its rows (Σ_r embeddings·(‖U[u_r]‖² + ‖V[i_r]‖²)
    /// + biases·(b_{u_r}² + b_{i_r}²) + drift·a_{u_r}² + userDay·b_{u_r,day_r}²); `step`'s `lossSum`
    /// leaves it out, so training and validation losses compare. The per-day rows are those of
    /// the last `forward`, which must have scored this batch.
    public func l2Penalty(users: UnsafePointer<Int32>, items: UnsafePointer<Int32>, batch: Int) -> Double {
        let p = params.base, d = spec.dim
        var e = 0.0, b = 0.0, a = 0.0, c = 0.0
        for r in 0..<batch {
            let u = Int(users[r]), i = Int(items[r])
            if spec.time != nil { a += Double(p[userDrift + u]) * Double(p[userDrift + u]) }
            if userDayBias >= 0 && dayRows[r] != 0 {
                let b = Double(p[userDayBias + Int(dayRows[r])])
                c += b * b
            }
            for j in 0..<d {
                let x = Double(p[userEmbedding + u * d + j]), y = Double(p[itemEmbedding + i * d + j])
                e += x * x + y * y
            }
            let bu = Double(p[userBias + u]), bi = Double(p[itemBias + i])
            b += bu * bu + bi * bi
        }
        return l2.embeddings * e + (spec.bias ? l2.biases * b : 0) + l2.drift * a + l2.userDay * c
    }

    /// Accumulates `scale` × the gradient of `l2Penalty` into `grads`: 2·embeddings·U[u] into
    /// dU[u] once per row that scores u (likewise items and biases). It touches only the rows
    /// the batch looks up, so the sparse exchange still carries every changed row.
    @inlinable
    public func l2Backward(users: UnsafePointer<Int32>, items: UnsafePointer<Int32>, batch: Int, scale: T) {
        let p = params.base, g = grads.base, d = spec.dim
        let ce = 2 * T(l2.embeddings) * scale, cb = 2 * T(l2.biases) * scale
        let ca = spec.time != nil ? 2 * T(l2.drift) * scale : 0
        let cd = userDayBias >= 0 ? 2 * T(l2.userDay) * scale : 0
        for r in 0..<batch {
            let u = Int(users[r]), i = Int(items[r])
            if ce != 0 {
                let pu = p + userEmbedding + u * d, gu = g + userEmbedding + u * d
                let pi = p + itemEmbedding + i * d, gi = g + itemEmbedding + i * d
                for j in 0..<d { gu[j] += ce * pu[j]; gi[j] += ce * pi[j] }
            }
            if cb != 0 && spec.bias {
                g[userBias + u] += cb * p[userBias + u]
                g[itemBias + i] += cb * p[itemBias + i]
            }
            if ca != 0 { g[userDrift + u] += ca * p[userDrift + u] }
            if cd != 0 && dayRows[r] != 0 { g[userDayBias + Int(dayRows[r])] += cd * p[userDayBias + Int(dayRows[r])] }
        }
    }
}
