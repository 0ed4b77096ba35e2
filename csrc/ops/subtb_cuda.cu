#include "common/launch_cuda.cuh"
#include "ops/subtb.h"

namespace gfn {

template <typename scalar_t, bool kBackward>
unsigned long long subtb_cuda(const SubTBParams<scalar_t>& p, void* stream) {
  return run_rows_cuda(p.B, SubTBRow<scalar_t, kBackward>{p, ErrorSink{nullptr}}, stream, "subtrajectory_balance");
}

template unsigned long long subtb_cuda<float, false>(const SubTBParams<float>&, void*);
template unsigned long long subtb_cuda<float, true>(const SubTBParams<float>&, void*);
template unsigned long long subtb_cuda<double, false>(const SubTBParams<double>&, void*);
template unsigned long long subtb_cuda<double, true>(const SubTBParams<double>&, void*);

}  // namespace gfn
