import CortadoCore

/// A fastText-style text classifier (Joulin et al. 2016), as written under `model:` with
/// `type: text`: each document is the mean of its ids' embedding rows (words and hashed
/// n-grams), then a head of dense layers ending in one logit per class.
///
///     bag(d)    = 1/|d| · Σ_{i ∈ d} E[i]          E: (rows, dim); an empty document gives 0
///     logits(d) = head(bag(d))                   head: `layers` on (dim) inputs
public struct TextSpec: Codable, Equatable {
    /// Embedding rows: vocabulary words, then n-gram buckets (`TextVocabulary.rows`).
    public var rows: Int
    public var dim: Int
    /// The head, ending in `classes` units (the logits).
    public var layers: [LayerSpec]
    /// Embeddings start uniform in ±init_scale/dim (fastText's ±1/dim with 1).
    public var initScale = 1.0

    enum CodingKeys: String, CodingKey { case rows, dim, layers, initScale = "init_scale" }

    public init(rows: Int, dim: Int, layers: [LayerSpec]) {
        self.rows = rows
        self.dim = dim
        self.layers = layers
    }

    public var head: ModelSpec { ModelSpec(inputShape: [dim], layers: layers) }

    public func validate(classes: Int) throws {
        guard rows > 0, dim > 0 else {
            throw CortadoError.usage("model: text embedding needs rows and dim > 0 (got \(rows) × \(dim))")
        }
        try head.validate(classes: classes)
    }

    /// The head's tensors ("head.layers.N.…") first — the dense part — then "embedding".
    public var parameterLayout: ParameterLayout {
        let h = head.parameterLayout
        var tensors = h.tensors.map { TensorSpec(name: "head." + $0.name, shape: $0.shape, offset: $0.offset) }
        tensors.append(TensorSpec(name: "embedding", shape: [rows, dim], offset: h.count))
        return ParameterLayout(tensors: tensors, count: h.count + rows * dim)
    }

    /// Values before the embedding table: the densely exchanged part of the arena.
    public var denseCount: Int { head.parameterLayout.count }
}

/// Embedding-bag forward: out[r] = mean of table[ids[j]] for j in offsets[r]..<offsets[r+1]
/// (0 for an empty document).
/// - table: (rows, dim); offsets: (batch + 1), offsets[0] = 0; ids: (offsets[batch]); out: (batch, dim).
@inlinable
public func embeddingBagForward<T: Real>(
    out: UnsafeMutablePointer<T>, table: UnsafePointer<T>, offsets: UnsafePointer<Int32>,
    ids: UnsafePointer<Int32>, batch: Int, dim: Int
) {
    for r in 0..<batch {
        let o = out + r * dim
        o.update(repeating: 0, count: dim)
        let a = Int(offsets[r]), b = Int(offsets[r + 1])
        guard b > a else { continue }
        for j in a..<b {
            let row = table + Int(ids[j]) * dim
            for k in 0..<dim { o[k] += row[k] }
        }
        let inv = 1 / T(b - a)
        for k in 0..<dim { o[k] *= inv }
    }
}

/// Embedding-bag backward (a scatter-add): dTable[ids[j]] += dOut[r] / |document r|.
/// Accumulates; rows of no id keep their gradient (the sparse exchange sends only touched rows).
@inlinable
public func embeddingBagBackward<T: Real>(
    dTable: UnsafeMutablePointer<T>, dOut: UnsafePointer<T>, offsets: UnsafePointer<Int32>,
    ids: UnsafePointer<Int32>, batch: Int, dim: Int
) {
    for r in 0..<batch {
        let a = Int(offsets[r]), b = Int(offsets[r + 1])
        guard b > a else { continue }
        let g = dOut + r * dim, inv = 1 / T(b - a)
        for j in a..<b {
            let d = dTable + Int(ids[j]) * dim
            for k in 0..<dim { d[k] += g[k] * inv }
        }
    }
}

/// The text classifier's arenas and batch buffers: the head is a `Network` on views of the
/// arenas' first part, the embedding table follows. Sized once; `step` allocates nothing.
public final class TextClassifier<T: Real> {
    public let spec: TextSpec
    public let layout: ParameterLayout
    public let maxBatch: Int
    public let params: Arena<T>
    /// Same layout as `params` plus `gradientExtras` trailing slots.
    public let grads: Arena<T>
    public let head: Network<T>
    public let embedding: Int
    public let classes: Int
    /// (maxBatch, dim): the bags and their gradient; (maxBatch, classes): dLogits.
    @usableFromInline let bag: Arena<T>, dBag: Arena<T>, dLogits: Arena<T>

    public init(spec: TextSpec, maxBatch: Int, gradientExtras: Int = 0, training: Bool = true) {
        self.spec = spec
        layout = spec.parameterLayout
        self.maxBatch = maxBatch
        params = Arena(count: layout.count)
        grads = Arena(count: layout.count + gradientExtras)
        let h = spec.denseCount
        head = Network(
            spec: spec.head, maxBatch: maxBatch, params: Arena(viewOf: params, offset: 0, count: h),
            grads: Arena(viewOf: grads, offset: 0, count: h), training: training)
        embedding = h
        classes = spec.head.outputSize
        bag = Arena(count: maxBatch * spec.dim)
        dBag = Arena(count: training ? maxBatch * spec.dim : 0)
        dLogits = Arena(count: training ? maxBatch * classes : 0)
    }

    /// Head as `Network.initialize` (He-normal, biases 0); embeddings uniform ±init_scale/dim.
    public func initialize(seed: UInt64) {
        params.zero()
        head.initialize(seed: seed)
        var rng = SeededRNG(seed: seed, stream: 0x7E77)
        let s = spec.initScale / Double(spec.dim)
        for j in embedding..<(embedding + spec.rows * spec.dim) { params.base[j] = T((2 * rng.uniform() - 1) * s) }
    }

    /// Logits (batch, classes) of `batch` documents, valid until the next call.
    @inlinable @discardableResult
    public func forward(offsets: UnsafePointer<Int32>, ids: UnsafePointer<Int32>, batch: Int, training: Bool = false)
        -> UnsafeMutablePointer<T>
    {
        precondition(batch <= maxBatch, "batch \(batch) exceeds maxBatch \(maxBatch)")
        embeddingBagForward(
            out: bag.base, table: params.base + embedding, offsets: offsets, ids: ids, batch: batch, dim: spec.dim)
        return head.forward(bag.base, batch: batch, training: training)
    }

    /// Back-propagates `dLogits` (batch, classes) through the last `forward`; accumulates into
    /// `grads` (embedding rows only for the batch's ids).
    @inlinable
    public func backward(
        offsets: UnsafePointer<Int32>, ids: UnsafePointer<Int32>, batch: Int, dLogits: UnsafePointer<T>
    ) {
        head.backward(bag.base, batch: batch, dLogits: dLogits, dInput: dBag.base)
        embeddingBagBackward(
            dTable: grads.base + embedding, dOut: dBag.base, offsets: offsets, ids: ids, batch: batch, dim: spec.dim)
    }

    /// Forward, softmax cross-entropy and (when `train`) backward; gradients of the mean loss.
    @inlinable
    public func step(
        offsets: UnsafePointer<Int32>, ids: UnsafePointer<Int32>, labels: UnsafePointer<Int32>, batch: Int, train: Bool
    ) -> (lossSum: Double, correct: Int) {
        let logits = forward(offsets: offsets, ids: ids, batch: batch, training: train)
        let r = SoftmaxCrossEntropy.evaluate(
            logits: logits, labels: labels, batch: batch, classes: classes, dLogits: train ? dLogits.base : nil,
            gradScale: 1 / T(batch))
        if train { backward(offsets: offsets, ids: ids, batch: batch, dLogits: dLogits.base) }
        return r
    }
}
