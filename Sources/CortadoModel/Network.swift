import CortadoCore

/// An owned Int32 buffer (max-pool argmax indices), allocated once.
public final class IndexArena {
    public let buffer: UnsafeMutableBufferPointer<Int32>
    public init(count: Int) { buffer = .allocate(capacity: max(count, 1)); buffer.initialize(repeating: 0) }
    deinit { buffer.deallocate() }
}

/// A feed-forward network over flat arenas: parameters and gradients each in one contiguous
/// arena laid out by `ModelSpec.parameterLayout`; activations and every layer's saved state
/// (im2col columns, pool indices, dropout masks, norm statistics) in buffers sized once for
/// `maxBatch`. `forward` and `backward` allocate nothing.
public final class Network<T: Real> {
    public let spec: ModelSpec
    public let layout: ParameterLayout
    public let maxBatch: Int
    /// Parameters, (layout.count).
    public let params: Arena<T>
    /// Gradients, same layout as `params`, plus `gradientExtras` trailing slots for values that
    /// travel in the same allreduce (the step's loss, a status word); `backward` accumulates.
    public let grads: Arena<T>
    /// Label smoothing of the training loss (evaluation always reports plain cross-entropy).
    public var labelSmoothing: Double = 0
    /// Seed of this step's dropout masks; the trainer sets it from (seed, rank, step).
    public var dropoutSeed: UInt64 = 0
    /// Replacements for dense and conv layers' forward, by layer index (the int8 inference
    /// path): (input (batch, in), batch, output (batch, out)).
    public var layerOverrides: [Int: (UnsafePointer<T>, Int, UnsafeMutablePointer<T>) -> Void] = [:]
    /// For an override at layer i, how many of the layers after it the override also computes
    /// (a conv with its ReLU and pool fused, `DirectConvLayer`): forward then skips them and the
    /// override writes the last one's activation, (batch, widths[i + n]).
    public var fusedLayers: [Int: Int] = [:]
    /// False for inference: conv layers keep one chunk of samples' column matrices (see
    /// `conv2dForward`) instead of the whole batch's (at batch 1024 the CNN's would take
    /// 230 MB), and backward is not available.
    public let training: Bool
    /// Called during backward with an arena offset whenever every gradient at or above it is
    /// final for this step (layers finish last to first, so the offsets only fall): the
    /// bucketed exchange starts a bucket's allreduce as soon as it is complete, overlapping the
    /// rest of backward. nil (the default) costs nothing.
    public var gradientsReady: ((Int) -> Void)?
    /// Dense weight gradients with more rows (output units) than this are computed in blocks
    /// of this many rows, last rows first, each reported when done, so that even the first
    /// layer's (which finishes last) overlaps its own exchange. OpenBLAS rounds a block's GEMM
    /// differently from the whole one's in the last bits (for the rows near each block edge),
    /// so the trainer sets this whatever the overlap mode: every mode then computes the very
    /// same gradients. 0: whole tensors.
    public var gradientBlockRows = 0

    @usableFromInline let steps: [Step]
    /// Activations per layer, each (maxBatch, widths[i]).
    @usableFromInline let acts: [Arena<T>]
    /// Two ping-pong buffers for activation gradients, each (maxBatch, max width); empty when
    /// not `training`.
    @usableFromInline let dActA: Arena<T>, dActB: Arena<T>
    /// Scratch for conv backward: one sample's column-matrix gradient (max patch × positions);
    /// empty when not `training`.
    @usableFromInline let dCols: Arena<T>

    /// A layer with its resolved sizes, parameter offsets and saved-state buffers.
    @usableFromInline enum Step {
        case dense(inDim: Int, outDim: Int, w: Int, b: Int)
        case activation(width: Int, Activation)
        case dropout(width: Int, rate: Double, mask: Arena<T>)
        case layerNorm(d: Int, w: Int, b: Int, stats: Arena<T>)
        case conv(ConvShape, w: Int, b: Int, cols: Arena<T>)
        case maxPool(PoolShape, argmax: IndexArena)
        case avgPool(PoolShape)
        case flatten(width: Int)
    }

    /// - params, grads: views into a larger model's arenas (see `Arena(viewOf:)`), or nil for
    ///   arenas of its own (grads then has `gradientExtras` trailing slots).
    public init(
        spec: ModelSpec, maxBatch: Int, gradientExtras: Int = 0, params: Arena<T>? = nil, grads: Arena<T>? = nil,
        training: Bool = true
    ) {
        self.spec = spec
        self.training = training
        self.layout = spec.parameterLayout
        self.maxBatch = maxBatch
        self.params = params ?? Arena(count: layout.count)
        self.grads = grads ?? Arena(count: layout.count + gradientExtras)
        precondition(
            self.params.count == layout.count && self.grads.count >= layout.count,
            "network arenas do not match the layout")
        var steps = [Step]()
        var shape = spec.inputShape, offset = 0, maxCols = 1
        for l in spec.layers {
            let width = shape.reduce(1, *)
            switch l {
            case .dense(let units):
                steps.append(.dense(inDim: width, outDim: units, w: offset, b: offset + units * width))
                offset += units * width + units
            case .activation(let a): steps.append(.activation(width: width, a))
            case .dropout(let rate):
                steps.append(.dropout(width: width, rate: rate, mask: Arena(count: maxBatch * width)))
            case .layerNorm:
                steps.append(.layerNorm(d: width, w: offset, b: offset + width, stats: Arena(count: maxBatch * 2)))
                offset += 2 * width
            case let .conv2d(f, k, s, p):
                let g = ConvShape(c: shape[0], h: shape[1], w: shape[2], f: f, k: k, s: s, p: p)
                steps.append(
                    .conv(
                        g, w: offset, b: offset + f * g.patch,
                        cols: Arena(
                            count: training
                                ? maxBatch * g.patch * g.positions
                                : convChunk(g, batch: maxBatch, of: T.self) * g.positions * (g.patch + g.f))))
                offset += f * g.patch + f
                maxCols = max(maxCols, g.patch * g.positions)
            case let .maxPool(size, stride):
                let g = PoolShape(c: shape[0], h: shape[1], w: shape[2], size: size, stride: stride)
                steps.append(.maxPool(g, argmax: IndexArena(count: training ? maxBatch * g.outCount : 0)))
            case let .avgPool(size, stride):
                steps.append(.avgPool(PoolShape(c: shape[0], h: shape[1], w: shape[2], size: size, stride: stride)))
            case .flatten: steps.append(.flatten(width: width))
            }
            if case .success(let out) = l.outputShape(shape) { shape = out }
        }
        precondition(offset == layout.count, "parameter layout and layer steps disagree")
        self.steps = steps
        acts = spec.widths.map { Arena(count: maxBatch * $0) }
        let maxWidth = max(spec.widths.max() ?? 0, spec.inputSize)
        // Backward's buffers: an inference network has no backward, so it keeps none (for the
        // CNN at batch 256 they were 51 MB of cortado-train's end-phase scoring peak).
        dActA = Arena(count: training ? maxBatch * maxWidth : 0)
        dActB = Arena(count: training ? maxBatch * maxWidth : 0)
        dCols = Arena(count: training ? maxCols : 0)
    }

    /// Weights of dense and conv layers He-normal (std √(2/fan_in)), layer-norm scales 1, all
    /// biases 0 — from `seed` alone: every rank that calls this with the same seed gets the
    /// same bits.
    public func initialize(seed: UInt64) {
        params.zero()
        for (i, t) in layout.tensors.enumerated() where t.name.hasSuffix(".weight") {
            let layer = Int(t.name.split(separator: ".")[1]) ?? 0
            if case .layerNorm = spec.layers[layer] {
                for j in 0..<t.count { params.base[t.offset + j] = 1 }
                continue
            }
            var rng = SeededRNG(seed: seed, stream: UInt64(i + 1))
            let std = (2.0 / Double(t.count / t.shape[0])).squareRoot()
            for j in 0..<t.count { params.base[t.offset + j] = T(rng.normal() * std) }
        }
    }

    /// Runs the layers on `input` (batch, inputSize); returns the logits, (batch, outputSize),
    /// which live in the network's last activation buffer until the next call. `training`
    /// turns dropout on.
    @inlinable @discardableResult
    public func forward(_ input: UnsafePointer<T>, batch: Int, training: Bool = false) -> UnsafeMutablePointer<T> {
        precondition(batch <= maxBatch, "batch \(batch) exceeds maxBatch \(maxBatch)")
        let p = params.base
        var x = input, skip = 0
        for (i, s) in steps.enumerated() {
            if skip > 0 {
                skip -= 1
                continue
            }
            if let n = fusedLayers[i], let custom = layerOverrides[i] {
                custom(x, batch, acts[i + n].base)
                x = UnsafePointer(acts[i + n].base)
                skip = n
                continue
            }
            let out = acts[i].base
            switch s {
            case let .dense(inDim, outDim, w, b):
                if let custom = layerOverrides[i] {
                    custom(x, batch, out)
                } else {
                    denseForward(
                        out: out, input: x, weight: p + w, bias: p + b, batch: batch, inDim: inDim, outDim: outDim)
                }
            case let .activation(width, a): a.forward(out: out, input: x, count: batch * width)
            case let .dropout(width, rate, mask):
                if training && rate > 0 {
                    var rng = SeededRNG(seed: dropoutSeed, stream: UInt64(i))
                    dropoutForward(out: out, mask: mask.base, input: x, count: batch * width, rate: rate, rng: &rng)
                } else {
                    out.update(from: x, count: batch * width)
                }
            case let .layerNorm(d, w, b, stats):
                layerNormForward(out: out, stats: stats.base, input: x, gamma: p + w, beta: p + b, batch: batch, d: d)
            case let .conv(g, w, b, cols):
                if let custom = layerOverrides[i] {
                    custom(x, batch, out)
                } else {
                    // Chunked only in an inference network: a training one's columns are
                    // sized for the batch (and its evaluation keeps the per-sample path).
                    conv2dForward(
                        out: out, cols: cols.base, input: x, weight: p + w, bias: p + b, batch: batch, g,
                        keepColumns: self.training)
                }
            case let .maxPool(g, argmax):
                if self.training {
                    maxPoolForward(out: out, argmax: argmax.buffer.baseAddress!, input: x, batch: batch, g)
                } else {
                    maxPoolInference(out: out, input: x, batch: batch, g)
                }
            case let .avgPool(g):
                avgPoolForward(out: out, input: x, batch: batch, g)
            case let .flatten(width):
                out.update(from: x, count: batch * width)
            }
            x = UnsafePointer(out)
        }
        return acts[steps.count - 1].base
    }

    /// Bytes of the buffers sized for `maxBatch`: activations, the two activation-gradient
    /// buffers, and each layer's saved state (conv columns, pool indices, dropout masks, norm
    /// statistics) — the "activations" of the trainer's start-up memory breakdown.
    public var bufferBytes: Int {
        var elements = acts.reduce(0) { $0 + $1.count } + dActA.count + dActB.count + dCols.count, indices = 0
        for s in steps {
            switch s {
            case let .dropout(_, _, mask): elements += mask.count
            case let .layerNorm(_, _, _, stats): elements += stats.count
            case let .conv(_, _, _, cols): elements += cols.count
            case let .maxPool(_, argmax): indices += argmax.buffer.count
            default: break
            }
        }
        return elements * MemoryLayout<T>.stride + indices * MemoryLayout<Int32>.stride
    }

    /// Layer `i`'s output of the last `forward`, (batch, widths[i]) — what layer i + 1 read
    /// (static int8 calibration measures these).
    public func activation(_ i: Int) -> UnsafePointer<T> { UnsafePointer(acts[i].base) }

    /// Back-propagates `dLogits` (batch, outputSize) through the layers of the last `forward`
    /// on the same `input`. Accumulates parameter gradients into `grads`; writes the input's
    /// gradient into `dInput` (batch, inputSize) when given (gradient checks use it).
    @inlinable
    public func backward(
        _ input: UnsafePointer<T>, batch: Int, dLogits: UnsafePointer<T>,
        dInput: UnsafeMutablePointer<T>? = nil
    ) {
        backpropagate(input, batch: batch, dLogits: dLogits, startOnA: true, dInput: dInput)
    }

    /// Forward, loss and (when `train`) backward for one batch: the whole per-batch computation.
    /// Gradients are of the mean loss over the batch. Returns the summed loss and the number of
    /// correct arg-max predictions.
    @inlinable
    public func step(_ input: UnsafePointer<T>, labels: UnsafePointer<Int32>, batch: Int, train: Bool) -> (
        lossSum: Double, correct: Int
    ) {
        let logits = forward(input, batch: batch, training: train)
        // dLogits go into dActA; back-propagation then ping-pongs starting on dActB, so no
        // layer writes the buffer it reads.
        let r = SoftmaxCrossEntropy.evaluate(
            logits: logits, labels: labels, batch: batch, classes: spec.outputSize,
            dLogits: train ? dActA.base : nil, gradScale: 1 / T(batch),
            smoothing: train ? T(labelSmoothing) : 0)
        if train { backpropagate(input, batch: batch, dLogits: dActA.base, startOnA: false, dInput: nil) }
        return r
    }

    /// `step` in training mode with a teacher's soft targets: forward, `DistillationLoss`
    /// against `teacherLogits` (batch, outputSize), backward. Gradients are of the mean loss.
    /// Returns the summed total loss, the summed hard-label cross-entropy and the correct count.
    @inlinable
    public func distillationStep(
        _ input: UnsafePointer<T>, labels: UnsafePointer<Int32>, teacherLogits: UnsafePointer<T>, batch: Int,
        temperature: T, alpha: T
    ) -> (lossSum: Double, hardLossSum: Double, correct: Int) {
        let logits = forward(input, batch: batch, training: true)
        let r = DistillationLoss.evaluate(
            logits: logits, teacherLogits: teacherLogits, labels: labels, batch: batch, classes: spec.outputSize,
            temperature: temperature, alpha: alpha, dLogits: dActA.base, gradScale: 1 / T(batch),
            smoothing: T(labelSmoothing))
        backpropagate(input, batch: batch, dLogits: dActA.base, startOnA: false, dInput: nil)
        return r
    }

    @inlinable
    func backpropagate(
        _ input: UnsafePointer<T>, batch: Int, dLogits: UnsafePointer<T>, startOnA: Bool,
        dInput: UnsafeMutablePointer<T>?
    ) {
        precondition(training, "backward on a network built for inference")
        let p = params.base, g = grads.base
        var dOut = dLogits
        var useA = startOnA
        for i in stride(from: steps.count - 1, through: 0, by: -1) {
            let x: UnsafePointer<T> = i == 0 ? input : UnsafePointer(acts[i - 1].base)
            let out = UnsafePointer(acts[i].base)
            // The first layer writes the caller's dInput (or nothing); the others a ping-pong buffer.
            let dIn: UnsafeMutablePointer<T>? = i == 0 ? dInput : (useA ? dActA.base : dActB.base)
            switch steps[i] {
            case let .dense(inDim, outDim, w, b):
                if gradientsReady != nil || gradientBlockRows > 0 {
                    reportingDenseBackward(
                        dInput: dIn, w: w, b: b, dOut: dOut, input: x, batch: batch, inDim: inDim, outDim: outDim)
                } else {
                    denseBackward(
                        dInput: dIn, dWeight: g + w, dBias: g + b, dOut: dOut, input: x,
                        weight: p + w, batch: batch, inDim: inDim, outDim: outDim)
                }
            case let .layerNorm(d, w, b, stats):
                layerNormBackward(
                    dInput: dIn, dGamma: g + w, dBeta: g + b, dOut: dOut, input: x, stats: stats.base,
                    gamma: p + w, batch: batch, d: d)
                gradientsReady?(w)
            case let .conv(shape, w, b, cols):
                conv2dBackward(
                    dInput: dIn, dWeight: g + w, dBias: g + b, dCols: dCols.base, dOut: dOut, cols: cols.base,
                    weight: p + w, batch: batch, shape)
                gradientsReady?(w)
            default:
                // Layers without parameters: nothing to do when no input gradient is wanted.
                guard let dIn else { break }
                switch steps[i] {
                case let .activation(width, a):
                    a.backward(dInput: dIn, dOut: dOut, input: x, out: out, count: batch * width)
                case let .dropout(width, rate, mask):
                    if rate > 0 {
                        dropoutBackward(dInput: dIn, dOut: dOut, mask: mask.base, count: batch * width)
                    } else {
                        dIn.update(from: dOut, count: batch * width)
                    }
                case let .maxPool(shape, argmax):
                    maxPoolBackward(dInput: dIn, dOut: dOut, argmax: argmax.buffer.baseAddress!, batch: batch, shape)
                case let .avgPool(shape): avgPoolBackward(dInput: dIn, dOut: dOut, batch: batch, shape)
                case let .flatten(width): dIn.update(from: dOut, count: batch * width)
                default: break
                }
            }
            if let dIn { dOut = UnsafePointer(dIn) }
            useA.toggle()
        }
    }
}
