#include "CKernels.h"
#include <string.h>

static inline uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v * 0x9E3779B97F4A7C15ULL;
    h = (h << 31) | (h >> 33);
    return h * 0xC2B2AE3D27D4EB4FULL;
}

uint64_t elip_checksum64(const void *data, int64_t n, uint64_t seed) {
    // Four independent lanes keep the multiplier pipeline busy; combined in a fixed order.
    const unsigned char *p = (const unsigned char *)data;
    uint64_t h[4] = {seed ^ 0x243F6A8885A308D3ULL, seed ^ 0x13198A2E03707344ULL,
                     seed ^ 0xA4093822299F31D0ULL, seed ^ 0x082EFA98EC4E6C89ULL};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        uint64_t w[4];
        memcpy(w, p + i, 32);
        for (int l = 0; l < 4; l++) h[l] = mix(h[l], w[l]);
    }
    uint64_t tail = 0;
    int shift = 0;
    uint64_t acc = mix(mix(mix(h[0], h[1]), h[2]), h[3]);
    for (; i < n; i++) {
        tail |= (uint64_t)p[i] << shift;
        shift += 8;
        if (shift == 64) { acc = mix(acc, tail); tail = 0; shift = 0; }
    }
    acc = mix(acc, tail);
    acc = mix(acc, (uint64_t)n);
    acc ^= acc >> 29;
    return acc;
}
