#include <cmath>

#include "common/launch_rows.h"
#include "common/registry.h"
#include "common/tensor_arg.h"
#include "envs/handle.h"
#include "ops/backward_rollout.h"

namespace gfn {

// The functional backward step behind torch.ops.gfncore.backward_rollout_step: every row is written.
static void backward_rollout_step(py::handle env_obj, py::handle states_o, py::handle logits_o, py::handle ids_o,
                                  uint64_t seed, uint64_t offset, double temperature, double epsilon, py::handle mask_o,
                                  py::handle actions_o, py::handle log_pb_o, py::handle fwd_o, py::handle parents_o,
                                  py::handle done_o, intptr_t stream) {
  const EnvHandle& h = env_arg(env_obj);
  GFN_CHECK(temperature > 0.0 && temperature < INFINITY, "temperature must be a finite number > 0, got ", temperature);
  GFN_CHECK(epsilon >= 0.0 && epsilon <= 1.0, "epsilon must be in [0, 1], got ", epsilon);
  with_env(h, [&](const auto& env) {
    using Env = std::decay_t<decltype(env)>;
    const int64_t D = env.state_dim(), nb = env.n_backward_actions();
    TensorArg states = tensor_arg(states_o, "states"), logits = tensor_arg(logits_o, "logits");
    const int64_t n = check_states(states, D);
    check_row_matrix(logits, states, n, nb, "the environment's n_backward_actions");
    const int64_t* ids = optional_ids(ids_o, states, n);
    TensorArg mask = tensor_arg(mask_o, "mask"), actions = tensor_arg(actions_o, "actions"),
              log_pb = tensor_arg(log_pb_o, "log_pb"), fwd = tensor_arg(fwd_o, "forward_actions"),
              parents = tensor_arg(parents_o, "parents"), done = tensor_arg(done_o, "done");
    check_dtype(mask, DType::kBool);
    check_dtype(actions, DType::kInt64);
    check_same_dtype(log_pb, logits);
    check_dtype(fwd, DType::kInt64);
    check_dtype(parents, DType::kInt32);
    check_dtype(done, DType::kBool);
    GFN_CHECK(actions.numel == n && log_pb.numel == n && fwd.numel == n && done.numel == n,
              "per-row outputs must have n elements");
    GFN_CHECK(mask.numel == n * nb && parents.numel == n * D, "mask, parents have the wrong sizes");
    for (const TensorArg* t : {&mask, &actions, &log_pb, &fwd, &parents, &done}) check_same_device(states, *t);
    auto run = [&](auto tag) {
      using scalar_t = decltype(tag);
      BackwardStepParams<scalar_t> p{states.data<int32_t>(), logits.data<scalar_t>(), ids, seed, offset, temperature,
                                     epsilon, mask.data<bool>(), actions.data<int64_t>(), log_pb.data<scalar_t>(),
                                     fwd.data<int64_t>(), parents.data<int32_t>(), done.data<bool>()};
      raise_kernel_error(launch_rows(BackwardStepRow<Env, scalar_t>{env, p, ErrorSink{nullptr}}, n, 256, states, stream),
                         "backward_rollout_step", "row");
    };
    if (logits.dtype == DType::kFloat32) run(float{});
    else run(double{});
  });
}

GFN_BINDINGS(bind_backward_rollout) {
  m.def("backward_rollout_step", &backward_rollout_step, py::arg("env"), py::arg("states"), py::arg("logits"),
        py::arg("ids"), py::arg("seed"), py::arg("offset"), py::arg("temperature"), py::arg("epsilon"), py::arg("mask"),
        py::arg("actions"), py::arg("log_pb"), py::arg("forward_actions"), py::arg("parents"), py::arg("done"),
        py::arg("stream") = 0);
}

}  // namespace gfn
