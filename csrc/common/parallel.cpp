#include "common/parallel.h"

#include <atomic>

#include "common/launch.h"

namespace gfn {
namespace {
int g_threads = 0;  // 0: OpenMP's default
}
int num_threads() {
#if GFN_WITH_OPENMP
  return g_threads > 0 ? g_threads : omp_get_max_threads();
#else
  return 1;
#endif
}
void set_num_threads(int n) { g_threads = n < 0 ? 0 : n; }

namespace {
std::atomic<bool> g_async_errors{false};
}
bool cuda_async_errors() { return g_async_errors.load(std::memory_order_relaxed); }
void set_cuda_async_errors(bool on) { g_async_errors.store(on, std::memory_order_relaxed); }
}  // namespace gfn
