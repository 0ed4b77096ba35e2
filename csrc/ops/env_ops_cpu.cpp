#include "common/launch_rows.h"
#include "common/registry.h"
#include "common/tensor_arg.h"
#include "envs/handle.h"
#include "ops/env_ops.h"

namespace gfn {

// env_query(env, query, states [n, D] int32, actions [n] int64 or None, out, stream)
static void env_query(py::handle env_obj, int query, py::handle states_obj, py::handle actions_obj, py::handle out_obj,
                      intptr_t stream) {
  const EnvHandle& h = env_arg(env_obj);
  GFN_CHECK(query >= 0 && query <= static_cast<int>(EnvQuery::kLogRewardDelta), "unknown environment query ", query);
  with_env(h, [&](const auto& env) {
    using Env = std::decay_t<decltype(env)>;
    TensorArg states = tensor_arg(states_obj, "states");
    TensorArg out = tensor_arg(out_obj, "out");
    const int64_t n = check_states(states, env.state_dim());
    check_same_device(states, out);
    const int64_t* actions = nullptr;
    auto q = static_cast<EnvQuery>(query);
    if constexpr (!HasLogRewardDelta<Env>::value)
      GFN_CHECK(q != EnvQuery::kLogRewardDelta, h.name, " has no log_reward_delta (its dims say reward_delta = False)");
    if (q == EnvQuery::kStep || q == EnvQuery::kBackwardStep || q == EnvQuery::kLogRewardDelta) {
      TensorArg act = tensor_arg(actions_obj, "actions");
      check_dtype(act, DType::kInt64);
      check_dim(act, 1);
      check_size(act, 0, n, "one action per state");
      check_same_device(states, act);
      actions = act.data<int64_t>();
    }
    auto expect = [&](DType d, int64_t numel) {
      check_dtype(out, d);
      GFN_CHECK(out.numel == numel, "out must have ", numel, " elements, got shape ", out.shape_str());
    };
    switch (q) {
      case EnvQuery::kForwardMask: expect(DType::kBool, n * env.n_actions()); break;
      case EnvQuery::kBackwardMask: expect(DType::kBool, n * env.n_backward_actions()); break;
      case EnvQuery::kEncode: expect(DType::kFloat32, n * env.feature_dim()); break;
      case EnvQuery::kLogReward:
      case EnvQuery::kLogRewardDelta: expect(DType::kFloat64, n); break;
      case EnvQuery::kNParents: expect(DType::kInt64, n); break;
      case EnvQuery::kStep:
      case EnvQuery::kBackwardStep:
      case EnvQuery::kInitial: expect(DType::kInt32, n * env.state_dim()); break;
      case EnvQuery::kIsInitial: expect(DType::kBool, n); break;
    }
    EnvQueryRow<Env> f{env, query, states.data<int32_t>(), actions, out.ptr, ErrorSink{nullptr}};
    raise_kernel_error(launch_rows(f, n, 4096, states, stream), "env", "row");
  });
}

GFN_BINDINGS(bind_env_ops) {
  m.def("env_query", &env_query, py::arg("env"), py::arg("query"), py::arg("states"), py::arg("actions"), py::arg("out"),
        py::arg("stream") = 0);
  py::dict q;
  q["forward_mask"] = static_cast<int>(EnvQuery::kForwardMask);
  q["backward_mask"] = static_cast<int>(EnvQuery::kBackwardMask);
  q["encode"] = static_cast<int>(EnvQuery::kEncode);
  q["log_reward"] = static_cast<int>(EnvQuery::kLogReward);
  q["n_parents"] = static_cast<int>(EnvQuery::kNParents);
  q["step"] = static_cast<int>(EnvQuery::kStep);
  q["backward_step"] = static_cast<int>(EnvQuery::kBackwardStep);
  q["is_initial"] = static_cast<int>(EnvQuery::kIsInitial);
  q["initial"] = static_cast<int>(EnvQuery::kInitial);
  q["log_reward_delta"] = static_cast<int>(EnvQuery::kLogRewardDelta);
  m.attr("ENV_QUERIES") = q;
}

}  // namespace gfn
