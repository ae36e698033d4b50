// The float ends of the int8 path: quantizing activation rows before the int8 GEMM and turning
// its int32 products back into floats (scales, bias, optional ReLU) after it. In Swift these
// two loops took longer than the GEMM itself (perf: roundf calls and bounds checks per value);
// here they are vectorized. Both paths round half to even (cvtps / nearbyintf) and multiply
// and add separately (no FMA), so the AVX2 and portable results are identical.
#include "cortado_kernels.h"
#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

/// max |x| and min x of a row (the scale, and whether the row quantizes to no negatives).
__attribute__((target("avx2")))
static void range_avx2(const float *x, int k, float *absmax, float *minimum) {
    const __m256 mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m = _mm256_setzero_ps(), lo = _mm256_set1_ps(INFINITY);
    // Four independent pairs of accumulators: one pair waited on max/min's latency every 8
    // values (the dense int8 MLP spent more time here than quantizing).
    __m256 m1 = m, m2 = m, m3 = m, lo1 = lo, lo2 = lo, lo3 = lo;
    int p = 0;
    for (; p + 32 <= k; p += 32) {
        __m256 a = _mm256_loadu_ps(x + p), b = _mm256_loadu_ps(x + p + 8);
        __m256 c = _mm256_loadu_ps(x + p + 16), d = _mm256_loadu_ps(x + p + 24);
        m = _mm256_max_ps(m, _mm256_and_ps(a, mask)); lo = _mm256_min_ps(lo, a);
        m1 = _mm256_max_ps(m1, _mm256_and_ps(b, mask)); lo1 = _mm256_min_ps(lo1, b);
        m2 = _mm256_max_ps(m2, _mm256_and_ps(c, mask)); lo2 = _mm256_min_ps(lo2, c);
        m3 = _mm256_max_ps(m3, _mm256_and_ps(d, mask)); lo3 = _mm256_min_ps(lo3, d);
    }
    m = _mm256_max_ps(_mm256_max_ps(m, m1), _mm256_max_ps(m2, m3));
    lo = _mm256_min_ps(_mm256_min_ps(lo, lo1), _mm256_min_ps(lo2, lo3));
    for (; p + 8 <= k; p += 8) {
        __m256 v = _mm256_loadu_ps(x + p);
        m = _mm256_max_ps(m, _mm256_and_ps(v, mask));
        lo = _mm256_min_ps(lo, v);
    }
    float mb[8], lb[8];
    _mm256_storeu_ps(mb, m); _mm256_storeu_ps(lb, lo);
    float r = 0, l = INFINITY;
    for (int i = 0; i < 8; i++) { r = fmaxf(r, mb[i]); l = fminf(l, lb[i]); }
    for (; p < k; p++) { r = fmaxf(r, fabsf(x[p])); l = fminf(l, x[p]); }
    *absmax = r; *minimum = l;
}

static void range_portable(const float *x, int k, float *absmax, float *minimum) {
    float r = 0, l = INFINITY;
    for (int p = 0; p < k; p++) { r = fmaxf(r, fabsf(x[p])); l = fminf(l, x[p]); }
    *absmax = r; *minimum = l;
}

static inline int8_t q1(float v, float inv) {
    float r = nearbyintf(v * inv);
    return (int8_t)(r > 127 ? 127 : (r < -127 ? -127 : r));
}

/// One row: q[p] = clamp(round(x[p]·inv), ±127), the padding up to ldq zeroed.
__attribute__((target("avx2")))
static void quantize_row_avx2(const float *x, int k, float inv, int8_t *q, int ldq) {
    const __m256 vi = _mm256_set1_ps(inv);
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int p = 0;
    for (; p + 32 <= k; p += 32) {
        __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + p), vi));
        __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + p + 8), vi));
        __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + p + 16), vi));
        __m256i d = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + p + 24), vi));
        a = _mm256_min_epi32(_mm256_max_epi32(a, lo), hi); b = _mm256_min_epi32(_mm256_max_epi32(b, lo), hi);
        c = _mm256_min_epi32(_mm256_max_epi32(c, lo), hi); d = _mm256_min_epi32(_mm256_max_epi32(d, lo), hi);
        // packs work within 128-bit lanes; the permute puts the 32 bytes back in order.
        __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
        _mm256_storeu_si256((__m256i *)(q + p), _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), perm));
    }
    for (; p < k; p++) q[p] = q1(x[p], inv);
    if (ldq > k) memset(q + k, 0, (size_t)(ldq - k));
}

static void quantize_row_portable(const float *x, int k, float inv, int8_t *q, int ldq) {
    for (int p = 0; p < k; p++) q[p] = q1(x[p], inv);
    if (ldq > k) memset(q + k, 0, (size_t)(ldq - k));
}

// A row has no negative quantized value when its minimum times 1/scale is ≥ −0.5: that rounds
// (half to even) to zero, and the multiply is monotonic, so no other value goes lower.
int cortado_quantize_rows(const float *x, int ldx, int m, int k, int8_t *q, int ldq, float *scales, int path) {
    int v = cortado_use_avx2(path), nonneg = 1;
    for (int i = 0; i < m; i++) {
        const float *xr = x + (long)i * ldx;
        float mx, mn;
        if (v) range_avx2(xr, k, &mx, &mn); else range_portable(xr, k, &mx, &mn);
        float scale = mx > 0 ? mx / 127.0f : 1.0f, inv = 1.0f / scale;
        scales[i] = scale;
        nonneg &= mn * inv >= -0.5f;
        if (v) quantize_row_avx2(xr, k, inv, q + (long)i * ldq, ldq);
        else quantize_row_portable(xr, k, inv, q + (long)i * ldq, ldq);
    }
    return nonneg;
}

int cortado_quantize_rows_fixed(const float *x, int ldx, int m, int k, float scale, int8_t *q, int ldq, float *scales,
                                int path) {
    int v = cortado_use_avx2(path), nonneg = 1;
    const float inv = 1.0f / scale;
    for (int i = 0; i < m; i++) {
        const float *xr = x + (long)i * ldx;
        float mx, mn;
        if (v) range_avx2(xr, k, &mx, &mn); else range_portable(xr, k, &mx, &mn);
        nonneg &= mn * inv >= -0.5f;
        scales[i] = scale;
        if (v) quantize_row_avx2(xr, k, inv, q + (long)i * ldq, ldq);
        else quantize_row_portable(xr, k, inv, q + (long)i * ldq, ldq);
    }
    return nonneg;
}

__attribute__((target("avx2")))
static void dequantize_row_avx2(const int32_t *c, int n, float rs, const float *cs, float rb, const float *cb, int relu, float *out) {
    const __m256 vr = _mm256_set1_ps(rs), vb = _mm256_set1_ps(rb), zero = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 s = _mm256_mul_ps(vr, _mm256_loadu_ps(cs + j));
        __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(c + j))), s);
        y = _mm256_add_ps(y, cb ? _mm256_loadu_ps(cb + j) : vb);
        _mm256_storeu_ps(out + j, relu ? _mm256_max_ps(y, zero) : y);
    }
    for (; j < n; j++) {
        float y = (float)c[j] * (rs * cs[j]) + (cb ? cb[j] : rb);
        out[j] = relu && !(y > 0) ? 0 : y;
    }
}

void cortado_dequantize_rows(const int32_t *c, int m, int n, const float *row_scales, const float *col_scales,
                             const float *row_bias, const float *col_bias, int relu, float *out, int path) {
    int v = cortado_use_avx2(path);
    for (int i = 0; i < m; i++) {
        const int32_t *cr = c + (long)i * n;
        float rs = row_scales[i], rb = row_bias ? row_bias[i] : 0;
        float *o = out + (long)i * n;
        if (v) dequantize_row_avx2(cr, n, rs, col_scales, rb, col_bias, relu, o);
        else for (int j = 0; j < n; j++) {
            float y = (float)cr[j] * (rs * col_scales[j]) + (col_bias ? col_bias[j] : rb);
            o[j] = relu && !(y > 0) ? 0 : y;
        }
    }
}

void cortado_chw_to_hwc_int8(const int8_t *x, int c, int hw, int8_t *out) {
    for (int ci = 0; ci < c; ci++) {
        const int8_t *src = x + (long)ci * hw;
        for (int i = 0; i < hw; i++) out[(long)i * c + ci] = src[i];
    }
}

/// n bytes, n small (a 1- or 3-channel line): a call to memcpy costs more than the copy, and
/// a byte loop more than two fixed moves for a one-channel 3×3 kernel row.
static inline void copy_bytes(int8_t *dst, const int8_t *src, int n) {
    if (n == 3) { memcpy(dst, src, 2); dst[2] = src[2]; return; }
    if (n % 32 == 0 && n <= 256) {   // 32 channels and up: fixed 32-byte moves, no call
        for (int i = 0; i < n; i += 32) memcpy(dst + i, src + i, 32);
        return;
    }
    if (n > 16) { memcpy(dst, src, (size_t)n); return; }
    for (int i = 0; i < n; i++) dst[i] = src[i];
}

/// cortado_im2row_int8's loops, inlined into each caller below so that the common geometries
/// run with their channel count and kernel size as constants (fixed moves, unrolled rows).
__attribute__((always_inline))
static inline void im2row_body(const int8_t *x, int c, int h, int w, int k, int s, int p, int8_t *rows, int ldr) {
    const int oh = (h + 2 * p - k) / s + 1, ow = (w + 2 * p - k) / s + 1, patch = c * k * k, line = k * c;
    // Channels last, a receptive field's kernel row (k pixels × c channels) is one run of
    // bytes in the image: one copy per (position, kernel row) instead of one per (position,
    // channel, kernel row) from planes (the 32-channel conv copied 3 bytes at a time).
    for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++) {
            int8_t *out = rows + (long)(oy * ow + ox) * ldr;
            const int x0 = ox * s - p, inside = x0 >= 0 && x0 + k <= w;
            // The padding first, as one fixed 4- or 32-byte store when it lies in the row's last
            // 4 or 32 bytes (rows padded to a multiple of 4 or 32); the receptive field then
            // overwrites the part of it that is not padding.
            const int pad = ldr - patch;
            if (pad > 0 && pad <= 4 && ldr >= 4) memset(out + ldr - 4, 0, 4);
            else if (pad > 0 && pad <= 32 && ldr >= 32) memset(out + ldr - 32, 0, 32);
            else if (pad > 0) memset(out + patch, 0, (size_t)pad);
            for (int ki = 0; ki < k; ki++) {
                int8_t *o = out + ki * line;
                const int iy = oy * s - p + ki;
                if (iy < 0 || iy >= h) { memset(o, 0, (size_t)line); continue; }
                const int8_t *src = x + (long)iy * w * c;
                if (inside) { copy_bytes(o, src + (long)x0 * c, line); continue; }
                for (int kj = 0; kj < k; kj++) {
                    const int ix = x0 + kj;
                    if (ix >= 0 && ix < w) copy_bytes(o + kj * c, src + (long)ix * c, c);
                    else memset(o + kj * c, 0, (size_t)c);
                }
            }
        }
}

void cortado_im2row_int8(const int8_t *x, int c, int h, int w, int k, int s, int p, int8_t *rows, int ldr) {
    if (k == 3 && c == 1) im2row_body(x, 1, h, w, 3, s, p, rows, ldr);        // a grayscale image's first conv
    else if (k == 3 && c == 3) im2row_body(x, 3, h, w, 3, s, p, rows, ldr);   // an RGB image's
    else if (k == 3) im2row_body(x, c, h, w, 3, s, p, rows, ldr);
    else im2row_body(x, c, h, w, k, s, p, rows, ldr);
}

/// One scaled, biased, rectified value: the scalar formula of cortado_dequantize_rows.
static inline float deq1(int32_t c, float scale, float bias, int relu) {
    float y = (float)c * scale + bias;
    return relu && !(y > 0) ? 0 : y;
}

/// Stores r[i] (8 filters at position i) transposed: filter j's 8 positions at out + j·ldo.
__attribute__((target("avx2")))
static inline void store_transposed_8x8(const __m256 r[8], float *out, int ldo) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) { t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]); t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]); }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {
        _mm256_storeu_ps(out + (long)i * ldo, _mm256_permute2f128_ps(u[i], u[i + 4], 0x20));
        _mm256_storeu_ps(out + (long)(i + 4) * ldo, _mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
    }
}

/// 8 filters' scaled, biased, rectified values from their products.
__attribute__((target("avx2")))
static inline __m256 deq8v(__m256i c, __m256 scale, __m256 bias, int relu) {
    __m256 y = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(c), scale), bias);
    return relu ? _mm256_max_ps(y, _mm256_setzero_ps()) : y;
}

/// The same at one position (c points at the first filter's product).
__attribute__((target("avx2")))
static inline __m256 deq8(const int32_t *c, __m256 scale, __m256 bias, int relu) {
    return deq8v(_mm256_loadu_si256((const __m256i *)c), scale, bias, relu);
}

/// The conv output's geometry and the max pool fused into the epilogue (size 0: none).
typedef struct { int oh, ow, filters, size, stride, ph, pw; } conv_out;

/// The pooled output at (py, px): its window, position by position in maxPoolInference's order
/// (m = v > m ? v : m from −∞, which is what max_ps computes), so the values are its bits.
__attribute__((target("avx2")))
static inline __m256 pooled8(const int32_t *c, const conv_out *g, int py, int px, __m256 scale, __m256 bias,
                             int relu) {
    const int y0 = py * g->stride, x0 = px * g->stride;
    __m256 m = _mm256_set1_ps(-INFINITY);
    for (int dy = 0; dy < g->size; dy++)
        for (int dx = 0; dx < g->size; dx++)
            m = _mm256_max_ps(deq8(c + (long)((y0 + dy) * g->ow + x0 + dx) * g->filters, scale, bias, relu), m);
    return m;
}

/// pooled8 when every scale is a positive normal float and every bias finite: then each value
/// is a non-decreasing function of its product that never gives −0 or NaN, so the window's
/// largest value is the value of its largest product, bit for bit — one conversion per output
/// instead of one per window position.
__attribute__((target("avx2")))
static inline __m256 pooled8_monotonic(const int32_t *c, const conv_out *g, int py, int px, __m256 scale,
                                       __m256 bias, int relu) {
    const int y0 = py * g->stride, x0 = px * g->stride;
    __m256i m = _mm256_set1_epi32(INT32_MIN);
    for (int dy = 0; dy < g->size; dy++)
        for (int dx = 0; dx < g->size; dx++)
            m = _mm256_max_epi32(
                m, _mm256_loadu_si256((const __m256i *)(c + (long)((y0 + dy) * g->ow + x0 + dx) * g->filters)));
    return deq8v(m, scale, bias, relu);
}

/// Whether pooled8_monotonic gives pooled8's bits for these 8 filters (see there).
__attribute__((target("avx2")))
static inline int monotonic8(__m256 scale, __m256 bias) {
    const __m256 normal = _mm256_cmp_ps(scale, _mm256_set1_ps(FLT_MIN), _CMP_GE_OQ);
    const __m256 finite = _mm256_cmp_ps(_mm256_sub_ps(bias, bias), _mm256_setzero_ps(), _CMP_EQ_OQ);
    return _mm256_movemask_ps(_mm256_and_ps(normal, finite)) == 0xFF;
}

static inline float pooled1(const int32_t *c, const conv_out *g, int q, float scale, float bias, int relu) {
    const int y0 = q / g->pw * g->stride, x0 = q % g->pw * g->stride;
    float m = -INFINITY;
    for (int dy = 0; dy < g->size; dy++)
        for (int dx = 0; dx < g->size; dx++) {
            const float v = deq1(c[(long)((y0 + dy) * g->ow + x0 + dx) * g->filters], scale, bias, relu);
            m = v > m ? v : m;
        }
    return m;
}

/// Output q of one filter (c points at its first product): pooled, or the position's value.
static inline float out1(const int32_t *c, const conv_out *g, long q, float scale, float bias, int relu) {
    return g->size ? pooled1(c, g, (int)q, scale, bias, relu) : deq1(c[q * g->filters], scale, bias, relu);
}

/// One sample: c (positions, filters) → out (filters, outputs), outputs being the positions or,
/// with a pool, the pooled positions; 8 outputs × 8 filters per tile, transposed on store.
__attribute__((target("avx2")))
static void dequantize_conv_avx2(const int32_t *c, const conv_out *g, float rs, const float *fs, const float *bias,
                                 int relu, float *out) {
    const int n = g->filters, outputs = g->size ? g->ph * g->pw : g->oh * g->ow;
    int f = 0;
    for (; f + 8 <= n; f += 8) {
        const __m256 scale = _mm256_mul_ps(_mm256_loadu_ps(fs + f), _mm256_set1_ps(rs)), b = _mm256_loadu_ps(bias + f);
        const int monotonic = monotonic8(scale, b);
        int q = 0;
        for (; q + 8 <= outputs; q += 8) {
            __m256 r[8];
            if (g->size) {
                // One division per tile (per pooled output, the divisions cost more than the pool).
                int py = q / g->pw, px = q % g->pw;
                for (int i = 0; i < 8; i++) {
                    r[i] = monotonic ? pooled8_monotonic(c + f, g, py, px, scale, b, relu)
                                     : pooled8(c + f, g, py, px, scale, b, relu);
                    if (++px == g->pw) px = 0, py++;
                }
            } else {
                for (int i = 0; i < 8; i++) r[i] = deq8(c + (long)(q + i) * n + f, scale, b, relu);
            }
            store_transposed_8x8(r, out + (long)f * outputs + q, outputs);
        }
        for (; q < outputs; q++)
            for (int j = f; j < f + 8; j++) out[(long)j * outputs + q] = out1(c + j, g, q, fs[j] * rs, bias[j], relu);
    }
    for (; f < n; f++)
        for (int q = 0; q < outputs; q++) out[(long)f * outputs + q] = out1(c + f, g, q, fs[f] * rs, bias[f], relu);
}

void cortado_dequantize_conv(const int32_t *c, int samples, int oh, int ow, int filters, const float *sample_scales,
                             const float *filter_scales, const float *bias, int relu, int pool, int pool_stride,
                             float *out, int path) {
    conv_out g = {oh, ow, filters, pool, pool_stride, 0, 0};
    if (pool) g.ph = (oh - pool) / pool_stride + 1, g.pw = (ow - pool) / pool_stride + 1;
    const long outputs = pool ? (long)g.ph * g.pw : (long)oh * ow;
    int v = cortado_use_avx2(path);
    for (int s = 0; s < samples; s++) {
        const int32_t *cs = c + (long)s * oh * ow * filters;
        float *o = out + (long)s * outputs * filters;
        if (v) { dequantize_conv_avx2(cs, &g, sample_scales[s], filter_scales, bias, relu, o); continue; }
        for (int f = 0; f < filters; f++) {
            const float scale = filter_scales[f] * sample_scales[s];
            for (long q = 0; q < outputs; q++) o[f * outputs + q] = out1(cs + f, &g, q, scale, bias[f], relu);
        }
    }
}
