// fp32 direct convolution for inference, one sample at a time, with bias, ReLU and max pool
// fused into its output pass. The sample is copied once into a zero-bordered (h + 2p,
// w + 2p, c) buffer (channels last), so every receptive field is read without bounds tests and
// a (kernel row, kernel column, channel) step is one scalar broadcast per output pixel. The
// weights are packed once at load as (k, k, c, f): each such step's f filter values are
// contiguous, so a register tile of NB pixels × NV vectors of filters accumulates with one
// weight load per vector serving NB pixels. This is the GEMM without its im2col matrix: the
// CNN's first layer (c = 1, k·k·c = 9) spent most of its time in im2col, sgemm's short k-loop
// and the separate bias / copy / ReLU / pool passes (profile in Benchmarks/RESULTS.md).
// The paths differ only in how sums round (FMA on the vector paths; the same summation order
// — bias, then kernel rows, kernel columns, channels), so results agree to rounding.
#include "cortado_kernels.h"
#include <immintrin.h>
#include <string.h>

int cortado_conv_f32_best_path(int filters) {
    __builtin_cpu_init();
    if (filters % 16 == 0 && __builtin_cpu_supports("avx512f")) return CORTADO_CONV_AVX512;
    if (filters % 8 == 0 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CORTADO_CONV_AVX2;
    return CORTADO_CONV_PORTABLE;
}

void cortado_conv_f32_pack(const float *w, int f, int c, int k, float *packed) {
    for (int fi = 0; fi < f; fi++)
        for (int ci = 0; ci < c; ci++)
            for (int ki = 0; ki < k; ki++)
                for (int kj = 0; kj < k; kj++)
                    packed[(((long)ki * k + kj) * c + ci) * f + fi] = w[(((long)fi * c + ci) * k + ki) * k + kj];
}

/// The geometry every path shares.
typedef struct {
    int c, h, w, f, k, s, p, oh, ow, hp, wp;
} geom;

static geom make_geom(int c, int h, int w, int f, int k, int s, int p) {
    geom g = {c, h, w, f, k, s, p, (h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1, h + 2 * p, w + 2 * p};
    return g;
}

/// n rounded up to 16 floats, so that each part of the scratch starts on a cache line (a
/// 64-byte aligned scratch): split loads of the outputs the tiles just stored slowed the pool.
static long align16(long n) { return (n + 15) / 16 * 16; }

long cortado_conv_f32_scratch(int c, int h, int w, int f, int k, int s, int p) {
    geom g = make_geom(c, h, w, f, k, s, p);
    return align16((long)g.hp * g.wp * c) + 2 * align16((long)g.oh * g.ow * f);
}

/// The channels of one pixel row, r (w, c) ← x (c, ·, w) at row iy: 16-lane gathers (stride
/// h·w) and contiguous stores; the scalar loop took 1/7 of the CNN's second conv.
__attribute__((target("avx512f"))) static void gather_row512(const float *x, geom g, int iy, float *r) {
    const __m512i index = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32(g.h * g.w));
    for (int ix = 0; ix < g.w; ix++)
        for (int c0 = 0; c0 < g.c; c0 += 16) {
            const __mmask16 m = g.c - c0 >= 16 ? 0xffff : (__mmask16)((1u << (g.c - c0)) - 1);
            const float *src = x + ((long)c0 * g.h + iy) * g.w + ix;
            _mm512_mask_storeu_ps(r + (long)ix * g.c + c0, m,
                                  _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, index, src, 4));
        }
}

/// xp (hp, wp, c) ← x (c, h, w) inside a zero border of p.
static void pad_channels_last(const float *x, geom g, float *xp, int avx512) {
    const long row = (long)g.wp * g.c;
    memset(xp, 0, sizeof(float) * row * g.p);
    memset(xp + row * (g.p + g.h), 0, sizeof(float) * row * g.p);
    for (int iy = 0; iy < g.h; iy++) {
        float *r = xp + (iy + g.p) * row;
        memset(r, 0, sizeof(float) * g.p * g.c);
        memset(r + (long)(g.p + g.w) * g.c, 0, sizeof(float) * g.p * g.c);
        r += (long)g.p * g.c;
        if (g.c == 1) {
            memcpy(r, x + (long)iy * g.w, sizeof(float) * g.w);
            continue;
        }
        if (avx512 && g.c >= 8) {
            gather_row512(x, g, iy, r);
            continue;
        }
        for (int ci = 0; ci < g.c; ci++) {
            const float *src = x + ((long)ci * g.h + iy) * g.w;
            for (int ix = 0; ix < g.w; ix++) r[(long)ix * g.c + ci] = src[ix];
        }
    }
}

/// out (f, ph, pw) ← max pool (size, stride) of y (oh, ow, f), or out (f, oh, ow) ← y
/// transposed when size is 0. The window is scanned row by row, `v > m ? v : m` from −∞, as
/// maxPoolInference does.
static void pool_channels_first(const float *y, geom g, int size, int stride, float *out) {
    if (size == 0) {
        const int positions = g.oh * g.ow;
        for (int q = 0; q < positions; q++)
            for (int fi = 0; fi < g.f; fi++) out[(long)fi * positions + q] = y[(long)q * g.f + fi];
        return;
    }
    const int ph = (g.oh - size) / stride + 1, pw = (g.ow - size) / stride + 1;
    float m[g.f];
    for (int py = 0; py < ph; py++)
        for (int px = 0; px < pw; px++) {
            for (int fi = 0; fi < g.f; fi++) m[fi] = -__builtin_inff();
            for (int dy = 0; dy < size; dy++)
                for (int dx = 0; dx < size; dx++) {
                    const float *v = y + ((long)(py * stride + dy) * g.ow + px * stride + dx) * g.f;
                    for (int fi = 0; fi < g.f; fi++) m[fi] = v[fi] > m[fi] ? v[fi] : m[fi];
                }
            for (int fi = 0; fi < g.f; fi++) out[((long)fi * ph + py) * pw + px] = m[fi];
        }
}

// The vector paths' pool, one pooled row py at a time (run as soon as its conv rows are done,
// while they are in L1): W filters of a pooled pixel at a time (`_max_ps(v, m)` is
// `v > m ? v : m`, NaN included) into `pooled` (ph·pw, f); transpose_planes then writes
// out plane by plane, its stores contiguous (storing each vector across W planes, and the
// scalar pool above, which does not vectorize, each took 2/3 of the first layer's time).
#define DEFINE_POOL(NAME, TARGET, VEC, W, LOADU, STOREU, SET1, MAX)                                                \
    __attribute__((target(TARGET))) static void NAME(const float *y, geom g, int size, int stride, int py,         \
                                                     float *pooled) {                                             \
        const int pw = (g.ow - size) / stride + 1;                                                                \
        for (int px = 0; px < pw; px++) {                                                                         \
            const float *window = y + ((long)py * stride * g.ow + (long)px * stride) * g.f;                       \
            float *o = pooled + ((long)py * pw + px) * g.f;                                                       \
            for (int f0 = 0; f0 < g.f; f0 += W) {                                                                 \
                VEC m = SET1(-__builtin_inff());                                                                  \
                for (int dy = 0; dy < size; dy++)                                                                 \
                    for (int dx = 0; dx < size; dx++) m = MAX(LOADU(window + ((long)dy * g.ow + dx) * g.f + f0), m); \
                STOREU(o + f0, m);                                                                                \
            }                                                                                                     \
        }                                                                                                         \
    }
DEFINE_POOL(pool512, "avx512f", __m512, 16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_max_ps)
DEFINE_POOL(pool256, "avx2", __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_max_ps)

/// out (f, positions) ← y (positions, f).
static void transpose_planes(const float *y, int positions, int f, float *out) {
    for (int fi = 0; fi < f; fi++)
        for (int q = 0; q < positions; q++) out[(long)fi * positions + q] = y[(long)q * f + fi];
}

/// The portable path: y (oh, ow, f) = bias + Σ xp · packed, then ReLU.
static void conv_portable(const float *xp, geom g, const float *packed, const float *bias, int relu, float *y) {
    for (int oy = 0; oy < g.oh; oy++)
        for (int ox = 0; ox < g.ow; ox++) {
            float *o = y + ((long)oy * g.ow + ox) * g.f;
            for (int fi = 0; fi < g.f; fi++) o[fi] = bias[fi];
            for (int ki = 0; ki < g.k; ki++)
                for (int kj = 0; kj < g.k; kj++) {
                    const float *xr = xp + ((long)(oy * g.s + ki) * g.wp + ox * g.s + kj) * g.c;
                    const float *wr = packed + ((long)ki * g.k + kj) * g.c * g.f;
                    for (int ci = 0; ci < g.c; ci++)
                        for (int fi = 0; fi < g.f; fi++) o[fi] += xr[ci] * wr[(long)ci * g.f + fi];
                }
            if (relu)
                for (int fi = 0; fi < g.f; fi++) o[fi] = o[fi] > 0 ? o[fi] : 0;
        }
}

// The register tile, written once for both vector widths: NB pixels of one output row
// (starting at xr, `ps` floats apart) × NV vectors of filters (starting at filter f0).
// Called with constant NB and NV, so acc stays in registers once the loops unroll.
#define DEFINE_TILE(NAME, TARGET, VEC, W, LOAD, STORE, SET1, FMA, MAX, ZERO)                                       \
    __attribute__((target(TARGET), always_inline)) static inline void NAME(                                       \
        const float *xr, long ps, geom g, const float *packed, const float *bias, int relu, float *y, int NB,      \
        int NV) {                                                                                                 \
        VEC acc[14][4]; /* fixed sizes (not NB, NV: those made stack VLAs) */                                    \
        for (int v = 0; v < NV; v++) {                                                                            \
            VEC b = LOAD(bias + v * W);                                                                           \
            for (int i = 0; i < NB; i++) acc[i][v] = b;                                                           \
        }                                                                                                         \
        const long rowstride = (long)g.wp * g.c;                                                                  \
        for (int ki = 0; ki < g.k; ki++)                                                                          \
            for (int kj = 0; kj < g.k; kj++) {                                                                    \
                const float *xk = xr + ki * rowstride + (long)kj * g.c;                                           \
                const float *wk = packed + ((long)ki * g.k + kj) * g.c * g.f;                                     \
                for (int ci = 0; ci < g.c; ci++) {                                                                \
                    VEC wv[4];                                                                                    \
                    for (int v = 0; v < NV; v++) wv[v] = LOAD(wk + (long)ci * g.f + v * W);                       \
                    for (int i = 0; i < NB; i++) {                                                                \
                        VEC a = SET1(xk[i * ps + ci]);                                                            \
                        for (int v = 0; v < NV; v++) acc[i][v] = FMA(a, wv[v], acc[i][v]);                        \
                    }                                                                                             \
                }                                                                                                 \
            }                                                                                                     \
        for (int i = 0; i < NB; i++)                                                                              \
            for (int v = 0; v < NV; v++) STORE(y + (long)i * g.f + v * W, relu ? MAX(acc[i][v], ZERO) : acc[i][v]); \
    }

DEFINE_TILE(tile512, "avx512f", __m512, 16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps,
            _mm512_max_ps, _mm512_setzero_ps())
DEFINE_TILE(tile256, "avx2,fma", __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps,
            _mm256_max_ps, _mm256_setzero_ps())

// One function per (NV, NB) pair, so each tile is compiled with constants. Registers: AVX-512
// has 32 (NB·NV accumulators ≤ 28 plus the NV weights), AVX2 16 (≤ 12 plus NV).
#define TILE_FN(TILE, TARGET, NV, NB)                                                                              \
    __attribute__((target(TARGET))) static void TILE##_##NV##_##NB(const float *xr, long ps, geom g,                \
                                                                  const float *packed, const float *bias,          \
                                                                  int relu, float *y) {                            \
        TILE(xr, ps, g, packed, bias, relu, y, NB, NV);                                                            \
    }
#define TILES_1_TO_7(TILE, TARGET, NV)                                                                             \
    TILE_FN(TILE, TARGET, NV, 1) TILE_FN(TILE, TARGET, NV, 2) TILE_FN(TILE, TARGET, NV, 3)                         \
    TILE_FN(TILE, TARGET, NV, 4) TILE_FN(TILE, TARGET, NV, 5) TILE_FN(TILE, TARGET, NV, 6)                         \
    TILE_FN(TILE, TARGET, NV, 7)
#define TILES_8_TO_14(TILE, TARGET, NV)                                                                            \
    TILE_FN(TILE, TARGET, NV, 8) TILE_FN(TILE, TARGET, NV, 9) TILE_FN(TILE, TARGET, NV, 10)                        \
    TILE_FN(TILE, TARGET, NV, 11) TILE_FN(TILE, TARGET, NV, 12) TILE_FN(TILE, TARGET, NV, 13)                      \
    TILE_FN(TILE, TARGET, NV, 14)

typedef void (*tile_fn)(const float *, long, geom, const float *, const float *, int, float *);

TILES_1_TO_7(tile512, "avx512f", 1) TILES_8_TO_14(tile512, "avx512f", 1)
TILES_1_TO_7(tile512, "avx512f", 2) TILES_8_TO_14(tile512, "avx512f", 2)
TILES_1_TO_7(tile256, "avx2,fma", 1) TILE_FN(tile256, "avx2,fma", 1, 8) TILE_FN(tile256, "avx2,fma", 1, 9)
    TILE_FN(tile256, "avx2,fma", 1, 10) TILE_FN(tile256, "avx2,fma", 1, 11) TILE_FN(tile256, "avx2,fma", 1, 12)
TILE_FN(tile256, "avx2,fma", 2, 1) TILE_FN(tile256, "avx2,fma", 2, 2) TILE_FN(tile256, "avx2,fma", 2, 3)
    TILE_FN(tile256, "avx2,fma", 2, 4) TILE_FN(tile256, "avx2,fma", 2, 5) TILE_FN(tile256, "avx2,fma", 2, 6)

#define ROW7(T, NV) T##_##NV##_1, T##_##NV##_2, T##_##NV##_3, T##_##NV##_4, T##_##NV##_5, T##_##NV##_6, T##_##NV##_7
#define ROW14(T, NV) ROW7(T, NV), T##_##NV##_8, T##_##NV##_9, T##_##NV##_10, T##_##NV##_11, T##_##NV##_12, \
    T##_##NV##_13, T##_##NV##_14

/// Tiles by [NV − 1][NB − 1]. Two vectors of filters at most: 14 pixels × 2 zmm (28
/// accumulators, 2 weights, 1 broadcast) is the widest tile without spills; 7 × 4 spilled two
/// accumulators and ran 1.5× slower on the CNN's second layer (c = 32, f = 64, 14 × 14).
static const tile_fn tiles512[2][14] = {{ROW14(tile512, 1)}, {ROW14(tile512, 2)}};
static const int maxnb512[2] = {14, 14};
static const tile_fn tiles256[2][12] = {{ROW7(tile256, 1), tile256_1_8, tile256_1_9, tile256_1_10, tile256_1_11,
                                         tile256_1_12},
                                        {tile256_2_1, tile256_2_2, tile256_2_3, tile256_2_4, tile256_2_5, tile256_2_6}};
static const int maxnb256[2] = {12, 6};

/// The vector paths, output rows [oy0, oy1): filters in blocks of up to 2 vectors; each row in
/// ⌈ow / maxNB⌉ tiles of equal width, the last one overlapping its neighbour rather than
/// running a narrower tile (an overlapped pixel is computed twice, the same value both times).
static void conv_rows(const float *xp, geom g, const float *packed, const float *bias, int relu, float *y, int oy0,
                      int oy1, int avx512) {
    const int width = avx512 ? 16 : 8, maxnv = 2;
    const long ps = (long)g.s * g.c;
    for (int oy = oy0; oy < oy1; oy++)
        for (int f0 = 0; f0 < g.f; f0 += maxnv * width) {
            const int nv = (g.f - f0) / width < maxnv ? (g.f - f0) / width : maxnv;
            const int maxnb = avx512 ? maxnb512[nv - 1] : maxnb256[nv - 1];
            const int tilesPerRow = (g.ow + maxnb - 1) / maxnb, nb = (g.ow + tilesPerRow - 1) / tilesPerRow;
            const tile_fn tile = avx512 ? tiles512[nv - 1][nb - 1] : tiles256[nv - 1][nb - 1];
            for (int t = 0; t < tilesPerRow; t++) {
                const int ox = t * nb + nb <= g.ow ? t * nb : g.ow - nb;
                const float *xr = xp + ((long)oy * g.s * g.wp + (long)ox * g.s) * g.c;
                tile(xr, ps, g, packed + f0, bias + f0, relu, y + ((long)oy * g.ow + ox) * g.f + f0);
            }
        }
}

/// transpose_planes with 16-lane gathers (stride f) and masked contiguous stores: about 2×
/// faster than the scalar loop, which was a third of the first layer's time.
__attribute__((target("avx512f"))) static void transpose_planes512(const float *y, int positions, int f, float *out) {
    const __m512i index = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32(f));
    for (int fi = 0; fi < f; fi++) {
        float *o = out + (long)fi * positions;
        for (int q = 0; q < positions; q += 16) {
            const __mmask16 m = positions - q >= 16 ? 0xffff : (__mmask16)((1u << (positions - q)) - 1);
            const __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, index, y + (long)q * f + fi, 4);
            _mm512_mask_storeu_ps(o + q, m, v);
        }
    }
}

/// One sample on a vector path: conv rows computed as each pooled row needs them, that row
/// pooled at once, then the transpose to (f, ·).
static void conv_pool_vector(const float *xp, geom g, const float *packed, const float *bias, int relu, int size,
                             int stride, float *y, float *pooled, float *out, int avx512) {
    if (size == 0) {
        conv_rows(xp, g, packed, bias, relu, y, 0, g.oh, avx512);
        if (avx512) transpose_planes512(y, g.oh * g.ow, g.f, out);
        else transpose_planes(y, g.oh * g.ow, g.f, out);
        return;
    }
    const int ph = (g.oh - size) / stride + 1, pw = (g.ow - size) / stride + 1;
    int done = 0;
    for (int py = 0; py < ph; py++) {
        const int need = py * stride + size;
        conv_rows(xp, g, packed, bias, relu, y, done > need ? need : done, need, avx512);
        done = need;
        if (avx512) pool512(y, g, size, stride, py, pooled);
        else pool256(y, g, size, stride, py, pooled);
    }
    if (avx512) transpose_planes512(pooled, ph * pw, g.f, out);
    else transpose_planes(pooled, ph * pw, g.f, out);
}

void cortado_conv_f32_forward(const float *x, int batch, int c, int h, int w, int f, int k, int s, int p,
                              const float *packed, const float *bias, int relu, int pool_size, int pool_stride,
                              float *out, float *scratch, int path) {
    const geom g = make_geom(c, h, w, f, k, s, p);
    const int best = cortado_conv_f32_best_path(f);
    if (path > best) path = best;
    float *xp = scratch, *y = scratch + align16((long)g.hp * g.wp * c), *pooled = y + align16((long)g.oh * g.ow * f);
    long outCount = (long)f * g.oh * g.ow;
    if (pool_size > 0) outCount = (long)f * ((g.oh - pool_size) / pool_stride + 1) * ((g.ow - pool_size) / pool_stride + 1);
    for (int n = 0; n < batch; n++) {
        pad_channels_last(x + (long)n * c * h * w, g, xp, path == CORTADO_CONV_AVX512);
        float *o = out + n * outCount;
        if (path == CORTADO_CONV_PORTABLE) {
            conv_portable(xp, g, packed, bias, relu, y);
            pool_channels_first(y, g, pool_size, pool_stride, o);
        } else {
            conv_pool_vector(xp, g, packed, bias, relu, pool_size, pool_stride, y, pooled, o,
                             path == CORTADO_CONV_AVX512);
        }
    }
}
