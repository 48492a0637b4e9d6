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

#endif
