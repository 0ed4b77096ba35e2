// Log-partition variance, ZVar (Zhang et al. 2023): each trajectory i implies an estimate
//   zeta_i = log_reward[i] + sum_{t < last} log_pb[t] - sum_t log_pf[t]   of log Z
// (the stop row's log_pb is 0 by definition: ignored, zero gradient),
// and out[i] = (zeta_i - mean_j zeta_j)^2. The mean couples the batch, so the op runs in three
// row passes: per trajectory zeta_i -> work; one row reduces the mean (and, for the backward,
// G = sum_j grad_out_j (zeta_j - mean)) in a fixed order, so the result is the same at any
// thread count; per trajectory the output or the exact gradient
//   dL/dzeta_i = 2 grad_out_i (zeta_i - mean) - 2 G / B,
// which already includes the path through the mean.
#pragma once
#include "common/macros.h"
#include "ops/trajectory_balance.h"  // offsets_ok

namespace gfn {

template <typename scalar_t>
struct ZVarParams {
  const scalar_t* log_pf;
  const scalar_t* log_pb;
  const int64_t* offsets;
  const scalar_t* log_reward;
  int64_t B, T;
  double* work;              // [B + 2]: zeta_i, then mean, then G
  scalar_t* out;             // forward: [B]
  const scalar_t* grad_out;  // backward: [B]
  scalar_t* grad_pf;         // [T]
  scalar_t* grad_pb;         // [T]
  scalar_t* grad_reward;     // [B]
};

// kPhase 0: zeta per trajectory; 1: the reduction (run as a single row); 2: output or gradient.
template <typename scalar_t, int kPhase, bool kBackward>
struct ZVarRow {
  ZVarParams<scalar_t> p;
  ErrorSink err;
  GFN_HD void operator()(int64_t i) const {
    if (kPhase == 0) {
      if (!offsets_ok(p.offsets, i, p.B, p.T)) {
        err.report(i, kBadOffsets);
        return;
      }
      const int64_t o0 = p.offsets[i], o1 = p.offsets[i + 1];
      double z = static_cast<double>(p.log_reward[i]);
      for (int64_t t = o0; t < o1 - 1; ++t) z += static_cast<double>(p.log_pb[t]) - static_cast<double>(p.log_pf[t]);
      z -= static_cast<double>(p.log_pf[o1 - 1]);  // the stop row: log_pf only
      p.work[i] = z;
    } else if (kPhase == 1) {
      double s = 0.0;
      for (int64_t j = 0; j < p.B; ++j) s += p.work[j];
      const double mean = s / static_cast<double>(p.B);
      p.work[p.B] = mean;
      if (kBackward) {
        double G = 0.0;
        for (int64_t j = 0; j < p.B; ++j) G += static_cast<double>(p.grad_out[j]) * (p.work[j] - mean);
        p.work[p.B + 1] = G;
      }
    } else {
      const double dz = p.work[i] - p.work[p.B];
      if (!kBackward) {
        p.out[i] = static_cast<scalar_t>(dz * dz);
        return;
      }
      const double g = 2.0 * static_cast<double>(p.grad_out[i]) * dz - 2.0 * p.work[p.B + 1] / static_cast<double>(p.B);
      const int64_t last = p.offsets[i + 1] - 1;
      for (int64_t t = p.offsets[i]; t <= last; ++t) {
        p.grad_pf[t] = static_cast<scalar_t>(-g);
        p.grad_pb[t] = t < last ? static_cast<scalar_t>(g) : scalar_t(0);
      }
      p.grad_reward[i] = static_cast<scalar_t>(g);
    }
  }
};

#if GFN_WITH_CUDA
template <typename scalar_t, bool kBackward>
unsigned long long zvar_cuda(const ZVarParams<scalar_t>& p, void* stream, int device);
#endif

}  // namespace gfn
