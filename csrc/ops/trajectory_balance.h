// Trajectory balance over packed, aligned rows: for trajectory i with rows [o_i, o_{i+1}),
//   r_i = log Z_i + sum_t log_pf[t] - log_reward[i] - sum_{t < o_{i+1}-1} log_pb[t],  loss_i = r_i^2.
// The stop row's log_pb is 0 by definition (no state follows x to go back from): every objective
// ignores it and gives it zero gradient, so a stray value there changes nothing.
// One thread per trajectory; the backward recomputes r_i (a segment sum) and writes every
// row's gradient in the same pass, so nothing of size T is saved between the two.
#pragma once
#include "common/macros.h"

namespace gfn {

template <typename scalar_t>
struct TBParams {
  const scalar_t* log_pf;
  const scalar_t* log_pb;
  const int64_t* offsets;
  const scalar_t* log_reward;
  const scalar_t* log_z;
  int64_t z_stride;  // 0: one log Z for all; 1: one per trajectory
  int64_t B, T;
  scalar_t* out;              // forward: [B] squared residuals
  const scalar_t* grad_out;   // backward: [B]
  scalar_t* grad_pf;          // [T]
  scalar_t* grad_pb;          // [T]
  scalar_t* grad_reward;      // [B]
  scalar_t* grad_z;           // [B], summed on the host side when log Z is shared
};

// Offsets must start at 0, increase strictly and end at T; each trajectory checks its own pair.
GFN_HD bool offsets_ok(const int64_t* offsets, int64_t i, int64_t B, int64_t T) {
  int64_t o0 = offsets[i], o1 = offsets[i + 1];
  if (i == 0 && o0 != 0) return false;
  if (i == B - 1 && o1 != T) return false;
  return o0 >= 0 && o1 > o0 && o1 <= T;
}

template <typename scalar_t, bool kBackward>
struct TBRow {
  TBParams<scalar_t> p;
  ErrorSink err;
  GFN_HD void operator()(int64_t i) const {
    if (!offsets_ok(p.offsets, i, p.B, p.T)) {
      err.report(i, kBadOffsets);
      return;
    }
    const int64_t o0 = p.offsets[i], o1 = p.offsets[i + 1];
    double r = static_cast<double>(p.log_z[i * p.z_stride]) - static_cast<double>(p.log_reward[i]);
    for (int64_t t = o0; t < o1 - 1; ++t) r += static_cast<double>(p.log_pf[t]) - static_cast<double>(p.log_pb[t]);
    r += static_cast<double>(p.log_pf[o1 - 1]);  // the stop row: log_pf only
    if (!kBackward) {
      p.out[i] = static_cast<scalar_t>(r * r);
    } else {
      const scalar_t g = static_cast<scalar_t>(2.0 * r * static_cast<double>(p.grad_out[i]));
      for (int64_t t = o0; t < o1; ++t) {
        p.grad_pf[t] = g;
        p.grad_pb[t] = t < o1 - 1 ? static_cast<scalar_t>(-g) : scalar_t(0);
      }
      p.grad_reward[i] = -g;
      p.grad_z[i] = g;
    }
  }
};

}  // namespace gfn
