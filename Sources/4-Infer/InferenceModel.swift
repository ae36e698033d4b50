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
    private var rowQ = [Int8]()   // one quantized input row

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
            rowQ = [Int8](repeating: 0, count: max(spec.inputSize, spec.widths.max() ?? 0))
            net = n
        }
        let logits = net!.forward(input, batch: batch)
        softmax(logits, batch: batch, classes: classes, out: probabilities)
    }

    /// out (batch, outDim) = dequant(quant(input) · weightᵀ) + bias, int32 accumulation.
    private func int8Dense(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: [Int8], scales: [Float],
                           bias: [Float], batch: Int, inDim: Int, outDim: Int) {
        weight.withUnsafeBufferPointer { w in
            rowQ.withUnsafeMutableBufferPointer { q in
                for r in 0..<batch {
                    let x = input + r * inDim
                    let sx = quantizeRow(x, count: inDim, into: q.baseAddress!)
                    let y = out + r * outDim
                    for o in 0..<outDim {
                        let acc = dotInt8(q.baseAddress!, w.baseAddress! + o * inDim, count: inDim)
                        y[o] = Float(acc) * (sx * scales[o]) + bias[o]
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

/// Σ a[i]·b[i] over int8 with int32 accumulation (the loop vectorizes).
@inline(__always)
func dotInt8(_ a: UnsafePointer<Int8>, _ b: UnsafePointer<Int8>, count: Int) -> Int32 {
    var acc: Int32 = 0
    for i in 0..<count { acc &+= Int32(a[i]) &* Int32(b[i]) }
    return acc
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
