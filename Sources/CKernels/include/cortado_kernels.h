// Cortado's hand-written kernels: the int8 GEMM of the inference runtime.
#pragma once
#include <stdint.h>

/// Kernel paths, best first; all give bit-identical results (exact integer arithmetic).
enum { CORTADO_INT8_PORTABLE = 0, CORTADO_INT8_AVX2 = 1, CORTADO_INT8_AVX512VNNI = 2 };

/// The best path this CPU runs (cpuid, at run time).
int cortado_int8_best_path(void);

/// c[i*n + j] = Σ_p a[i*k + p] · w[j*k + p] for i < m, j < n, accumulated in int32.
/// a and w hold values in [-127, 127] (symmetric quantization never makes -128), which keeps
/// the u8×s8 instructions below from saturating. `path` above the CPU's best is lowered.
void cortado_int8_gemm(const int8_t *a, const int8_t *w, int32_t *c, int m, int n, int k, int path);
