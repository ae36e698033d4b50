// Cortado's hand-written kernels: the int8 GEMM of the inference runtime, the sparse layers'
// CSR product, and the trainer's fused optimizer update.
#pragma once
#include <stdint.h>

/// Kernel paths, best first; all give bit-identical results (exact integer arithmetic).
enum { CORTADO_INT8_PORTABLE = 0, CORTADO_INT8_AVX2 = 1, CORTADO_INT8_AVX512VNNI = 2 };

/// The best path this CPU runs (cpuid, at run time).
int cortado_int8_best_path(void);

/// Whether `path` asks for AVX2 (or above) and this CPU has it: the vector code of the
/// kernels below that have only a portable and an AVX2 form (quantize, dequantize, optimizers).
static inline int cortado_use_avx2(int path) {
    return path >= CORTADO_INT8_AVX2 && cortado_int8_best_path() >= CORTADO_INT8_AVX2;
}

/// c[i*n + j] = Σ_p a[i*k + p] · w[j*k + p] for i < m, j < n, accumulated in int32.
/// a and w hold values in [-127, 127] (symmetric quantization never makes -128), which keeps
/// the u8×s8 instructions below from saturating. `path` above the CPU's best is lowered.
void cortado_int8_gemm(const int8_t *a, const int8_t *w, int32_t *c, int m, int n, int k, int path);

/// The same, told whether every value of a is ≥ 0 (a_nonneg, as cortado_quantize_rows
/// reports): the AVX2 path then skips its sign step. Results are identical either way.
void cortado_int8_gemm_ex(const int8_t *a, const int8_t *w, int32_t *c, int m, int n, int k, int path, int a_nonneg);

/// Bytes of an (n, k) weight packed by cortado_int8_pack_weights: a correction row of
/// 16·⌈n/16⌉ int32 (−128 · the column sums), then 16-column panels of ⌈k/4⌉ groups of 4
/// consecutive k per column ((⌈n/16⌉, ⌈k/4⌉, 16, 4) bytes), zero-padded.
long cortado_int8_packed_size(int n, int k);

/// Packs w (n, k) row-major, as cortado_int8_gemm takes it, into `packed`
/// (cortado_int8_packed_size(n, k) bytes). Done once per model load.
void cortado_int8_pack_weights(const int8_t *w, int n, int k, int8_t *packed);

/// cortado_int8_gemm over packed weights: c (m, n) = a (m, k) · wᵀ, the same int32 results.
/// The AVX-512 VNNI path tiles 6 rows × 64 columns in registers; other paths run a portable
/// loop over the packed layout (callers keep the row-major weights for AVX2).
void cortado_int8_gemm_packed(const int8_t *a, const int8_t *packed, int32_t *c, int m, int n, int k, int path,
                              int a_nonneg);

/// Dynamic quantization: each of m rows (row stride ldx) of k floats gets its own symmetric
/// scale max|x|/127 (1 for an all-zero row), written to scales[i]; q holds the rounded values
/// (half to even, clamped to ±127) with row stride ldq ≥ k, the padding zeroed so a GEMM can
/// run over ldq columns.
/// Returns 1 when no quantized value is negative (for cortado_int8_gemm_ex), else 0.
/// `path` as for the int8 GEMM; here, and in the epilogues below, every path gives the same bits.
int cortado_quantize_rows(const float *x, int ldx, int m, int k, int8_t *q, int ldq, float *scales, int path);

/// Static quantization: one calibrated scale for every row (values beyond ±127·scale clip).
int cortado_quantize_rows_fixed(const float *x, int ldx, int m, int k, float scale, int8_t *q, int ldq, float *scales,
                                int path);

/// out (m, n) = c · row_scales[i] · col_scales[j] + bias (then max(0, ·) when relu) for the
/// (m, n) int32 products c; the bias is per column (col_bias, dense layers) or per row
/// (row_bias, conv filters); the other pointer is NULL.
void cortado_dequantize_rows(const int32_t *c, int m, int n, const float *row_scales, const float *col_scales,
                             const float *row_bias, const float *col_bias, int relu, float *out, int path);

/// The conv epilogue over a chunk of samples: c holds (samples · oh · ow, filters) int32
/// products (receptive fields × filters, as the row-major and packed GEMMs make them); out[s]
/// (filters, oh, ow) = c · filter_scales[f] · sample_scales[s] + bias[f] (then max(0, ·)
/// when relu), transposed into the (batch, channels, height, width) layout of the next layer.
/// With pool > 0 the max pool (pool × pool, stride pool_stride, no padding) that follows is
/// applied too, and out[s] is (filters, pooled oh, pooled ow): the bits of the separate pool.
/// The arithmetic of cortado_dequantize_rows, so a sample's values do not depend on the chunk.
void cortado_dequantize_conv(const int32_t *c, int samples, int oh, int ow, int filters, const float *sample_scales,
                             const float *filter_scales, const float *bias, int relu, int pool, int pool_stride,
                             float *out, int path);

/// One int8 sample channels last (h, w, c) → its receptive fields as rows (positions, k·k·c),
/// each row ordered (kernel row, kernel column, channel), row stride ldr ≥ c·k·k with the
/// padding zeroed. The int8 conv weights are permuted to that order once, at load.
void cortado_im2row_int8(const int8_t *x, int c, int h, int w, int k, int s, int p, int8_t *rows, int ldr);

/// out (hw, c) = x (c, hw): an int8 image from planes to channels last.
void cortado_chw_to_hwc_int8(const int8_t *x, int c, int hw, int8_t *out);

/// y (m, n) = x (m, k) · Wᵀ + bias (then max(0, ·) when relu) for a CSR weight W (n rows;
/// indptr [n + 1], column indices and values [nnz]). scratch holds 32·(k + n) floats. The
/// paths differ only in float summation order (FMA, partial sums), so results agree to
/// rounding, not bit for bit. `path` as for the int8 GEMM (AVX2 or above: vector code).
void cortado_csr_spmm(const int32_t *indptr, const int32_t *indices, const float *values, int n, int k,
                      const float *x, int m, const float *bias, int relu, float *y, float *scratch, int path);

/// One SGD step over n parameters (PyTorch's formula, weight decay λ = wd, momentum μ = mu):
///     g' = g·gscale + λw;  v ← μv + g';  w ← w − lr·(nesterov ? g' + μv : v)
/// gscale is the gradient's averaging factor (1/ranks), applied in the same pass. w, g and v
/// must not overlap. Bit-identical to scaling g first and then running the scalar formula.
/// `path`: CORTADO_INT8_PORTABLE or, on a CPU that has it, CORTADO_INT8_AVX2 or above (the
/// same paths as the int8 GEMM; every path gives the same bits).
void cortado_sgd_update(float *w, const float *g, float *v, long n, float lr, float mu, float wd, float gscale,
                        int nesterov, int path);

/// One Adam (decoupled = 0) or AdamW (decoupled = 1) step over n parameters, with the bias
/// corrections c1 = 1 − β₁ᵗ and c2 = 1 − β₂ᵗ precomputed by the caller:
///     g' = g·gscale (+ λw for Adam);  AdamW first: w ← w − (lr·λ)·w;
///     m ← β₁m + (1−β₁)g';  s ← β₂s + (1−β₂)g'²;  w ← w − lr·(m/c1)/(√(s/c2) + ε)
/// w, g, m and s must not overlap; `path` as for cortado_sgd_update.
void cortado_adam_update(float *w, const float *g, float *m, float *s, long n, float lr, float b1, float b2, float eps,
                         float wd, float c1, float c2, float gscale, int decoupled, int path);

/// An optimizer kernel in the shape every later optimizer shares, so adding one needs no new
/// declaration here: one step over n parameters with weight decay wd, gradient scale gscale,
/// state arena k of the range at state + k·stride, and the optimizer's own scalars in `hyper`
/// (their order is documented by its kernel in optimizer.c and its Swift OptimizerRule).
/// w, g and the state arenas must not overlap; `path` as for cortado_sgd_update.
typedef void (*cortado_optimizer_kernel)(float *w, const float *g, float *state, long stride, long n, float lr, float wd,
                                         float gscale, const float *hyper, int path);

/// The kernel optimizer.c registers under `name` (an optimizer.type), or NULL.
cortado_optimizer_kernel cortado_optimizer_find(const char *name);

/// CPU feature bits (cortado_cpu_features): the instruction sets OpenBLAS's kernels need, and
/// the vendor.
enum {
    CORTADO_CPU_AVX = 1 << 0, CORTADO_CPU_AVX2 = 1 << 1, CORTADO_CPU_FMA = 1 << 2,
    CORTADO_CPU_AVX512F = 1 << 3, CORTADO_CPU_AVX512BW = 1 << 4, CORTADO_CPU_AVX512DQ = 1 << 5,
    CORTADO_CPU_AVX512VL = 1 << 6, CORTADO_CPU_AVX512VNNI = 1 << 7, CORTADO_CPU_AVX512BF16 = 1 << 8,
    CORTADO_CPU_AMD = 1 << 16, CORTADO_CPU_INTEL = 1 << 17
};

/// This CPU's features (cpuid, with the OS's register-saving checked), as CORTADO_CPU_* bits.
unsigned cortado_cpu_features(void);

/// 16-bit formats of the reduced-precision gradient exchange (distributed.precision).
enum { CORTADO_HALF_BF16 = 0, CORTADO_HALF_FP16 = 1 };

/// h[i] = x[i] in `format`, rounded to nearest, ties to even (IEEE): overflow → ±Inf, NaN
/// stays NaN, denormals kept (see half.c for each format's limits).
void cortado_to_half(const float *x, uint16_t *h, long n, int format);

/// x[i] = h[i] as fp32 (exact: every bf16 and fp16 value is an fp32 value).
void cortado_from_half(const uint16_t *h, float *x, long n, int format);

/// sum[i] = Σ_r h[r·stride + i] over r = 0 ..< parts, in fp32, added in r order (so the
/// result depends on nothing but the inputs): the owner's sum of every rank's 16-bit slice.
void cortado_sum_half(const uint16_t *h, long stride, int parts, long n, float *sum, int format);

/// out[i] (and out2[i] unless NULL) = Σ_p segments[p][lo + i] over p = 0 ..< parts, added in
/// p order, for i < n (shared_sum.c): the shared-memory exchange's sum of one rank's slice.
/// `out` and `out2` may alias a segment.
void cortado_sum_segments(const float *const *segments, int parts, long lo, long n, float *out, float *out2);

/// fp32 direct convolution paths (conv_f32.c); the vector paths use FMA, so the paths agree
/// to rounding, not bit for bit.
enum { CORTADO_CONV_PORTABLE = 0, CORTADO_CONV_AVX2 = 1, CORTADO_CONV_AVX512 = 2 };

/// The best path this CPU runs for a conv with `filters` output channels: AVX-512F when
/// filters % 16 == 0, AVX2 + FMA when filters % 8 == 0, else the portable loop.
int cortado_conv_f32_best_path(int filters);

/// Packs a conv weight (f, c, k, k) as (k, k, c, f) for cortado_conv_f32_forward; once per load.
void cortado_conv_f32_pack(const float *w, int f, int c, int k, float *packed);

/// Floats of scratch cortado_conv_f32_forward needs: the padded channels-last sample
/// ((h + 2p)·(w + 2p)·c), its (oh·ow·f) outputs and room for them pooled. Best 64-byte aligned.
long cortado_conv_f32_scratch(int c, int h, int w, int f, int k, int s, int p);

/// out = conv2d of `batch` samples x (batch, c, h, w): each output bias + Σ x · w (zero
/// padding p, stride s), then max(0, ·) when relu, then, when pool_size > 0, a max pool
/// (pool_size, pool_stride); out (batch, f, oh, ow), or (batch, f, ph, pw) when pooled.
/// `path` above cortado_conv_f32_best_path(f) is lowered. A sample's result does not depend on
/// the batch it came in (each is computed alone).
void cortado_conv_f32_forward(const float *x, int batch, int c, int h, int w, int f, int k, int s, int p,
                              const float *packed, const float *bias, int relu, int pool_size, int pool_stride,
                              float *out, float *scratch, int path);
