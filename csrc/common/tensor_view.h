// A tensor as the kernels see it: pointer, dtype, shape and device, read once from Python by
// tensor_arg() (common/tensor_arg.h). Kept free of pybind11 so that environment headers, which
// read tensor parameters through it, compile for CUDA too.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gfn {

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

}  // namespace gfn
