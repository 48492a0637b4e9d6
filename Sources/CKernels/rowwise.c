#include "CKernels.h"
#include <math.h>
#include <string.h>

// Each kernel is compiled for AVX-512, AVX+FMA and baseline x86-64; the loader picks one at run
// time by CPU feature (not by CPU model: "arch=haswell" would send AMD CPUs to the baseline).
// Reductions use explicit 16-lane accumulators so they vectorise without -ffast-math and sum in a
// fixed order (bitwise reproducible on a given machine).
#if defined(__x86_64__)
#define MULTI __attribute__((target_clones("avx512f", "fma", "default")))
#else
#define MULTI
#endif
#define LANES 16
// Helpers called from MULTI kernels must be forced inline: a target_clones clone does not inline
// an ordinary static inline function (its target differs), so the call stays and the loop around
// it runs scalar.
#define HELPER static inline __attribute__((always_inline))
// Marks a loop whose iteration i reads and writes element i only (of one or more rows): it
// vectorises also when called in place (y == x), where the compiler's overlap check would
// otherwise send it to its scalar fallback (softmax on attention scores runs in place).
#define ELEMENTWISE _Pragma("clang loop vectorize(assume_safety)")

HELPER float erf_approx(float a) {
    // Rational approximation of erf on [-4, 4] (outside, erf is +-1 in float32).
    float x = a > 4.f ? 4.f : (a < -4.f ? -4.f : a);
    float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    p = p * x;
    float q = -1.45660718464996e-05f;
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return p / q;
}

// Below -87.34 the result would be subnormal; it is 0 instead (a clamp would return FLT_MIN, and
// masked attention scores of -10000 then leave subnormal probabilities and gradients behind,
// which run sgemm 5x slower).
HELPER float exp_approx(float x) {
    const float keep = x < -87.3365447505531f ? 0.0f : 1.0f;
    x = x > 88.3762626647949f ? 88.3762626647949f : (x < -87.3365447505531f ? -87.3365447505531f : x);
    float fx = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - fx * 0.693359375f + fx * 2.12194440e-4f;
    float r2 = r * r;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * r2 + r + 1.0f;
    union { int i; float f; } s;
    s.i = ((int)fx + 127) << 23;
    return y * s.f * keep;
}

MULTI void elip_erf(const float *x, float *y, int64_t n) {
    ELEMENTWISE
    for (int64_t i = 0; i < n; i++) y[i] = erf_approx(x[i]);
}

MULTI void elip_exp(const float *x, float *y, int64_t n) {
    ELEMENTWISE
    for (int64_t i = 0; i < n; i++) y[i] = exp_approx(x[i]);
}

MULTI void elip_gelu_forward(const float *x, float *y, int64_t n) {
    ELEMENTWISE
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = 0.5f * v * (1.0f + erf_approx(v * 0.70710678118654752f));
    }
}

MULTI void elip_gelu_backward(const float *x, const float *dy, float *dx, int64_t n) {
    ELEMENTWISE
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        float cdf = 0.5f * (1.0f + erf_approx(v * 0.70710678118654752f));
        float pdf = 0.39894228040143268f * exp_approx(-0.5f * v * v);
        dx[i] += dy[i] * (cdf + v * pdf);
    }
}

// QuickGELU, x sigmoid(1.702 x) (CLIP). The sigmoid is 0 where exp(-1.702 x) would pass e^87: a
// clamped exp would leave subnormal outputs and gradients there (see exp_approx).
HELPER float quick_gelu_sigmoid(float v) {
    float z = -1.702f * v;
    return z > 87.0f ? 0.0f : 1.0f / (1.0f + exp_approx(z));
}

MULTI void elip_quick_gelu_forward(const float *x, float *y, int64_t n) {
    ELEMENTWISE
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * quick_gelu_sigmoid(x[i]);
}

MULTI void elip_quick_gelu_backward(const float *x, const float *dy, float *dx, int64_t n) {
    ELEMENTWISE
    for (int64_t i = 0; i < n; i++) {
        float v = x[i], sg = quick_gelu_sigmoid(v);
        dx[i] += dy[i] * (sg + 1.702f * v * sg * (1.0f - sg));
    }
}

HELPER float row_dot(const float *a, const float *b, int64_t n) {
    float acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += a[i + l] * b[i + l];
    float tail = 0;
    for (; i < n; i++) tail += a[i] * b[i];
    float s = 0;
    for (int l = 0; l < LANES; l++) s += acc[l];
    return s + tail;
}

MULTI float elip_dot(const float *a, const float *b, int64_t n) { return row_dot(a, b, n); }

HELPER float row_sum(const float *a, int64_t n) {
    float acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += a[i + l];
    float tail = 0;
    for (; i < n; i++) tail += a[i];
    float s = 0;
    for (int l = 0; l < LANES; l++) s += acc[l];
    return s + tail;
}

// sum of exp(a[i] - m), in row_sum's order, without storing the exponentials.
HELPER float row_sum_exp(const float *a, float m, int64_t n) {
    float acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += exp_approx(a[i + l] - m);
    float tail = 0;
    for (; i < n; i++) tail += exp_approx(a[i] - m);
    float s = 0;
    for (int l = 0; l < LANES; l++) s += acc[l];
    return s + tail;
}

// Lane-wise like row_sum: a single running maximum is a serial chain of compares that the
// compiler does not vectorise without -ffast-math (5x the cost of the exp pass in a softmax row).
// NaNs are skipped as before; the maximum itself does not depend on the order.
HELPER float row_max(const float *a, int64_t n) {
    float acc[LANES];
    for (int l = 0; l < LANES; l++) acc[l] = -INFINITY;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) acc[l] = a[i + l] > acc[l] ? a[i + l] : acc[l];
    float m = -INFINITY;
    for (; i < n; i++) m = a[i] > m ? a[i] : m;
    for (int l = 0; l < LANES; l++) m = acc[l] > m ? acc[l] : m;
    return m;
}

MULTI void elip_axpy(float alpha, const float *x, float *y, int64_t n) {
    ELEMENTWISE
    for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

MULTI void elip_softmax_rows(const float *x, float *y, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        float m = row_max(xr, cols);
        if (m == -INFINITY) m = 0;  // a row masked with -inf throughout comes out all zeros
        ELEMENTWISE
        for (int64_t i = 0; i < cols; i++) yr[i] = exp_approx(xr[i] - m);
        float sum = row_sum(yr, cols);
        float inv = sum > 0 ? 1.0f / sum : 0.0f;  // (1 / 0 would make the zeros NaN)
        ELEMENTWISE
        for (int64_t i = 0; i < cols; i++) yr[i] *= inv;
    }
}

MULTI void elip_log_softmax_rows(const float *x, float *y, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        float m = row_max(xr, cols);
        if (m == -INFINITY) m = 0;
        // x is read again below, so nothing is stored before: safe in place (y == x).
        float lse = m + logf(row_sum_exp(xr, m, cols));
        ELEMENTWISE
        for (int64_t i = 0; i < cols; i++) yr[i] = xr[i] - lse;
    }
}

MULTI void elip_softmax_backward_rows(const float *y, const float *dy, float *dx, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = y + r * cols, *dyr = dy + r * cols;
        float *dxr = dx + r * cols;
        float s = row_dot(yr, dyr, cols);
        ELEMENTWISE
        for (int64_t i = 0; i < cols; i++) dxr[i] += yr[i] * (dyr[i] - s);
    }
}

// Attention's softmax backward in place: d = p * (d - rowsum(d * p)) * scale, with the score
// scale folded in (the same operation order as the unfused expression).
MULTI void elip_softmax_backward_scaled_rows(const float *p, float *d, int64_t rows, int64_t cols, float scale) {
    for (int64_t r = 0; r < rows; r++) {
        const float *pr = p + r * cols;
        float *dr = d + r * cols;
        float s = row_dot(pr, dr, cols);
        ELEMENTWISE
        for (int64_t i = 0; i < cols; i++) dr[i] = pr[i] * (dr[i] - s) * scale;
    }
}

MULTI void elip_log_softmax_backward_rows(const float *y, const float *dy, float *dx, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = y + r * cols, *dyr = dy + r * cols;
        float *dxr = dx + r * cols;
        float s = row_sum(dyr, cols);
        ELEMENTWISE
        for (int64_t i = 0; i < cols; i++) dxr[i] += dyr[i] - exp_approx(yr[i]) * s;
    }
}

MULTI void elip_layernorm_forward(const float *x, const float *gamma, const float *beta, float *y,
                                  float *mean, float *rstd, int64_t rows, int64_t cols, float eps) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        float mu = row_sum(xr, cols) / (float)cols;
        float acc[LANES] = {0};
        int64_t i = 0;
        for (; i + LANES <= cols; i += LANES)
            for (int l = 0; l < LANES; l++) { float d = xr[i + l] - mu; acc[l] += d * d; }
        float var = 0;
        for (; i < cols; i++) { float d = xr[i] - mu; var += d * d; }
        for (int l = 0; l < LANES; l++) var += acc[l];
        var /= (float)cols;
        float rs = 1.0f / sqrtf(var + eps);
        mean[r] = mu; rstd[r] = rs;
        ELEMENTWISE
        for (int64_t j = 0; j < cols; j++) yr[j] = (xr[j] - mu) * rs * gamma[j] + beta[j];
    }
}

MULTI void elip_layernorm_backward(const float *x, const float *gamma, const float *mean, const float *rstd,
                                   const float *dy, float *dx, float *dgamma, float *dbeta,
                                   int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols, *dyr = dy + r * cols;
        float *dxr = dx ? dx + r * cols : 0;
        float mu = mean[r], rs = rstd[r];
        // sums of g = dy*gamma and g*xhat over the row
        float a1[LANES] = {0}, a2[LANES] = {0};
        int64_t i = 0;
        for (; i + LANES <= cols; i += LANES)
            for (int l = 0; l < LANES; l++) {
                float g = dyr[i + l] * gamma[i + l];
                a1[l] += g;
                a2[l] += g * (xr[i + l] - mu) * rs;
            }
        float s1 = 0, s2 = 0;
        for (; i < cols; i++) { float g = dyr[i] * gamma[i]; s1 += g; s2 += g * (xr[i] - mu) * rs; }
        for (int l = 0; l < LANES; l++) { s1 += a1[l]; s2 += a2[l]; }
        float m1 = s1 / (float)cols, m2 = s2 / (float)cols;
        if (dx)
            ELEMENTWISE
            for (int64_t j = 0; j < cols; j++) {
                float xhat = (xr[j] - mu) * rs;
                dxr[j] += rs * (dyr[j] * gamma[j] - m1 - xhat * m2);
            }
        if (dgamma)
            ELEMENTWISE
            for (int64_t j = 0; j < cols; j++) dgamma[j] += dyr[j] * (xr[j] - mu) * rs;
        if (dbeta)
            ELEMENTWISE
            for (int64_t j = 0; j < cols; j++) dbeta[j] += dyr[j];
    }
}

MULTI void elip_broadcast_rows(float *y, const float *row, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) memcpy(y + r * cols, row, (size_t)cols * sizeof(float));
}

MULTI void elip_sum_rows_into(const float *dy, float *db, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        const float *dyr = dy + r * cols;
        ELEMENTWISE
        for (int64_t j = 0; j < cols; j++) db[j] += dyr[j];
    }
}
