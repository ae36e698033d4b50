import CKernels
import CortadoModel

/// An fp32 conv layer at inference on the direct kernel (`cortado_conv_f32_forward`, AVX-512
/// or AVX2), with the ReLU and the max pool that follow it fused into its output pass: one
/// sample at a time, no im2col matrix, no separate bias / copy / ReLU / pool passes. Taken
/// where the CPU runs a vector path for the layer's filter count (16 or 8 per vector); other
/// layers keep the training network's im2col + sgemm. The weights are packed once, at load.
final class DirectConvLayer {
    let g: ConvShape
    /// The ReLU and max pool computed in the output pass.
    let tail: ConvTail
    /// The weight as (k, k, c, f) (cortado_conv_f32_pack), then the bias (f).
    private let packed: UnsafeMutableBufferPointer<Float>
    /// One sample's padded input and outputs (cortado_conv_f32_scratch floats), 64-byte aligned.
    private let scratch: UnsafeMutablePointer<Float>

    /// The layer at `index` of `spec` when it is a conv the CPU runs on a vector path; `params`
    /// is the network's arena layout with the fp32 weight and bias in place.
    init?(spec: ModelSpec, index: Int, inputShape x: [Int], params: UnsafePointer<Float>, offset: Int) {
        guard case let .conv2d(f, k, s, p) = spec.layers[index], cortado_conv_f32_best_path(Int32(f)) > 0 else {
            return nil
        }
        g = ConvShape(c: x[0], h: x[1], w: x[2], f: f, k: k, s: s, p: p)
        tail = ConvTail(spec: spec, index: index, g)
        packed = .allocate(capacity: f * g.patch + f)
        cortado_conv_f32_pack(params + offset, Int32(f), Int32(g.c), Int32(k), packed.baseAddress!)
        (packed.baseAddress! + f * g.patch).update(from: params + offset + f * g.patch, count: f)
        let floats = cortado_conv_f32_scratch(
            Int32(g.c), Int32(g.h), Int32(g.w), Int32(f), Int32(k), Int32(s), Int32(p))
        scratch = UnsafeMutableRawPointer.allocate(byteCount: 4 * floats, alignment: 64).bindMemory(
            to: Float.self, capacity: floats)
    }

    deinit {
        packed.deallocate()
        scratch.deallocate()
    }

    /// out = the conv (then ReLU, then pool, as fused) of `batch` samples x (batch, c, h, w),
    /// on `path` (lowered to what the CPU and the filter count allow).
    func forward(_ x: UnsafePointer<Float>, batch: Int, out: UnsafeMutablePointer<Float>, path: Int) {
        let w = packed.baseAddress!
        cortado_conv_f32_forward(
            x, Int32(batch), Int32(g.c), Int32(g.h), Int32(g.w), Int32(g.f), Int32(g.k), Int32(g.s), Int32(g.p),
            w, w + g.f * g.patch, tail.relu ? 1 : 0, Int32(tail.pool?.size ?? 0), Int32(tail.pool?.stride ?? 0), out,
            scratch,
            Int32(path))
    }
}
