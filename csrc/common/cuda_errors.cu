// The per-device error words of common/launch_cuda.cuh.
#include <mutex>

#include "common/launch_cuda.cuh"

namespace gfn {

namespace {
constexpr int kMaxDevices = 64;
ErrorWord g_words[kMaxDevices];
std::mutex g_mutex;
}  // namespace

ErrorWord& error_word(int device) {
  GFN_CHECK(device >= 0 && device < kMaxDevices, "CUDA device index ", device, " out of range");
  ErrorWord& w = g_words[device];
  if (w.device) return w;
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!w.device) {
    unsigned long long* d = nullptr;
    unsigned long long* h = nullptr;
    cuda_check(cudaMalloc(reinterpret_cast<void**>(&d), sizeof(unsigned long long)), "the error word");
    cuda_check(cudaMemset(d, 0xff, sizeof(unsigned long long)), "the error word");
    cuda_check(cudaHostAlloc(reinterpret_cast<void**>(&h), sizeof(unsigned long long), cudaHostAllocDefault),
               "the error word");
    *h = kNoError;
    cuda_check(cudaDeviceSynchronize(), "the error word");
    w.host = h;
    w.device = d;
  }
  return w;
}

unsigned long long take_error(int device, bool wait, void* stream_ptr) {
  ErrorWord& w = error_word(device);
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  if (wait) cuda_check(cudaStreamSynchronize(stream), "a gfncore kernel");
  const unsigned long long v = *w.host;
  if (v != kNoError) {  // consumed: reset both copies so the error is reported once
    cuda_check(cudaMemsetAsync(w.device, 0xff, sizeof(unsigned long long), stream), "the error word");
    cuda_check(cudaStreamSynchronize(stream), "the error word");
    *w.host = kNoError;
  }
  return v;
}

void raise_async_error(unsigned long long packed) {
  throw ValueError(str("gfncore: an earlier CUDA launch reported bad input (row ", static_cast<int64_t>(packed >> 8),
                       ", error code ", static_cast<int>(packed & 0xff),
                       ") while errors were asynchronous; set gfncore.ops.set_cuda_async_errors(False) to raise "
                       "it at the op that met it, with its full message"));
}

void check_cuda_errors() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) return;
  for (int d = 0; d < count && d < kMaxDevices; ++d) {
    if (!g_words[d].device) continue;
    CudaDeviceGuard guard(d);
    cuda_check(cudaDeviceSynchronize(), "check_cuda_errors");
    const unsigned long long v = take_error(d, false, nullptr);
    if (v != kNoError) raise_async_error(v);
  }
}

}  // namespace gfn
