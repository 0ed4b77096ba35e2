#include "common/launch_cuda.cuh"
#include "envs/envs.h"
#include "ops/env_ops.h"

namespace gfn {

template <class Env>
unsigned long long env_query_cuda(const EnvQueryRow<Env>& f, int64_t n, void* stream) {
  return run_rows_cuda(n, f, stream, "env_query");
}

#define GFN_INSTANTIATE(E) template unsigned long long env_query_cuda<E>(const EnvQueryRow<E>&, int64_t, void*);
GFN_FOR_EACH_ENV(GFN_INSTANTIATE)

}  // namespace gfn
