// int8 × int8 → int32 GEMM with the weight matrix row-major (n, k), as the model file stores
// it. x86 has no signed×signed 8-bit multiply-add, only unsigned×signed (vpmaddubsw,
// vpdpbusd), so each path multiplies |a| by w carrying a's sign (vpsignb): |a|·(sign(a)·w) =
// a·w exactly, and with |values| ≤ 127 a pair sum stays below the 16-bit saturation of
// vpmaddubsw. Each activation row is tested against 4 weight rows at once, so its loads are
// shared. Functions carry target attributes, so the file builds without -mavx flags and the
// path is picked at run time. cortado_int8_gemm_packed (below) is the faster VNNI form over
// weights packed once at load.
#include "cortado_kernels.h"
#include <immintrin.h>
#include <string.h>

static void gemm_portable(const int8_t *a, const int8_t *w, int32_t *c, int m, int n, int k) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            int32_t acc = 0;
            for (int p = 0; p < k; p++) acc += (int32_t)a[i * k + p] * (int32_t)w[j * k + p];
            c[i * n + j] = acc;
        }
}

static inline int32_t dot_tail(const int8_t *a, const int8_t *w, int from, int k) {
    int32_t acc = 0;
    for (int p = from; p < k; p++) acc += (int32_t)a[p] * (int32_t)w[p];
    return acc;
}

__attribute__((target("avx2")))
static inline int32_t hsum256(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/// 32 products of a·w summed pairwise into 8 int32 lanes. When every a is known to be ≥ 0
/// (ReLU outputs, pixel intensities) a already is the unsigned operand and the sign step is
/// skipped: 3 instructions per 32 products instead of 4.
__attribute__((target("avx2"), always_inline))
static inline __m256i madd32(__m256i ua, __m256i sa, __m256i vw, __m256i ones, const int nonneg) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ua, nonneg ? vw : _mm256_sign_epi8(vw, sa)), ones);
}

/// The 4 sums of s0..s3 (8 lanes each) as one 128-bit vector [Σs0, Σs1, Σs2, Σs3].
__attribute__((target("avx2")))
static inline __m128i hsum4(__m256i s0, __m256i s1, __m256i s2, __m256i s3) {
    __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3));
    return _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
}

/// Two activation rows against four weight rows per pass (8 accumulators): each weight load
/// serves two rows, each activation load four, which halves the weight traffic from L2 that
/// bounds the one-row loop. Rows and columns left over take the narrower loops.
__attribute__((target("avx2"), always_inline))
static inline void gemm_avx2_body(const int8_t *a, const int8_t *w, int32_t *c, int m, int n, int k, const int nonneg) {
    const __m256i ones = _mm256_set1_epi16(1);
    const int kv = k / 32 * 32;
    int i = 0;
    for (; i + 2 <= m; i += 2) {
        const int8_t *a0 = a + (long)i * k, *a1 = a0 + k;
        int32_t *c0 = c + (long)i * n, *c1 = c0 + n;
        int j = 0;
        for (; j + 4 <= n; j += 4) {
            const int8_t *w0 = w + (long)j * k, *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
            __m256i s00 = _mm256_setzero_si256(), s01 = s00, s02 = s00, s03 = s00;
            __m256i s10 = s00, s11 = s00, s12 = s00, s13 = s00;
            for (int p = 0; p < kv; p += 32) {
                __m256i v0 = _mm256_loadu_si256((const __m256i *)(a0 + p)), u0 = nonneg ? v0 : _mm256_abs_epi8(v0);
                __m256i v1 = _mm256_loadu_si256((const __m256i *)(a1 + p)), u1 = nonneg ? v1 : _mm256_abs_epi8(v1);
                __m256i x = _mm256_loadu_si256((const __m256i *)(w0 + p));
                s00 = _mm256_add_epi32(s00, madd32(u0, v0, x, ones, nonneg)); s10 = _mm256_add_epi32(s10, madd32(u1, v1, x, ones, nonneg));
                x = _mm256_loadu_si256((const __m256i *)(w1 + p));
                s01 = _mm256_add_epi32(s01, madd32(u0, v0, x, ones, nonneg)); s11 = _mm256_add_epi32(s11, madd32(u1, v1, x, ones, nonneg));
                x = _mm256_loadu_si256((const __m256i *)(w2 + p));
                s02 = _mm256_add_epi32(s02, madd32(u0, v0, x, ones, nonneg)); s12 = _mm256_add_epi32(s12, madd32(u1, v1, x, ones, nonneg));
                x = _mm256_loadu_si256((const __m256i *)(w3 + p));
                s03 = _mm256_add_epi32(s03, madd32(u0, v0, x, ones, nonneg)); s13 = _mm256_add_epi32(s13, madd32(u1, v1, x, ones, nonneg));
            }
            __m128i r0 = hsum4(s00, s01, s02, s03), r1 = hsum4(s10, s11, s12, s13);
            if (kv < k) {
                r0 = _mm_add_epi32(r0, _mm_setr_epi32(dot_tail(a0, w0, kv, k), dot_tail(a0, w1, kv, k), dot_tail(a0, w2, kv, k), dot_tail(a0, w3, kv, k)));
                r1 = _mm_add_epi32(r1, _mm_setr_epi32(dot_tail(a1, w0, kv, k), dot_tail(a1, w1, kv, k), dot_tail(a1, w2, kv, k), dot_tail(a1, w3, kv, k)));
            }
            _mm_storeu_si128((__m128i *)(c0 + j), r0);
            _mm_storeu_si128((__m128i *)(c1 + j), r1);
        }
        for (; j < n; j++) {
            const int8_t *wr = w + (long)j * k;
            __m256i s0 = _mm256_setzero_si256(), s1 = s0;
            for (int p = 0; p < kv; p += 32) {
                __m256i v0 = _mm256_loadu_si256((const __m256i *)(a0 + p)), v1 = _mm256_loadu_si256((const __m256i *)(a1 + p));
                __m256i x = _mm256_loadu_si256((const __m256i *)(wr + p));
                s0 = _mm256_add_epi32(s0, madd32(nonneg ? v0 : _mm256_abs_epi8(v0), v0, x, ones, nonneg));
                s1 = _mm256_add_epi32(s1, madd32(nonneg ? v1 : _mm256_abs_epi8(v1), v1, x, ones, nonneg));
            }
            c0[j] = hsum256(s0) + dot_tail(a0, wr, kv, k);
            c1[j] = hsum256(s1) + dot_tail(a1, wr, kv, k);
        }
    }
    for (; i < m; i++) {
        const int8_t *ar = a + (long)i * k;
        int j = 0;
        for (; j + 4 <= n; j += 4) {
            const int8_t *w0 = w + (long)j * k, *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
            __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
            for (int p = 0; p < kv; p += 32) {
                __m256i va = _mm256_loadu_si256((const __m256i *)(ar + p));
                __m256i ua = nonneg ? va : _mm256_abs_epi8(va);
                s0 = _mm256_add_epi32(s0, madd32(ua, va, _mm256_loadu_si256((const __m256i *)(w0 + p)), ones, nonneg));
                s1 = _mm256_add_epi32(s1, madd32(ua, va, _mm256_loadu_si256((const __m256i *)(w1 + p)), ones, nonneg));
                s2 = _mm256_add_epi32(s2, madd32(ua, va, _mm256_loadu_si256((const __m256i *)(w2 + p)), ones, nonneg));
                s3 = _mm256_add_epi32(s3, madd32(ua, va, _mm256_loadu_si256((const __m256i *)(w3 + p)), ones, nonneg));
            }
            __m128i r = hsum4(s0, s1, s2, s3);
            if (kv < k) r = _mm_add_epi32(r, _mm_setr_epi32(dot_tail(ar, w0, kv, k), dot_tail(ar, w1, kv, k), dot_tail(ar, w2, kv, k), dot_tail(ar, w3, kv, k)));
            _mm_storeu_si128((__m128i *)(c + (long)i * n + j), r);
        }
        for (; j < n; j++) {
            const int8_t *wr = w + (long)j * k;
            __m256i s = _mm256_setzero_si256();
            for (int p = 0; p < kv; p += 32) {
                __m256i va = _mm256_loadu_si256((const __m256i *)(ar + p));
                s = _mm256_add_epi32(s, madd32(nonneg ? va : _mm256_abs_epi8(va), va, _mm256_loadu_si256((const __m256i *)(wr + p)), ones, nonneg));
            }
            c[(long)i * n + j] = hsum256(s) + dot_tail(ar, wr, kv, k);
        }
    }
}

__attribute__((target("avx2")))
static void gemm_avx2(const int8_t *a, const int8_t *w, int32_t *c, int m, int n, int k) { gemm_avx2_body(a, w, c, m, n, k, 0); }
__attribute__((target("avx2")))
static void gemm_avx2_nonneg(const int8_t *a, const int8_t *w, int32_t *c, int m, int n, int k) { gemm_avx2_body(a, w, c, m, n, k, 1); }

__attribute__((target("avx512f,avx512bw,avx512vnni")))
static void gemm_vnni(const int8_t *a, const int8_t *w, int32_t *c, int m, int n, int k) {
    const int kv = k / 64 * 64;
    for (int i = 0; i < m; i++) {
        const int8_t *ar = a + (long)i * k;
        int j = 0;
        for (; j + 4 <= n; j += 4) {
            const int8_t *w0 = w + (long)j * k, *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
            __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
            for (int p = 0; p < kv; p += 64) {
                __m512i va = _mm512_loadu_si512(ar + p);
                __m512i ua = _mm512_abs_epi8(va);
                __mmask64 neg = _mm512_movepi8_mask(va);   // sign bits of a
                #define SIGNED_W(ptr) _mm512_mask_sub_epi8(_mm512_loadu_si512(ptr), neg, _mm512_setzero_si512(), _mm512_loadu_si512(ptr))
                s0 = _mm512_dpbusd_epi32(s0, ua, SIGNED_W(w0 + p));
                s1 = _mm512_dpbusd_epi32(s1, ua, SIGNED_W(w1 + p));
                s2 = _mm512_dpbusd_epi32(s2, ua, SIGNED_W(w2 + p));
                s3 = _mm512_dpbusd_epi32(s3, ua, SIGNED_W(w3 + p));
                #undef SIGNED_W
            }
            c[(long)i * n + j] = _mm512_reduce_add_epi32(s0) + dot_tail(ar, w0, kv, k);
            c[(long)i * n + j + 1] = _mm512_reduce_add_epi32(s1) + dot_tail(ar, w1, kv, k);
            c[(long)i * n + j + 2] = _mm512_reduce_add_epi32(s2) + dot_tail(ar, w2, kv, k);
            c[(long)i * n + j + 3] = _mm512_reduce_add_epi32(s3) + dot_tail(ar, w3, kv, k);
        }
        for (; j < n; j++) c[(long)i * n + j] = dot_tail(ar, w + (long)j * k, 0, k);
    }
}

// The packed path. vpdpbusd multiplies 4 consecutive u8 of one operand by 4 s8 of the other
// and adds the 4 products into one int32 lane, 16 lanes per zmm. Packing the weights once at
// load as 16-column panels, 4 consecutive k per lane ((n/16, k/4, 16, 4) bytes), lets one
// broadcast of 4 activation bytes feed 16 outputs, so a register tile of MR rows × NV·16
// columns accumulates without any horizontal sum, and each weight load serves MR rows.
// The activation is the unsigned operand; a signed a is shifted by +128 (xor 0x80, so
// a + 128 ∈ [1, 255]) and the tile starts from −128·Σ_p w[j, p] instead of zero, which the
// pack precomputes: Σ (a + 128)·w − 128·Σ w = Σ a·w, exact in int32 (no saturating step).
// Activations already ≥ 0 (ReLU outputs, pixels) skip both.
// 6 × 4 panels measured fastest of 4×4, 6×4, 8×3 and 12×2 (Benchmarks/RESULTS.md, 2026-12-04);
// blocking k as well (kc = 128…512) was slower: one 64-column block of the MLP stays in L2.
enum { PACK_MR = 6, PACK_NV = 4 };

static inline int pack_k4(int k) { return (k + 3) / 4; }
static inline int pack_panels(int n) { return (n + 15) / 16; }

long cortado_int8_packed_size(int n, int k) {
    const long panels = pack_panels(n);
    return panels * 16 * (long)sizeof(int32_t) + panels * pack_k4(k) * 64;
}

void cortado_int8_pack_weights(const int8_t *w, int n, int k, int8_t *packed) {
    const int panels = pack_panels(n), k4 = pack_k4(k);
    int8_t *body = packed + (long)panels * 16 * sizeof(int32_t);
    for (int j = 0; j < panels * 16; j++) {
        int32_t sum = 0;
        if (j < n) for (int p = 0; p < k; p++) sum += w[(long)j * k + p];
        const int32_t corr = -128 * sum;
        memcpy(packed + (long)j * sizeof(int32_t), &corr, sizeof corr);
    }
    for (int jb = 0; jb < panels; jb++)
        for (int p4 = 0; p4 < k4; p4++)
            for (int jj = 0; jj < 16; jj++)
                for (int t = 0; t < 4; t++) {
                    const int j = jb * 16 + jj, p = p4 * 4 + t;
                    body[((long)jb * k4 + p4) * 64 + jj * 4 + t] = j < n && p < k ? w[(long)j * k + p] : 0;
                }
}

/// 4 activation bytes a[p..p+3] as one int32, zeros past k (the packed weights there are 0).
static inline int32_t load4(const int8_t *a, int p, int k) {
    int32_t v = 0;
    if (p + 4 <= k) memcpy(&v, a + p, 4);
    else memcpy(&v, a + p, (size_t)(k - p));
    return v;
}

/// One MR × NV·16 tile of c over all of k: MR·NV accumulators stay in registers (24 of the 32
/// zmm at 6 × 4). `cols` is how many of the NV·16 columns exist (the last panel is masked).
__attribute__((target("avx512f,avx512bw,avx512vnni"), always_inline))
static inline void pack_tile(const int8_t *a, long lda, const int8_t *wp, long pstride, const int8_t *corr,
                             int32_t *c, long ldc, int k, int cols, const int MR, const int NV, const int shift) {
    __m512i acc[PACK_MR][PACK_NV];
    for (int v = 0; v < NV; v++) {
        const __m512i init = shift ? _mm512_loadu_si512(corr + v * 64) : _mm512_setzero_si512();
        for (int r = 0; r < MR; r++) acc[r][v] = init;
    }
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    const int kf = k / 4 * 4;
    int p = 0;
    for (; p < kf; p += 4) {
        __m512i wv[PACK_NV];
        for (int v = 0; v < NV; v++) wv[v] = _mm512_loadu_si512(wp + v * pstride + (long)p * 16);
        for (int r = 0; r < MR; r++) {
            int32_t four;
            memcpy(&four, a + r * lda + p, 4);
            __m512i b = _mm512_set1_epi32(four);
            if (shift) b = _mm512_xor_si512(b, flip);
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], b, wv[v]);
        }
    }
    if (p < k) {
        __m512i wv[PACK_NV];
        for (int v = 0; v < NV; v++) wv[v] = _mm512_loadu_si512(wp + v * pstride + (long)p * 16);
        for (int r = 0; r < MR; r++) {
            __m512i b = _mm512_set1_epi32(load4(a + r * lda, p, k));
            if (shift) b = _mm512_xor_si512(b, flip);
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], b, wv[v]);
        }
    }
    for (int v = 0; v < NV; v++) {
        const int left = cols - v * 16;
        const __mmask16 mask = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
        for (int r = 0; r < MR; r++) _mm512_mask_storeu_epi32(c + r * ldc + v * 16, mask, acc[r][v]);
    }
}

#define PACK_TILE_CASE(R, V)                                                                           \
    case (R) * 8 + (V):                                                                                \
        if (shift) pack_tile(a, lda, wp, pstride, corr, c, ldc, k, cols, R, V, 1);                    \
        else pack_tile(a, lda, wp, pstride, corr, c, ldc, k, cols, R, V, 0);                          \
        break;
#define PACK_TILE_ROWS(R) PACK_TILE_CASE(R, 1) PACK_TILE_CASE(R, 2) PACK_TILE_CASE(R, 3) PACK_TILE_CASE(R, 4)

__attribute__((target("avx512f,avx512bw,avx512vnni")))
static void pack_tile_any(const int8_t *a, long lda, const int8_t *wp, long pstride, const int8_t *corr, int32_t *c,
                          long ldc, int k, int cols, int rows, int nv, int shift) {
    switch (rows * 8 + nv) {
    PACK_TILE_ROWS(1) PACK_TILE_ROWS(2) PACK_TILE_ROWS(3) PACK_TILE_ROWS(4) PACK_TILE_ROWS(5) PACK_TILE_ROWS(6)
    default: break;
    }
}

/// Column blocks of NV panels outside, row tiles inside: one block's weights (NV·16·k bytes)
/// stay in L1/L2 while every row tile of a passes over them.
__attribute__((target("avx512f,avx512bw,avx512vnni")))
static void gemm_packed_vnni(const int8_t *a, const int8_t *packed, int32_t *c, int m, int n, int k, int a_nonneg) {
    const int panels = pack_panels(n), k4 = pack_k4(k);
    const int8_t *body = packed + (long)panels * 16 * sizeof(int32_t);
    const long pstride = (long)k4 * 64;
    for (int jb = 0; jb < panels; jb += PACK_NV) {
        const int nv = panels - jb < PACK_NV ? panels - jb : PACK_NV;
        const int cols = n - jb * 16 < nv * 16 ? n - jb * 16 : nv * 16;
        const int8_t *wp = body + (long)jb * pstride, *corr = packed + (long)jb * 16 * sizeof(int32_t);
        for (int i = 0; i < m; i += PACK_MR) {
            const int rows = m - i < PACK_MR ? m - i : PACK_MR;
            pack_tile_any(a + (long)i * k, k, wp, pstride, corr, c + (long)i * n + jb * 16, n, k, cols, rows, nv,
                          !a_nonneg);
        }
    }
}

/// The packed layout in plain C, so cortado_int8_gemm_packed runs on every CPU (the inference
/// layers keep their row-major weights for the AVX2 path and pack only where VNNI exists).
static void gemm_packed_portable(const int8_t *a, const int8_t *packed, int32_t *c, int m, int n, int k) {
    const int panels = pack_panels(n), k4 = pack_k4(k);
    const int8_t *body = packed + (long)panels * 16 * sizeof(int32_t);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            const int8_t *panel = body + (long)(j / 16) * k4 * 64 + (j % 16) * 4;
            int32_t acc = 0;
            for (int p = 0; p < k; p++) acc += (int32_t)a[(long)i * k + p] * (int32_t)panel[(p / 4) * 64 + p % 4];
            c[(long)i * n + j] = acc;
        }
}

void cortado_int8_gemm_packed(const int8_t *a, const int8_t *packed, int32_t *c, int m, int n, int k, int path,
                              int a_nonneg) {
    int best = cortado_int8_best_path();
    if (path > best) path = best;
    if (path == CORTADO_INT8_AVX512VNNI) gemm_packed_vnni(a, packed, c, m, n, k, a_nonneg);
    else gemm_packed_portable(a, packed, c, m, n, k);
}

int cortado_int8_best_path(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw")) return CORTADO_INT8_AVX512VNNI;
    if (__builtin_cpu_supports("avx2")) return CORTADO_INT8_AVX2;
    return CORTADO_INT8_PORTABLE;
}

void cortado_int8_gemm(const int8_t *a, const int8_t *w, int32_t *c, int m, int n, int k, int path) {
    cortado_int8_gemm_ex(a, w, c, m, n, k, path, 0);
}

void cortado_int8_gemm_ex(const int8_t *a, const int8_t *w, int32_t *c, int m, int n, int k, int path, int a_nonneg) {
    int best = cortado_int8_best_path();
    if (path > best) path = best;
    switch (path) {
    case CORTADO_INT8_AVX512VNNI: gemm_vnni(a, w, c, m, n, k); break;
    case CORTADO_INT8_AVX2: if (a_nonneg) gemm_avx2_nonneg(a, w, c, m, n, k); else gemm_avx2(a, w, c, m, n, k); break;
    default: gemm_portable(a, w, c, m, n, k);
    }
}
