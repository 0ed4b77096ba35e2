// Detailed balance and modified detailed balance over packed, aligned rows: one kernel.
// For trajectory i with rows [o, e), with F_t the log-flow of the state row t leaves:
//   move row t < e-1: r_t = F_t + log_pf[t] - F_{t+1} - log_pb[t]
//   stop row t = e-1: r_t = F_t + log_pf[t] - log_reward[i]      (DB only)
// and out[t] = r_t^2.
//   DB:  F_t = log_flow[t], a learned state flow.
//   MDB (Deleu et al. 2022, every state may terminate): F_t = log R(s_t) - log P_F(stop | s_t),
//        i.e. log_flow = log_reward_state and log_flow_sub = log_pf_stop. The stop-row constraint
//        then holds identically, so stop rows give 0 with zero gradient.
// One thread per trajectory, so a row sees its successor's flow and the backward can give F_t
// both of its terms (+g_t from row t, -g_{t-1} from row t-1) without atomics. The backward
// recomputes r_t: nothing of size T is saved between passes.
#pragma once
#include "common/macros.h"
#include "ops/trajectory_balance.h"  // offsets_ok

namespace gfn {

template <typename scalar_t>
struct DBParams {
  const scalar_t* log_pf;
  const scalar_t* log_pb;
  const scalar_t* log_flow;      // DB: log F(s_t); MDB: log R(s_t)
  const scalar_t* log_flow_sub;  // MDB: log P_F(stop | s_t), subtracted from log_flow; DB: unused
  const int64_t* offsets;
  const scalar_t* log_reward;    // DB: [B]; MDB: unused
  int64_t B, T;
  scalar_t* out;                 // forward: [T]
  const scalar_t* grad_out;      // backward: [T]
  scalar_t* grad_pf;             // [T]
  scalar_t* grad_pb;             // [T]
  scalar_t* grad_flow;           // [T]
  scalar_t* grad_flow_sub;       // MDB: [T]
  scalar_t* grad_reward;         // DB: [B]
};

template <typename scalar_t, bool kBackward, bool kModified = false>
struct DBRow {
  DBParams<scalar_t> p;
  ErrorSink err;

  GFN_HD double flow(int64_t t) const {
    double f = static_cast<double>(p.log_flow[t]);
    if (kModified) f -= static_cast<double>(p.log_flow_sub[t]);
    return f;
  }
  GFN_HD void write_grad_flow(int64_t t, double g) const {
    p.grad_flow[t] = static_cast<scalar_t>(g);
    if (kModified) p.grad_flow_sub[t] = static_cast<scalar_t>(-g);
  }

  GFN_HD void operator()(int64_t i) const {
    if (!offsets_ok(p.offsets, i, p.B, p.T)) {
      err.report(i, kBadOffsets);
      return;
    }
    const int64_t o0 = p.offsets[i], last = p.offsets[i + 1] - 1;
    double g_prev = 0.0;  // gradient of the previous move row, which holds -F_t
    for (int64_t t = o0; t <= last; ++t) {
      if (kModified && t == last) {  // no stop-row constraint: only the previous row's -F_t term
        if (!kBackward) {
          p.out[t] = scalar_t(0);
        } else {
          p.grad_pf[t] = scalar_t(0);
          p.grad_pb[t] = scalar_t(0);
          write_grad_flow(t, -g_prev);
        }
        break;
      }
      double r = flow(t) + static_cast<double>(p.log_pf[t]);
      r -= t < last ? flow(t + 1) + static_cast<double>(p.log_pb[t]) : static_cast<double>(p.log_reward[i]);
      if (!kBackward) {
        p.out[t] = static_cast<scalar_t>(r * r);
      } else {
        const double g = 2.0 * r * static_cast<double>(p.grad_out[t]);
        p.grad_pf[t] = static_cast<scalar_t>(g);
        write_grad_flow(t, g - g_prev);
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
