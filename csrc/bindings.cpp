// The gfncore._C module: build facts, thread control, and every op's registered bindings.
#include <pybind11/pybind11.h>

#include <vector>

#include "common/check.h"
#include "common/launch.h"
#include "common/parallel.h"
#include "common/registry.h"

namespace py = pybind11;

namespace gfn {
static std::vector<BindFn>& binding_list() {
  static std::vector<BindFn> v;
  return v;
}
int register_binding(BindFn fn) {
  binding_list().push_back(fn);
  return 0;
}
void run_bindings(py::module_& m) {
  for (BindFn fn : binding_list()) fn(m);
}
}  // namespace gfn

#ifndef GFN_VERSION
#define GFN_VERSION "0.0.0"
#endif
#ifndef GFN_CUDA_VERSION
#define GFN_CUDA_VERSION ""
#endif

PYBIND11_MODULE(_C, m) {
  m.doc() = "gfncore compiled core (torch-free: tensors are read through their Python attributes)";
  static py::exception<gfn::TypeError> type_error(m, "_TypeError", PyExc_TypeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const gfn::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    }
  });
  m.def("build_info", [] {
    py::dict d;
    d["version"] = GFN_VERSION;
    d["with_cuda"] = static_cast<bool>(GFN_WITH_CUDA);
    d["with_openmp"] = static_cast<bool>(GFN_WITH_OPENMP);
    d["cuda_version"] = std::string(GFN_CUDA_VERSION).empty() ? py::object(py::none()) : py::object(py::str(GFN_CUDA_VERSION));
    return d;
  });
  m.def("num_threads", &gfn::num_threads, "Threads the CPU kernels use.");
  m.def("set_num_threads", &gfn::set_num_threads, "Set the CPU kernels' thread count (0: OpenMP default).");
  m.def("cuda_async_errors", &gfn::cuda_async_errors,
        "Whether CUDA launches return before their kernels report bad input (checked lazily).");
  m.def("set_cuda_async_errors", &gfn::set_cuda_async_errors, py::arg("on"),
        "CUDA launches return at once (True) or wait and raise at the op (False, the default).");
  m.def("check_cuda_errors", [] {
#if GFN_WITH_CUDA
    gfn::check_cuda_errors();
#endif
  }, "Waits for gfncore's CUDA launches and raises an error one of them reported (no-op without CUDA).");
  gfn::run_bindings(m);
}
