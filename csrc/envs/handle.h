// The compiled environment behind a Python environment object (_C.Env): the environment struct,
// built and validated once, plus whatever it points into (pinned tensor parameters, owned caches,
// callback code). Every env-aware op takes a handle and dispatches on the struct type with
// with_env(), generated from the one registry list in envs/all.h.
#pragma once
#include <pybind11/pybind11.h>

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "common/tensor_arg.h"
#include "envs/all.h"

namespace gfn {
namespace py = pybind11;

// Raised (as gfncore._C.CallbackError, a ValueError) when a callback environment's method failed.
struct CallbackError : std::runtime_error {
  int method;
  CallbackError(const std::string& what, int m) : std::runtime_error(what), method(m) {}
};

struct EnvHandle {
  AnyEnv env;
  std::string name;
  py::dict params;                           // the validated values, as Python saw them
  std::vector<py::object> pins;              // private copies of tensor parameters, callback code
  std::vector<std::shared_ptr<void>> owned;  // objects the struct points at (caches, tables)
  std::vector<int32_t> s0;                   // callback environments: the initial state
  std::unique_ptr<std::atomic<int>> failed;  // callback environments: the first failing method
};

// The handle inside a _C.Env; TypeError for anything else.
const EnvHandle& env_arg(py::handle obj);

// Raises CallbackError if a callback of a callback environment failed since the last reset (for
// long-lived users of a handle, e.g. the recording sampler; with_env does this itself).
inline void reset_callbacks(const EnvHandle& h) {
  if (h.failed) h.failed->store(kCbNone);
}
inline void check_callbacks(const EnvHandle& h) {
  if (!h.failed) return;
  int m = h.failed->load();
  if (m != kCbNone)
    throw CallbackError(str("the environment's ", callback_method_name(m), " callback failed (its code raised an exception)"),
                        m);
}

// Runs f(env_struct) for the handle's struct type and returns its result. For a callback
// environment, a failed callback (recorded by the struct while the kernels ran) becomes a
// CallbackError naming the method, whatever else the kernels reported.
template <class R = void, class F>
R with_env(const EnvHandle& h, F&& f) {
  reset_callbacks(h);
  auto check = [&] { check_callbacks(h); };
  try {
    return std::visit(
        [&](const auto& e) -> R {
          using E = std::decay_t<decltype(e)>;
          if constexpr (std::is_same_v<E, std::monostate>) {
            throw ValueError("empty environment handle");
          } else if constexpr (!IsGfnEnv<E>::value) {
            // unreachable: envs/all.h failed the build with a message naming the missing member;
            // instantiating ops for the struct would only add template errors below it
            throw ValueError("incomplete environment struct");
          } else {
            if constexpr (std::is_void_v<R>) {
              f(e);
              check();
            } else {
              R r = f(e);
              check();
              return r;
            }
          }
        },
        h.env);
  } catch (const CallbackError&) {
    throw;
  } catch (...) {
    check();  // a failed callback explains whatever error followed it
    throw;
  }
}

}  // namespace gfn
