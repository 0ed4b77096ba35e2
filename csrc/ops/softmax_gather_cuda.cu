#include "common/launch_cuda.cuh"
#include "ops/softmax_gather.h"

namespace gfn {

template <typename scalar_t, bool kBackward>
unsigned long long gather_cuda(const GatherParams<scalar_t>& p, int64_t n, void* stream) {
  return run_rows_cuda(n, GatherRow<scalar_t, kBackward>{p, ErrorSink{nullptr}}, stream, "masked_log_softmax_gather");
}

template unsigned long long gather_cuda<float, false>(const GatherParams<float>&, int64_t, void*);
template unsigned long long gather_cuda<float, true>(const GatherParams<float>&, int64_t, void*);
template unsigned long long gather_cuda<double, false>(const GatherParams<double>&, int64_t, void*);
template unsigned long long gather_cuda<double, true>(const GatherParams<double>&, int64_t, void*);

}  // namespace gfn
