// GFN_HD marks math shared by the CPU and CUDA kernels: written once, compiled for both.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define GFN_HD __host__ __device__ __forceinline__
#define GFN_DEVICE_INLINE __device__ __forceinline__
#else
#define GFN_HD inline
#endif

#ifndef GFN_WITH_CUDA
#define GFN_WITH_CUDA 0
#endif
#ifndef GFN_WITH_OPENMP
#define GFN_WITH_OPENMP 0
#endif

namespace gfn {

// Status codes a kernel row can report; the launcher turns the first one into a Python exception.
enum Status : int {
  kOk = 0,
  kNanLogit = 1,          // a logit of a legal action is NaN
  kNoLegalAction = 2,     // the mask allows no action
  kInvalidState = 3,      // a state row is not in the environment's state space
  kIllegalAction = 4,     // an action is out of range or masked out
  kNoMass = 5,            // every legal logit is -inf (or +inf): no distribution to sample
  kBadIndex = 6,          // an index into another tensor is out of range
  kNanValue = 7,          // a NaN in a float input
  kBadOffsets = 8,        // offsets do not start at 0, increase strictly and end at T
};

// Kernels record failures as (row << 8 | code); the smallest row wins, so the message is
// the same at any thread count.
struct ErrorSink {
  unsigned long long* slot;
#if defined(__CUDACC__)
  __host__ __device__ void report(int64_t row, int code) const {
    unsigned long long v = (static_cast<unsigned long long>(row) << 8) | static_cast<unsigned long long>(code);
#if defined(__CUDA_ARCH__)
    atomicMin(slot, v);
#else
    host_report(v);
#endif
  }
#else
  void report(int64_t row, int code) const {
    host_report((static_cast<unsigned long long>(row) << 8) | static_cast<unsigned long long>(code));
  }
#endif
  inline void host_report(unsigned long long v) const {
    unsigned long long cur = __atomic_load_n(slot, __ATOMIC_RELAXED);
    while (v < cur && !__atomic_compare_exchange_n(slot, &cur, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
  }
};

constexpr unsigned long long kNoError = ~0ULL;

}  // namespace gfn
