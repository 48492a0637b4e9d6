#include "CKernels.h"
#include <immintrin.h>

// Many independent accumulators hide FMA latency (4 cycles, 2 ports -> 8+ chains needed).
#define CHAINS 12

__attribute__((target("avx512f")))
static double probe_avx512(int64_t iterations) {
    __m512 acc[CHAINS];
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_set1_ps(0.001f * (float)c);
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int64_t i = 0; i < iterations; i++) {
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
    }
    __m512 s = acc[0];
    for (int c = 1; c < CHAINS; c++) s = _mm512_add_ps(s, acc[c]);
    volatile float sink = _mm512_reduce_add_ps(s); (void)sink;
    return (double)iterations * CHAINS * 16 * 2;
}

__attribute__((target("avx2,fma")))
static double probe_avx2(int64_t iterations) {
    __m256 acc[CHAINS];
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_set1_ps(0.001f * (float)c);
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int64_t i = 0; i < iterations; i++) {
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
    }
    __m256 s = acc[0];
    for (int c = 1; c < CHAINS; c++) s = _mm256_add_ps(s, acc[c]);
    float out[8]; _mm256_storeu_ps(out, s);
    volatile float sink = out[0]; (void)sink;
    return (double)iterations * CHAINS * 8 * 2;
}

static double probe_scalar(int64_t iterations) {
    float acc[CHAINS];
    for (int c = 0; c < CHAINS; c++) acc[c] = 0.001f * (float)c;
    for (int64_t i = 0; i < iterations; i++)
        for (int c = 0; c < CHAINS; c++) acc[c] = acc[c] * 0.999999f + 1e-7f;
    volatile float sink = acc[0]; (void)sink;
    return (double)iterations * CHAINS * 2;
}

double elip_fma_probe(int64_t iterations) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return probe_avx512(iterations);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return probe_avx2(iterations);
    return probe_scalar(iterations);
}

const char *elip_fma_probe_isa(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return "avx512f";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "avx2+fma";
    return "scalar";
}

// The OpenBLAS kernel family for this CPU's float32 GEMMs, from its features: AVX-512
// (Skylake-X kernels; on an AVX-512-BF16 Sapphire Rapids they ran sgemm at 200-260 GFLOP/s against
// 160-190 for the Cooper Lake family, which only adds bf16), AVX2 + FMA (Haswell), else NULL.
const char *elip_blas_coretype(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx512vl")) return "SKYLAKEX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "HASWELL";
    return 0;
}
