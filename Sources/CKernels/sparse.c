// Sparse (CSR) weights × a batch: the kernel pruned layers take when they are sparse enough
// that skipping the zeros beats the dense GEMM (the crossover is measured by
// Benchmarks/sparse-crossover.sh and set in CortadoInfer's SparseLayer).
//
// Small batches (< 16 rows) run row by row: each output is a dot product of a weight row's
// non-zeros with gathered inputs. Larger batches are repacked into blocks of 32 samples laid
// out (k, 32), so each non-zero w[j][p] becomes one 32-wide axpy of a contiguous 128-byte row
// into four accumulators held across the weight row; a block's inputs (k × 128 B, 100 KB for
// k = 784) stay in L2 while every weight row sweeps them. (Without the repacking, rows 4 KB
// apart at batch 1024 alias in the cache and the kernel ran at half the speed.)
#include "cortado_kernels.h"
#include <immintrin.h>
#include <string.h>

static inline float finish(float y, const float *bias, int j, int relu) {
    y += bias[j];
    return relu && !(y > 0) ? 0 : y;
}

static void rows_portable(const int32_t *indptr, const int32_t *indices, const float *values, int n, int k,
                          const float *x, int m, const float *bias, int relu, float *y) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float s = 0;
            for (int q = indptr[j]; q < indptr[j + 1]; q++) s += values[q] * x[(long)i * k + indices[q]];
            y[(long)i * n + j] = finish(s, bias, j, relu);
        }
}

__attribute__((target("avx2,fma")))
static void rows_avx2(const int32_t *indptr, const int32_t *indices, const float *values, int n, int k,
                      const float *x, int m, const float *bias, int relu, float *y) {
    for (int i = 0; i < m; i++) {
        const float *xr = x + (long)i * k;
        for (int j = 0; j < n; j++) {
            const int q1 = indptr[j + 1];
            __m256 a = _mm256_setzero_ps();
            int q = indptr[j];
            for (; q + 8 <= q1; q += 8)
                a = _mm256_fmadd_ps(_mm256_loadu_ps(values + q), _mm256_i32gather_ps(xr, _mm256_loadu_si256((const __m256i *)(indices + q)), 4), a);
            __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
            h = _mm_add_ps(h, _mm_movehl_ps(h, h));
            h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
            float s = _mm_cvtss_f32(h);
            for (; q < q1; q++) s += values[q] * xr[indices[q]];
            y[(long)i * n + j] = finish(s, bias, j, relu);
        }
    }
}

__attribute__((target("avx2,fma")))
static void blocks_avx2(const int32_t *indptr, const int32_t *indices, const float *values, int n, int k,
                        const float *x, int m, const float *bias, int relu, float *y, float *scratch) {
    float *xb = scratch, *yb = scratch + (long)32 * k;
    for (int i0 = 0; i0 < m; i0 += 32) {
        const int w = m - i0 < 32 ? m - i0 : 32;
        if (w < 32) memset(xb, 0, sizeof(float) * 32 * (size_t)k);
        for (int ii = 0; ii < w; ii++) {
            const float *xr = x + (long)(i0 + ii) * k;
            for (int p = 0; p < k; p++) xb[p * 32 + ii] = xr[p];
        }
        for (int j = 0; j < n; j++) {
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int q = indptr[j]; q < indptr[j + 1]; q++) {
                const __m256 v = _mm256_broadcast_ss(values + q);
                const float *xp = xb + (long)indices[q] * 32;
                a0 = _mm256_fmadd_ps(v, _mm256_loadu_ps(xp), a0);
                a1 = _mm256_fmadd_ps(v, _mm256_loadu_ps(xp + 8), a1);
                a2 = _mm256_fmadd_ps(v, _mm256_loadu_ps(xp + 16), a2);
                a3 = _mm256_fmadd_ps(v, _mm256_loadu_ps(xp + 24), a3);
            }
            float *yp = yb + (long)j * 32;
            _mm256_storeu_ps(yp, a0); _mm256_storeu_ps(yp + 8, a1);
            _mm256_storeu_ps(yp + 16, a2); _mm256_storeu_ps(yp + 24, a3);
        }
        for (int ii = 0; ii < w; ii++) {
            float *yr = y + (long)(i0 + ii) * n;
            for (int j = 0; j < n; j++) yr[j] = finish(yb[j * 32 + ii], bias, j, relu);
        }
    }
}

void cortado_csr_spmm(const int32_t *indptr, const int32_t *indices, const float *values, int n, int k,
                      const float *x, int m, const float *bias, int relu, float *y, float *scratch, int path) {
    if (path < CORTADO_INT8_AVX2 || cortado_int8_best_path() < CORTADO_INT8_AVX2) rows_portable(indptr, indices, values, n, k, x, m, bias, relu, y);
    else if (m < 16) rows_avx2(indptr, indices, values, n, k, x, m, bias, relu, y);
    else blocks_avx2(indptr, indices, values, n, k, x, m, bias, relu, y, scratch);
}
