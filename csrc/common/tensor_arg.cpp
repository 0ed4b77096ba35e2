#include "common/tensor_arg.h"

#include "common/macros.h"

namespace gfn {

namespace {
struct TorchDTypes {
  py::object f32, f64, i64, i32, b, u8, tensor_type;
};
TorchDTypes& torch_dtypes() {
  // Imported lazily at first use, through Python: no link against libtorch.
  static TorchDTypes* d = [] {
    auto* t = new TorchDTypes();
    py::module_ torch = py::module_::import("torch");
    t->f32 = torch.attr("float32");
    t->f64 = torch.attr("float64");
    t->i64 = torch.attr("int64");
    t->i32 = torch.attr("int32");
    t->b = torch.attr("bool");
    t->u8 = torch.attr("uint8");
    t->tensor_type = torch.attr("Tensor");
    return t;
  }();
  return *d;
}
}  // namespace

const char* dtype_name(DType d) {
  switch (d) {
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kInt64: return "int64";
    case DType::kInt32: return "int32";
    case DType::kBool: return "bool";
    case DType::kUInt8: return "uint8";
    default: return "an unsupported dtype";
  }
}

std::string TensorArg::shape_str() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

TensorArg tensor_arg(py::handle obj, const char* name) {
  auto& td = torch_dtypes();
  GFN_CHECK_TYPE(py::isinstance(obj, td.tensor_type), name, " must be a torch.Tensor, got ",
                 std::string(py::str(py::type::of(obj).attr("__name__"))));
  TensorArg t;
  t.name = name;
  py::object dt = obj.attr("dtype");
  if (dt.is(td.f32)) t.dtype = DType::kFloat32;
  else if (dt.is(td.f64)) t.dtype = DType::kFloat64;
  else if (dt.is(td.i64)) t.dtype = DType::kInt64;
  else if (dt.is(td.i32)) t.dtype = DType::kInt32;
  else if (dt.is(td.b)) t.dtype = DType::kBool;
  else if (dt.is(td.u8)) t.dtype = DType::kUInt8;
  py::tuple shape = obj.attr("shape");
  t.shape.resize(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    t.shape[i] = shape[i].cast<int64_t>();
    t.numel *= t.shape[i];
  }
  t.cuda = obj.attr("is_cuda").cast<bool>();
  // Anything else (meta, mps, xpu...) would hand the kernels a pointer they cannot read.
  GFN_CHECK_TYPE(t.cuda || obj.attr("is_cpu").cast<bool>(), name, " must be a CPU or CUDA tensor, got device ",
                 std::string(py::str(obj.attr("device"))));
  if (t.cuda) t.device_index = obj.attr("device").attr("index").cast<int>();
  GFN_CHECK(obj.attr("is_contiguous")().cast<bool>(), name, " must be contiguous");
  t.ptr = reinterpret_cast<void*>(obj.attr("data_ptr")().cast<intptr_t>());
  GFN_CHECK(t.numel == 0 || t.ptr != nullptr, name, " has a null data pointer");
  return t;
}

void check_dtype(const TensorArg& t, DType d) {
  GFN_CHECK_TYPE(t.dtype == d, t.name, " must be ", dtype_name(d), ", got ", dtype_name(t.dtype));
}
void check_float(const TensorArg& t) {
  GFN_CHECK_TYPE(t.dtype == DType::kFloat32 || t.dtype == DType::kFloat64, t.name,
                 " must be float32 or float64, got ", dtype_name(t.dtype));
}
void check_dim(const TensorArg& t, int64_t d) {
  GFN_CHECK(t.dim() == d, t.name, " must have ", d, " dimension(s), got shape ", t.shape_str());
}
void check_size(const TensorArg& t, int64_t d, int64_t expected, const char* what) {
  GFN_CHECK(t.size(d) == expected, t.name, " must have size ", expected, " (", what, ") in dimension ", d,
            ", got shape ", t.shape_str());
}
void check_same_device(const TensorArg& a, const TensorArg& b) {
  GFN_CHECK_TYPE(a.cuda == b.cuda && a.device_index == b.device_index, a.name, " and ", b.name,
                 " must be on the same device");
}
void check_same_dtype(const TensorArg& a, const TensorArg& b) {
  GFN_CHECK_TYPE(a.dtype == b.dtype, a.name, " and ", b.name, " must have the same dtype, got ",
                 dtype_name(a.dtype), " and ", dtype_name(b.dtype));
}
void check_cuda_built(const TensorArg& t) {
#if !GFN_WITH_CUDA
  GFN_CHECK_TYPE(!t.cuda, t.name, " is a CUDA tensor, but gfncore was built without CUDA "
                 "(rebuild with GFN_CUDA=ON and nvcc on PATH)");
#else
  (void)t;
#endif
}

int64_t check_states(const TensorArg& states, int64_t state_dim) {
  check_cuda_built(states);
  check_dtype(states, DType::kInt32);
  check_dim(states, 2);
  check_size(states, 1, state_dim, "the environment's state_dim");
  return states.size(0);
}

void check_row_matrix(const TensorArg& t, const TensorArg& states, int64_t n, int64_t width, const char* what) {
  check_float(t);
  check_dim(t, 2);
  check_size(t, 0, n, "one row per state");
  check_size(t, 1, width, what);
  check_same_device(states, t);
}

const int64_t* optional_ids(py::handle ids_obj, const TensorArg& states, int64_t n) {
  if (ids_obj.is_none()) return nullptr;
  TensorArg t = tensor_arg(ids_obj, "ids");
  check_dtype(t, DType::kInt64);
  check_dim(t, 1);
  check_size(t, 0, n, "one id per state");
  check_same_device(states, t);
  return t.data<int64_t>();
}

void raise_kernel_error(unsigned long long packed, const char* op, const char* row_what) {
  if (packed == kNoError) return;
  int64_t row = static_cast<int64_t>(packed >> 8);
  int code = static_cast<int>(packed & 0xff);
  std::string where = str(op, ": ", row_what, " ", row, ": ");
  switch (code) {
    case kNanLogit: throw ValueError(where + "logits contain NaN at a legal action");
    case kNoLegalAction: throw ValueError(where + "mask allows no action (a finished state cannot step)");
    case kInvalidState: throw ValueError(where + "states holds a row that is not in the environment's state space");
    case kIllegalAction: throw ValueError(where + "actions holds an action that is out of range or masked out");
    case kNoMass: throw ValueError(where + "logits of every legal action are -inf/inf: nothing to sample");
    case kBadIndex: throw ValueError(where + "an index is out of range");
    case kNanValue: throw ValueError(where + "input contains NaN");
    case kBadOffsets:
      throw ValueError(where + "offsets must start at 0, increase strictly (every trajectory has at least its stop row) and end at T");
    default: throw ValueError(where + "unknown kernel error");
  }
}

}  // namespace gfn

