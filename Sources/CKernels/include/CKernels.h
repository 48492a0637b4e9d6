// C kernels that need guaranteed vector code. Everything here is plain C on raw pointers;
// Swift callers wrap them behind safe APIs in ELIPTensor.
#ifndef ELIP_CKERNELS_H
#define ELIP_CKERNELS_H
#include <stdint.h>

/// Runs `iterations` rounds of independent fused multiply-adds on the widest vector unit this CPU
/// supports and returns the number of floating-point operations performed (2 per FMA lane).
/// Used to measure the machine's FMA peak per core.
double elip_fma_probe(int64_t iterations);

/// Name of the vector ISA the probe used ("avx512f", "avx2+fma", "scalar").
const char *elip_fma_probe_isa(void);
/// The OpenBLAS kernel family for this CPU's float32 GEMMs ("SKYLAKEX", "HASWELL"), or NULL.
const char *elip_blas_coretype(void);

#endif

// ---- Row-wise and element-wise kernels -------------------------------------------------------
// All kernels are deterministic: lane-parallel partial sums combined in a fixed order. Backward
// kernels ACCUMULATE into their gradient outputs (dx += ...), as autodiff requires.

/// Vectorisable erf (rational approximation, |error| < 1e-6 on float32) and exp (Cephes-style
/// range reduction, relative error ~1e-7; inputs below -87.3 give ~1e-38 instead of 0).
void elip_erf(const float *x, float *y, int64_t n);
void elip_exp(const float *x, float *y, int64_t n);

/// Exact GELU: y = 0.5 x (1 + erf(x / sqrt 2)).
void elip_gelu_forward(const float *x, float *y, int64_t n);
/// dx += dy * (Phi(x) + x phi(x)).
void elip_gelu_backward(const float *x, const float *dy, float *dx, int64_t n);
// QuickGELU x sigmoid(1.702 x) and its backward (dx += dy * d/dx), vectorised exp.
void elip_quick_gelu_forward(const float *x, float *y, int64_t n);
void elip_quick_gelu_backward(const float *x, const float *dy, float *dx, int64_t n);

/// Softmax / log-softmax over each row of a rows x cols matrix; y may be x (in place). A row that
/// is -inf throughout gives softmax zeros (log-softmax has no finite answer there: NaN).
void elip_softmax_rows(const float *x, float *y, int64_t rows, int64_t cols);
void elip_log_softmax_rows(const float *x, float *y, int64_t rows, int64_t cols);
/// dx += y * (dy - sum(dy * y)) for softmax output y.
void elip_softmax_backward_rows(const float *y, const float *dy, float *dx, int64_t rows, int64_t cols);
/// In place on d: d = p * (d - sum(d * p)) * scale for softmax output p (attention's scores).
void elip_softmax_backward_scaled_rows(const float *p, float *d, int64_t rows, int64_t cols, float scale);
/// dx += dy - exp(y) * sum(dy) for log-softmax output y.
void elip_log_softmax_backward_rows(const float *y, const float *dy, float *dx, int64_t rows, int64_t cols);

/// LayerNorm over rows; writes y and the per-row mean and reciprocal standard deviation.
void elip_layernorm_forward(const float *x, const float *gamma, const float *beta, float *y,
                            float *mean, float *rstd, int64_t rows, int64_t cols, float eps);
/// dx += ...; dgamma += sum_rows dy * xhat; dbeta += sum_rows dy (dx, dgamma, dbeta may be NULL).
void elip_layernorm_backward(const float *x, const float *gamma, const float *mean, const float *rstd,
                             const float *dy, float *dx, float *dgamma, float *dbeta,
                             int64_t rows, int64_t cols);

/// sum_i a[i] * b[i] with a fixed 16-lane summation order.
float elip_dot(const float *a, const float *b, int64_t n);
/// y[i] += alpha * x[i].
void elip_axpy(float alpha, const float *x, float *y, int64_t n);
/// Copies `row` (length cols) into each row of y: a Linear's output starts as its bias and the
/// GEMM accumulates onto it (BLAS zeroes C first when beta is 0, so this replaces that pass and
/// the bias pass after it).
void elip_broadcast_rows(float *y, const float *row, int64_t rows, int64_t cols);
/// db[j] += sum_rows dy[r, j].
void elip_sum_rows_into(const float *dy, float *db, int64_t rows, int64_t cols);

/// 64-bit checksum of a byte range (multiply-xor mixing over 8-byte words; several GB/s).
/// Not cryptographic: it detects torn or corrupted checkpoint files.
uint64_t elip_checksum64(const void *data, int64_t n, uint64_t seed);

// ---- Optimizer passes over parameter arenas ---------------------------------------------------

/// AdamW (decoupled decay, torch.optim.AdamW): p *= 1 - lr wd; m = b1 m + (1 - b1) g;
/// v = b2 v + (1 - b2) g^2; p -= step_size m / (sqrt(v) / sqrt(bias_correction2) + eps).
void elip_adamw(float *p, const float *g, float *m, float *v, int64_t n, float lr, float weight_decay,
                float beta1, float beta2, float eps, float step_size, float bias_correction2_sqrt);
/// AdamW as transformers.AdamW (4.6, correct_bias): m, v as above;
/// p -= step_size m / (sqrt(v) + eps) with step_size = lr sqrt(bias_correction2) / bias_correction1,
/// THEN p -= (lr wd) p (decay on the updated p; lr_times_decay computed by the caller in double).
void elip_adamw_hf(float *p, const float *g, float *m, float *v, int64_t n, float lr_times_decay,
                   float beta1, float beta2, float eps, float step_size);
/// dst = momentum dst + (1 - momentum) src (EMA of a model's weights).
void elip_ema(float *dst, const float *src, int64_t n, float momentum);
/// sum x[i]^2 accumulated in double (gradient norms).
double elip_sum_squares(const float *x, int64_t n);

// Returns the C heap's free pages to the system (glibc malloc_trim(0)); 1 if memory was released.
int elip_release_free_heap(void);
