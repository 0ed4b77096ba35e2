#include <pybind11/numpy.h>

#include <algorithm>
#include <memory>
#include <type_traits>
#include <vector>

#include "common/launch_rows.h"
#include "common/registry.h"
#include "common/tensor_arg.h"
#include "envs/handle.h"
#include "ops/mlp_rollout.h"
#include "ops/rollout.h"

namespace gfn {

static void check_sampling(double temperature, double epsilon) {
  GFN_CHECK(temperature > 0.0 && temperature < INFINITY, "temperature must be a finite number > 0, got ", temperature);
  GFN_CHECK(epsilon >= 0.0 && epsilon <= 1.0, "epsilon must be in [0, 1], got ", epsilon);
}

// A bool [n, A] mask on the device of `ref`.
static void check_mask(const TensorArg& mask, const TensorArg& ref, int64_t n, int64_t A) {
  check_dtype(mask, DType::kBool);
  check_dim(mask, 2);
  check_size(mask, 0, n, "one row per state");
  check_size(mask, 1, A, "the number of actions");
  check_same_device(ref, mask);
}

// The functional rollout step behind torch.ops.gfncore.rollout_step: every row is written.
static void rollout_step(py::handle env_obj, py::handle states_o, py::handle mask_o, py::handle logits_o, py::handle ids_o,
                         uint64_t seed, uint64_t offset, double temperature, double epsilon, py::handle actions_o,
                         py::handle log_prob_o, py::handle next_states_o, py::handle next_mask_o, py::handle features_o,
                         py::handle done_o, intptr_t stream) {
  const EnvHandle& h = env_arg(env_obj);
  check_sampling(temperature, epsilon);
  with_env(h, [&](const auto& env) {
    using Env = std::decay_t<decltype(env)>;
    const int64_t D = env.state_dim(), A = env.n_actions(), F = env.feature_dim();
    TensorArg states = tensor_arg(states_o, "states"), mask = tensor_arg(mask_o, "mask"),
              logits = tensor_arg(logits_o, "logits");
    const int64_t n = check_states(states, D);
    check_mask(mask, states, n, A);
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
      RolloutParams<scalar_t> p{states.data<int32_t>(), mask.data<uint8_t>(), logits.data<scalar_t>(), ids, seed, offset,
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

// The sampling rule alone (no environment): actions [n] and their log-probabilities under the
// tempered, epsilon-mixed masked softmax, with the same Philox draws as rollout_step.
static void sample_actions(py::handle mask_o, py::handle logits_o, py::handle ids_o, uint64_t seed, uint64_t offset,
                           double temperature, double epsilon, py::handle actions_o, py::handle log_prob_o,
                           intptr_t stream) {
  check_sampling(temperature, epsilon);
  TensorArg logits = tensor_arg(logits_o, "logits"), mask = tensor_arg(mask_o, "mask");
  check_cuda_built(logits);
  check_float(logits);
  check_dim(logits, 2);
  const int64_t n = logits.size(0), A = logits.size(1);
  GFN_CHECK(A >= 1 && A <= (int64_t{1} << 30), "logits must have between 1 and 2^30 columns, got shape ", logits.shape_str());
  check_mask(mask, logits, n, A);
  const int64_t* ids = optional_ids(ids_o, logits, n);
  TensorArg actions = tensor_arg(actions_o, "actions"), log_prob = tensor_arg(log_prob_o, "log_prob");
  check_dtype(actions, DType::kInt64);
  check_same_dtype(log_prob, logits);
  GFN_CHECK(actions.numel == n && log_prob.numel == n, "actions and log_prob must have n elements");
  check_same_device(logits, actions);
  check_same_device(logits, log_prob);
  auto run = [&](auto tag) {
    using scalar_t = decltype(tag);
    SampleParams<scalar_t> p{mask.data<uint8_t>(), logits.data<scalar_t>(), ids, seed, offset, temperature, epsilon,
                             actions.data<int64_t>(), log_prob.data<scalar_t>()};
    raise_kernel_error(
        launch_rows(SampleActionsRow<scalar_t>{MaskOnly{static_cast<int>(A)}, p, ErrorSink{nullptr}}, n, 256, logits, stream),
        "sample_actions", "row");
  };
  if (logits.dtype == DType::kFloat32) run(float{});
  else run(double{});
}

// The sampler's CPU path as a reusable object. A rollout of n trajectories is recorded step-major
// into buffers it owns, so a step costs one call that validates only the logits, and pack() writes
// the packed trajectories with a counting sort by trajectory id in one pass. The buffers the policy
// reads (features, and trajectory ids for contexts) are numpy arrays created here and handed to
// Python (zero-copy, not resizable): growing allocates new arrays and bumps `generation`, so a
// view Python still holds is stale, never dangling. The sampling math is the same sample_action /
// apply_action as the functional op, so both paths draw the same samples.
class RolloutRecorder {
 public:
  virtual ~RolloutRecorder() = default;
  virtual int64_t start(int64_t n, uint64_t seed, double temperature, double epsilon, uint64_t first_id) = 0;
  virtual int64_t step(py::handle logits) = 0;
  // Every remaining step in one call, the policy being an MLP run here (ops/mlp_rollout.h).
  // With activation buffers (x [cap, F], then one [cap, width] per trunk layer) each row's input
  // and hidden outputs are kept at its recorded row; it returns early, with the rows still active,
  // when the next step would not fit in cap rows (the caller grows them and calls again).
  virtual int64_t run_mlp(const MlpForward& mlp, float* x_rows, const std::vector<float*>& hidden, int64_t cap) = 0;
  virtual void pack(py::handle states, py::handle actions, py::handle offsets, py::handle mask, py::handle features,
                    py::handle log_prob, py::handle log_pb, py::handle terminal) = 0;
  int64_t capacity() const { return cap_; }
  int64_t rows() const { return pos_ + m_; }
  int64_t position() const { return pos_; }
  int64_t active() const { return m_; }
  int64_t generation() const { return generation_; }
  py::object features() const { return features_; }
  py::object ids() const { return ids_; }
  int64_t feature_dim() const { return feature_dim_; }
  int64_t n_actions() const { return n_actions_; }

 protected:
  py::object env_obj_;            // the _C.Env: keeps the struct's pointees alive
  py::object features_, ids_;     // numpy arrays owned here (and by any view Python holds)
  int64_t cap_ = 0, n_ = 0, pos_ = 0, m_ = 0, generation_ = 0, feature_dim_ = 0, n_actions_ = 0;
  uint64_t seed_ = 0, t_ = 0, first_id_ = 0;
  double temperature_ = 1.0, epsilon_ = 0.0;
  bool started_ = false;
};

template <class Env>
class RolloutRecorderImpl final : public RolloutRecorder {
 public:
  RolloutRecorderImpl(py::handle env_obj, const Env& env, int64_t capacity) : env_(env) {
    env_obj_ = py::reinterpret_borrow<py::object>(env_obj);
    feature_dim_ = env.feature_dim(), n_actions_ = env.n_actions();
    neg_log_.resize(static_cast<size_t>(std::max(env.max_parents(), env.n_backward_actions())) + 1);
    for (size_t k = 0; k < neg_log_.size(); ++k) neg_log_[k] = k > 1 ? -std::log(static_cast<double>(k)) : 0.0;
    grow(std::max<int64_t>(capacity, 1));
  }

  int64_t start(int64_t n, uint64_t seed, double temperature, double epsilon, uint64_t first_id) override {
    check_sampling(temperature, epsilon);
    GFN_CHECK(n >= 0 && n <= (int64_t{1} << 40), "n must be in [0, 2^40], got ", n);
    GFN_CHECK(first_id <= (uint64_t{1} << 62), "first_id must be in [0, 2^62], got ", first_id);
    started_ = false;
    grow(2 * n);  // the first step writes up to n more rows after the n initial ones
    const EnvHandle& h = env_arg(env_obj_);
    reset_callbacks(h);
    n_ = n, pos_ = 0, m_ = n, t_ = 0, seed_ = seed, temperature_ = temperature, epsilon_ = epsilon;
    first_id_ = first_id;
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
    for (int64_t i = 0; i < n; ++i) rid_[i] = i;
    check_callbacks(h);
    started_ = true;
    return n;
  }

  int64_t step(py::handle logits_o) override {
    GFN_CHECK(started_ && m_ > 0, "rollout step called with no active trajectories (call start first)");
    const int64_t A = env_.n_actions();
    TensorArg logits = tensor_arg(logits_o, "logits");
    GFN_CHECK_TYPE(!logits.cuda, "logits must be on the CPU for the recording rollout");
    check_float(logits);
    check_dim(logits, 2);
    check_size(logits, 0, m_, "one row per active trajectory");
    check_size(logits, 1, A, "the environment's n_actions");
    if (logits.dtype == DType::kFloat32) return advance(logits.data<float>());
    return advance(logits.data<double>());
  }

  int64_t run_mlp(const MlpForward& mlp, float* x_rows, const std::vector<float*>& hidden, int64_t cap) override {
    GFN_CHECK(started_, "run_mlp called before start");
    const int64_t A = env_.n_actions(), F = env_.feature_dim();
    const int nt = mlp.n_trunk();
    std::vector<float*> hid(static_cast<size_t>(nt));
    scratch_.resize(static_cast<size_t>(nt));
    while (m_ > 0) {
      if (x_rows && pos_ + m_ > cap) return m_;
      logits_.resize(static_cast<size_t>(m_ * A));
      for (int l = 0; l < nt; ++l) {
        const int64_t w = mlp.layers[static_cast<size_t>(l)].out;
        if (x_rows) {
          hid[static_cast<size_t>(l)] = hidden[static_cast<size_t>(l)] + pos_ * w;
        } else {
          scratch_[static_cast<size_t>(l)].resize(static_cast<size_t>(m_ * w));
          hid[static_cast<size_t>(l)] = scratch_[static_cast<size_t>(l)].data();
        }
      }
      {
        py::gil_scoped_release nogil;
        const float* x = rf_ + pos_ * F;
        if (x_rows) std::copy(x, x + m_ * F, x_rows + pos_ * F);
        mlp.forward(x, m_, hid.data(), logits_.data());
      }
      advance(logits_.data());
    }
    return 0;
  }

  // One step from the active rows' logits: sample, compact, write the next rows.
  template <typename scalar_t>
  int64_t advance(const scalar_t* logits) {
    const int64_t D = env_.state_dim(), A = env_.n_actions(), F = env_.feature_dim();
    grow(pos_ + 2 * m_);  // room for up to m_ next rows, with the GIL held (it may allocate arrays)
    const EnvHandle& h = env_arg(env_obj_);
    unsigned long long slot = kNoError;
    int64_t n_next = 0;
    const int64_t base = pos_ + m_;
    {
      py::gil_scoped_release nogil;  // once per step: sample, compact, then write the next rows
      sample_rows(logits, &slot);
      if (slot == kNoError) {
        // Stable compaction of the rows that continue (serial: one pass over m flags).
        src_.clear();
        for (int64_t i = pos_; i < base; ++i)
          if (!env_.is_stop(ract_[i])) src_.push_back(i);
        n_next = static_cast<int64_t>(src_.size());
      }
      if (slot == kNoError && n_next > 0 && t_ + 2 <= static_cast<uint64_t>(env_.max_length())) {
        int32_t* rs = rs_.data();
        bool* rm = rm_.get();
        int64_t* rid = rid_;
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
      check_callbacks(h);
      raise_kernel_error(slot, "rollout", "active row");
    }
    check_callbacks_or_stop(h);
    if (n_next > 0 && t_ + 2 > static_cast<uint64_t>(env_.max_length())) {
      started_ = false;
      throw ValueError(str("rollout: trajectories are longer than the environment's max_length (", env_.max_length(),
                           "): its steps never reach a state where only stop is legal (a cycle?)"));
    }
    if (n_next > 0) check_new_rows(base, n_next);
    pos_ = base, m_ = n_next, ++t_;
    return n_next;
  }

  void pack(py::handle states_o, py::handle actions_o, py::handle offsets_o, py::handle mask_o, py::handle features_o,
            py::handle log_prob_o, py::handle log_pb_o, py::handle terminal_o) override {
    GFN_CHECK(started_ && m_ == 0, "pack called before the rollout finished");
    const int64_t D = env_.state_dim(), A = env_.n_actions(), F = env_.feature_dim();
    const int64_t T = pos_, n = n_;
    TensorArg st = tensor_arg(states_o, "states"), ac = tensor_arg(actions_o, "actions"),
              of = tensor_arg(offsets_o, "offsets"), mk = tensor_arg(mask_o, "mask"), ft = tensor_arg(features_o, "features"),
              lp = tensor_arg(log_prob_o, "log_prob"), lb = tensor_arg(log_pb_o, "log_pb");
    for (const TensorArg* t : {&st, &ac, &of, &mk, &ft, &lp, &lb}) GFN_CHECK_TYPE(!t->cuda, t->name, " must be a CPU tensor");
    check_dtype(st, DType::kInt32);
    check_dtype(ac, DType::kInt64);
    check_dtype(of, DType::kInt64);
    check_dtype(mk, DType::kBool);
    check_dtype(ft, DType::kFloat32);
    check_float(lp);
    check_float(lb);
    GFN_CHECK(st.numel == T * D && ac.numel == T && of.numel == n + 1 && mk.numel == T * A && ft.numel == T * F &&
                  lp.numel == T && lb.numel == T,
              "pack: outputs must hold the rollout's ", T, " rows and ", n, " trajectories");
    int32_t* term = nullptr;  // optional: the finished objects x [n, D], what the reward is computed on
    if (!terminal_o.is_none()) {
      TensorArg tm = tensor_arg(terminal_o, "terminal");
      GFN_CHECK_TYPE(!tm.cuda, "terminal must be a CPU tensor");
      check_dtype(tm, DType::kInt32);
      GFN_CHECK(tm.numel == n * D, "pack: terminal must hold ", n, " states");
      term = tm.data<int32_t>();
    }
    const EnvHandle& h = env_arg(env_obj_);
    unsigned long long unmarked = kNoError;
    {
      py::gil_scoped_release nogil;
      // Counting sort by trajectory id; rows are recorded step by step, so a trajectory's rows stay in order.
      int64_t* off = of.data<int64_t>();
      std::fill(off, off + n + 1, int64_t{0});
      for (int64_t r = 0; r < T; ++r) ++off[rid_[r] + 1];
      for (int64_t i = 0; i < n; ++i) off[i + 1] += off[i];
      dst_.resize(static_cast<size_t>(T));
      {
        std::vector<int64_t> cursor(off, off + n);
        for (int64_t r = 0; r < T; ++r) dst_[static_cast<size_t>(r)] = cursor[static_cast<size_t>(rid_[r])]++;
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
      auto write = [&](auto* lpo, auto* lbo) {
        using LP = std::remove_pointer_t<decltype(lpo)>;
        using LB = std::remove_pointer_t<decltype(lbo)>;
        parallel_for(T, 2048, [&](int64_t r) {
          const int64_t w = dst[r];
          std::copy(rs + r * D, rs + (r + 1) * D, s + w * D);
          std::copy(rm + r * A, rm + (r + 1) * A, m + w * A);
          std::copy(rf + r * F, rf + (r + 1) * F, f + w * F);
          a[w] = ract[r];
          lpo[w] = static_cast<LP>(rlp[r]);
        });
        // uniform P_B: log P_B(s_t | s_{t+1}) = -log #parents(s_{t+1}) on move rows, 0 on stop rows.
        // User code (a callback environment) is also checked to mark each move in the child's
        // backward mask: otherwise P_B, and training, would be silently wrong.
        const Env env = env_;
        const double* neg_log = neg_log_.data();
        const int64_t n_log = static_cast<int64_t>(neg_log_.size());
        ErrorSink err{&unmarked};
        parallel_for(n, 256, [&](int64_t i) {
          const int64_t last = off[i + 1] - 1;
          for (int64_t t = off[i]; t < last; ++t) {
            const int32_t* child = s + (t + 1) * D;
            if constexpr (std::is_same_v<Env, CallbackEnv>) {
              if (!env.backward_legal(child, env.backward_action_of(a[t]))) err.report(t, kIllegalAction);
            }
            const int64_t c = env.n_parents(child);
            lbo[t] = static_cast<LB>(c >= 0 && c < n_log ? neg_log[c] : -std::log(static_cast<double>(c > 1 ? c : 1)));
          }
          lbo[last] = LB(0);
          if (term) std::copy(s + last * D, s + (last + 1) * D, term + i * D);
        });
      };
      auto with_lb = [&](auto* lpo) {
        if (lb.dtype == DType::kFloat32) write(lpo, lb.data<float>());
        else write(lpo, lb.data<double>());
      };
      if (lp.dtype == DType::kFloat32) with_lb(lp.data<float>());
      else with_lb(lp.data<double>());
    }
    started_ = false;
    check_callbacks(h);
    if (unmarked != kNoError)
      throw ValueError(str("rollout: packed row ", unmarked >> 8, ": the environment's backward_mask does not mark the "
                           "move that led into the next state (run gfncore.envs.check_env(env))"));
  }

 private:
  // Grows every buffer to hold at least `rows` rows (geometrically), keeping the recorded rows.
  void grow(int64_t rows) {
    if (rows <= cap_) return;
    const int64_t D = env_.state_dim(), A = env_.n_actions(), F = env_.feature_dim();
    const int64_t cap = std::max<int64_t>(rows, cap_ + cap_ / 2);
    GFN_CHECK(cap <= (int64_t{1} << 40) / std::max<int64_t>(1, F + D + A), "rollout: ", cap,
              " recorded rows would not fit in memory");
    const int64_t keep = pos_ + m_;
    py::array_t<float> feats(std::vector<py::ssize_t>{static_cast<py::ssize_t>(cap), static_cast<py::ssize_t>(F)});
    py::array_t<int64_t> ids(std::vector<py::ssize_t>{static_cast<py::ssize_t>(cap)});
    float* nf = feats.mutable_data();
    int64_t* ni = ids.mutable_data();
    if (started_ && keep > 0) {
      std::copy(rf_, rf_ + keep * F, nf);
      std::copy(rid_, rid_ + keep, ni);
    }
    std::unique_ptr<bool[]> nm(new bool[static_cast<size_t>(cap * A)]);
    if (started_ && keep > 0) std::copy(rm_.get(), rm_.get() + keep * A, nm.get());
    rm_ = std::move(nm);
    rs_.resize(static_cast<size_t>(cap * D));
    ract_.resize(static_cast<size_t>(cap));
    rlp_.resize(static_cast<size_t>(cap));
    src_.reserve(static_cast<size_t>(cap));
    features_ = feats, ids_ = ids;
    rf_ = nf, rid_ = ni;
    cap_ = cap;
    ++generation_;
  }

  // A callback environment's failure stops the rollout (the recorded rows are not trusted).
  void check_callbacks_or_stop(const EnvHandle& h) {
    try {
      check_callbacks(h);
    } catch (...) {
      started_ = false;
      throw;
    }
  }

  // Environments that step outside the state space (a bug in a callback environment) are caught
  // here, before the policy reads their features: every new row must be a valid state.
  void check_new_rows(int64_t base, int64_t n_next) {
    if constexpr (std::is_same_v<Env, CallbackEnv>) {
      if (!env_.fn.valid) return;
      const int64_t D = env_.state_dim();
      for (int64_t j = 0; j < n_next; ++j)
        if (!env_.valid(rs_.data() + (base + j) * D)) {
          started_ = false;
          throw ValueError(str("rollout: step produced a state that valid() rejects (active row ", j, ")"));
        }
    }
  }

  template <typename scalar_t>
  void sample_rows(const scalar_t* logits, unsigned long long* slot) {
    ErrorSink err{slot};
    const int64_t D = env_.state_dim(), A = env_.n_actions(), pos = pos_;
    const Env env = env_;
    const int32_t* rs = rs_.data();
    const uint8_t* rm = reinterpret_cast<const uint8_t*>(rm_.get());
    const int64_t* rid = rid_;
    int64_t* ract = ract_.data();
    double* rlp = rlp_.data();
    const uint64_t seed = seed_, offset = t_, first_id = first_id_;
    const double temperature = temperature_, epsilon = epsilon_;
    parallel_for(m_, 256, [&](int64_t i) {
      const int64_t r = pos + i;
      int64_t a = 0;
      double lp = 0.0;
      // the environment wrote this row's mask itself: no need to re-check legality
      // trajectory i of this batch is trajectory first_id + i of the whole (e.g. multi-process) batch
      int st = sample_action<false>(env, rs + r * D, rm + r * A, logits + i * A, seed, offset,
                                    first_id + static_cast<uint64_t>(rid[r]), temperature, epsilon, &a, &lp);
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
  int64_t* rid_ = nullptr;
  std::vector<int32_t> rs_;
  std::unique_ptr<bool[]> rm_;
  std::vector<int64_t> ract_, src_, dst_;
  std::vector<double> rlp_;
  std::vector<double> neg_log_;
  std::vector<float> logits_;               // run_mlp: the active rows' logits
  std::vector<std::vector<float>> scratch_;  // run_mlp without activation buffers: hidden rows
};

static std::unique_ptr<RolloutRecorder> make_recorder(py::handle env_obj, int64_t capacity) {
  const EnvHandle& h = env_arg(env_obj);
  GFN_CHECK(capacity >= 0 && capacity <= (int64_t{1} << 40), "capacity must be in [0, 2^40], got ", capacity);
  return with_env<std::unique_ptr<RolloutRecorder>>(h, [&](const auto& env) -> std::unique_ptr<RolloutRecorder> {
    using Env = std::decay_t<decltype(env)>;
    return std::unique_ptr<RolloutRecorder>(new RolloutRecorderImpl<Env>(env_obj, env, capacity));
  });
}

// Recorder.run_mlp(layers, activations): validates the MLP's weights ([(weight [out, in], bias
// [out]), ...], float32, CPU, contiguous, chained from the features to the actions) and the
// optional activation buffers, then runs the rest of the rollout in one call.
static int64_t run_mlp(RolloutRecorder& rec, py::list layers, py::object acts) {
  const int64_t F = rec.feature_dim(), A = rec.n_actions();
  MlpForward mlp;
  mlp.sgemm = process_sgemm();
  GFN_CHECK(mlp.sgemm != nullptr, "run_mlp: no BLAS sgemm_ in this process (torch's CPU library exports one)");
  GFN_CHECK(layers.size() >= 2, "run_mlp: layers must hold at least one trunk layer and the head, got ", layers.size());
  int64_t in = F;
  for (size_t l = 0; l < layers.size(); ++l) {
    py::tuple wb = layers[l].cast<py::tuple>();
    GFN_CHECK(wb.size() == 2, "run_mlp: each layer is (weight, bias)");
    TensorArg w = tensor_arg(wb[0], "weight"), b = tensor_arg(wb[1], "bias");
    GFN_CHECK_TYPE(!w.cuda && !b.cuda, "run_mlp: weights must be on the CPU");
    check_dtype(w, DType::kFloat32);
    check_dtype(b, DType::kFloat32);
    check_dim(w, 2);
    check_dim(b, 1);
    check_size(w, 1, in, "the previous layer's width");
    check_size(b, 0, w.size(0), "the layer's outputs");
    GFN_CHECK(w.size(0) >= 1 && w.size(0) <= (int64_t{1} << 20), "run_mlp: layer width out of range");
    mlp.layers.push_back(MlpLayer{w.data<float>(), b.data<float>(), static_cast<int>(in), static_cast<int>(w.size(0))});
    in = w.size(0);
  }
  GFN_CHECK(in == A, "run_mlp: the head must have n_actions = ", A, " outputs, got ", in);
  float* x_rows = nullptr;
  std::vector<float*> hidden;
  int64_t cap = 0;
  if (!acts.is_none()) {
    py::list bufs = acts.cast<py::list>();
    GFN_CHECK(static_cast<int>(bufs.size()) == mlp.n_trunk() + 1, "run_mlp: activations must be the inputs and one ",
              "buffer per trunk layer (", mlp.n_trunk() + 1, " tensors), got ", bufs.size());
    for (size_t l = 0; l < bufs.size(); ++l) {
      TensorArg t = tensor_arg(bufs[l], "activations");
      GFN_CHECK_TYPE(!t.cuda, "run_mlp: activations must be on the CPU");
      check_dtype(t, DType::kFloat32);
      check_dim(t, 2);
      if (l == 0) cap = t.size(0);
      check_size(t, 0, cap, "the same rows as the first buffer");
      check_size(t, 1, l == 0 ? F : mlp.layers[l - 1].out, "the layer's width");
      if (l == 0) x_rows = t.data<float>();
      else hidden.push_back(t.data<float>());
    }
  }
  return rec.run_mlp(mlp, x_rows, hidden, cap);
}

GFN_BINDINGS(bind_rollout) {
  m.def("has_process_blas", [] { return process_sgemm() != nullptr; },
        "Whether torch's BLAS (sgemm_) was found in this process: the one-call MLP rollout needs it.");
  m.def("rollout_step", &rollout_step, py::arg("env"), py::arg("states"), py::arg("mask"), py::arg("logits"), py::arg("ids"),
        py::arg("seed"), py::arg("offset"), py::arg("temperature"), py::arg("epsilon"), py::arg("actions"),
        py::arg("log_prob"), py::arg("next_states"), py::arg("next_mask"), py::arg("features"), py::arg("done"),
        py::arg("stream") = 0);
  m.def("sample_actions", &sample_actions, py::arg("mask"), py::arg("logits"), py::arg("ids"), py::arg("seed"),
        py::arg("offset"), py::arg("temperature"), py::arg("epsilon"), py::arg("actions"), py::arg("log_prob"),
        py::arg("stream") = 0);
  py::class_<RolloutRecorder>(m, "RolloutRecorder",
                              "Recording CPU rollout: start(n, seed, temperature, epsilon) -> n; step(logits) -> "
                              "rows still active; pack(states, actions, offsets, mask, features, log_prob, log_pb) "
                              "writes the packed trajectories. The active rows are [position, position + active) "
                              "of the arrays `features` and `ids` (re-read them when `generation` changes).")
      .def(py::init(&make_recorder), py::arg("env"), py::arg("capacity") = 0)
      .def("start", &RolloutRecorder::start, py::arg("n"), py::arg("seed"), py::arg("temperature"), py::arg("epsilon"),
           py::arg("first_id") = 0)
      .def("step", &RolloutRecorder::step, py::arg("logits"))
      .def("run_mlp", &run_mlp, py::arg("layers"), py::arg("activations") = py::none(),
           "every remaining step in one call for an MLP policy; returns the rows still active (non-zero "
           "only when the activation buffers are full)")
      .def("pack", &RolloutRecorder::pack, py::arg("states"), py::arg("actions"), py::arg("offsets"), py::arg("mask"),
           py::arg("features"), py::arg("log_prob"), py::arg("log_pb"), py::arg("terminal") = py::none())
      .def_property_readonly("capacity", &RolloutRecorder::capacity)
      .def_property_readonly("rows", &RolloutRecorder::rows)
      .def_property_readonly("position", &RolloutRecorder::position)
      .def_property_readonly("active", &RolloutRecorder::active)
      .def_property_readonly("generation", &RolloutRecorder::generation)
      .def_property_readonly("features", &RolloutRecorder::features)
      .def_property_readonly("ids", &RolloutRecorder::ids);
}

}  // namespace gfn
