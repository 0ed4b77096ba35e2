#include "common/launch_cuda.cuh"
#include "ops/detailed_balance.h"

namespace gfn {

template <typename scalar_t, bool kBackward>
unsigned long long db_cuda(const DBParams<scalar_t>& p, void* stream) {
  return run_rows_cuda(p.B, DBRow<scalar_t, kBackward>{p, ErrorSink{nullptr}}, stream, "detailed_balance");
}

template unsigned long long db_cuda<float, false>(const DBParams<float>&, void*);
template unsigned long long db_cuda<float, true>(const DBParams<float>&, void*);
template unsigned long long db_cuda<double, false>(const DBParams<double>&, void*);
template unsigned long long db_cuda<double, true>(const DBParams<double>&, void*);

}  // namespace gfn
