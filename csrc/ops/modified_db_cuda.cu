#include "common/launch_cuda.cuh"
#include "ops/modified_db.h"

namespace gfn {

template <typename scalar_t, bool kBackward>
unsigned long long mdb_cuda(const MDBParams<scalar_t>& p, void* stream) {
  return run_rows_cuda(p.B, MDBRow<scalar_t, kBackward>{p, ErrorSink{nullptr}}, stream, "modified_detailed_balance");
}

template unsigned long long mdb_cuda<float, false>(const MDBParams<float>&, void*);
template unsigned long long mdb_cuda<float, true>(const MDBParams<float>&, void*);
template unsigned long long mdb_cuda<double, false>(const MDBParams<double>&, void*);
template unsigned long long mdb_cuda<double, true>(const MDBParams<double>&, void*);

}  // namespace gfn
