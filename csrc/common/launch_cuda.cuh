// Device side of a row-parallel op: a grid-stride loop over the same GFN_HD functor the CPU runs.
#pragma once
#include <cuda_runtime.h>

#include "common/check.h"
#include "common/launch.h"
#include "common/macros.h"

namespace gfn {

inline void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(str("gfncore CUDA error in ", what, ": ", cudaGetErrorString(e)));
}

template <typename F>
__global__ void rows_kernel(int64_t n, F f) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    f(i);
}

// Runs f over n rows on `stream` and returns the first error a row reported (kNoError if none).
// Reading the error back synchronises the stream: bad input must raise, not pass silently.
template <typename F>
unsigned long long run_rows_cuda(int64_t n, F f, void* stream_ptr, const char* what) {
  if (n == 0) return kNoError;
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  unsigned long long* slot = nullptr;
  cuda_check(cudaMallocAsync(reinterpret_cast<void**>(&slot), sizeof(unsigned long long), stream), what);
  cuda_check(cudaMemsetAsync(slot, 0xff, sizeof(unsigned long long), stream), what);
  f.err = ErrorSink{slot};
  const int threads = 256;
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks > 65535 * 8) blocks = 65535 * 8;
  rows_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(n, f);
  cuda_check(cudaGetLastError(), what);
  unsigned long long host = kNoError;
  cuda_check(cudaMemcpyAsync(&host, slot, sizeof(host), cudaMemcpyDeviceToHost, stream), what);
  cuda_check(cudaFreeAsync(slot, stream), what);
  cuda_check(cudaStreamSynchronize(stream), what);
  return host;
}

// Host-only functors (RunsOnCuda false) instantiate to a throw, so the one environment list can
// instantiate every launcher without compiling host-only code for the device.
template <typename F>
unsigned long long rows_cuda(const F& f, int64_t n, void* stream) {
  if constexpr (RunsOnCuda<F>::value) {
    return run_rows_cuda(n, f, stream, "a gfncore kernel");
  } else {
    throw std::runtime_error("gfncore: a host-only kernel was launched on CUDA");
  }
}

}  // namespace gfn

// Instantiates rows_cuda for one functor type (commas allowed: pass the type as the arguments).
#define GFN_INSTANTIATE_ROWS(...) \
  template unsigned long long gfn::rows_cuda<__VA_ARGS__>(const __VA_ARGS__&, int64_t, void*);
