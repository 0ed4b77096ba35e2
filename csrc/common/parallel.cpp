#include "common/parallel.h"

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
}  // namespace gfn
