// Reads a torch.Tensor through its Python attributes (data_ptr, shape, dtype, device) so the
// extension never links libtorch. Every op binding validates its arguments through these helpers.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/check.h"

namespace gfn {
namespace py = pybind11;

enum class DType { kFloat32, kFloat64, kInt64, kInt32, kBool, kUInt8, kOther };
const char* dtype_name(DType d);

struct TensorArg {
  const char* name = "";
  void* ptr = nullptr;
  DType dtype = DType::kOther;
  std::vector<int64_t> shape;
  bool cuda = false;
  int device_index = -1;
  int64_t numel = 1;

  int64_t dim() const { return static_cast<int64_t>(shape.size()); }
  int64_t size(int64_t d) const { return shape.at(static_cast<size_t>(d < 0 ? d + dim() : d)); }
  template <typename T>
  T* data() const { return static_cast<T*>(ptr); }
  std::string shape_str() const;
};

// Raises TypeError if `obj` is not a tensor, ValueError if it is not contiguous.
TensorArg tensor_arg(py::handle obj, const char* name);

void check_dtype(const TensorArg& t, DType d);
void check_float(const TensorArg& t);  // float32 or float64
void check_dim(const TensorArg& t, int64_t d);
void check_size(const TensorArg& t, int64_t d, int64_t expected, const char* what);
void check_same_device(const TensorArg& a, const TensorArg& b);
void check_same_dtype(const TensorArg& a, const TensorArg& b);
// All CUDA work in a CPU-only build raises: "gfncore was built without CUDA".
void check_cuda_built(const TensorArg& t);

// A batch of state rows, int32 [n, state_dim], on a device this build has kernels for; returns n.
int64_t check_states(const TensorArg& states, int64_t state_dim);
// A float [n, width] matrix of per-row scores (logits) on the device of `states`.
void check_row_matrix(const TensorArg& t, const TensorArg& states, int64_t n, int64_t width, const char* what);
// The optional per-row Philox subsequence ids (int64 [n]); null when None (the row index is used).
const int64_t* optional_ids(py::handle ids_obj, const TensorArg& states, int64_t n);

// Turns the first error a kernel reported into an exception naming the row and argument.
void raise_kernel_error(unsigned long long packed, const char* op, const char* row_what);

}  // namespace gfn

#include "common/launch.h"
#include "envs/spec.h"
namespace gfn {
// Runs row functor f over n rows on the device `where` lives on and returns the first error a
// row reported: the CPU through parallel_for with the GIL released, CUDA through rows_cuda (the
// same functor). Every op binding launches through here.
template <typename F>
unsigned long long launch_rows(const F& f, int64_t n, int64_t grain, const TensorArg& where, intptr_t stream) {
  if (where.cuda) {
#if GFN_WITH_CUDA
    return rows_cuda(f, n, reinterpret_cast<void*>(stream));
#else
    check_cuda_built(where);
    return kNoError;
#endif
  }
  py::gil_scoped_release nogil;
  return run_rows_cpu(n, grain, f);
}

// An environment from Python: (kind, [ints], [floats]).
EnvSpec env_spec_arg(py::handle obj);
}  // namespace gfn
