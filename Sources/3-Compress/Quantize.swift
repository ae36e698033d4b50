import CortadoCore
import CortadoModel
import Foundation

/// Symmetric per-output-channel int8 quantization of a (rows, cols) weight matrix: each row
/// (output channel) gets scale = max|w| / 127 and q = round(w / scale) in [-127, 127].
///
/// Per-channel scales keep a row with small weights from being crushed by another row's large
/// ones; symmetric (no zero point) keeps the int8 GEMM a plain integer dot product. -128 is
/// never used, so negation cannot overflow.
public func quantizePerRow(_ w: UnsafeBufferPointer<Float>, rows: Int, cols: Int) -> (q: [Int8], scales: [Float]) {
    precondition(w.count == rows * cols)
    var q = [Int8](repeating: 0, count: rows * cols)
    var scales = [Float](repeating: 0, count: rows)
    for r in 0..<rows {
        var m: Float = 0
        for c in 0..<cols { m = max(m, abs(w[r * cols + c])) }
        let scale = m > 0 ? m / 127 : 1
        scales[r] = scale
        for c in 0..<cols {
            q[r * cols + c] = Int8(max(-127, min(127, (w[r * cols + c] / scale).rounded())))
        }
    }
    return (q, scales)
}

/// Writes the model files cortado-infer loads, from a trained parameter arena.
public enum ModelExport {
    public enum Precision: String, CaseIterable { case fp32, int8 }

    /// Writes `params` (laid out by `model.parameterLayout`) as a `.cmodel` file at `precision`.
    /// int8 stores dense weights quantized per output channel with fp32 scales; biases stay fp32.
    public static func write(path: String, precision: Precision, model: ModelSpec, classes: [String],
                             params: UnsafeBufferPointer<Float>, metadata: [String: String]) throws {
        try write(path: path, precision: precision, model: model, layout: model.parameterLayout, classes: classes,
                  params: params, metadata: metadata, recommender: nil)
    }

    /// Writes a recommender: int8 quantizes every 2-D tensor per row — the tower's dense
    /// weights per output channel, and the embedding tables per id (each user's and item's
    /// vector gets its own scale), which is where a recommender's bytes are.
    public static func write(path: String, precision: Precision, recommender: RecommenderSpec,
                             params: UnsafeBufferPointer<Float>, metadata: [String: String]) throws {
        try write(path: path, precision: precision, model: recommender.tower, layout: recommender.parameterLayout, classes: [],
                  params: params, metadata: metadata, recommender: recommender)
    }

    static func write(path: String, precision: Precision, model: ModelSpec, layout: ParameterLayout, classes: [String],
                      params: UnsafeBufferPointer<Float>, metadata: [String: String], recommender: RecommenderSpec?) throws {
        precondition(params.count == layout.count)
        var tensors = [ModelFile.TensorData]()
        for t in layout.tensors {
            let slice = UnsafeBufferPointer(rebasing: params[t.offset..<(t.offset + t.count)])
            if precision == .int8, t.shape.count == 2 {
                let (q, scales) = quantizePerRow(slice, rows: t.shape[0], cols: t.shape[1])
                let scaleName = t.name + "_scale"
                let quant = ModelFile.Quantization(scheme: "symmetric_per_channel", axis: 0, scales: scaleName)
                tensors.append(.init(name: t.name, dtype: .int8, shape: t.shape, quantization: quant, bytes: q.withUnsafeBytes { Data($0) }))
                tensors.append(.init(name: scaleName, dtype: .float32, shape: [t.shape[0]], quantization: nil, bytes: scales.withUnsafeBytes { Data($0) }))
            } else {
                tensors.append(.init(name: t.name, dtype: .float32, shape: t.shape, quantization: nil, bytes: Data(buffer: slice)))
            }
        }
        var meta = metadata
        meta["parameters"] = String(layout.count)
        try ModelFile.write(path: path, precision: precision.rawValue, model: model, classes: classes,
                            tensors: tensors, metadata: meta, recommender: recommender)
    }
}
