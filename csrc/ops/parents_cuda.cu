#include "common/launch_cuda.cuh"
#include "envs/envs.h"
#include "ops/parents.h"

namespace gfn {

template <class Env>
unsigned long long parents_cuda(const Env& env, const ParentsParams& p, int64_t n, void* stream) {
  return run_rows_cuda(n, ParentsRow<Env>{env, p, ErrorSink{nullptr}}, stream, "parents");
}

#define GFN_INSTANTIATE(E) template unsigned long long parents_cuda<E>(const E&, const ParentsParams&, int64_t, void*);
GFN_FOR_EACH_ENV(GFN_INSTANTIATE)

}  // namespace gfn
