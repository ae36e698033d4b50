// 16-bit gradient exchange (distributed.precision): fp32 ↔ bfloat16 / IEEE binary16
// conversions and the owner's fp32 sum of the ranks' 16-bit slices. Plain branch-free loops
// the compiler vectorizes; no intrinsics, so every CPU computes the same bits.
//
// Rounding is IEEE round-to-nearest, ties to even, as a hardware conversion (vcvtneps2bf16,
// vcvtps2ph) does:
// - bf16 keeps fp32's 8-bit exponent, so it rounds the mantissa only: finite values above the
//   largest bf16 (0x7F7F'8000 and up) round to ±Inf, fp32 denormals to bf16 denormals (or ±0),
//   and a NaN stays a NaN (quiet bit set; adding the rounding bias could turn a NaN whose
//   payload sits in the low 16 bits into Inf).
// - fp16 has a 5-bit exponent: magnitudes from 65520 up become ±Inf, values below 2^-14 become
//   fp16 denormals (multiples of 2^-24), below 2^-25 ±0; NaN stays NaN (0x7E00 | sign).
//   The fp16 code is Marat Dukhan's FP16 library's (MIT), which rounds through fp32
//   arithmetic, so it needs the default rounding mode and no flush-to-zero (Swift sets none).
#include "cortado_kernels.h"

#include <string.h>

#pragma STDC FP_CONTRACT OFF

static inline uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t to_bf16(float f) {
    uint32_t w = bits_of(f);
    uint32_t rounded = (w + 0x7FFFu + ((w >> 16) & 1u)) >> 16;
    uint32_t nan = (w >> 16) | 0x0040u;
    return (uint16_t)((w & 0x7FFFFFFFu) > 0x7F800000u ? nan : rounded);
}

static inline float from_bf16(uint16_t h) { return float_of((uint32_t)h << 16); }

static inline uint16_t to_fp16(float f) {
    const float scale_to_inf = 0x1.0p+112f, scale_to_zero = 0x1.0p-110f;
    float base = (__builtin_fabsf(f) * scale_to_inf) * scale_to_zero;
    const uint32_t w = bits_of(f), shl1_w = w + w, sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base = float_of((bias >> 1) + 0x07800000u) + base;
    const uint32_t b = bits_of(base);
    const uint32_t nonsign = ((b >> 13) & 0x00007C00u) + (b & 0x00000FFFu);
    return (uint16_t)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

static inline float from_fp16(uint16_t h) {
    const uint32_t w = (uint32_t)h << 16, sign = w & 0x80000000u, two_w = w + w;
    const float normalized = float_of((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
    const float denormalized = float_of((two_w >> 17) | (126u << 23)) - 0.5f;
    return float_of(sign | (two_w < (1u << 27) ? bits_of(denormalized) : bits_of(normalized)));
}

void cortado_to_half(const float *restrict x, uint16_t *restrict h, long n, int format) {
    if (format == CORTADO_HALF_BF16) {
        for (long i = 0; i < n; i++) h[i] = to_bf16(x[i]);
    } else {
        for (long i = 0; i < n; i++) h[i] = to_fp16(x[i]);
    }
}

void cortado_from_half(const uint16_t *restrict h, float *restrict x, long n, int format) {
    if (format == CORTADO_HALF_BF16) {
        for (long i = 0; i < n; i++) x[i] = from_bf16(h[i]);
    } else {
        for (long i = 0; i < n; i++) x[i] = from_fp16(h[i]);
    }
}

void cortado_sum_half(const uint16_t *restrict h, long stride, int parts, long n, float *restrict sum, int format) {
    for (long i = 0; i < n; i++) sum[i] = 0.0f;
    for (int r = 0; r < parts; r++) {
        const uint16_t *p = h + r * stride;
        if (format == CORTADO_HALF_BF16) {
            for (long i = 0; i < n; i++) sum[i] += from_bf16(p[i]);
        } else {
            for (long i = 0; i < n; i++) sum[i] += from_fp16(p[i]);
        }
    }
}
