// The shared-memory gradient exchange's sum (distributed.exchange: shm): one rank adds its
// slice of every rank's segment, in rank order, so each value is ((s0 + s1) + s2) + … on every
// run and on every rank count's fixed order. Blocks of 1024 values are summed in a stack buffer
// (L1-resident, vectorized across values, never across ranks), then stored: `out` may be one of
// the segments themselves, which a running sum in place would overwrite before reading.
#include "cortado_kernels.h"

enum { BLOCK = 1024 };

void cortado_sum_segments(const float *const *segments, int parts, long lo, long n, float *out, float *out2) {
    float acc[BLOCK];
    for (long b = 0; b < n; b += BLOCK) {
        long m = n - b < BLOCK ? n - b : BLOCK;
        const float *s0 = segments[0] + lo + b;
        for (long i = 0; i < m; i++) acc[i] = s0[i];
        for (int p = 1; p < parts; p++) {
            const float *s = segments[p] + lo + b;
            for (long i = 0; i < m; i++) acc[i] += s[i];
        }
        for (long i = 0; i < m; i++) out[b + i] = acc[i];
        if (out2)
            for (long i = 0; i < m; i++) out2[b + i] = acc[i];
    }
}
