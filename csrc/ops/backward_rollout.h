// Backward rollout step: from a state s, sample one backward action b ~ P_B(.|s) over s's parents
// (masked softmax of backward logits; zero logits give the uniform P_B), and move to the parent.
// The sampling rule is gfn::sample_action of rollout.h, reused through BackwardView.
#pragma once
#include "common/macros.h"
#include "ops/rollout.h"

namespace gfn {

// The backward moves of an environment presented as if they were forward actions, so that the
// forward sampler (same Philox draws, temperature, epsilon) samples parents without a copy.
template <class Env>
struct BackwardView {
  const Env& env;
  GFN_HD int n_actions() const { return env.n_backward_actions(); }
  GFN_HD bool valid(const int32_t* s) const { return env.valid(s); }
  GFN_HD bool legal(const int32_t* s, int64_t b) const { return env.backward_legal(s, b); }
};

template <typename scalar_t>
struct BackwardStepParams {
  const int32_t* states;    // [n, D], none of them s0
  const scalar_t* logits;   // [n, n_backward_actions]
  const int64_t* ids;       // per-row Philox subsequence; null means the row index
  uint64_t seed, offset;
  double temperature, epsilon;
  bool* mask;               // [n, n_backward_actions] scratch: the backward mask of each state
  int64_t* actions;         // [n] backward action b
  scalar_t* log_pb;         // [n] log P_B(parent | s) under the sampling distribution
  int64_t* forward_actions; // [n] the forward action parent -> s
  int32_t* parents;         // [n, D]
  bool* done;               // [n] the parent is s0
};

template <class Env, typename scalar_t>
struct BackwardStepRow {
  static constexpr bool kCuda = Env::kCuda;
  Env env;
  BackwardStepParams<scalar_t> p;
  ErrorSink err;
  GFN_HD void operator()(int64_t i) const {
    const int D = env.state_dim(), nb = env.n_backward_actions();
    const int32_t* s = p.states + i * D;
    bool* m = p.mask + i * nb;
    if (!env.valid(s)) {
      err.report(i, kInvalidState);
      return;
    }
    env.backward_mask(s, m);
    const uint64_t id = p.ids ? static_cast<uint64_t>(p.ids[i]) : static_cast<uint64_t>(i);
    int64_t b = 0;
    double lp = 0.0;
    int st = sample_action(BackwardView<Env>{env}, s, reinterpret_cast<const uint8_t*>(m), p.logits + i * nb, p.seed, p.offset, id, p.temperature,
                           p.epsilon, &b, &lp);
    if (st != kOk) {
      err.report(i, st);
      return;
    }
    int32_t* ps = p.parents + i * D;
    env.backward_step(s, b, ps);
    p.actions[i] = b;
    p.log_pb[i] = static_cast<scalar_t>(lp);
    p.forward_actions[i] = env.forward_action_of(b);
    p.done[i] = env.is_initial(ps);
  }
};

}  // namespace gfn
