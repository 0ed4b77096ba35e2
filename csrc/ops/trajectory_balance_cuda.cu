#include "common/launch_cuda.cuh"
#include "ops/trajectory_balance.h"

namespace gfn {

template <typename scalar_t, bool kBackward>
unsigned long long tb_cuda(const TBParams<scalar_t>& p, void* stream) {
  return run_rows_cuda(p.B, TBRow<scalar_t, kBackward>{p, ErrorSink{nullptr}}, stream, "trajectory_balance");
}

template unsigned long long tb_cuda<float, false>(const TBParams<float>&, void*);
template unsigned long long tb_cuda<float, true>(const TBParams<float>&, void*);
template unsigned long long tb_cuda<double, false>(const TBParams<double>&, void*);
template unsigned long long tb_cuda<double, true>(const TBParams<double>&, void*);

}  // namespace gfn
