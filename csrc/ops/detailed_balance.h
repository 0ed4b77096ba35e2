// Detailed balance over packed, aligned rows. For trajectory i with rows [o, e):
//   move row t < e-1: r_t = log_flow[t] + log_pf[t] - log_flow[t+1] - log_pb[t]
//   stop row t = e-1: r_t = log_flow[t] + log_pf[t] - log_reward[i]
// and out[t] = r_t^2. One thread per trajectory, so a row sees its successor's flow and the
// backward can give log_flow[t] both of its terms (+g_t from row t, -g_{t-1} from row t-1)
// without atomics. The backward recomputes r_t: nothing of size T is saved between passes.
#pragma once
#include "common/macros.h"
#include "ops/trajectory_balance.h"  // offsets_ok

namespace gfn {

template <typename scalar_t>
struct DBParams {
  const scalar_t* log_pf;
  const scalar_t* log_pb;
  const scalar_t* log_flow;
  const int64_t* offsets;
  const scalar_t* log_reward;
  int64_t B, T;
  scalar_t* out;             // forward: [T]
  const scalar_t* grad_out;  // backward: [T]
  scalar_t* grad_pf;         // [T]
  scalar_t* grad_pb;         // [T]
  scalar_t* grad_flow;       // [T]
  scalar_t* grad_reward;     // [B]
};

template <typename scalar_t, bool kBackward>
struct DBRow {
  DBParams<scalar_t> p;
  ErrorSink err;
  GFN_HD void operator()(int64_t i) const {
    if (!offsets_ok(p.offsets, i, p.B, p.T)) {
      err.report(i, kBadOffsets);
      return;
    }
    const int64_t o0 = p.offsets[i], last = p.offsets[i + 1] - 1;
    double g_prev = 0.0;  // gradient of the previous move row, which holds -log_flow[t]
    for (int64_t t = o0; t <= last; ++t) {
      double r = static_cast<double>(p.log_flow[t]) + static_cast<double>(p.log_pf[t]);
      r -= t < last ? static_cast<double>(p.log_flow[t + 1]) + static_cast<double>(p.log_pb[t])
                    : static_cast<double>(p.log_reward[i]);
      if (!kBackward) {
        p.out[t] = static_cast<scalar_t>(r * r);
      } else {
        const double g = 2.0 * r * static_cast<double>(p.grad_out[t]);
        p.grad_pf[t] = static_cast<scalar_t>(g);
        p.grad_flow[t] = static_cast<scalar_t>(g - g_prev);
        if (t < last) {
          p.grad_pb[t] = static_cast<scalar_t>(-g);
          g_prev = g;
        } else {
          p.grad_pb[t] = scalar_t(0);  // the stop row's constraint has no log_pb term
          p.grad_reward[i] = static_cast<scalar_t>(-g);
        }
      }
    }
  }
};

}  // namespace gfn
