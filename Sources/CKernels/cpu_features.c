// What the CPU offers, for choosing OpenBLAS's kernel (Sources/CortadoModel/BLASKernel.swift).
// __builtin_cpu_supports reads cpuid once and, for AVX and AVX-512, also checks that the OS
// saves those registers (xgetbv), so a feature reported here can be used.
#include "cortado_kernels.h"

unsigned cortado_cpu_features(void) {
    __builtin_cpu_init();
    unsigned f = 0;
    if (__builtin_cpu_supports("avx")) f |= CORTADO_CPU_AVX;
    if (__builtin_cpu_supports("avx2")) f |= CORTADO_CPU_AVX2;
    if (__builtin_cpu_supports("fma")) f |= CORTADO_CPU_FMA;
    if (__builtin_cpu_supports("avx512f")) f |= CORTADO_CPU_AVX512F;
    if (__builtin_cpu_supports("avx512bw")) f |= CORTADO_CPU_AVX512BW;
    if (__builtin_cpu_supports("avx512dq")) f |= CORTADO_CPU_AVX512DQ;
    if (__builtin_cpu_supports("avx512vl")) f |= CORTADO_CPU_AVX512VL;
    if (__builtin_cpu_supports("avx512vnni")) f |= CORTADO_CPU_AVX512VNNI;
    if (__builtin_cpu_supports("avx512bf16")) f |= CORTADO_CPU_AVX512BF16;
    if (__builtin_cpu_is("amd")) f |= CORTADO_CPU_AMD;
    if (__builtin_cpu_is("intel")) f |= CORTADO_CPU_INTEL;
    return f;
}
