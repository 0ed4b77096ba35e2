// Host side of a row-parallel op: the same GFN_HD functor runs here through parallel_for and
// on the GPU through launch_rows (common/launch_cuda.cuh).
#pragma once
#include <type_traits>

#include "common/macros.h"
#include "common/parallel.h"

namespace gfn {

// Whether a row functor may run on a GPU: true unless it says otherwise (functors over a
// host-only environment, e.g. one that calls numba callbacks or a score cache, set kCuda = false).
template <class F, class = void>
struct RunsOnCuda : std::true_type {};
template <class F>
struct RunsOnCuda<F, std::void_t<decltype(F::kCuda)>> : std::bool_constant<F::kCuda> {};


template <typename F>
unsigned long long run_rows_cpu(int64_t n, int64_t grain, F f) {
  unsigned long long slot = kNoError;
  f.err = ErrorSink{&slot};
  parallel_for(n, grain, [&](int64_t i) { f(i); });
  return slot;
}

// Whether CUDA launches return before their kernels report errors (see common/launch_cuda.cuh);
// false (the default): a launch waits and bad input raises at the op, as on the CPU.
bool cuda_async_errors();
void set_cuda_async_errors(bool on);

#if GFN_WITH_CUDA
// The same row functor on the GPU, on `device` (the tensors'): defined in common/launch_cuda.cuh
// and instantiated, per functor type, in the op's .cu file (GFN_INSTANTIATE_ROWS).
template <typename F>
unsigned long long rows_cuda(const F& f, int64_t n, void* stream, int device);
// Waits for every device gfncore launched on and raises a pending asynchronous error.
void check_cuda_errors();
#endif

}  // namespace gfn
