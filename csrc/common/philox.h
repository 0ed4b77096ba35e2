// Counter-based Philox4x32-10 (Salmon et al., SC'11). A draw is a pure function of
// (seed, subsequence, offset), so results do not depend on thread count, launch shape or device.
#pragma once
#include "common/macros.h"

namespace gfn {

struct Philox4 {
  uint32_t x[4];
};

GFN_HD uint32_t mulhilo32(uint32_t a, uint32_t b, uint32_t* hi) {
#if defined(__CUDA_ARCH__)
  *hi = __umulhi(a, b);
  return a * b;
#else
  uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
#endif
}

// counter = (offset_lo, offset_hi, subseq_lo, subseq_hi); key = seed.
GFN_HD Philox4 philox(uint64_t seed, uint64_t subsequence, uint64_t offset) {
  uint32_t c0 = static_cast<uint32_t>(offset), c1 = static_cast<uint32_t>(offset >> 32);
  uint32_t c2 = static_cast<uint32_t>(subsequence), c3 = static_cast<uint32_t>(subsequence >> 32);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, hi1;
    uint32_t lo0 = mulhilo32(0xD2511F53u, c0, &hi0);
    uint32_t lo1 = mulhilo32(0xCD9E8D57u, c2, &hi1);
    uint32_t n0 = hi1 ^ c1 ^ k0;
    uint32_t n2 = hi0 ^ c3 ^ k1;
    c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  Philox4 out;
  out.x[0] = c0; out.x[1] = c1; out.x[2] = c2; out.x[3] = c3;
  return out;
}

// A double in [0, 1) from 53 random bits (two words), as numpy and curand do.
GFN_HD double uniform53(uint32_t a, uint32_t b) {
  uint64_t hi = a >> 5, lo = b >> 6;
  return static_cast<double>(hi * 67108864ULL + lo) * (1.0 / 9007199254740992.0);
}

}  // namespace gfn
