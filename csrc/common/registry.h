// Each op's binding file registers itself, so adding an op touches no central list.
#pragma once
#include <pybind11/pybind11.h>

namespace gfn {
using BindFn = void (*)(pybind11::module_&);
int register_binding(BindFn fn);
void run_bindings(pybind11::module_& m);
}  // namespace gfn

#define GFN_CONCAT_(a, b) a##b
#define GFN_CONCAT(a, b) GFN_CONCAT_(a, b)
#define GFN_BINDINGS(fn)                                     \
  static void fn(pybind11::module_& m);                      \
  static int GFN_CONCAT(fn, _registered) = ::gfn::register_binding(&fn); \
  static void fn(pybind11::module_& m)
