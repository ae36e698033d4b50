import CortadoCore

/// A feed-forward network over flat arenas: parameters and gradients each in one contiguous
/// arena laid out by `ModelSpec.parameterLayout`, activations in buffers sized once for
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

    @usableFromInline let steps: [Step]
    /// Activations per layer, each (maxBatch, widths[i]).
    @usableFromInline let acts: [Arena<T>]
    /// Two ping-pong buffers for activation gradients, each (maxBatch, max width).
    @usableFromInline let dActA: Arena<T>, dActB: Arena<T>

    /// A layer with its resolved sizes and parameter offsets.
    @usableFromInline enum Step {
        case dense(inDim: Int, outDim: Int, w: Int, b: Int)
        case relu(width: Int)
    }

    public init(spec: ModelSpec, maxBatch: Int, gradientExtras: Int = 0) {
        self.spec = spec
        self.layout = spec.parameterLayout
        self.maxBatch = maxBatch
        params = Arena(count: layout.count)
        grads = Arena(count: layout.count + gradientExtras)
        var steps = [Step]()
        var width = spec.inputSize, offset = 0
        for l in spec.layers {
            switch l {
            case .dense(let units):
                steps.append(.dense(inDim: width, outDim: units, w: offset, b: offset + units * width))
                offset += units * width + units
                width = units
            case .relu:
                steps.append(.relu(width: width))
            }
        }
        self.steps = steps
        acts = spec.widths.map { Arena(count: maxBatch * $0) }
        let maxWidth = max(spec.widths.max() ?? 0, spec.inputSize)
        dActA = Arena(count: maxBatch * maxWidth)
        dActB = Arena(count: maxBatch * maxWidth)
    }

    /// He-normal weights (std √(2/fan_in)), zero biases, from `seed` alone: every rank that
    /// calls this with the same seed gets the same bits.
    public func initialize(seed: UInt64) {
        params.zero()
        for (i, t) in layout.tensors.enumerated() where t.shape.count == 2 {
            var rng = SeededRNG(seed: seed, stream: UInt64(i + 1))
            let std = (2.0 / Double(t.shape[1])).squareRoot()
            for j in 0..<t.count { params.base[t.offset + j] = T(rng.normal() * std) }
        }
    }

    /// Runs the layers on `input` (batch, inputSize); returns the logits, (batch, outputSize),
    /// which live in the network's last activation buffer until the next call.
    @inlinable @discardableResult
    public func forward(_ input: UnsafePointer<T>, batch: Int) -> UnsafeMutablePointer<T> {
        precondition(batch <= maxBatch, "batch \(batch) exceeds maxBatch \(maxBatch)")
        let p = params.base
        var x = input
        for (i, s) in steps.enumerated() {
            let out = acts[i].base
            switch s {
            case let .dense(inDim, outDim, w, b):
                denseForward(out: out, input: x, weight: p + w, bias: p + b, batch: batch, inDim: inDim, outDim: outDim)
            case let .relu(width):
                reluForward(out: out, input: x, count: batch * width)
            }
            x = UnsafePointer(out)
        }
        return acts[steps.count - 1].base
    }

    /// Back-propagates `dLogits` (batch, outputSize) through the layers of the last `forward`
    /// on the same `input`. Accumulates parameter gradients into `grads`; writes the input's
    /// gradient into `dInput` (batch, inputSize) when given (gradient checks use it).
    @inlinable
    public func backward(_ input: UnsafePointer<T>, batch: Int, dLogits: UnsafePointer<T>,
                         dInput: UnsafeMutablePointer<T>? = nil) {
        backpropagate(input, batch: batch, dLogits: dLogits, startOnA: true, dInput: dInput)
    }

    /// Forward, loss and (when `train`) backward for one batch: the whole per-batch computation.
    /// Gradients are of the mean loss over the batch. Returns the summed loss and the number of
    /// correct arg-max predictions.
    @inlinable
    public func step(_ input: UnsafePointer<T>, labels: UnsafePointer<Int32>, batch: Int, train: Bool) -> (lossSum: Double, correct: Int) {
        let logits = forward(input, batch: batch)
        // dLogits go into dActA; back-propagation then ping-pongs starting on dActB, so no
        // layer writes the buffer it reads.
        let r = SoftmaxCrossEntropy.evaluate(logits: logits, labels: labels, batch: batch, classes: spec.outputSize,
                                             dLogits: train ? dActA.base : nil, gradScale: 1 / T(batch))
        if train { backpropagate(input, batch: batch, dLogits: dActA.base, startOnA: false, dInput: nil) }
        return r
    }

    @inlinable
    func backpropagate(_ input: UnsafePointer<T>, batch: Int, dLogits: UnsafePointer<T>, startOnA: Bool,
                       dInput: UnsafeMutablePointer<T>?) {
        let p = params.base, g = grads.base
        var dOut = dLogits
        var useA = startOnA
        for i in stride(from: steps.count - 1, through: 0, by: -1) {
            let x: UnsafePointer<T> = i == 0 ? input : UnsafePointer(acts[i - 1].base)
            // The first layer writes the caller's dInput (or nothing); the others a ping-pong buffer.
            let dIn: UnsafeMutablePointer<T>? = i == 0 ? dInput : (useA ? dActA.base : dActB.base)
            switch steps[i] {
            case let .dense(inDim, outDim, w, b):
                denseBackward(dInput: dIn, dWeight: g + w, dBias: g + b, dOut: dOut, input: x,
                              weight: p + w, batch: batch, inDim: inDim, outDim: outDim)
            case let .relu(width):
                if let dIn { reluBackward(dInput: dIn, dOut: dOut, out: acts[i].base, count: batch * width) }
            }
            if let dIn { dOut = UnsafePointer(dIn) }
            useA.toggle()
        }
    }
}
