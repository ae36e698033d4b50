import CKernels
import CortadoModel

/// One dense or conv layer on the integer path: int8 weights per output channel (per filter
/// for conv), each input row (each conv sample) quantized on the fly with its own scale, one
/// int8 × int8 → int32 GEMM, then the epilogue rescales by row scale × channel scale, adds the
/// fp32 bias and, when a ReLU follows, applies it there (the ReLU layer after it then finds
/// nothing to do). Rows are padded to a multiple of 32 bytes with zeros, once for the
/// weights here and per call for the activations, so the kernel never takes its scalar tail.
/// On a CPU with AVX-512 VNNI a dense layer's weights are also packed here, once, into the
/// panels the register-tiled kernel reads (cortado_int8_pack_weights).
struct Int8Layer {
    /// (outDim, kp) int8, zero-padded rows.
    let weight: [Int8]
    /// The weight packed for cortado_int8_gemm_packed (cortado_int8_packed_size(outDim, kp)
    /// bytes), or empty: conv layers (their weights are the left operand) and CPUs without VNNI.
    let packed: [Int8]
    let scales: [Float]
    let bias: [Float]
    let inDim: Int, kp: Int, outDim: Int
    let relu: Bool
    /// The geometry when the layer is a convolution; its GEMM then runs per sample over the
    /// output positions' receptive fields (im2row).
    let conv: ConvShape?
    /// A calibrated input scale (static quantization), or nil for a scale per row at run time.
    let inputScale: Float?

    init(weight: [Int8], scales: [Float], bias: [Float], relu: Bool, conv: ConvShape?, inputScale: Float? = nil) {
        self.inputScale = inputScale
        outDim = scales.count
        inDim = weight.count / max(outDim, 1)
        kp = (inDim + 31) / 32 * 32
        var padded = [Int8](repeating: 0, count: outDim * kp)
        for o in 0..<outDim { for j in 0..<inDim { padded[o * kp + j] = weight[o * inDim + j] } }
        self.weight = padded
        if conv == nil, outDim > 0, Int(cortado_int8_best_path()) >= CORTADO_INT8_AVX512VNNI {
            let n = Int32(outDim), k = Int32(kp)
            var p = [Int8](repeating: 0, count: cortado_int8_packed_size(n, k))
            p.withUnsafeMutableBufferPointer { cortado_int8_pack_weights(padded, n, k, $0.baseAddress!) }
            packed = p
        } else {
            packed = []
        }
        self.scales = scales
        self.bias = bias
        self.relu = relu
        self.conv = conv
    }

    /// GEMM rows per call: the batch for dense, one sample's output positions for conv.
    func rows(batch: Int) -> Int { conv?.positions ?? batch }

    func forward(
        _ x: UnsafePointer<Float>, batch: Int, out: UnsafeMutablePointer<Float>, scratch: inout Int8Scratch, path: Int
    ) {
        scratch.withBuffers { q, image, scales, acc in
            weight.withUnsafeBufferPointer { w in
                self.scales.withUnsafeBufferPointer { cs in
                    bias.withUnsafeBufferPointer { b in
                        guard let g = conv else {
                            let nonneg =
                                inputScale.map {
                                    cortado_quantize_rows_fixed(
                                        x, Int32(inDim), Int32(batch), Int32(inDim), $0, q, Int32(kp), scales)
                                }
                                ?? cortado_quantize_rows(
                                    x, Int32(inDim), Int32(batch), Int32(inDim), q, Int32(kp), scales)
                            if path >= CORTADO_INT8_AVX512VNNI, !packed.isEmpty {
                                packed.withUnsafeBufferPointer {
                                    cortado_int8_gemm_packed(
                                        q, $0.baseAddress!, acc, Int32(batch), Int32(outDim), Int32(kp), Int32(path),
                                        nonneg)
                                }
                            } else {
                                cortado_int8_gemm_ex(
                                    q, w.baseAddress!, acc, Int32(batch), Int32(outDim), Int32(kp), Int32(path), nonneg)
                            }
                            cortado_dequantize_rows(
                                acc, Int32(batch), Int32(outDim), scales, cs.baseAddress!, nil, b.baseAddress!,
                                relu ? 1 : 0, out)
                            return
                        }
                        // Conv, per sample: the image quantized once with one scale (so every receptive
                        // field shares it), im2row in bytes, then filters × positions in one GEMM with
                        // the weights as the left operand, so the products come out in the (filters,
                        // positions) layout of the next layer, biased per filter.
                        let positions = Int32(g.positions), inCount = Int32(g.inCount)
                        for n in 0..<batch {
                            if let s = inputScale {
                                _ = cortado_quantize_rows_fixed(
                                    x + n * g.inCount, inCount, 1, inCount, s, image, inCount, scales)
                            } else {
                                _ = cortado_quantize_rows(
                                    x + n * g.inCount, inCount, 1, inCount, image, inCount, scales)
                            }
                            for i in 1..<g.positions { scales[i] = scales[0] }
                            cortado_im2row_int8(
                                image, Int32(g.c), Int32(g.h), Int32(g.w), Int32(g.k), Int32(g.s), Int32(g.p), q,
                                Int32(kp))
                            cortado_int8_gemm(w.baseAddress!, q, acc, Int32(outDim), positions, Int32(kp), Int32(path))
                            cortado_dequantize_rows(
                                acc, Int32(outDim), positions, cs.baseAddress!, scales, b.baseAddress!, nil,
                                relu ? 1 : 0, out + n * g.outCount)
                        }
                    }
                }
            }
        }
    }
}

/// The int8 layers' shared scratch, sized once for the largest layer at the network's batch:
/// quantized rows (or a sample's receptive fields), a conv sample's quantized image, row or
/// column scales, and the int32 products.
struct Int8Scratch {
    private var q = [Int8](), image = [Int8](), scales = [Float](), acc = [Int32]()

    mutating func reserve<S: Sequence>(for layers: S, batch: Int) where S.Element == Int8Layer {
        var nq = 1, ni = 1, ns = 1, na = 1
        for l in layers {
            let r = l.rows(batch: batch)
            nq = max(nq, r * l.kp); ns = max(ns, r); na = max(na, r * l.outDim)
            if let g = l.conv { ni = max(ni, g.inCount) }
        }
        q = [Int8](repeating: 0, count: nq)
        image = [Int8](repeating: 0, count: ni)
        scales = [Float](repeating: 0, count: ns)
        acc = [Int32](repeating: 0, count: na)
    }

    mutating func withBuffers(
        _ body: (
            UnsafeMutablePointer<Int8>, UnsafeMutablePointer<Int8>, UnsafeMutablePointer<Float>,
            UnsafeMutablePointer<Int32>
        ) -> Void
    ) {
        q.withUnsafeMutableBufferPointer { q in
            image.withUnsafeMutableBufferPointer { i in
                scales.withUnsafeMutableBufferPointer { s in
                    acc.withUnsafeMutableBufferPointer { a in
                        body(q.baseAddress!, i.baseAddress!, s.baseAddress!, a.baseAddress!)
                    }
                }
            }
        }
    }
}
