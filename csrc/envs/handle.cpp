// _C.Env(name, params), _C.callback_env(...), _C.env_kinds(): environments from Python, with every
// parameter validated against the environment's own declaration.
#include "envs/handle.h"

#include <Python.h>

#include <cmath>
#include <cstring>

#include "common/registry.h"
#include "envs/traits.h"

namespace gfn {

const char* callback_method_name(int m) {
  switch (m) {
    case kCbInitial: return "initial_state";
    case kCbForwardMask: return "forward_mask";
    case kCbStep: return "step";
    case kCbBackwardMask: return "backward_mask";
    case kCbBackwardStep: return "backward_step";
    case kCbEncode: return "encode";
    case kCbLogReward: return "log_reward";
    case kCbValid: return "valid";
    default: return "unknown";
  }
}

const EnvHandle& env_arg(py::handle obj) {
  GFN_CHECK_TYPE(py::isinstance<EnvHandle>(obj), "env must be a gfncore environment handle (_C.Env), got ",
                 std::string(py::str(py::type::of(obj).attr("__name__"))));
  return obj.cast<const EnvHandle&>();
}

namespace {

std::string type_name(py::handle v) { return py::str(py::type::of(v).attr("__name__")); }

// An exact integer (int, numpy integer, anything with __index__; never bool or float), range-checked
// before it is narrowed.
int64_t parse_int(const std::string& env, const ParamInfo& p, py::handle v) {
  auto bad = [&](const std::string& got) {
    return str(env, ": ", p.name, " must be an integer in [", p.int_lo, ", ", p.int_hi, "], got ", got);
  };
  if (PyBool_Check(v.ptr()) || !PyIndex_Check(v.ptr())) throw TypeError(bad(str(type_name(v), " ", std::string(py::repr(v)))));
  py::object idx = py::reinterpret_steal<py::object>(PyNumber_Index(v.ptr()));
  if (!idx) throw py::error_already_set();
  int overflow = 0;
  long long x = PyLong_AsLongLongAndOverflow(idx.ptr(), &overflow);
  if (overflow != 0 || x < p.int_lo || x > p.int_hi) throw ValueError(bad(std::string(py::repr(idx))));
  return static_cast<int64_t>(x);
}

double parse_float(const std::string& env, const ParamInfo& p, py::handle v) {
  if (PyBool_Check(v.ptr()) || !(PyFloat_Check(v.ptr()) || PyLong_Check(v.ptr()) || PyIndex_Check(v.ptr()) ||
                                 py::hasattr(v, "__float__")) || PyUnicode_Check(v.ptr()))
    throw TypeError(str(env, ": ", p.name, " must be a number, got ", type_name(v)));
  double x = PyFloat_AsDouble(v.ptr());
  if (x == -1.0 && PyErr_Occurred()) throw py::error_already_set();
  const bool lo_ok = p.lo_open ? x > p.float_lo : x >= p.float_lo;
  if (!std::isfinite(x) || !lo_ok || x > p.float_hi) {
    std::string range = std::isfinite(p.float_lo) || std::isfinite(p.float_hi)
                            ? str(" in ", p.lo_open ? "(" : "[", p.float_lo, ", ", p.float_hi, "]")
                            : std::string();
    throw ValueError(str(env, ": ", p.name, " must be a finite number", range, ", got ", x));
  }
  return x;
}

bool parse_bool(const std::string& env, const ParamInfo& p, py::handle v) {
  const bool numpy_bool = py::hasattr(v, "dtype") && std::string(py::str(v.attr("dtype"))) == "bool";
  if (!PyBool_Check(v.ptr()) && !numpy_bool) throw TypeError(str(env, ": ", p.name, " must be a bool, got ", type_name(v)));
  const int truth = PyObject_IsTrue(v.ptr());
  if (truth < 0) throw py::error_already_set();
  return truth == 1;
}

// A private copy of the tensor (detached, contiguous, on the CPU as declared): the environment
// points into it, so the caller resizing or freeing theirs can never leave a dangling pointer.
TensorArg parse_tensor(const std::string& env, const ParamInfo& p, py::handle v, std::vector<py::object>& pins) {
  py::object torch_tensor = py::module_::import("torch").attr("Tensor");
  GFN_CHECK_TYPE(py::isinstance(v, torch_tensor), env, ": ", p.name, " must be a torch.Tensor, got ", type_name(v));
  GFN_CHECK_TYPE(v.attr("is_cpu").cast<bool>(), env, ": ", p.name, " must be a CPU tensor, got device ",
                 std::string(py::str(v.attr("device"))));
  py::object own = v.attr("detach")().attr("clone")(py::arg("memory_format") =
                                                        py::module_::import("torch").attr("contiguous_format"));
  pins.push_back(own);
  TensorArg t = tensor_arg(own, p.name.c_str());
  GFN_CHECK_TYPE(t.dtype == p.dtype, env, ": ", p.name, " must be ", dtype_name(p.dtype), ", got ",
                 dtype_name(t.dtype));
  if (p.rank >= 0) GFN_CHECK(t.dim() == p.rank, env, ": ", p.name, " must have ", p.rank, " dimension(s), got shape ",
                             t.shape_str());
  return t;
}

template <class E>
void build(EnvHandle& h, py::dict kwargs) {
  ParamDecl decl;
  E::declare(decl);
  const std::string env = E::kName;
  for (auto kv : kwargs) {
    const std::string key = py::str(kv.first);
    bool known = false;
    for (const ParamInfo& p : decl.items()) known = known || p.name == key;
    if (!known) {
      std::string names;
      for (const ParamInfo& p : decl.items()) names += (names.empty() ? "" : ", ") + p.name;
      throw TypeError(str(env, ": unknown parameter '", key, "'; its parameters are: ", names));
    }
  }
  Params params(env);
  for (const ParamInfo& p : decl.items()) {
    Params::Value v;
    v.name = p.name;
    v.type = p.type;
    const bool given = kwargs.contains(p.name.c_str()) && !kwargs[p.name.c_str()].is_none();
    py::object raw = given ? py::reinterpret_borrow<py::object>(kwargs[p.name.c_str()]) : py::none();
    switch (p.type) {
      case ParamType::kInt:
        v.i = given ? parse_int(env, p, raw) : p.int_default;
        h.params[p.name.c_str()] = py::int_(v.i);
        break;
      case ParamType::kFloat:
        v.f = given ? parse_float(env, p, raw) : p.float_default;
        h.params[p.name.c_str()] = py::float_(v.f);
        break;
      case ParamType::kBool:
        v.i = given ? parse_bool(env, p, raw) : p.bool_default;
        h.params[p.name.c_str()] = py::bool_(v.i != 0);
        break;
      case ParamType::kTensor:
        if (given) {
          v.t = parse_tensor(env, p, raw, h.pins);
          h.params[p.name.c_str()] = raw;
        } else {
          GFN_CHECK(p.optional, env, ": the tensor parameter ", p.name, " is required");
          v.present = false;
          h.params[p.name.c_str()] = py::none();
        }
        break;
    }
    params.set(std::move(v));
  }
  h.env = E::make(params);
  for (auto& o : params.owned()) h.owned.push_back(o);
  h.name = env;
}

// Only complete structs are built or listed (envs/all.h has already failed the build, naming the
// missing member, for any other): templates, so an incomplete struct adds no errors of its own.
template <class E>
bool try_build(EnvHandle& h, const std::string& name, py::dict kwargs) {
  if constexpr (IsGfnEnv<E>::value) {
    if (name != E::kName) return false;
    build<E>(h, kwargs);
    return true;
  } else {
    return false;
  }
}

template <class E>
void append_name(std::string& names) {
  if constexpr (IsGfnEnv<E>::value) names += (names.empty() ? "" : ", ") + std::string(E::kName);
}

std::unique_ptr<EnvHandle> make_env(const std::string& name, py::dict kwargs) {
  auto h = std::make_unique<EnvHandle>();
  bool found = false;
#define GFN_TRY_BUILD(E) found = found || try_build<E>(*h, name, kwargs);
  GFN_ENVS(GFN_TRY_BUILD)
#undef GFN_TRY_BUILD
  if (!found) {
    std::string names;
#define GFN_NAME(E) append_name<E>(names);
    GFN_ENVS(GFN_NAME)
#undef GFN_NAME
    throw ValueError(str("unknown environment '", name, "'; compiled environments: ", names));
  }
  return h;
}

py::dict param_info(const ParamInfo& p) {
  py::dict d;
  d["name"] = p.name;
  d["help"] = p.help;
  switch (p.type) {
    case ParamType::kInt:
      d["type"] = "int", d["default"] = p.int_default, d["min"] = p.int_lo, d["max"] = p.int_hi;
      break;
    case ParamType::kFloat:
      d["type"] = "float", d["default"] = p.float_default, d["min"] = p.float_lo, d["max"] = p.float_hi;
      d["min_exclusive"] = p.lo_open;
      break;
    case ParamType::kBool:
      d["type"] = "bool", d["default"] = p.bool_default;
      break;
    case ParamType::kTensor:
      d["type"] = "tensor", d["default"] = py::none(), d["dtype"] = dtype_name(p.dtype), d["rank"] = p.rank;
      d["optional"] = p.optional;
      break;
  }
  return d;
}

template <class E>
void add_kind(py::dict& out) {
  if constexpr (IsGfnEnv<E>::value) {
    ParamDecl decl;
    E::declare(decl);
    py::list ps;
    for (const ParamInfo& p : decl.items()) ps.append(param_info(p));
    py::dict k;
    k["cuda"] = E::kCuda;
    k["params"] = ps;
    out[E::kName] = k;
  }
}

py::dict env_kinds() {
  py::dict out;
#define GFN_KIND(E) add_kind<E>(out);
  GFN_ENVS(GFN_KIND)
#undef GFN_KIND
  return out;
}

// The numba route: dims and one PyCapsule per callback, each named with its C signature (as
// scipy.LowLevelCallable does), so a plain integer is never called as code.
constexpr const char* kSigInit = "gfncore.initial_state: int (int32_t *)";
constexpr const char* kSigMask = "gfncore.mask: int (const int32_t *, uint8_t *)";
constexpr const char* kSigStep = "gfncore.step: int (const int32_t *, int64_t, int32_t *)";
constexpr const char* kSigEncode = "gfncore.encode: int (const int32_t *, float *)";
constexpr const char* kSigReward = "gfncore.log_reward: int (const int32_t *, double *)";
constexpr const char* kSigValid = "gfncore.valid: int (const int32_t *, uint8_t *)";

void* capsule_pointer(py::dict caps, const char* key, const char* sig, bool required) {
  if (!caps.contains(key) || caps[key].is_none()) {
    GFN_CHECK(!required, "callback environment: the ", key, " callback is required");
    return nullptr;
  }
  py::handle c = caps[key];
  GFN_CHECK_TYPE(PyCapsule_CheckExact(c.ptr()), "callback environment: ", key, " must be a PyCapsule, got ",
                 type_name(c));
  const char* name = PyCapsule_GetName(c.ptr());
  GFN_CHECK_TYPE(name != nullptr && std::strcmp(name, sig) == 0, "callback environment: ", key,
                 " must be a capsule named \"", sig, "\", got \"", name ? name : "(null)", "\"");
  void* p = PyCapsule_GetPointer(c.ptr(), sig);
  if (!p) throw py::error_already_set();
  return p;
}

std::unique_ptr<EnvHandle> callback_env(int64_t state_dim, int64_t n_actions, int64_t feature_dim, int64_t max_parents,
                                        int64_t max_length, py::dict caps, py::object keepalive) {
  auto in = [](const char* what, int64_t v, int64_t lo) {
    GFN_CHECK(v >= lo && v <= CallbackEnv::kMaxWidth, "callback environment: ", what, " must be in [", lo, ", ",
              CallbackEnv::kMaxWidth, "], got ", v);
  };
  in("state_dim", state_dim, 1);
  in("n_actions", n_actions, 2);
  in("feature_dim", feature_dim, 0);
  in("max_parents", max_parents, 0);
  in("max_length", max_length, 1);
  auto h = std::make_unique<EnvHandle>();
  CallbackEnv e;
  e.D = static_cast<int>(state_dim), e.A = static_cast<int>(n_actions), e.F = static_cast<int>(feature_dim);
  e.P = static_cast<int>(max_parents), e.L = static_cast<int>(max_length);
  e.fn.initial = reinterpret_cast<CallbackFns::InitFn>(capsule_pointer(caps, "initial_state", kSigInit, true));
  e.fn.forward_mask = reinterpret_cast<CallbackFns::MaskFn>(capsule_pointer(caps, "forward_mask", kSigMask, true));
  e.fn.step = reinterpret_cast<CallbackFns::StepFn>(capsule_pointer(caps, "step", kSigStep, true));
  e.fn.backward_mask = reinterpret_cast<CallbackFns::MaskFn>(capsule_pointer(caps, "backward_mask", kSigMask, true));
  e.fn.backward_step = reinterpret_cast<CallbackFns::StepFn>(capsule_pointer(caps, "backward_step", kSigStep, true));
  e.fn.encode = reinterpret_cast<CallbackFns::EncodeFn>(capsule_pointer(caps, "encode", kSigEncode, true));
  e.fn.log_reward = reinterpret_cast<CallbackFns::RewardFn>(capsule_pointer(caps, "log_reward", kSigReward, false));
  e.fn.valid = reinterpret_cast<CallbackFns::ValidFn>(capsule_pointer(caps, "valid", kSigValid, false));
  h->pins.push_back(keepalive);  // the compiled code the pointers lead into
  h->failed = std::make_unique<std::atomic<int>>(kCbNone);
  h->s0.assign(static_cast<size_t>(state_dim), 0);
  if (e.fn.initial(h->s0.data()) != 0) throw CallbackError("the environment's initial_state callback failed", kCbInitial);
  e.s0 = h->s0.data();
  e.failed = h->failed.get();
  h->env = e;
  h->name = CallbackEnv::kName;
  return h;
}

}  // namespace

GFN_BINDINGS(bind_env_handle) {
  static py::exception<CallbackError> callback_error(m, "CallbackError", PyExc_ValueError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const CallbackError& e) {
      py::object err = py::handle(callback_error.ptr())(e.what());
      err.attr("method") = callback_method_name(e.method);
      PyErr_SetObject(callback_error.ptr(), err.ptr());
    }
  });
  auto dims = [](const EnvHandle& h) {
    return with_env<py::dict>(h, [](const auto& e) {
      py::dict d;
      d["n_actions"] = e.n_actions();
      d["n_backward_actions"] = e.n_backward_actions();
      d["state_dim"] = e.state_dim();
      d["feature_dim"] = e.feature_dim();
      d["max_parents"] = e.max_parents();
      d["max_length"] = e.max_length();
      d["cuda"] = std::decay_t<decltype(e)>::kCuda;
      d["reward_delta"] = HasLogRewardDelta<std::decay_t<decltype(e)>>::value;
      return d;
    });
  };
  py::class_<EnvHandle>(m, "Env",
                        "A compiled environment: Env(name, params: dict). Parameters are validated against the "
                        "environment's declaration (see env_kinds()); tensor parameters are copied and pinned.")
      .def(py::init(&make_env), py::arg("name"), py::arg("params"))
      .def_property_readonly("name", [](const EnvHandle& h) { return h.name; })
      .def_property_readonly("params", [](const EnvHandle& h) { return h.params; })
      .def_property_readonly("dims", dims)
      .def("__repr__", [](const EnvHandle& h) { return str("<gfncore._C.Env ", h.name, ">"); });
  m.def("env_kinds", &env_kinds, "Every compiled environment: {name: {cuda, params: [declarations]}}.");
  m.def("callback_env", &callback_env, py::arg("state_dim"), py::arg("n_actions"), py::arg("feature_dim"),
        py::arg("max_parents"), py::arg("max_length"), py::arg("callbacks"), py::arg("keepalive"),
        "A host-only environment whose methods are C callbacks (the numba route).");
  py::dict sigs;
  sigs["initial_state"] = kSigInit;
  sigs["forward_mask"] = kSigMask;
  sigs["backward_mask"] = kSigMask;
  sigs["step"] = kSigStep;
  sigs["backward_step"] = kSigStep;
  sigs["encode"] = kSigEncode;
  sigs["log_reward"] = kSigReward;
  sigs["valid"] = kSigValid;
  m.attr("CALLBACK_SIGNATURES") = sigs;
  m.attr("CALLBACK_MAX_WIDTH") = CallbackEnv::kMaxWidth;  // the widest dimension (and max_length) it takes
}

}  // namespace gfn
