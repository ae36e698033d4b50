import CKernels
import CortadoCore
import CortadoModel
import Foundation

/// A loaded `.cmodel`, ready to score batches. It runs the training network's own layer code
/// (`Network<Float>`, built for inference) on the file's parameters; in an int8 model each
/// quantized dense or conv layer is swapped for the integer path (see `Int8Layer`). Other
/// layers stay fp32.
public final class InferenceModel {
    public let path: String
    public let header: ModelFile.Header
    public var spec: ModelSpec { header.model }
    /// The spec's output and input sizes, computed once: `ModelSpec` derives them from every
    /// layer's shape (arrays built per call), and a served request asked for them three times.
    public let classes: Int
    public let inputSize: Int

    /// fp32 parameters in the network's arena layout (zeros where a layer runs int8).
    private let params: [Float]
    /// Int8 layers by layer index.
    private let int8Layers: [Int: Int8Layer]
    /// fp32 conv layers on the direct kernel (with their ReLU and pool), by layer index.
    private let directConvs: [Int: DirectConvLayer]
    /// Pruned dense layers that run sparse, by layer index, and their transposed-batch scratch.
    private let sparseLayers: [Int: SparseLayer]
    private var sparseScratch = [Float]()
    private let sparsePolicy: SparsePolicy
    private var net: Network<Float>?
    private var scratch = Int8Scratch()
    /// The int8 GEMM path: the best this CPU runs unless set (tests compare the paths).
    public var int8Path = Int(cortado_int8_best_path())
    /// The direct conv kernel's path (CORTADO_CONV_*): the best this CPU runs unless set
    /// (tests compare the paths); lowered per layer to what its filter count allows.
    public var convPath = CORTADO_CONV_AVX512
    public static var int8PathName: String { ["portable", "AVX2", "AVX-512 VNNI"][Int(cortado_int8_best_path())] }

    /// When a CSR-stored layer runs sparse: below `SparseLayer.maxDensity` (auto), always,
    /// or never (densified, as the benchmarks compare).
    public enum SparsePolicy: String { case auto, always, never }

    /// Loads and validates the file, then checks that every tensor the architecture needs is
    /// there with the right dtype and shape.
    public convenience init(path: String, sparse: SparsePolicy = .auto) throws {
        try self.init(file: try ModelFile.load(path), path: path, sparse: sparse)
    }

    /// A runtime for a file already loaded (and validated) by `ModelFile.load`, for callers that
    /// check its header first (a distillation teacher must be a classifier); `path` names it.
    public init(file: ModelFile, path: String, sparse: SparsePolicy = .auto) throws {
        self.path = path
        sparsePolicy = sparse
        header = file.header
        let spec = file.header.model
        classes = spec.outputSize
        inputSize = spec.inputSize
        activationBytesPerRow =
            spec.layers.contains { if case .conv2d = $0 { true } else { false } }
            ? max(1, spec.widths.reduce(0, +) * MemoryLayout<Float>.stride) : nil
        do { try spec.validate(classes: spec.outputSize) } catch let e as CortadoError {
            throw CortadoError.model("\(path): bad architecture: \(e.message)")
        }
        // Each weight however it was stored (fp32/fp16/bf16/int8, dense or CSR); int8 dense and
        // conv weights keep the integer path, everything else is fp32 in the network's arena.
        let layout = spec.parameterLayout
        let inputShapes = [spec.inputShape] + spec.shapes.dropLast()
        var params = [Float](repeating: 0, count: layout.count)
        var int8 = [Int: Int8Layer](), sparseLayers = [Int: SparseLayer]()
        do {
            for t in layout.tensors {
                let layer = Int(t.name.split(separator: ".")[1]) ?? -1
                let reluAfter = spec.layers.indices.contains(layer + 1) && spec.layers[layer + 1] == .relu
                if spec.layers.indices.contains(layer), case .dense = spec.layers[layer], t.name.hasSuffix(".weight"),
                    sparse != .never,
                    let csr = try file.sparseRows(t.name, shape: t.shape),
                    sparse == .always || Double(csr.values.count) < SparseLayer.maxDensity * Double(t.count)
                {
                    let bias = try file.floats("layers.\(layer).bias", shape: [t.shape[0]])
                    sparseLayers[layer] = SparseLayer(
                        indptr: csr.indptr, indices: csr.indices, values: csr.values, bias: bias,
                        inDim: t.shape[1], outDim: t.shape[0], relu: reluAfter)
                    // Batches below SparseLayer.minBatch still take the dense path (below).
                    if sparse == .always { continue }
                }
                if spec.layers.indices.contains(layer), t.name.hasSuffix(".weight"),
                    let q = try file.int8Rows(t.name, shape: t.shape)
                {
                    let bias = try file.floats("layers.\(layer).bias", shape: [t.shape[0]])
                    var conv: ConvShape?, tail = ConvTail(relu: reluAfter, pool: nil)
                    if case let .conv2d(f, k, s, p) = spec.layers[layer] {
                        let x = inputShapes[layer], g = ConvShape(c: x[0], h: x[1], w: x[2], f: f, k: k, s: s, p: p)
                        conv = g
                        tail = ConvTail(spec: spec, index: layer, g)
                    }
                    // A calibrated (static) input scale when the file has one, else dynamic.
                    let inputScale = try file.tensor("layers.\(layer).input_scale").map { t -> Float in
                        guard t.dtype == .float32, t.shape == [1], let v = file.values(t, as: Float.self).first, v > 0,
                            v.isFinite
                        else {
                            throw CortadoError.model(
                                "tensor 'layers.\(layer).input_scale' must be one positive float32")
                        }
                        return v
                    }
                    int8[layer] = Int8Layer(
                        weight: q.q, scales: q.scales, bias: bias, tail: tail, conv: conv, inputScale: inputScale)
                } else {
                    params.replaceSubrange(
                        t.offset..<(t.offset + t.count), with: try file.floats(t.name, shape: t.shape))
                }
            }
        } catch let e as CortadoError { throw CortadoError.model("\(path): \(e.message)") }
        var direct = [Int: DirectConvLayer]()
        for (i, l) in spec.layers.enumerated() where int8[i] == nil {
            guard case .conv2d = l, let w = layout.tensors.first(where: { $0.name == "layers.\(i).weight" }) else {
                continue
            }
            direct[i] = params.withUnsafeBufferPointer {
                DirectConvLayer(
                    spec: spec, index: i, inputShape: inputShapes[i], params: $0.baseAddress!, offset: w.offset)
            }
        }
        directConvs = direct
        self.params = params
        int8Layers = int8
        self.sparseLayers = sparseLayers
    }

    /// Layer indices that run sparse (for reports and tests).
    public var sparseLayerIndices: [Int] { sparseLayers.keys.sorted() }

    /// Scores `batch` rows of `input` (batch, inputSize) and writes class probabilities
    /// (batch, classes) into `probabilities`. The network is rebuilt only when a larger batch
    /// than before arrives.
    public func predict(_ input: UnsafePointer<Float>, batch: Int, probabilities: UnsafeMutablePointer<Float>) {
        softmax(logits(input, batch: batch), batch: batch, classes: classes, out: probabilities)
    }

    /// The logits (batch, classes) of `batch` rows, valid until the next call. A batch larger
    /// than `passRows` runs as several passes, each row's result unchanged (every layer scores
    /// a row on its own: per-row or per-sample scales, the same kernels).
    public func logits(_ input: UnsafePointer<Float>, batch: Int) -> UnsafePointer<Float> {
        reserve(batch: batch)
        guard batch > passRows, let out = passLogits else { return UnsafePointer(net!.forward(input, batch: batch)) }
        for first in stride(from: 0, to: batch, by: passRows) {
            let n = min(passRows, batch - first)
            (out.base + first * classes).update(
                from: net!.forward(input + first * inputSize, batch: n), count: n * classes)
        }
        return UnsafePointer(out.base)
    }

    /// Activation bytes one forward pass may take (default `defaultPassBytes`).
    public var passBytes = InferenceModel.defaultPassBytes

    /// A conv net's activations are large per row (the Fashion-MNIST CNN's: 350 KB): one pass
    /// over a batch of 1024 sent 360 MB through memory between every two layers, while passes
    /// of about 50 rows stay near the core. Passes much smaller re-read the dense weights too
    /// often (the fp32 CNN's 1.6 MB once per pass); `Benchmarks/RESULTS.md` has the sweep.
    public static let defaultPassBytes = 16 << 20

    /// Rows per forward pass: the whole batch for nets without convolutions, else as many rows
    /// as fit `passBytes` of activations.
    public var passRows: Int { activationBytesPerRow.map { max(1, passBytes / $0) } ?? Int.max }
    /// A conv net's activation bytes per row (every layer's output); nil without convolutions.
    private let activationBytesPerRow: Int?
    /// The logits of a batch run in several passes, (batch, classes); an arena, so the pointer
    /// `logits` returns stays valid until the next call.
    private var passLogits: Arena<Float>?

    /// Sizes the network (its activations hold the logits) and the int8 scratch for batches of
    /// up to `batch` rows now, so that later calls allocate nothing (a trainer's step loop).
    public func reserve(batch: Int) {
        if batch > passRows, (passLogits?.count ?? 0) < batch * classes {
            passLogits = Arena(count: batch * classes)
        }
        let batch = min(batch, passRows)
        if net == nil || net!.maxBatch < batch {
            let n = Network<Float>(spec: spec, maxBatch: max(batch, 1), training: false)
            n.params.load(params)
            for (index, layer) in int8Layers {
                n.layerOverrides[index] = { [unowned self] x, rows, out in
                    layer.forward(x, batch: rows, out: out, scratch: &self.scratch, path: self.int8Path)
                }
                // Its epilogue already rectifies (and pools): the ReLU after it would only copy
                // the conv activations again. A sparse layer at this index rectifies too.
                if layer.tail.fused > 0 { n.fusedLayers[index] = layer.tail.fused }
            }
            scratch.reserve(for: int8Layers.values, batch: max(batch, 1))
            for (index, layer) in directConvs {
                n.layerOverrides[index] = { [unowned self] x, rows, out in
                    layer.forward(x, batch: rows, out: out, path: self.convPath)
                }
                n.fusedLayers[index] = layer.tail.fused
            }
            for (index, layer) in sparseLayers {
                // Sparse from SparseLayer.minBatch rows on (or always when told); below, the
                // dense int8 or fp32 path, which wins there (the crossover table).
                let dense = n.layerOverrides[index], always = sparsePolicy == .always
                let w = n.params.base + n.layout.tensors.first { $0.name == "layers.\(index).weight" }!.offset
                n.layerOverrides[index] = { [unowned self] x, rows, out in
                    if always || rows >= SparseLayer.minBatch {
                        self.sparseScratch.withUnsafeMutableBufferPointer {
                            layer.forward(x, batch: rows, out: out, scratch: $0.baseAddress!, path: self.int8Path)
                        }
                    } else if let dense {
                        dense(x, rows, out)
                    } else {
                        denseForward(
                            out: out, input: x, weight: w, bias: w + layer.inDim * layer.outDim, batch: rows,
                            inDim: layer.inDim, outDim: layer.outDim)
                    }
                }
            }
            sparseScratch = [Float](
                repeating: 0, count: 32 * (sparseLayers.values.map { $0.inDim + $0.outDim }.max() ?? 0))
            net = n
        }
    }
}

/// Row-wise softmax of logits (batch, classes) into out.
func softmax(_ z: UnsafePointer<Float>, batch: Int, classes: Int, out: UnsafeMutablePointer<Float>) {
    for r in 0..<batch {
        let zr = z + r * classes, o = out + r * classes
        var m = zr[0]
        for c in 1..<classes { m = max(m, zr[c]) }
        var s: Float = 0
        for c in 0..<classes { o[c] = exp(zr[c] - m); s += o[c] }
        for c in 0..<classes { o[c] /= s }
    }
}
