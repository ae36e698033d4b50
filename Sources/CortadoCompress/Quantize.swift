import CortadoCore
import CortadoJob
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

/// Writes the model files cortado-infer loads, from a trained parameter arena, by a `Recipe`.
public enum ModelExport {
    /// Writes `params` (laid out by `model.parameterLayout`) as a `.cmodel` file by `recipe`:
    /// one-shot magnitude pruning of a copy when the recipe prunes, then each weight stored at
    /// the recipe's precision — int8 per output channel with fp32 scales, fp16/bf16, or fp32 —
    /// and as CSR when at least half of it is zero (values + int32 row pointers + uint16
    /// column indices: 3 bytes per int8 non-zero). Biases stay fp32 (few, and sensitive).
    /// A static int8 recipe (`int8-static`) also needs `calibration`: training rows (rows,
    /// inputSize) its activation scales are measured on (`Calibration`).
    public static func write(
        path: String, recipe: Recipe, model: ModelSpec, classes: [String],
        params: UnsafeBufferPointer<Float>, metadata: [String: String],
        calibration: (rows: UnsafePointer<Float>, count: Int)? = nil
    ) throws {
        try write(
            path: path, recipe: recipe, model: model, layout: model.parameterLayout, classes: classes,
            params: params, metadata: metadata, recommender: nil, calibration: calibration)
    }

    /// Writes a recommender: int8 quantizes every 2-D tensor per row — the tower's dense
    /// weights per output channel, and the embedding tables per id (each user's and item's
    /// vector gets its own scale), which is where a recommender's bytes are.
    public static func write(
        path: String, recipe: Recipe, recommender: RecommenderSpec,
        params: UnsafeBufferPointer<Float>, metadata: [String: String]
    ) throws {
        try write(
            path: path, recipe: recipe, model: recommender.tower, layout: recommender.parameterLayout, classes: [],
            params: params, metadata: metadata, recommender: recommender)
    }

    /// Writes a text classifier: int8 quantizes the head's weights per output channel and the
    /// embedding table per row (each word's and bucket's vector gets its own scale).
    public static func write(
        path: String, recipe: Recipe, text: TextSpec, classes: [String],
        params: UnsafeBufferPointer<Float>, metadata: [String: String]
    ) throws {
        try write(
            path: path, recipe: recipe, model: text.head, layout: text.parameterLayout, classes: classes,
            params: params, metadata: metadata, recommender: nil, text: text)
    }

    static func write(
        path: String, recipe: Recipe, model: ModelSpec, layout: ParameterLayout, classes: [String],
        params: UnsafeBufferPointer<Float>, metadata: [String: String], recommender: RecommenderSpec?,
        text: TextSpec? = nil, calibration: (rows: UnsafePointer<Float>, count: Int)? = nil
    ) throws {
        precondition(params.count == layout.count)
        var weights = Array(params)
        var meta = metadata
        if let s = recipe.sparsity {
            let pruner = Pruner(layout: layout, scope: recipe.scope)
            weights.withUnsafeMutableBufferPointer { pruner.prune($0.baseAddress!, to: s) }
        }
        var tensors = [ModelFile.TensorData]()
        var nonZeros = 0
        for t in layout.tensors {
            let slice = Array(weights[t.offset..<(t.offset + t.count)])
            let nz = slice.reduce(0) { $0 + ($1 != 0 ? 1 : 0) }
            nonZeros += nz
            tensors += encode(t, slice, recipe: recipe, sparse: t.shape.count == 2 && nz > 0 && nz * 2 <= t.count)
        }
        if let percentile = recipe.calibrationPercentile {
            guard recommender == nil, text == nil else {
                throw CortadoError.usage("recipe \(recipe): static int8 is for classifiers (recommenders use int8)")
            }
            guard let calibration, calibration.count > 0 else {
                throw CortadoError.usage(
                    "recipe \(recipe): static int8 needs calibration rows (training data) to measure activation scales")
            }
            let scales = weights.withUnsafeBufferPointer {
                Calibration.inputScales(
                    model: model, params: $0, input: calibration.rows, rows: calibration.count, percentile: percentile)
            }
            for (layer, scale) in scales.sorted(by: { $0.key < $1.key }) {
                tensors.append(
                    .init(
                        name: "layers.\(layer).input_scale", dtype: .float32, shape: [1],
                        bytes: withUnsafeBytes(of: scale) { Data($0) }))
            }
            meta["activation_scales"] =
                (percentile >= 100 ? "static min/max" : "static p\(String(format: "%g", percentile)) of |x|")
                + " on \(calibration.count) training rows"
        }
        meta["parameters"] = String(layout.count)
        meta["non_zeros"] = String(nonZeros)
        meta["recipe"] = recipe.description
        try ModelFile.write(
            path: path, precision: recipe.description, model: model, classes: classes,
            tensors: tensors, metadata: meta, recommender: recommender, text: text)
    }

    /// One tensor's stored form: dense or CSR (2-D only), at the recipe's precision (int8 for
    /// weights of 2 or more dimensions).
    static func encode(_ t: TensorSpec, _ w: [Float], recipe: Recipe, sparse: Bool) -> [ModelFile.TensorData] {
        let precision: Recipe.Precision =
            t.name.hasSuffix(".bias") || (recipe.precision == .int8 && t.shape.count < 2)
                || RecommenderSpec.constantTensors.contains(t.name) ? .fp32 : recipe.precision
        var out = [ModelFile.TensorData]()
        var quant: ModelFile.Quantization?
        var q = [Int8]()
        if precision == .int8 {
            // Conv weights (f, c, k, k) quantize per filter, like dense rows per output.
            let (qq, scales) = w.withUnsafeBufferPointer {
                quantizePerRow($0, rows: t.shape[0], cols: t.count / t.shape[0])
            }
            q = qq
            quant = ModelFile.Quantization(scheme: "symmetric_per_channel", axis: 0, scales: t.name + "_scale")
            out.append(
                .init(
                    name: t.name + "_scale", dtype: .float32, shape: [t.shape[0]],
                    bytes: scales.withUnsafeBytes { Data($0) }))
        }
        // The values in stored order (all, or the non-zeros row by row) at `precision`.
        func values(_ idx: [Int]) -> (ModelFile.DType, Data) {
            switch precision {
            case .int8: return (.int8, idx.map { q[$0] }.withUnsafeBytes { Data($0) })
            case .fp16: return (.float16, idx.map { Float16(w[$0]).bitPattern }.withUnsafeBytes { Data($0) })
            case .bf16: return (.bfloat16, idx.map { bfloat16Bits(w[$0]) }.withUnsafeBytes { Data($0) })
            case .fp32: return (.float32, idx.map { w[$0] }.withUnsafeBytes { Data($0) })
            }
        }
        if sparse {
            let rows = t.shape[0], cols = t.shape[1]
            var idx = [Int](), indptr = [Int32](repeating: 0, count: rows + 1)
            for r in 0..<rows {
                for c in 0..<cols where w[r * cols + c] != 0 { idx.append(r * cols + c) }
                indptr[r + 1] = Int32(idx.count)
            }
            let (dtype, data) = values(idx)
            out.append(
                .init(name: t.name + ".values", dtype: dtype, shape: [idx.count], quantization: quant, bytes: data))
            out.append(
                .init(
                    name: t.name + ".indptr", dtype: .int32, shape: [rows + 1],
                    bytes: indptr.withUnsafeBytes { Data($0) }))
            if cols <= Int(UInt16.max) + 1 {
                out.append(
                    .init(
                        name: t.name + ".indices", dtype: .uint16, shape: [idx.count],
                        bytes: idx.map { UInt16($0 % cols) }.withUnsafeBytes { Data($0) }))
            } else {
                out.append(
                    .init(
                        name: t.name + ".indices", dtype: .int32, shape: [idx.count],
                        bytes: idx.map { Int32($0 % cols) }.withUnsafeBytes { Data($0) }))
            }
        } else {
            let (dtype, data) = values(Array(0..<w.count))
            out.append(.init(name: t.name, dtype: dtype, shape: t.shape, quantization: quant, bytes: data))
        }
        return out
    }
}
