#include <vector>

#include "common/launch.h"
#include "common/registry.h"
#include "common/tensor_arg.h"
#include "envs/envs.h"
#include "ops/rollout.h"

namespace gfn {

static void check_sampling(double temperature, double epsilon) {
  GFN_CHECK(temperature > 0.0 && temperature < INFINITY, "temperature must be a finite number > 0, got ", temperature);
  GFN_CHECK(epsilon >= 0.0 && epsilon <= 1.0, "epsilon must be in [0, 1], got ", epsilon);
}

// The functional rollout step behind torch.ops.gfncore.rollout_step: every row is written.
static void rollout_step(py::handle env_obj, py::handle states_o, py::handle mask_o, py::handle logits_o, py::handle ids_o,
                         uint64_t seed, uint64_t offset, double temperature, double epsilon, py::handle actions_o,
                         py::handle log_prob_o, py::handle next_states_o, py::handle next_mask_o, py::handle features_o,
                         py::handle done_o, intptr_t stream) {
  EnvSpec spec = env_spec_arg(env_obj);
  check_sampling(temperature, epsilon);
  GFN_DISPATCH_ENV(spec, Env, [&] {
    Env env = Env::from_spec(spec);
    const int64_t D = env.state_dim(), A = env.n_actions(), F = env.feature_dim();
    TensorArg states = tensor_arg(states_o, "states"), mask = tensor_arg(mask_o, "mask"),
              logits = tensor_arg(logits_o, "logits");
    check_cuda_built(states);
    check_dtype(states, DType::kInt32);
    check_dim(states, 2);
    check_size(states, 1, D, "the environment's state_dim");
    const int64_t n = states.size(0);
    check_dtype(mask, DType::kBool);
    check_dim(mask, 2);
    check_size(mask, 0, n, "one row per state");
    check_size(mask, 1, A, "the environment's n_actions");
    check_float(logits);
    check_dim(logits, 2);
    check_size(logits, 0, n, "one row per state");
    check_size(logits, 1, A, "the environment's n_actions");
    check_same_device(states, mask);
    check_same_device(states, logits);
    const int64_t* ids = nullptr;
    if (!ids_o.is_none()) {
      TensorArg t = tensor_arg(ids_o, "ids");
      check_dtype(t, DType::kInt64);
      check_dim(t, 1);
      check_size(t, 0, n, "one id per state");
      check_same_device(states, t);
      ids = t.data<int64_t>();
    }
    TensorArg actions = tensor_arg(actions_o, "actions"), log_prob = tensor_arg(log_prob_o, "log_prob"),
              next_states = tensor_arg(next_states_o, "next_states"), next_mask = tensor_arg(next_mask_o, "next_mask"),
              features = tensor_arg(features_o, "features"), done = tensor_arg(done_o, "done");
    check_dtype(actions, DType::kInt64);
    check_same_dtype(log_prob, logits);
    check_dtype(next_states, DType::kInt32);
    check_dtype(next_mask, DType::kBool);
    check_dtype(features, DType::kFloat32);
    check_dtype(done, DType::kBool);
    GFN_CHECK(actions.numel == n && log_prob.numel == n && done.numel == n, "per-row outputs must have n elements");
    GFN_CHECK(next_states.numel == n * D && next_mask.numel == n * A && features.numel == n * F,
              "next_states, next_mask, features have the wrong sizes");
    for (const TensorArg* t : {&actions, &log_prob, &next_states, &next_mask, &features, &done}) check_same_device(states, *t);
    auto run = [&](auto tag) {
      using scalar_t = decltype(tag);
      RolloutParams<scalar_t> p{states.data<int32_t>(), mask.data<bool>(), logits.data<scalar_t>(), ids, seed, offset,
                                temperature, epsilon, actions.data<int64_t>(), log_prob.data<scalar_t>(),
                                next_states.data<int32_t>(), next_mask.data<bool>(), features.data<float>(),
                                done.data<bool>()};
      unsigned long long e = kNoError;
      if (states.cuda) {
#if GFN_WITH_CUDA
        e = rollout_step_cuda(env, p, n, reinterpret_cast<void*>(stream));
#endif
      } else {
        py::gil_scoped_release nogil;
        e = run_rows_cpu(n, 256, RolloutStepRow<Env, scalar_t>{env, p, ErrorSink{nullptr}});
      }
      raise_kernel_error(e, "rollout_step", "row");
    };
    if (logits.dtype == DType::kFloat32) run(float{});
    else run(double{});
  });
}

// The sampler's CPU path: rows [pos, pos + n) of the record buffers are the states being left.
// Samples their actions in place, then writes the next states of the rows that continue,
// compacted and in order, at [pos + n, pos + n + n_next). Returns n_next. Packed by the caller.
template <class Env, typename scalar_t>
static int64_t rollout_record_impl(const Env& env, int32_t* rs, bool* rm, float* rf, int64_t* rid, int64_t* ract,
                                   scalar_t* rlp, const scalar_t* logits, int64_t pos, int64_t n, uint64_t seed,
                                   uint64_t offset, double temperature, double epsilon) {
  const int64_t D = env.state_dim(), A = env.n_actions(), F = env.feature_dim();
  unsigned long long slot = kNoError;
  ErrorSink err{&slot};
  parallel_for(n, 256, [&](int64_t i) {
    const int64_t r = pos + i;
    int64_t a = 0;
    double lp = 0.0;
    int st = sample_action(env, rs + r * D, rm + r * A, logits + i * A, seed, offset, static_cast<uint64_t>(rid[r]),
                           temperature, epsilon, &a, &lp);
    if (st != kOk) {
      err.report(i, st);
      return;
    }
    ract[r] = a;
    rlp[r] = static_cast<scalar_t>(lp);
  });
  if (slot != kNoError) return -static_cast<int64_t>(slot) - 1;
  // Stable compaction of the rows that continue (serial: one pass over n flags).
  std::vector<int64_t> src;
  src.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    if (!env.is_stop(ract[pos + i])) src.push_back(pos + i);
  const int64_t n_next = static_cast<int64_t>(src.size());
  const int64_t base = pos + n;
  parallel_for(n_next, 256, [&](int64_t j) {
    const int64_t r = src[static_cast<size_t>(j)], w = base + j;
    bool done;
    apply_action(env, rs + r * D, ract[r], rs + w * D, rm + w * A, rf + w * F, &done);
    rid[w] = rid[r];
  });
  return n_next;
}

static int64_t rollout_record(py::handle env_obj, py::handle rs_o, py::handle rm_o, py::handle rf_o, py::handle rid_o,
                              py::handle ract_o, py::handle rlp_o, py::handle logits_o, int64_t pos, int64_t n,
                              uint64_t seed, uint64_t offset, double temperature, double epsilon) {
  EnvSpec spec = env_spec_arg(env_obj);
  check_sampling(temperature, epsilon);
  return GFN_DISPATCH_ENV(spec, Env, [&]() -> int64_t {
    Env env = Env::from_spec(spec);
    const int64_t D = env.state_dim(), A = env.n_actions(), F = env.feature_dim();
    TensorArg rs = tensor_arg(rs_o, "record_states"), rm = tensor_arg(rm_o, "record_mask"),
              rf = tensor_arg(rf_o, "record_features"), rid = tensor_arg(rid_o, "record_ids"),
              ract = tensor_arg(ract_o, "record_actions"), rlp = tensor_arg(rlp_o, "record_log_prob"),
              logits = tensor_arg(logits_o, "logits");
    for (const TensorArg* t : {&rs, &rm, &rf, &rid, &ract, &rlp, &logits})
      GFN_CHECK_TYPE(!t->cuda, t->name, " must be on the CPU for the recording rollout");
    check_dtype(rs, DType::kInt32);
    check_dtype(rm, DType::kBool);
    check_dtype(rf, DType::kFloat32);
    check_dtype(rid, DType::kInt64);
    check_dtype(ract, DType::kInt64);
    check_float(logits);
    check_same_dtype(rlp, logits);
    const int64_t cap = rid.numel;
    GFN_CHECK(rs.numel == cap * D && rm.numel == cap * A && rf.numel == cap * F && ract.numel == cap && rlp.numel == cap,
              "record buffers must all hold the same number of rows");
    GFN_CHECK(pos >= 0 && n >= 0 && pos + 2 * n <= cap, "record buffers are too small: pos=", pos, " n=", n, " capacity=", cap);
    check_dim(logits, 2);
    check_size(logits, 0, n, "one row per active state");
    check_size(logits, 1, A, "the environment's n_actions");
    int64_t r;
    {
      py::gil_scoped_release nogil;
      if (logits.dtype == DType::kFloat32)
        r = rollout_record_impl<Env, float>(env, rs.data<int32_t>(), rm.data<bool>(), rf.data<float>(), rid.data<int64_t>(),
                                            ract.data<int64_t>(), rlp.data<float>(), logits.data<float>(), pos, n, seed,
                                            offset, temperature, epsilon);
      else
        r = rollout_record_impl<Env, double>(env, rs.data<int32_t>(), rm.data<bool>(), rf.data<float>(), rid.data<int64_t>(),
                                             ract.data<int64_t>(), rlp.data<double>(), logits.data<double>(), pos, n, seed,
                                             offset, temperature, epsilon);
    }
    if (r < 0) raise_kernel_error(static_cast<unsigned long long>(-(r + 1)), "rollout", "active row");
    return r;
  });
}

GFN_BINDINGS(bind_rollout) {
  m.def("rollout_step", &rollout_step, py::arg("env"), py::arg("states"), py::arg("mask"), py::arg("logits"), py::arg("ids"),
        py::arg("seed"), py::arg("offset"), py::arg("temperature"), py::arg("epsilon"), py::arg("actions"),
        py::arg("log_prob"), py::arg("next_states"), py::arg("next_mask"), py::arg("features"), py::arg("done"),
        py::arg("stream") = 0);
  m.def("rollout_record", &rollout_record, py::arg("env"), py::arg("record_states"), py::arg("record_mask"),
        py::arg("record_features"), py::arg("record_ids"), py::arg("record_actions"), py::arg("record_log_prob"),
        py::arg("logits"), py::arg("pos"), py::arg("n"), py::arg("seed"), py::arg("offset"), py::arg("temperature"),
        py::arg("epsilon"));
}

}  // namespace gfn
