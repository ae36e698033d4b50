import CortadoCore
import CortadoModel
import Foundation

/// A loaded `.cmodel`, ready to score batches. fp32 dense layers run on sgemm; int8 dense
/// layers run an integer path: each input row is quantized symmetrically on the fly (dynamic
/// per-row scale), multiplied with the int8 weights accumulating in int32, and rescaled with
/// the row scale × the channel scale before the fp32 bias is added.
public final class InferenceModel {
    public let path: String
    public let header: ModelFile.Header
    public var spec: ModelSpec { header.model }
    public var classes: Int { spec.outputSize }

    enum Op {
        case denseF32(weight: [Float], bias: [Float], inDim: Int, outDim: Int)   // weight (out, in)
        case denseI8(weight: [Int8], scales: [Float], bias: [Float], inDim: Int, outDim: Int)
        case relu
    }
    let ops: [Op]
    private var capacity = 0
    private var bufA = [Float](), bufB = [Float]()   // (capacity, max width)
    private var rowQ = [Int8]()                      // one quantized input row

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
        func need(_ name: String, _ shape: [Int], _ dtype: ModelFile.DType) throws -> ModelFile.Tensor {
            guard let t = file.tensor(name) else { throw CortadoError.model("\(path): missing tensor '\(name)'") }
            guard t.shape == shape, t.dtype == dtype else {
                throw CortadoError.model("\(path): tensor '\(name)' is \(t.dtype.rawValue)\(t.shape), expected \(dtype.rawValue)\(shape)")
            }
            return t
        }
        var ops = [Op]()
        var width = spec.inputSize
        for (i, l) in spec.layers.enumerated() {
            switch l {
            case .relu: ops.append(.relu)
            case .dense(let units):
                let bias = file.values(try need("layers.\(i).bias", [units], .float32), as: Float.self)
                guard let w = file.tensor("layers.\(i).weight") else { throw CortadoError.model("\(path): missing tensor 'layers.\(i).weight'") }
                if w.dtype == .int8 {
                    let q = try need(w.name, [units, width], .int8)
                    guard let scaleName = q.quantization?.scales else { throw CortadoError.model("\(path): int8 tensor '\(w.name)' has no scales") }
                    let scales = file.values(try need(scaleName, [units], .float32), as: Float.self)
                    ops.append(.denseI8(weight: file.values(q, as: Int8.self), scales: scales, bias: bias, inDim: width, outDim: units))
                } else {
                    let f = try need(w.name, [units, width], .float32)
                    ops.append(.denseF32(weight: file.values(f, as: Float.self), bias: bias, inDim: width, outDim: units))
                }
                width = units
            }
        }
        self.ops = ops
    }

    /// Scores `batch` rows of `input` (batch, inputSize) and writes class probabilities
    /// (batch, classes) into `probabilities`. Scratch buffers grow only when a larger batch
    /// than before arrives.
    public func predict(_ input: UnsafePointer<Float>, batch: Int, probabilities: UnsafeMutablePointer<Float>) {
        reserve(batch)
        var width = spec.inputSize
        bufA.withUnsafeMutableBufferPointer { a in
            bufB.withUnsafeMutableBufferPointer { b in
                var src = input
                var dst = a.baseAddress!
                for op in ops {
                    switch op {
                    case .relu:
                        reluForward(out: dst, input: src, count: batch * width)
                    case let .denseF32(w, bias, inDim, outDim):
                        w.withUnsafeBufferPointer { wp in
                            bias.withUnsafeBufferPointer { bp in
                                denseForward(out: dst, input: src, weight: wp.baseAddress!, bias: bp.baseAddress!,
                                             batch: batch, inDim: inDim, outDim: outDim)
                            }
                        }
                        width = outDim
                    case let .denseI8(w, scales, bias, inDim, outDim):
                        int8Dense(out: dst, input: src, weight: w, scales: scales, bias: bias, batch: batch, inDim: inDim, outDim: outDim)
                        width = outDim
                    }
                    src = UnsafePointer(dst)
                    dst = dst == a.baseAddress! ? b.baseAddress! : a.baseAddress!
                }
                softmax(src, batch: batch, classes: width, out: probabilities)
            }
        }
    }

    private func reserve(_ batch: Int) {
        guard batch > capacity else { return }
        let maxWidth = max(spec.inputSize, spec.widths.max() ?? 0)
        capacity = batch
        bufA = [Float](repeating: 0, count: batch * maxWidth)
        bufB = [Float](repeating: 0, count: batch * maxWidth)
        rowQ = [Int8](repeating: 0, count: maxWidth)
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
