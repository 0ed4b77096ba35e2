#include "common/launch_cuda.cuh"
#include "ops/flow_matching.h"

namespace gfn {

template <typename scalar_t, bool kBackward>
unsigned long long fm_cuda(const FMParams<scalar_t>& p, void* stream) {
  return run_rows_cuda(p.N, FMRow<scalar_t, kBackward>{p, ErrorSink{nullptr}}, stream, "flow_matching");
}

template unsigned long long fm_cuda<float, false>(const FMParams<float>&, void*);
template unsigned long long fm_cuda<float, true>(const FMParams<float>&, void*);
template unsigned long long fm_cuda<double, false>(const FMParams<double>&, void*);
template unsigned long long fm_cuda<double, true>(const FMParams<double>&, void*);

}  // namespace gfn
