// The optimizer's update over a range of the flat parameter arena: one pass over weights,
// gradients and state that also applies the gradient's averaging scale (1/ranks), so the
// trainer no longer runs a separate read-modify-write pass over the 40 MB gradient of a
// 10 M-parameter model. The update is memory bound (SGD streams 5 floats per parameter), so
// plain loops that the compiler vectorizes (restrict pointers, the variant hoisted out of
// the loop) are as fast as intrinsics.
//
// Every expression keeps the operation order of the scalar Swift reference in
// Optimizer.swift, and contraction into FMA is off, so the results are bit-identical to it
// (SIMD add, mul, div and sqrt round exactly like their scalar forms).
#include "cortado_kernels.h"

#include <string.h>

#pragma STDC FP_CONTRACT OFF

__attribute__((always_inline))
static inline void sgd_body(float *restrict w, const float *restrict g, float *restrict v, long n,
                            float lr, float mu, float wd, float gscale, const int nesterov) {
    for (long i = 0; i < n; i++) {
        const float gi = g[i] * gscale + wd * w[i];
        const float vi = mu * v[i] + gi;
        v[i] = vi;
        w[i] = w[i] - lr * (nesterov ? gi + mu * vi : vi);
    }
}

static void sgd_portable(float *w, const float *g, float *v, long n, float lr, float mu, float wd, float gscale,
                         int nesterov) {
    if (nesterov) sgd_body(w, g, v, n, lr, mu, wd, gscale, 1);
    else sgd_body(w, g, v, n, lr, mu, wd, gscale, 0);
}

// "avx2" alone, not "avx2,fma": the formulas must not contract into FMA.
__attribute__((target("avx2")))
static void sgd_avx2(float *w, const float *g, float *v, long n, float lr, float mu, float wd, float gscale, int nesterov) {
    if (nesterov) sgd_body(w, g, v, n, lr, mu, wd, gscale, 1);
    else sgd_body(w, g, v, n, lr, mu, wd, gscale, 0);
}

void cortado_sgd_update(float *w, const float *g, float *v, long n, float lr, float mu, float wd, float gscale,
                        int nesterov, int path) {
    if (cortado_use_avx2(path)) sgd_avx2(w, g, v, n, lr, mu, wd, gscale, nesterov);
    else sgd_portable(w, g, v, n, lr, mu, wd, gscale, nesterov);
}

__attribute__((always_inline))
static inline void adam_body(float *restrict w, const float *restrict g, float *restrict m, float *restrict s, long n,
                             float lr, float b1, float b2, float eps, float wd, float c1, float c2, float gscale,
                             const int decoupled) {
    const float d1 = 1 - b1, d2 = 1 - b2, lrwd = lr * wd;
    for (long i = 0; i < n; i++) {
        const float gs = g[i] * gscale;
        const float gi = decoupled ? gs : gs + wd * w[i];
        const float wi = decoupled ? w[i] - lrwd * w[i] : w[i];
        const float mi = b1 * m[i] + d1 * gi;
        const float si = b2 * s[i] + d2 * gi * gi;
        m[i] = mi;
        s[i] = si;
        // The elementwise builtin is sqrtf without errno, so the loop vectorizes (sqrtps).
        w[i] = wi - lr * (mi / c1) / (__builtin_elementwise_sqrt(si / c2) + eps);
    }
}

static void adam_portable(float *w, const float *g, float *m, float *s, long n, float lr, float b1, float b2, float eps,
                          float wd, float c1, float c2, float gscale, int decoupled) {
    if (decoupled) adam_body(w, g, m, s, n, lr, b1, b2, eps, wd, c1, c2, gscale, 1);
    else adam_body(w, g, m, s, n, lr, b1, b2, eps, wd, c1, c2, gscale, 0);
}

__attribute__((target("avx2")))
static void adam_avx2(float *w, const float *g, float *m, float *s, long n, float lr, float b1, float b2, float eps,
                      float wd, float c1, float c2, float gscale, int decoupled) {
    if (decoupled) adam_body(w, g, m, s, n, lr, b1, b2, eps, wd, c1, c2, gscale, 1);
    else adam_body(w, g, m, s, n, lr, b1, b2, eps, wd, c1, c2, gscale, 0);
}

void cortado_adam_update(float *w, const float *g, float *m, float *s, long n, float lr, float b1, float b2, float eps,
                         float wd, float c1, float c2, float gscale, int decoupled, int path) {
    if (cortado_use_avx2(path)) adam_avx2(w, g, m, s, n, lr, b1, b2, eps, wd, c1, c2, gscale, decoupled);
    else adam_portable(w, g, m, s, n, lr, b1, b2, eps, wd, c1, c2, gscale, decoupled);
}

// RMSprop (PyTorch, no momentum): g' = g·gscale + λw;  v ← αv + (1−α)g'²;  w ← w − lr·(g'/(√v + ε)).
// hyper = {α, ε}; one state arena (v).
__attribute__((always_inline))
static inline void rmsprop_body(float *restrict w, const float *restrict g, float *restrict v, long n, float lr, float wd,
                                float gscale, float alpha, float eps) {
    const float d = 1 - alpha;
    for (long i = 0; i < n; i++) {
        const float gi = g[i] * gscale + wd * w[i];
        const float vi = alpha * v[i] + d * gi * gi;
        v[i] = vi;
        w[i] = w[i] - lr * (gi / (__builtin_elementwise_sqrt(vi) + eps));
    }
}

__attribute__((target("avx2")))
static void rmsprop_avx2(float *w, const float *g, float *v, long n, float lr, float wd, float gscale, float alpha, float eps) {
    rmsprop_body(w, g, v, n, lr, wd, gscale, alpha, eps);
}

static void rmsprop_update(float *w, const float *g, float *state, long stride, long n, float lr, float wd, float gscale,
                           const float *hyper, int path) {
    (void)stride;   // one arena
    if (cortado_use_avx2(path)) rmsprop_avx2(w, g, state, n, lr, wd, gscale, hyper[0], hyper[1]);
    else rmsprop_body(w, g, state, n, lr, wd, gscale, hyper[0], hyper[1]);
}

// Kernels in the shared shape (cortado_optimizer_kernel), by optimizer.type: an optimizer
// added after SGD and Adam registers its kernel here instead of declaring it in the header.
static const struct {
    const char *name;
    cortado_optimizer_kernel kernel;
} kernels[] = {
    {"rmsprop", rmsprop_update},
    {NULL, NULL},
};

cortado_optimizer_kernel cortado_optimizer_find(const char *name) {
    for (int i = 0; kernels[i].name; i++)
        if (strcmp(kernels[i].name, name) == 0) return kernels[i].kernel;
    return NULL;
}
