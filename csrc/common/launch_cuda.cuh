// Device side of a row-parallel op: a grid-stride loop over the same GFN_HD functor the CPU runs.
//
// Errors: each device has one error word, allocated once (never per launch), which the kernels
// atomicMin (row << 8 | code) into, and a pinned host mirror. A launch enqueues the kernel and an
// asynchronous copy of the word into the mirror on the caller's stream; it allocates nothing and
// frees nothing, so it can be captured in a CUDA graph. By default (sync errors) it then waits
// for the stream and returns the word, so bad input raises at the op that met it, as on the CPU.
// With set_cuda_async_errors(true), or while the stream is being captured, it returns at once:
// the mirror is checked lazily, at the start of the next launch on the device and by
// check_cuda_errors() (which waits), and a word holding an error raises there.
#pragma once
#include <cuda_runtime.h>

#include "common/check.h"
#include "common/launch.h"
#include "common/macros.h"

namespace gfn {

inline void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(str("gfncore CUDA error in ", what, ": ", cudaGetErrorString(e)));
}

// Runs the launch on the tensors' device whatever the caller's current device (as torch's
// CUDAGuard), and puts the caller's device back afterwards.
class CudaDeviceGuard {
 public:
  explicit CudaDeviceGuard(int device) {
    if (device < 0) return;
    cuda_check(cudaGetDevice(&prev_), "cudaGetDevice");
    if (prev_ == device) {
      prev_ = -1;
      return;
    }
    cuda_check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~CudaDeviceGuard() {
    if (prev_ >= 0) cudaSetDevice(prev_);
  }
  CudaDeviceGuard(const CudaDeviceGuard&) = delete;
  CudaDeviceGuard& operator=(const CudaDeviceGuard&) = delete;

 private:
  int prev_ = -1;
};

// The device's error word and its pinned host mirror (common/cuda_errors.cu): made on the first
// launch on the device (make the first launch outside graph capture, as a warm-up), kept for
// the process. take_error() returns a pending error and resets both (kNoError if none).
struct ErrorWord {
  unsigned long long* device = nullptr;
  volatile unsigned long long* host = nullptr;
};
ErrorWord& error_word(int device);
unsigned long long take_error(int device, bool wait, void* stream);
[[noreturn]] void raise_async_error(unsigned long long packed);

template <typename F>
__global__ void rows_kernel(int64_t n, F f) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    f(i);
}

// Runs f over n rows on `stream`, on `device` (-1: the current one). Returns the first error a
// row reported when errors are synchronous (see above), else kNoError (the error, if any, raises
// at a later launch or check_cuda_errors()). must_sync: the caller's next launch depends on this
// one having succeeded (e.g. the offsets it validated), so wait whatever the mode, unless capturing.
template <typename F>
unsigned long long run_rows_cuda(int64_t n, F f, void* stream_ptr, const char* what, int device = -1,
                                 bool must_sync = false) {
  if (n == 0) return kNoError;
  CudaDeviceGuard guard(device);
  if (device < 0) cuda_check(cudaGetDevice(&device), what);
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  ErrorWord& w = error_word(device);
  const unsigned long long pending = *w.host;  // an earlier asynchronous launch's error, if its copy landed
  if (pending != kNoError) raise_async_error(take_error(device, false, stream_ptr));
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  cuda_check(cudaStreamIsCapturing(stream, &capture), what);
  f.err = ErrorSink{w.device};
  const int threads = 256;
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks > 65535 * 8) blocks = 65535 * 8;
  rows_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(n, f);
  cuda_check(cudaGetLastError(), what);
  cuda_check(cudaMemcpyAsync(const_cast<unsigned long long*>(w.host), w.device, sizeof(unsigned long long),
                             cudaMemcpyDeviceToHost, stream),
             what);
  if (capture != cudaStreamCaptureStatusNone || (cuda_async_errors() && !must_sync)) return kNoError;
  return take_error(device, true, stream_ptr);
}

// Host-only functors (RunsOnCuda false) instantiate to a throw, so the one environment list can
// instantiate every launcher without compiling host-only code for the device.
template <typename F>
unsigned long long rows_cuda(const F& f, int64_t n, void* stream, int device) {
  if constexpr (RunsOnCuda<F>::value) {
    return run_rows_cuda(n, f, stream, "a gfncore kernel", device);
  } else {
    throw std::runtime_error("gfncore: a host-only kernel was launched on CUDA");
  }
}

}  // namespace gfn

// Instantiates rows_cuda for one functor type (commas allowed: pass the type as the arguments).
#define GFN_INSTANTIATE_ROWS(...) \
  template unsigned long long gfn::rows_cuda<__VA_ARGS__>(const __VA_ARGS__&, int64_t, void*, int);
