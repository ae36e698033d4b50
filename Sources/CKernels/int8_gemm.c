// int8 × int8 → int32 GEMM with the weight matrix row-major (n, k), as the model file stores
// it. x86 has no signed×signed 8-bit multiply-add, only unsigned×signed (vpmaddubsw,
// vpdpbusd), so each path multiplies |a| by w carrying a's sign (vpsignb): |a|·(sign(a)·w) =
// a·w exactly, and with |values| ≤ 127 a pair sum stays below the 16-bit saturation of
// vpmaddubsw. Each activation row is tested against 4 weight rows at once, so its loads are
// shared. Functions carry target attributes, so the file builds without -mavx flags and the
// path is picked at run time.
#include "cortado_kernels.h"
#include <immintrin.h>

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
