#include "common/launch_cuda.cuh"
#include "envs/envs.h"
#include "ops/backward_rollout.h"

namespace gfn {

template <class Env, typename scalar_t>
unsigned long long backward_step_cuda(const Env& env, const BackwardStepParams<scalar_t>& p, int64_t n, void* stream) {
  return run_rows_cuda(n, BackwardStepRow<Env, scalar_t>{env, p, ErrorSink{nullptr}}, stream, "backward_rollout_step");
}

#define GFN_INSTANTIATE(E)                                                                                         \
  template unsigned long long backward_step_cuda<E, float>(const E&, const BackwardStepParams<float>&, int64_t, void*); \
  template unsigned long long backward_step_cuda<E, double>(const E&, const BackwardStepParams<double>&, int64_t, void*);
GFN_FOR_EACH_ENV(GFN_INSTANTIATE)

}  // namespace gfn
