// Parent enumeration: every state s' with a forward action s' -> s, found through the
// environment's backward actions (generic over the env interface). Shared by CPU and CUDA.
#pragma once
#include "common/macros.h"

namespace gfn {

struct ParentsParams {
  const int32_t* states;  // [n, D]
  int32_t* parents;       // [n, P, D]: parent k of row i; slots k >= counts[i] are 0-filled
  int64_t* actions;       // [n, P]: the forward action parent -> state; -1 in unused slots
  int64_t* counts;        // [n]
};

// Row i writes its parents in increasing backward-action order, compacted into the first
// counts[i] slots, so the layout is the same on every device and thread count.
template <class Env>
struct ParentsRow {
  static constexpr bool kCuda = Env::kCuda;
  Env env;
  ParentsParams p;
  ErrorSink err;
  GFN_HD void operator()(int64_t i) const {
    const int D = env.state_dim(), P = env.max_parents(), nb = env.n_backward_actions();
    const int32_t* s = p.states + i * D;
    int32_t* ps = p.parents + i * P * D;
    int64_t* pa = p.actions + i * P;
    int c = 0;
    if (env.valid(s)) {
      for (int b = 0; b < nb; ++b) {
        if (!env.backward_legal(s, b)) continue;
        if (c == P) {  // the env declared too small a max_parents: report, never write past the row
          err.report(i, kBadIndex);
          break;
        }
        env.backward_step(s, b, ps + c * D);
        pa[c] = env.forward_action_of(b);
        ++c;
      }
    } else {
      err.report(i, kInvalidState);
    }
    for (int k = c; k < P; ++k) {
      for (int d = 0; d < D; ++d) ps[k * D + d] = 0;
      pa[k] = -1;
    }
    p.counts[i] = c;
  }
};

}  // namespace gfn
