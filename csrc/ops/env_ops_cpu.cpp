#include "common/launch.h"
#include "common/registry.h"
#include "common/tensor_arg.h"
#include "envs/envs.h"
#include "ops/env_ops.h"

namespace gfn {

// env_query(env, query, states [n, D] int32, actions [n] int64 or None, out, stream)
static void env_query(py::handle env_obj, int query, py::handle states_obj, py::handle actions_obj, py::handle out_obj,
                      intptr_t stream) {
  EnvSpec spec = env_spec_arg(env_obj);
  GFN_DISPATCH_ENV(spec, Env, [&] {
    Env env = Env::from_spec(spec);
    TensorArg states = tensor_arg(states_obj, "states");
    TensorArg out = tensor_arg(out_obj, "out");
    const int64_t n = check_states(states, env.state_dim());
    check_same_device(states, out);
    const int64_t* actions = nullptr;
    auto q = static_cast<EnvQuery>(query);
    if (q == EnvQuery::kStep || q == EnvQuery::kBackwardStep) {
      TensorArg act = tensor_arg(actions_obj, "actions");
      check_dtype(act, DType::kInt64);
      check_dim(act, 1);
      check_size(act, 0, n, "one action per state");
      check_same_device(states, act);
      actions = act.data<int64_t>();
    }
    switch (q) {
      case EnvQuery::kForwardMask: check_dtype(out, DType::kBool); GFN_CHECK(out.numel == n * env.n_actions(), "out has the wrong size"); break;
      case EnvQuery::kBackwardMask: check_dtype(out, DType::kBool); GFN_CHECK(out.numel == n * env.n_backward_actions(), "out has the wrong size"); break;
      case EnvQuery::kEncode: check_dtype(out, DType::kFloat32); GFN_CHECK(out.numel == n * env.feature_dim(), "out has the wrong size"); break;
      case EnvQuery::kLogReward: check_dtype(out, DType::kFloat64); GFN_CHECK(out.numel == n, "out has the wrong size"); break;
      case EnvQuery::kNParents: check_dtype(out, DType::kInt64); GFN_CHECK(out.numel == n, "out has the wrong size"); break;
      case EnvQuery::kStep:
      case EnvQuery::kBackwardStep: check_dtype(out, DType::kInt32); GFN_CHECK(out.numel == n * env.state_dim(), "out has the wrong size"); break;
      case EnvQuery::kIsInitial: check_dtype(out, DType::kBool); GFN_CHECK(out.numel == n, "out has the wrong size"); break;
      default: throw ValueError(str("unknown environment query ", query));
    }
    EnvQueryRow<Env> f{env, query, states.data<int32_t>(), actions, out.ptr, ErrorSink{nullptr}};
    raise_kernel_error(launch_rows(f, n, 4096, states, stream), "env", "row");
  });
}

GFN_BINDINGS(bind_env_ops) {
  m.def("env_query", &env_query, py::arg("env"), py::arg("query"), py::arg("states"), py::arg("actions"), py::arg("out"),
        py::arg("stream") = 0);
  m.def("env_dims", [](py::handle env_obj) {
    EnvSpec spec = env_spec_arg(env_obj);
    return GFN_DISPATCH_ENV(spec, Env, [&] {
      Env env = Env::from_spec(spec);
      py::dict d;
      d["n_actions"] = env.n_actions();
      d["n_backward_actions"] = env.n_backward_actions();
      d["state_dim"] = env.state_dim();
      d["feature_dim"] = env.feature_dim();
      d["max_parents"] = env.max_parents();
      d["max_length"] = env.max_length();
      return d;
    });
  });
}

}  // namespace gfn
