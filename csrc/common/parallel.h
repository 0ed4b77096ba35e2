// parallel_for over independent rows. Each row's work depends only on its index, so
// results are identical at any thread count; small ranges run inline (no fork cost).
#pragma once
#include <cstdint>
#if GFN_WITH_OPENMP
#include <omp.h>
#endif

namespace gfn {

int num_threads();
void set_num_threads(int n);

template <typename F>
void parallel_for(int64_t n, int64_t grain, const F& f) {
#if GFN_WITH_OPENMP
  int nt = num_threads();
  if (nt > 1 && n > grain) {
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
#endif
  for (int64_t i = 0; i < n; ++i) f(i);
}

}  // namespace gfn
