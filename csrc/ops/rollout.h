// Rollout step: masked sampling (temperature, epsilon-uniform) from policy logits, then the
// environment step, next forward mask and encoded features. Shared by CPU and CUDA.
#pragma once
#include <cmath>

#include "common/macros.h"
#include "common/philox.h"

namespace gfn {

// The sampling rule, in double precision so that the plain-PyTorch reference reproduces it:
//   (u0, u1) = uniforms from Philox(seed, subsequence=id, offset)
//   explore if u0 < epsilon: the floor(u1 * k)-th legal action (k legal actions);
//   else the first legal a with u1 * sum_legal exp(z - m) < cumsum_{legal <= a} exp(z - m),
//   z = logits / temperature, m = max legal z.
// Returns the status; writes the action and its log-probability under the sampling distribution.
// Masks are read as bytes (nonzero = legal), so a mask tensor whose bool bytes are not 0/1 is
// still well defined. kCheck re-asks the environment whether the state is valid and the drawn
// action legal: needed when the mask came from the caller, redundant when the environment wrote
// it (the recording sampler), where skipping it saves a callback per row for callback envs.
template <bool kCheck = true, class Env, typename scalar_t>
GFN_HD int sample_action(const Env& env, const int32_t* s, const uint8_t* m, const scalar_t* logit,
                         uint64_t seed, uint64_t offset, uint64_t id, double temperature, double epsilon,
                         int64_t* action, double* log_prob) {
  const int A = env.n_actions();
  if (kCheck && !env.valid(s)) return kInvalidState;
  int k = 0;
  double zmax = -INFINITY;
  for (int a = 0; a < A; ++a) {
    if (!m[a]) continue;
    double z = static_cast<double>(logit[a]);
    if (z != z) return kNanLogit;
    z /= temperature;
    ++k;
    if (z > zmax) zmax = z;
  }
  if (k == 0) return kNoLegalAction;
  if (!(zmax > -INFINITY) || zmax == INFINITY) return kNoMass;
  // exp() dominates a CPU step: action spaces up to kCache keep each term for the cumulative pass
  // (the same values in the same order, so the draw is unchanged). On the host the cache covers
  // the d^2 + 1 actions of a DAG on up to 64 nodes (32 KiB of stack; recomputing the terms made
  // sampling 4x slower at 401 actions); a GPU thread keeps 32.
#if defined(__CUDA_ARCH__)
  constexpr int kCache = 32;
#else
  constexpr int kCache = 4097;
#endif
  double e[kCache];
  const bool cached = A <= kCache;
  double total = 0.0;
  for (int a = 0; a < A; ++a) {
    if (!m[a]) continue;
    const double v = exp(static_cast<double>(logit[a]) / temperature - zmax);
    if (cached) e[a] = v;
    total += v;
  }
  Philox4 r = philox(seed, id, offset);
  double u0 = uniform53(r.x[0], r.x[3]);
  double u1 = uniform53(r.x[1], r.x[2]);
  int64_t chosen = -1;
  if (epsilon > 0.0 && u0 < epsilon) {
    int j = static_cast<int>(u1 * k);
    if (j >= k) j = k - 1;
    for (int a = 0; a < A; ++a) {
      if (!m[a]) continue;
      if (j == 0) { chosen = a; break; }
      --j;
    }
  } else {
    double target = u1 * total, acc = 0.0;
    for (int a = 0; a < A; ++a) {
      if (!m[a]) continue;
      acc += cached ? e[a] : exp(static_cast<double>(logit[a]) / temperature - zmax);
      chosen = a;
      if (target < acc) break;
    }
  }
  if (kCheck && !env.legal(s, chosen)) return kIllegalAction;
  double lp = static_cast<double>(logit[chosen]) / temperature - zmax - log(total);
  if (epsilon > 0.0) lp = log((1.0 - epsilon) * exp(lp) + epsilon / k);
  *action = chosen;
  *log_prob = lp;
  return kOk;
}

// Applies action a to state s: next state, its forward mask and features; stop leaves the state
// as it is (the finished object x), with an all-false mask.
template <class Env>
GFN_HD void apply_action(const Env& env, const int32_t* s, int64_t a, int32_t* ns, bool* nm, float* nf, bool* done) {
  const bool stop = env.is_stop(a);
  if (stop) {
    for (int d = 0; d < env.state_dim(); ++d) ns[d] = s[d];
    for (int j = 0; j < env.n_actions(); ++j) nm[j] = false;
  } else {
    env.step(s, a, ns);
    env.forward_mask(ns, nm);
  }
  env.encode(ns, nf);
  *done = stop;
}

template <typename scalar_t>
struct RolloutParams {
  const int32_t* states;
  const uint8_t* mask;
  const scalar_t* logits;
  const int64_t* ids;  // per-row Philox subsequence (the trajectory id); null means the row index
  uint64_t seed, offset;
  double temperature, epsilon;
  int64_t* actions;
  scalar_t* log_prob;
  int32_t* next_states;
  bool* next_mask;
  float* next_features;
  bool* done;
};

// One row of the functional rollout step (the torch op): every output row is written.
template <class Env, typename scalar_t>
struct RolloutStepRow {
  static constexpr bool kCuda = Env::kCuda;
  Env env;
  RolloutParams<scalar_t> p;
  ErrorSink err;
  GFN_HD void operator()(int64_t i) const {
    const int D = env.state_dim(), A = env.n_actions(), F = env.feature_dim();
    const uint64_t id = p.ids ? static_cast<uint64_t>(p.ids[i]) : static_cast<uint64_t>(i);
    int64_t a = 0;
    double lp = 0.0;
    int st = sample_action(env, p.states + i * D, p.mask + i * A, p.logits + i * A, p.seed, p.offset, id,
                           p.temperature, p.epsilon, &a, &lp);
    if (st != kOk) {
      err.report(i, st);
      return;
    }
    p.actions[i] = a;
    p.log_prob[i] = static_cast<scalar_t>(lp);
    apply_action(env, p.states + i * D, a, p.next_states + i * D, p.next_mask + i * A, p.next_features + i * F,
                 p.done + i);
  }
};

}  // namespace gfn

namespace gfn {

// The sampling rule alone, for environments that step outside the compiled core (Python
// environments): the mask is the only notion of legality, and every row is a valid state.
struct MaskOnly {
  int A;
  GFN_HD int n_actions() const { return A; }
  GFN_HD bool valid(const int32_t*) const { return true; }
  GFN_HD bool legal(const int32_t*, int64_t a) const { return a >= 0 && a < A; }
};

template <typename scalar_t>
struct SampleParams {
  const uint8_t* mask;      // [n, A]
  const scalar_t* logits;   // [n, A]
  const int64_t* ids;       // per-row Philox subsequence; null means the row index
  uint64_t seed, offset;
  double temperature, epsilon;
  int64_t* actions;         // [n]
  scalar_t* log_prob;       // [n]
};

template <typename scalar_t>
struct SampleActionsRow {
  MaskOnly view;
  SampleParams<scalar_t> p;
  ErrorSink err;
  GFN_HD void operator()(int64_t i) const {
    const int A = view.A;
    const uint64_t id = p.ids ? static_cast<uint64_t>(p.ids[i]) : static_cast<uint64_t>(i);
    int64_t a = 0;
    double lp = 0.0;
    int st = sample_action(view, nullptr, p.mask + i * A, p.logits + i * A, p.seed, p.offset, id, p.temperature,
                           p.epsilon, &a, &lp);
    if (st != kOk) {
      err.report(i, st);
      return;
    }
    p.actions[i] = a;
    p.log_prob[i] = static_cast<scalar_t>(lp);
  }
};

}  // namespace gfn
