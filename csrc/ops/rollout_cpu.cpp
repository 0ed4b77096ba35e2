#include <algorithm>
#include <memory>
#include <type_traits>
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
    const int64_t n = check_states(states, D);
    check_dtype(mask, DType::kBool);
    check_dim(mask, 2);
    check_size(mask, 0, n, "one row per state");
    check_size(mask, 1, A, "the environment's n_actions");
    check_same_device(states, mask);
    check_row_matrix(logits, states, n, A, "the environment's n_actions");
    const int64_t* ids = optional_ids(ids_o, states, n);
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
      raise_kernel_error(launch_rows(RolloutStepRow<Env, scalar_t>{env, p, ErrorSink{nullptr}}, n, 256, states, stream),
                         "rollout_step", "row");
    };
    if (logits.dtype == DType::kFloat32) run(float{});
    else run(double{});
  });
}

// The sampler's CPU path as a reusable object. A rollout of n trajectories is recorded step-major
// into buffers it owns (the features, which the policy reads, in a torch tensor handed over once),
// so a step costs one call that validates only the logits, and pack() writes the packed
// trajectories with a counting sort by trajectory id in one pass. The sampling math is the same
// sample_action / apply_action as the functional op, so both paths draw the same samples.
class RolloutRecorder {
 public:
  virtual ~RolloutRecorder() = default;
  virtual int64_t start(int64_t n, uint64_t seed, double temperature, double epsilon) = 0;
  virtual int64_t step(py::handle logits) = 0;
  virtual void pack(py::handle states, py::handle actions, py::handle offsets, py::handle log_reward, py::handle mask,
                    py::handle features, py::handle log_prob, py::handle log_pb) = 0;
  int64_t capacity() const { return cap_; }
  int64_t rows() const { return pos_ + m_; }
  py::object features() const { return features_obj_; }

 protected:
  py::object features_obj_;  // the record_features tensor: keeps the buffer alive
  int64_t cap_ = 0, n_ = 0, pos_ = 0, m_ = 0;
  uint64_t seed_ = 0, t_ = 0;
  double temperature_ = 1.0, epsilon_ = 0.0;
  bool started_ = false;
};

template <class Env>
class RolloutRecorderImpl final : public RolloutRecorder {
 public:
  RolloutRecorderImpl(const Env& env, py::handle features_o) : env_(env) {
    const int64_t F = env.feature_dim();
    TensorArg rf = tensor_arg(features_o, "record_features");
    GFN_CHECK_TYPE(!rf.cuda, "record_features must be a CPU tensor");
    check_dtype(rf, DType::kFloat32);
    check_dim(rf, 2);
    check_size(rf, 1, F, "the environment's feature_dim");
    cap_ = rf.size(0);
    rf_ = rf.data<float>();
    features_obj_ = py::reinterpret_borrow<py::object>(features_o);
    const size_t c = static_cast<size_t>(cap_);
    rs_.resize(c * env.state_dim());
    rm_.reset(new bool[c * env.n_actions()]);
    rid_.resize(c);
    ract_.resize(c);
    rlp_.resize(c);
    src_.reserve(c);
    neg_log_.resize(static_cast<size_t>(env.max_parents()) + 1);
    for (size_t k = 0; k < neg_log_.size(); ++k) neg_log_[k] = k > 1 ? -std::log(static_cast<double>(k)) : 0.0;
  }

  int64_t start(int64_t n, uint64_t seed, double temperature, double epsilon) override {
    check_sampling(temperature, epsilon);
    GFN_CHECK(n >= 0, "n must be >= 0, got ", n);
    GFN_CHECK(n <= cap_ / std::max(1, env_.max_length()), "record buffers are too small for ", n,
              " trajectories of up to ", env_.max_length(), " rows: capacity ", cap_);
    n_ = n, pos_ = 0, m_ = n, t_ = 0, seed_ = seed, temperature_ = temperature, epsilon_ = epsilon;
    const int D = env_.state_dim(), A = env_.n_actions(), F = env_.feature_dim();
    if (n > 0) {
      env_.initial(rs_.data());
      env_.forward_mask(rs_.data(), rm_.get());
      env_.encode(rs_.data(), rf_);
    }
    for (int64_t i = 1; i < n; ++i) {
      std::copy(rs_.data(), rs_.data() + D, rs_.data() + i * D);
      std::copy(rm_.get(), rm_.get() + A, rm_.get() + i * A);
      std::copy(rf_, rf_ + F, rf_ + i * F);
    }
    for (int64_t i = 0; i < n; ++i) rid_[static_cast<size_t>(i)] = i;
    started_ = true;
    return n;
  }

  int64_t step(py::handle logits_o) override {
    GFN_CHECK(started_ && m_ > 0, "rollout step called with no active trajectories (call start first)");
    const int64_t D = env_.state_dim(), A = env_.n_actions(), F = env_.feature_dim();
    TensorArg logits = tensor_arg(logits_o, "logits");
    GFN_CHECK_TYPE(!logits.cuda, "logits must be on the CPU for the recording rollout");
    check_float(logits);
    check_dim(logits, 2);
    check_size(logits, 0, m_, "one row per active trajectory");
    check_size(logits, 1, A, "the environment's n_actions");
    unsigned long long slot = kNoError;
    bool overflow = false;
    int64_t n_next = 0;
    const int64_t base = pos_ + m_;
    {
      py::gil_scoped_release nogil;  // once per step: sample, compact, then write the next rows
      if (logits.dtype == DType::kFloat32) sample_rows(logits.data<float>(), &slot);
      else sample_rows(logits.data<double>(), &slot);
      if (slot == kNoError) {
        // Stable compaction of the rows that continue (serial: one pass over m flags).
        src_.clear();
        for (int64_t i = pos_; i < base; ++i)
          if (!env_.is_stop(ract_[static_cast<size_t>(i)])) src_.push_back(i);
        n_next = static_cast<int64_t>(src_.size());
        overflow = base + n_next > cap_;
      }
      if (slot == kNoError && !overflow) {
        int32_t* rs = rs_.data();
        bool* rm = rm_.get();
        int64_t* rid = rid_.data();
        const int64_t* ract = ract_.data();
        const int64_t* src = src_.data();
        float* rf = rf_;
        const Env env = env_;
        parallel_for(n_next, 256, [&](int64_t j) {
          const int64_t r = src[j], w = base + j;
          bool done;
          apply_action(env, rs + r * D, ract[r], rs + w * D, rm + w * A, rf + w * F, &done);
          rid[w] = rid[r];
        });
      }
    }
    if (slot != kNoError) {
      started_ = false;
      raise_kernel_error(slot, "rollout", "active row");
    }
    if (overflow) {
      started_ = false;
      throw ValueError(str("rollout: trajectories are longer than the environment's max_length (", env_.max_length(), ")"));
    }
    pos_ = base, m_ = n_next, ++t_;
    return n_next;
  }

  void pack(py::handle states_o, py::handle actions_o, py::handle offsets_o, py::handle log_reward_o, py::handle mask_o,
            py::handle features_o, py::handle log_prob_o, py::handle log_pb_o) override {
    GFN_CHECK(started_ && m_ == 0, "pack called before the rollout finished");
    const int64_t D = env_.state_dim(), A = env_.n_actions(), F = env_.feature_dim();
    const int64_t T = pos_, n = n_;
    TensorArg st = tensor_arg(states_o, "states"), ac = tensor_arg(actions_o, "actions"),
              of = tensor_arg(offsets_o, "offsets"), lr = tensor_arg(log_reward_o, "log_reward"),
              mk = tensor_arg(mask_o, "mask"), ft = tensor_arg(features_o, "features"),
              lp = tensor_arg(log_prob_o, "log_prob"), lb = tensor_arg(log_pb_o, "log_pb");
    for (const TensorArg* t : {&st, &ac, &of, &lr, &mk, &ft, &lp, &lb})
      GFN_CHECK_TYPE(!t->cuda, t->name, " must be a CPU tensor");
    check_dtype(st, DType::kInt32);
    check_dtype(ac, DType::kInt64);
    check_dtype(of, DType::kInt64);
    check_dtype(mk, DType::kBool);
    check_dtype(ft, DType::kFloat32);
    check_float(lr);
    check_float(lp);
    check_float(lb);
    GFN_CHECK(st.numel == T * D && ac.numel == T && of.numel == n + 1 && lr.numel == n && mk.numel == T * A &&
                  ft.numel == T * F && lp.numel == T && lb.numel == T,
              "pack: outputs must hold the rollout's ", T, " rows and ", n, " trajectories");
    py::gil_scoped_release nogil;
    // Counting sort by trajectory id; rows are recorded step by step, so a trajectory's rows stay in order.
    int64_t* off = of.data<int64_t>();
    std::fill(off, off + n + 1, int64_t{0});
    for (int64_t r = 0; r < T; ++r) ++off[rid_[static_cast<size_t>(r)] + 1];
    for (int64_t i = 0; i < n; ++i) off[i + 1] += off[i];
    dst_.resize(static_cast<size_t>(T));
    {
      std::vector<int64_t> cursor(off, off + n);
      for (int64_t r = 0; r < T; ++r) dst_[static_cast<size_t>(r)] = cursor[static_cast<size_t>(rid_[static_cast<size_t>(r)])]++;
    }
    int32_t* s = st.data<int32_t>();
    int64_t* a = ac.data<int64_t>();
    bool* m = mk.data<bool>();
    float* f = ft.data<float>();
    const int32_t* rs = rs_.data();
    const bool* rm = rm_.get();
    const int64_t* dst = dst_.data();
    const int64_t* ract = ract_.data();
    const double* rlp = rlp_.data();
    const float* rf = rf_;
    auto write = [&](auto* lpo, auto* lbo, auto* lro) {
      using LP = std::remove_pointer_t<decltype(lpo)>;
      using LB = std::remove_pointer_t<decltype(lbo)>;
      using LR = std::remove_pointer_t<decltype(lro)>;
      parallel_for(T, 2048, [&](int64_t r) {
        const int64_t w = dst[r];
        std::copy(rs + r * D, rs + (r + 1) * D, s + w * D);
        std::copy(rm + r * A, rm + (r + 1) * A, m + w * A);
        std::copy(rf + r * F, rf + (r + 1) * F, f + w * F);
        a[w] = ract[r];
        lpo[w] = static_cast<LP>(rlp[r]);
      });
      // uniform P_B: log P_B(s_t | s_{t+1}) = -log #parents(s_{t+1}) on move rows, 0 on stop rows
      const Env env = env_;
      parallel_for(n, 256, [&](int64_t i) {
        const int64_t last = off[i + 1] - 1;
        for (int64_t t = off[i]; t < last; ++t) lbo[t] = static_cast<LB>(neg_log_[env.n_parents(s + (t + 1) * D)]);
        lbo[last] = LB(0);
        lro[i] = static_cast<LR>(env.log_reward(s + last * D));
      });
    };
    auto with_lr = [&](auto* lpo, auto* lbo) {
      if (lr.dtype == DType::kFloat32) write(lpo, lbo, lr.data<float>());
      else write(lpo, lbo, lr.data<double>());
    };
    auto with_lb = [&](auto* lpo) {
      if (lb.dtype == DType::kFloat32) with_lr(lpo, lb.data<float>());
      else with_lr(lpo, lb.data<double>());
    };
    if (lp.dtype == DType::kFloat32) with_lb(lp.data<float>());
    else with_lb(lp.data<double>());
    started_ = false;
  }

 private:
  template <typename scalar_t>
  void sample_rows(const scalar_t* logits, unsigned long long* slot) {
    ErrorSink err{slot};
    const int64_t D = env_.state_dim(), A = env_.n_actions(), pos = pos_;
    const Env env = env_;
    const int32_t* rs = rs_.data();
    const bool* rm = rm_.get();
    const int64_t* rid = rid_.data();
    int64_t* ract = ract_.data();
    double* rlp = rlp_.data();
    const uint64_t seed = seed_, offset = t_;
    const double temperature = temperature_, epsilon = epsilon_;
    parallel_for(m_, 256, [&](int64_t i) {
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
      // the functional op rounds log_prob to the logits' dtype; so does this path, before pack
      rlp[r] = static_cast<double>(static_cast<scalar_t>(lp));
    });
  }

  Env env_;
  float* rf_ = nullptr;
  std::vector<int32_t> rs_;
  std::unique_ptr<bool[]> rm_;
  std::vector<int64_t> rid_, ract_, src_, dst_;
  std::vector<double> rlp_;
  std::vector<double> neg_log_;
};

static std::unique_ptr<RolloutRecorder> make_recorder(py::handle env_obj, py::handle features) {
  EnvSpec spec = env_spec_arg(env_obj);
  return GFN_DISPATCH_ENV(spec, Env, [&]() -> std::unique_ptr<RolloutRecorder> {
    return std::unique_ptr<RolloutRecorder>(new RolloutRecorderImpl<Env>(Env::from_spec(spec), features));
  });
}

GFN_BINDINGS(bind_rollout) {
  m.def("rollout_step", &rollout_step, py::arg("env"), py::arg("states"), py::arg("mask"), py::arg("logits"), py::arg("ids"),
        py::arg("seed"), py::arg("offset"), py::arg("temperature"), py::arg("epsilon"), py::arg("actions"),
        py::arg("log_prob"), py::arg("next_states"), py::arg("next_mask"), py::arg("features"), py::arg("done"),
        py::arg("stream") = 0);
  py::class_<RolloutRecorder>(m, "RolloutRecorder",
                              "Recording CPU rollout: start(n, seed, temperature, epsilon) -> n; step(logits) -> "
                              "rows still active; pack(states, actions, offsets, log_reward, mask, features, log_prob, "
                              "log_pb) writes the packed trajectories. Features of the active rows are "
                              "record_features[rows() - m : rows()].")
      .def(py::init(&make_recorder), py::arg("env"), py::arg("record_features"))
      .def("start", &RolloutRecorder::start, py::arg("n"), py::arg("seed"), py::arg("temperature"), py::arg("epsilon"))
      .def("step", &RolloutRecorder::step, py::arg("logits"))
      .def("pack", &RolloutRecorder::pack, py::arg("states"), py::arg("actions"), py::arg("offsets"),
           py::arg("log_reward"), py::arg("mask"), py::arg("features"), py::arg("log_prob"), py::arg("log_pb"))
      .def_property_readonly("capacity", &RolloutRecorder::capacity)
      .def_property_readonly("rows", &RolloutRecorder::rows)
      .def_property_readonly("features", &RolloutRecorder::features);
}

}  // namespace gfn
