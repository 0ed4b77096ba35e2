#include "common/launch_cuda.cuh"
#include "ops/zvar.h"

namespace gfn {

// Three launches (zeta, the batch reduction as one row, the output); the first reports bad offsets.
template <typename scalar_t, bool kBackward>
unsigned long long zvar_cuda(const ZVarParams<scalar_t>& p, void* stream, int device) {
  // the later launches index rows by the offsets the first one validates: it waits (must_sync)
  unsigned long long e = run_rows_cuda(p.B, ZVarRow<scalar_t, 0, kBackward>{p, ErrorSink{nullptr}}, stream,
                                       "log_partition_variance", device, true);
  if (e != kNoError) return e;
  run_rows_cuda(1, ZVarRow<scalar_t, 1, kBackward>{p, ErrorSink{nullptr}}, stream, "log_partition_variance", device);
  return run_rows_cuda(p.B, ZVarRow<scalar_t, 2, kBackward>{p, ErrorSink{nullptr}}, stream, "log_partition_variance",
                       device);
}

template unsigned long long zvar_cuda<float, false>(const ZVarParams<float>&, void*, int);
template unsigned long long zvar_cuda<float, true>(const ZVarParams<float>&, void*, int);
template unsigned long long zvar_cuda<double, false>(const ZVarParams<double>&, void*, int);
template unsigned long long zvar_cuda<double, true>(const ZVarParams<double>&, void*, int);

}  // namespace gfn
