// Row-wise environment queries (initial state, masks, step, encoding, reward, parent counts),
// shared by CPU and CUDA. Each validates its state row and reports instead of reading out of bounds.
#pragma once
#include <cmath>

#include "common/macros.h"
#include "envs/traits.h"

namespace gfn {

enum class EnvQuery : int {
  kForwardMask = 0,   // out: bool [n, A]
  kBackwardMask = 1,  // out: bool [n, A-1]
  kEncode = 2,        // out: float32 [n, F]
  kLogReward = 3,     // out: float64 [n]
  kNParents = 4,      // out: int64 [n]
  kStep = 5,          // out: int32 [n, D], needs actions
  kBackwardStep = 6,  // out: int32 [n, D], needs (backward) actions
  kIsInitial = 7,     // out: bool [n]
  kInitial = 8,       // out: int32 [n, D], ignores the states' values (their row count is n)
  kLogRewardDelta = 9,  // out: float64 [n], needs actions: log R(step(s, a)) - log R(s) (0 for stop)
};

template <class Env>
struct EnvQueryRow {
  static constexpr bool kCuda = Env::kCuda;
  Env env;
  int query;
  const int32_t* states;
  const int64_t* actions;
  void* out;
  ErrorSink err;
  GFN_HD void operator()(int64_t i) const {
    const int D = env.state_dim();
    const int32_t* s = states + i * D;
    if (static_cast<EnvQuery>(query) == EnvQuery::kInitial) {
      env.initial(static_cast<int32_t*>(out) + i * D);
      return;
    }
    if (!env.valid(s)) {
      err.report(i, kInvalidState);
      return;
    }
    switch (static_cast<EnvQuery>(query)) {
      case EnvQuery::kForwardMask:
        env.forward_mask(s, static_cast<bool*>(out) + i * env.n_actions());
        break;
      case EnvQuery::kBackwardMask:
        env.backward_mask(s, static_cast<bool*>(out) + i * env.n_backward_actions());
        break;
      case EnvQuery::kEncode:
        env.encode(s, static_cast<float*>(out) + i * env.feature_dim());
        break;
      case EnvQuery::kLogReward:
        static_cast<double*>(out)[i] = env.log_reward(s);
        break;
      case EnvQuery::kNParents:
        static_cast<int64_t*>(out)[i] = env.n_parents(s);
        break;
      case EnvQuery::kStep: {
        int64_t a = actions[i];
        if (!env.legal(s, a)) { err.report(i, kIllegalAction); return; }
        env.step(s, a, static_cast<int32_t*>(out) + i * D);
        break;
      }
      case EnvQuery::kBackwardStep: {
        int64_t a = actions[i];
        if (!env.backward_legal(s, a)) { err.report(i, kIllegalAction); return; }
        env.backward_step(s, a, static_cast<int32_t*>(out) + i * D);
        break;
      }
      case EnvQuery::kIsInitial:
        static_cast<bool*>(out)[i] = env.is_initial(s);
        break;
      case EnvQuery::kInitial:  // answered above, for any row
        break;
      case EnvQuery::kLogRewardDelta:
        if constexpr (HasLogRewardDelta<Env>::value) {
          int64_t a = actions[i];
          if (!env.legal(s, a)) { err.report(i, kIllegalAction); return; }
          static_cast<double*>(out)[i] = env.log_reward_delta(s, a);
        }
        break;
    }
  }
};

}  // namespace gfn
