// Modified detailed balance (Deleu et al. 2022) for environments where every state may
// terminate: R(s') P_B(s|s') P_F(stop|s) = R(s) P_F(s'|s) P_F(stop|s'). Over packed rows of
// trajectory i, [o, e):
//   move row t < e-1: r_t = lr[t+1] + log_pb[t] + log_pf_stop[t] - lr[t] - log_pf[t] - log_pf_stop[t+1]
//   stop row t = e-1: no constraint, out = 0 and zero gradient,
// with lr = log_reward_state. Row t's residual touches lr and log_pf_stop at t and t+1, so one
// thread per trajectory sums both contributions without atomics.
#pragma once
#include "common/macros.h"
#include "ops/trajectory_balance.h"  // offsets_ok

namespace gfn {

template <typename scalar_t>
struct MDBParams {
  const scalar_t* log_pf;
  const scalar_t* log_pb;
  const scalar_t* log_pf_stop;
  const scalar_t* log_reward_state;
  const int64_t* offsets;
  int64_t B, T;
  scalar_t* out;             // forward: [T]
  const scalar_t* grad_out;  // backward: [T]
  scalar_t* grad_pf;         // [T]
  scalar_t* grad_pb;         // [T]
  scalar_t* grad_pf_stop;    // [T]
  scalar_t* grad_reward_state;  // [T]
};

template <typename scalar_t, bool kBackward>
struct MDBRow {
  MDBParams<scalar_t> p;
  ErrorSink err;
  GFN_HD void operator()(int64_t i) const {
    if (!offsets_ok(p.offsets, i, p.B, p.T)) {
      err.report(i, kBadOffsets);
      return;
    }
    const int64_t o0 = p.offsets[i], last = p.offsets[i + 1] - 1;
    double g_prev = 0.0;  // gradient of row t-1, which holds +lr[t] and -log_pf_stop[t]
    for (int64_t t = o0; t <= last; ++t) {
      if (t == last) {
        if (!kBackward) {
          p.out[t] = scalar_t(0);
        } else {
          p.grad_pf[t] = scalar_t(0);
          p.grad_pb[t] = scalar_t(0);
          p.grad_pf_stop[t] = static_cast<scalar_t>(-g_prev);
          p.grad_reward_state[t] = static_cast<scalar_t>(g_prev);
        }
        break;
      }
      const double r = static_cast<double>(p.log_reward_state[t + 1]) + static_cast<double>(p.log_pb[t]) +
                       static_cast<double>(p.log_pf_stop[t]) - static_cast<double>(p.log_reward_state[t]) -
                       static_cast<double>(p.log_pf[t]) - static_cast<double>(p.log_pf_stop[t + 1]);
      if (!kBackward) {
        p.out[t] = static_cast<scalar_t>(r * r);
      } else {
        const double g = 2.0 * r * static_cast<double>(p.grad_out[t]);
        p.grad_pf[t] = static_cast<scalar_t>(-g);
        p.grad_pb[t] = static_cast<scalar_t>(g);
        p.grad_pf_stop[t] = static_cast<scalar_t>(g - g_prev);
        p.grad_reward_state[t] = static_cast<scalar_t>(g_prev - g);
        g_prev = g;
      }
    }
  }
};

}  // namespace gfn
