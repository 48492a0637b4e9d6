#include "CKernels.h"
#include <math.h>

// Optimizer-sized passes over whole parameter arenas: memory-bound, so each is one streaming
// loop the compiler vectorises (see rowwise.c for the dispatch macro).
#if defined(__x86_64__)
#define MULTI __attribute__((target_clones("avx512f", "fma", "default")))
#else
#define MULTI
#endif
// Element i of every buffer is read and written by iteration i only (see rowwise.c). sqrtf
// vectorises because the target is built with -fno-math-errno (no errno for negative input,
// which cannot occur: v >= 0).
#define ELEMENTWISE _Pragma("clang loop vectorize(assume_safety)")

MULTI void elip_adamw(float *p, const float *g, float *m, float *v, int64_t n, float lr, float weight_decay,
                      float beta1, float beta2, float eps, float step_size, float bias_correction2_sqrt) {
    const float decay = 1.f - lr * weight_decay;
    const float inv_bc2 = 1.f / bias_correction2_sqrt;
    ELEMENTWISE
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = beta1 * m[i] + (1.f - beta1) * gi;
        float vi = beta2 * v[i] + (1.f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - step_size * mi / (sqrtf(vi) * inv_bc2 + eps);
    }
}

MULTI void elip_adamw_hf(float *p, const float *g, float *m, float *v, int64_t n, float lr_times_decay,
                         float beta1, float beta2, float eps, float step_size) {
    const float shrink = -lr_times_decay;
    ELEMENTWISE
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = beta1 * m[i] + (1.f - beta1) * gi;
        float vi = beta2 * v[i] + (1.f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float pi = p[i] - step_size * (mi / (sqrtf(vi) + eps));
        p[i] = pi + shrink * pi;
    }
}

MULTI void elip_ema(float *dst, const float *src, int64_t n, float momentum) {
    const float rest = 1.f - momentum;
    ELEMENTWISE
    for (int64_t i = 0; i < n; i++) dst[i] = dst[i] * momentum + src[i] * rest;
}

MULTI double elip_sum_squares(const float *x, int64_t n) {
    double acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) acc[l] += (double)x[i + l] * (double)x[i + l];
    double s = 0;
    for (; i < n; i++) s += (double)x[i] * (double)x[i];
    for (int l = 0; l < 16; l++) s += acc[l];
    return s;
}
