// Reads a torch.Tensor through its Python attributes (data_ptr, shape, dtype, device) so the
// extension never links libtorch. Every op binding validates its arguments through these helpers.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/tensor_view.h"

namespace gfn {
namespace py = pybind11;

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


// Every op binding launches through launch_rows (common/launch_rows.h).
#include "common/launch_rows.h"
