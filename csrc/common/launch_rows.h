// Host entry of every row-parallel op: runs a row functor on the device its tensors live on.
#pragma once
#include "common/launch.h"
#include "common/tensor_arg.h"

namespace gfn {

// Runs row functor f over n rows on the device `where` lives on and returns the first error a
// row reported: the CPU through parallel_for with the GIL released, CUDA through rows_cuda (the
// same functor). Every op binding launches through here.
template <typename F>
unsigned long long launch_rows(const F& f, int64_t n, int64_t grain, const TensorArg& where, intptr_t stream) {
  if (where.cuda) {
    check_cuda_built(where);
    if constexpr (!RunsOnCuda<F>::value) {
      throw TypeError(str(where.name, " is a CUDA tensor, but this environment runs on the CPU only "
                          "(its code is host-only); pass CPU tensors"));
    } else {
#if GFN_WITH_CUDA
      return rows_cuda(f, n, reinterpret_cast<void*>(stream), where.device_index);
#endif
    }
    return kNoError;
  }
  py::gil_scoped_release nogil;
  return run_rows_cpu(n, grain, f);
}

}  // namespace gfn
