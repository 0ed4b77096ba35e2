#include "common/launch_cuda.cuh"
#include "ops/zvar.h"

namespace gfn {

// Three launches (zeta, the batch reduction as one row, the output); the first reports bad offsets.
template <typename scalar_t, bool kBackward>
unsigned long long zvar_cuda(const ZVarParams<scalar_t>& p, void* stream) {
  unsigned long long e =
      run_rows_cuda(p.B, ZVarRow<scalar_t, 0, kBackward>{p, ErrorSink{nullptr}}, stream, "log_partition_variance");
  if (e != kNoError) return e;
  run_rows_cuda(1, ZVarRow<scalar_t, 1, kBackward>{p, ErrorSink{nullptr}}, stream, "log_partition_variance");
  return run_rows_cuda(p.B, ZVarRow<scalar_t, 2, kBackward>{p, ErrorSink{nullptr}}, stream, "log_partition_variance");
}

template unsigned long long zvar_cuda<float, false>(const ZVarParams<float>&, void*);
template unsigned long long zvar_cuda<float, true>(const ZVarParams<float>&, void*);
template unsigned long long zvar_cuda<double, false>(const ZVarParams<double>&, void*);
template unsigned long long zvar_cuda<double, true>(const ZVarParams<double>&, void*);

}  // namespace gfn
