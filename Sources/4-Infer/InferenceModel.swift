import CKernels
import CortadoCore
import CortadoModel
import Foundation

/// A loaded `.cmodel`, ready to score batches. It runs the training network's own layer code
/// (`Network<Float>`) on the file's parameters; in an int8 model each quantized dense layer is
/// swapped for the integer path: each input row is quantized symmetrically on the fly (dynamic
/// per-row scale), multiplied with the int8 weights accumulating in int32, and rescaled with
/// the row scale × the channel scale before the fp32 bias is added. Other layers stay fp32.
public final class InferenceModel {
    public let path: String
    public let header: ModelFile.Header
    public var spec: ModelSpec { header.model }
    public var classes: Int { spec.outputSize }

    /// fp32 parameters in the network's arena layout (zeros where a layer runs int8).
    private let params: [Float]
    /// Int8 dense layers by layer index: weight (out, in), per-channel scales, fp32 bias.
    private let int8Layers: [Int: (weight: [Int8], scales: [Float], bias: [Float], inDim: Int, outDim: Int)]
    private var net: Network<Float>?
    /// int8 scratch, sized with the network: quantized activations (batch × in), their row
    /// scales, and the int32 products (batch × out).
    private var qa = [Int8](), rowScales = [Float](), acc = [Int32]()
    /// The int8 GEMM path: the best this CPU runs unless set (tests compare the paths).
    public var int8Path = Int(cortado_int8_best_path())
    public static var int8PathName: String { ["portable", "AVX2", "AVX-512 VNNI"][Int(cortado_int8_best_path())] }

    /// Loads and validates the file, then checks that every tensor the architecture needs is
    /// there with the right dtype and shape.
    public init(path: String) throws {
        let file = try ModelFile.load(path)
        self.path = path
        header = file.header
        let spec = file.header.model
        do { try spec.validate(classes: spec.outputSize) } catch let e as CortadoError {
            throw CortadoError.model("\(path): bad architecture: \(e.message)")
        }
        // Each weight however it was stored (fp32/fp16/bf16/int8, dense or CSR); int8 dense
        // weights keep the integer path, everything else is fp32 in the network's arena.
        let layout = spec.parameterLayout
        var params = [Float](repeating: 0, count: layout.count)
        var int8 = [Int: (weight: [Int8], scales: [Float], bias: [Float], inDim: Int, outDim: Int)]()
        do {
            for t in layout.tensors {
                let layer = Int(t.name.split(separator: ".")[1]) ?? -1
                if spec.layers.indices.contains(layer), case .dense = spec.layers[layer], t.name.hasSuffix(".weight"),
                   let q = try file.int8Rows(t.name, shape: t.shape) {
                    let bias = try file.floats("layers.\(layer).bias", shape: [t.shape[0]])
                    int8[layer] = (q.q, q.scales, bias, t.shape[1], t.shape[0])
                } else {
                    params.replaceSubrange(t.offset..<(t.offset + t.count), with: try file.floats(t.name, shape: t.shape))
                }
            }
        } catch let e as CortadoError { throw CortadoError.model("\(path): \(e.message)") }
        self.params = params
        int8Layers = int8
    }

    /// Scores `batch` rows of `input` (batch, inputSize) and writes class probabilities
    /// (batch, classes) into `probabilities`. The network is rebuilt only when a larger batch
    /// than before arrives.
    public func predict(_ input: UnsafePointer<Float>, batch: Int, probabilities: UnsafeMutablePointer<Float>) {
        if net == nil || net!.maxBatch < batch {
            let n = Network<Float>(spec: spec, maxBatch: max(batch, 1))
            n.params.load(params)
            for (layer, q) in int8Layers {
                n.denseOverrides[layer] = { [unowned self] x, rows, out in
                    self.int8Dense(out: out, input: x, weight: q.weight, scales: q.scales, bias: q.bias, batch: rows, inDim: q.inDim, outDim: q.outDim)
                }
            }
            let width = max(spec.inputSize, spec.widths.max() ?? 0), b = max(batch, 1)
            qa = [Int8](repeating: 0, count: b * width)
            rowScales = [Float](repeating: 0, count: b)
            acc = [Int32](repeating: 0, count: b * width)
            net = n
        }
        let logits = net!.forward(input, batch: batch)
        softmax(logits, batch: batch, classes: classes, out: probabilities)
    }

    /// out (batch, outDim) = dequant(quant(input) · weightᵀ) + bias: every row quantized with
    /// its own scale, one int8 GEMM (int32 accumulation, the C kernel), then each product
    /// rescaled by row scale × channel scale and the fp32 bias added.
    private func int8Dense(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: [Int8], scales: [Float],
                           bias: [Float], batch: Int, inDim: Int, outDim: Int) {
        qa.withUnsafeMutableBufferPointer { q in
            rowScales.withUnsafeMutableBufferPointer { rs in
                acc.withUnsafeMutableBufferPointer { c in
                    for r in 0..<batch { rs[r] = quantizeRow(input + r * inDim, count: inDim, into: q.baseAddress! + r * inDim) }
                    weight.withUnsafeBufferPointer { w in
                        cortado_int8_gemm(q.baseAddress!, w.baseAddress!, c.baseAddress!, Int32(batch), Int32(outDim), Int32(inDim), Int32(int8Path))
                    }
                    for r in 0..<batch {
                        let y = out + r * outDim, cr = c.baseAddress! + r * outDim
                        for o in 0..<outDim { y[o] = Float(cr[o]) * (rs[r] * scales[o]) + bias[o] }
                    }
                }
            }
        }
    }
}

/// Symmetric quantization of one activation row: returns its scale (max|x| / 127).
@inline(__always)
func quantizeRow(_ x: UnsafePointer<Float>, count: Int, into q: UnsafeMutablePointer<Int8>) -> Float {
    var m: Float = 0
    for i in 0..<count { m = max(m, abs(x[i])) }
    let scale: Float = m > 0 ? m / 127 : 1
    let inv = 1 / scale
    for i in 0..<count { q[i] = Int8((x[i] * inv).rounded()) }
    return scale
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
