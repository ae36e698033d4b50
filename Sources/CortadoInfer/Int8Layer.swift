import CKernels
import CortadoModel

/// One dense or conv layer on the integer path: int8 weights per output channel (per filter
/// for conv), each input row (each conv sample) quantized on the fly with its own scale, one
/// int8 × int8 → int32 GEMM, then the epilogue rescales by row scale × channel scale, adds the
/// fp32 bias and, when a ReLU follows, applies it there, and a conv's max pool after that
/// (the network then skips those layers). Rows are padded with zeros, once for the weights
/// here and per call for the activations: to a multiple of 32 bytes, so the row-major kernels
/// never take their scalar tail, or on a CPU with AVX-512 VNNI to a multiple of 4, the packed
/// kernel's step; there the weights (dense or conv) are also packed here, once, into the
/// panels the register-tiled kernel reads (cortado_int8_pack_weights).
struct Int8Layer {
    /// (outDim, kp) int8, zero-padded rows.
    let weight: [Int8]
    /// The weight packed for cortado_int8_gemm_packed (cortado_int8_packed_size(outDim, kp)
    /// bytes), or empty on CPUs without VNNI.
    let packed: [Int8]
    let scales: [Float]
    let bias: [Float]
    let inDim: Int, kp: Int, outDim: Int
    /// The geometry when the layer is a convolution; its GEMM then runs over the output
    /// positions' receptive fields (im2row) of a chunk of samples.
    let conv: ConvShape?
    /// The ReLU and (conv only) the max pool its epilogue computes: the network skips them.
    let tail: ConvTail
    /// Floats one sample's output takes: the conv's (pooled) maps, or outDim.
    let outCount: Int
    /// A calibrated input scale (static quantization), or nil for a scale per row at run time.
    let inputScale: Float?

    init(
        weight: [Int8], scales: [Float], bias: [Float], tail: ConvTail, conv: ConvShape?, inputScale: Float? = nil
    ) {
        self.inputScale = inputScale
        self.tail = conv == nil ? ConvTail(relu: tail.relu, pool: nil) : tail
        if let g = conv, let pool = self.tail.pool {
            outCount = PoolShape(c: g.f, h: g.oh, w: g.ow, size: pool.size, stride: pool.stride).outCount
        } else {
            outCount = conv?.outCount ?? scales.count
        }
        outDim = scales.count
        inDim = weight.count / max(outDim, 1)
        // The packed VNNI kernel reads a row in groups of 4 bytes, the row-major kernels in
        // 32-byte vectors (anything shorter takes their scalar tail): a 3×3 one-channel conv's
        // 9-byte rows cost 12 bytes of products there instead of 32.
        let vnni = Int(cortado_int8_best_path()) >= CORTADO_INT8_AVX512VNNI
        kp = vnni ? (inDim + 3) / 4 * 4 : (inDim + 31) / 32 * 32
        // A conv filter's (channel, kernel row, kernel column) weights go to (kernel row, kernel
        // column, channel), the order cortado_im2row_int8 lays a receptive field out in; the
        // integer sums are the same in any order.
        var column: (Int) -> Int = { $0 }
        if let g = conv { column = { j in j % (g.k * g.k) * g.c + j / (g.k * g.k) } }
        var padded = [Int8](repeating: 0, count: outDim * kp)
        for o in 0..<outDim { for j in 0..<inDim { padded[o * kp + column(j)] = weight[o * inDim + j] } }
        self.weight = padded
        if outDim > 0, vnni {
            let n = Int32(outDim), k = Int32(kp)
            var p = [Int8](repeating: 0, count: cortado_int8_packed_size(n, k))
            p.withUnsafeMutableBufferPointer { cortado_int8_pack_weights(padded, n, k, $0.baseAddress!) }
            packed = p
        } else {
            packed = []
        }
        self.scales = scales
        self.bias = bias
        self.conv = conv
    }

    /// Bytes a conv chunk's receptive fields (kp each) and int32 products (4 · outDim each)
    /// may take: about an L2 cache, so the epilogue reads the products the GEMM just wrote from
    /// cache rather than memory.
    static let convChunkBytes = 1 << 20

    /// Samples per conv GEMM: as many as fit convChunkBytes (at least one), at most the batch.
    func convChunk(batch: Int) -> Int {
        guard let g = conv else { return batch }
        return max(1, min(batch, Int8Layer.convChunkBytes / max(1, g.positions * (kp + 4 * outDim))))
    }

    /// GEMM rows per call: the batch for dense, a chunk of samples' output positions for conv.
    func rows(batch: Int) -> Int { conv.map { $0.positions * convChunk(batch: batch) } ?? batch }

    func forward(
        _ x: UnsafePointer<Float>, batch: Int, out: UnsafeMutablePointer<Float>, scratch: inout Int8Scratch, path: Int
    ) {
        scratch.withBuffers { q, image, scales, acc in
            weight.withUnsafeBufferPointer { w in
                self.scales.withUnsafeBufferPointer { cs in
                    bias.withUnsafeBufferPointer { b in
                        let t = Buffers(q: q, image: image, scales: scales, acc: acc, w: w.baseAddress!)
                        if let g = conv {
                            forwardConv(x, batch: batch, g, t, cs.baseAddress!, b.baseAddress!, out: out, path: path)
                        } else {
                            forwardDense(x, batch: batch, t, cs.baseAddress!, b.baseAddress!, out: out, path: path)
                        }
                    }
                }
            }
        }
    }

    /// The scratch buffers of one call and the row-major weights.
    private struct Buffers {
        let q: UnsafeMutablePointer<Int8>, image: UnsafeMutablePointer<Int8>, scales: UnsafeMutablePointer<Float>
        let acc: UnsafeMutablePointer<Int32>, w: UnsafePointer<Int8>
    }

    /// acc (rows, outDim) = q (rows, kp) · weightᵀ: the packed register-tiled kernel on VNNI,
    /// the row-major one on the other paths (the same exact integers).
    private func product(_ t: Buffers, rows: Int, nonneg: Int32, path: Int) {
        if path >= CORTADO_INT8_AVX512VNNI, !packed.isEmpty {
            packed.withUnsafeBufferPointer {
                cortado_int8_gemm_packed(
                    t.q, $0.baseAddress!, t.acc, Int32(rows), Int32(outDim), Int32(kp), Int32(path), nonneg)
            }
        } else {
            cortado_int8_gemm_ex(t.q, t.w, t.acc, Int32(rows), Int32(outDim), Int32(kp), Int32(path), nonneg)
        }
    }

    private func forwardDense(
        _ x: UnsafePointer<Float>, batch: Int, _ t: Buffers, _ cs: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
        out: UnsafeMutablePointer<Float>, path: Int
    ) {
        let nonneg =
            inputScale.map {
                cortado_quantize_rows_fixed(
                    x, Int32(inDim), Int32(batch), Int32(inDim), $0, t.q, Int32(kp), t.scales, Int32(path))
            }
            ?? cortado_quantize_rows(x, Int32(inDim), Int32(batch), Int32(inDim), t.q, Int32(kp), t.scales, Int32(path))
        product(t, rows: batch, nonneg: nonneg, path: path)
        cortado_dequantize_rows(
            t.acc, Int32(batch), Int32(outDim), t.scales, cs, nil, b, tail.relu ? 1 : 0, out, Int32(path))
    }

    /// Conv over chunks of samples: each sample's image quantized with its own scale (every
    /// receptive field of a sample shares it, so a sample's result does not depend on its
    /// chunk) and turned channels last, im2row in bytes into the chunk's rows, one GEMM
    /// (positions of every sample in the chunk) × filters, and the epilogue transposes into
    /// (filters, positions) per sample.
    private func forwardConv(
        _ x: UnsafePointer<Float>, batch: Int, _ g: ConvShape, _ t: Buffers, _ cs: UnsafePointer<Float>,
        _ b: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, path: Int
    ) {
        let chunk = convChunk(batch: batch), inCount = Int32(g.inCount)
        for first in stride(from: 0, to: batch, by: chunk) {
            let samples = min(chunk, batch - first)
            var nonneg: Int32 = 1
            for i in 0..<samples {
                let xi = x + (first + i) * g.inCount
                nonneg &=
                    inputScale.map {
                        cortado_quantize_rows_fixed(
                            xi, inCount, 1, inCount, $0, t.image, inCount, t.scales + i, Int32(path))
                    } ?? cortado_quantize_rows(xi, inCount, 1, inCount, t.image, inCount, t.scales + i, Int32(path))
                var hwc = UnsafePointer(t.image)
                if g.c > 1 {
                    cortado_chw_to_hwc_int8(t.image, Int32(g.c), Int32(g.h * g.w), t.image + g.inCount)
                    hwc += g.inCount
                }
                cortado_im2row_int8(
                    hwc, Int32(g.c), Int32(g.h), Int32(g.w), Int32(g.k), Int32(g.s), Int32(g.p),
                    t.q + i * g.positions * kp, Int32(kp))
            }
            product(t, rows: samples * g.positions, nonneg: nonneg, path: path)
            cortado_dequantize_conv(
                t.acc, Int32(samples), Int32(g.oh), Int32(g.ow), Int32(outDim), t.scales, cs, b, tail.relu ? 1 : 0,
                Int32(tail.pool?.size ?? 0), Int32(tail.pool?.stride ?? 0), out + first * outCount, Int32(path))
        }
    }
}

/// The int8 layers' shared scratch, sized once for the largest layer at the network's batch:
/// quantized rows (or a conv chunk's receptive fields), a conv sample's quantized image (planes,
/// then channels last), row or column scales, and the int32 products.
struct Int8Scratch {
    private var q = [Int8](), image = [Int8](), scales = [Float](), acc = [Int32]()

    mutating func reserve<S: Sequence>(for layers: S, batch: Int) where S.Element == Int8Layer {
        var nq = 1, ni = 1, ns = 1, na = 1
        for l in layers {
            let r = l.rows(batch: batch)
            nq = max(nq, r * l.kp); ns = max(ns, r); na = max(na, r * l.outDim)
            if let g = l.conv { ni = max(ni, 2 * g.inCount) }
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
