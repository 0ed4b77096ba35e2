#include "common/launch_rows.h"
#include "common/registry.h"
#include "common/tensor_arg.h"
#include "envs/handle.h"
#include "ops/parents.h"

namespace gfn {

// parents(env, states [n, D] int32, parents [n, P, D] int32, actions [n, P] int64, counts [n] int64, stream)
static void parents(py::handle env_obj, py::handle states_o, py::handle parents_o, py::handle actions_o,
                    py::handle counts_o, intptr_t stream) {
  const EnvHandle& h = env_arg(env_obj);
  with_env(h, [&](const auto& env) {
    using Env = std::decay_t<decltype(env)>;
    const int64_t D = env.state_dim(), P = env.max_parents();
    TensorArg states = tensor_arg(states_o, "states"), par = tensor_arg(parents_o, "parent_states"),
              act = tensor_arg(actions_o, "parent_actions"), cnt = tensor_arg(counts_o, "counts");
    const int64_t n = check_states(states, D);
    check_dtype(par, DType::kInt32);
    check_dtype(act, DType::kInt64);
    check_dtype(cnt, DType::kInt64);
    GFN_CHECK(par.numel == n * P * D, "parent_states must hold [n, max_parents, state_dim] = [", n, ", ", P, ", ", D,
              "] elements, got shape ", par.shape_str());
    GFN_CHECK(act.numel == n * P, "parent_actions must hold [n, max_parents] = [", n, ", ", P, "] elements, got shape ",
              act.shape_str());
    GFN_CHECK(cnt.numel == n, "counts must hold n = ", n, " elements, got shape ", cnt.shape_str());
    for (const TensorArg* t : {&par, &act, &cnt}) check_same_device(states, *t);
    ParentsParams p{states.data<int32_t>(), par.data<int32_t>(), act.data<int64_t>(), cnt.data<int64_t>()};
    raise_kernel_error(launch_rows(ParentsRow<Env>{env, p, ErrorSink{nullptr}}, n, 1024, states, stream), "parents",
                       "row");
  });
}

GFN_BINDINGS(bind_parents) {
  m.def("parents", &parents, py::arg("env"), py::arg("states"), py::arg("parent_states"), py::arg("parent_actions"),
        py::arg("counts"), py::arg("stream") = 0);
}

}  // namespace gfn
