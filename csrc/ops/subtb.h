// Sub-trajectory balance SubTB(lambda) (Madan et al. 2023) over packed, aligned rows.
//
// Trajectory i has L rows starting at o and L + 1 nodes k = 0..L with log F_k = log_flow[o+k]
// (k < L) and log F_L = log_reward[i]. With x_t = log_pf[o+t] - log_pb[o+t] and prefix sums
// P_k = sum_{t<k} x_t, every sub-trajectory j -> k (j < k) has the residual
//   r_jk = log F_j + P_k - P_j - log F_k = u_j - u_k,   u_k = log F_k - P_k,
// weight w_jk = lam^(k-j), and loss_i = sum_{j<k} w_jk r_jk^2 / sum_{j<k} w_jk.
//
// Method: no L x L matrix and no O(L^2) loop. Going from node k to k+1, every residual ending at
// k+1 is one ending at k plus the edge residual d_k = u_k - u_{k+1} = log F_k + x_k - log F_{k+1}
// (the detailed-balance residual of row k). So three weighted sums over the sources j < k,
//   S_k = sum w_jk,  D_k = sum w_jk (u_j - u_k),  Q_k = sum w_jk (u_j - u_k)^2,
// follow O(1) recurrences (S' = S_k + 1 adds source j = k with r = 0):
//   Q_{k+1} = lam (Q_k + 2 d_k D_k + d_k^2 S'),  D_{k+1} = lam (D_k + d_k S'),  S_{k+1} = lam S'
// and loss_i = sum_k Q_k / sum_k S_k: one O(L) pass in registers, built from differences only
// (never from the large absolute u_k, so no cancellation).
//
// Gradient: dQ/du_m = 2 (A_m - D_m) with A_m = sum_{k>m} w_mk (u_m - u_k), which follows the
// mirrored recurrence A_m = lam (A_{m+1} + d_m (R_{m+1} + 1)), R_m = lam (R_{m+1} + 1), run from
// the end of the trajectory. The backward runs the forward recurrence once, storing D_m in an
// O(L) double workspace (one slot per node), then a reverse pass forms
//   g_m = dloss/du_m = 2 grad_out (A_m - D_m) / W,   W = sum_k S_k,
// which is the gradient of log F_m (m < L) or of log_reward (m = L), and, since u_k holds
// -x_t for every k > t, the gradient of x_t is minus the suffix sum of g over k > t
// (grad log_pf = -suffix, grad log_pb = +suffix), accumulated in the same reverse pass.
// The stop row's log_pb is 0 by definition (x has no successor to go back from): it is read as
// 0 and gets zero gradient, as in every other objective.
//
// Weights never overflow: for lam <= 1 every weight is <= 1 (underflow of lam^d for long
// sub-trajectories is harmless, they are negligible next to lam^1). For lam > 1 the loss is
// homogeneous in the weights, so they are rescaled by lam^-L: w_jk = mu^j mu^(L-k) with
// mu = 1/lam, both factors <= 1. Sources enter with mu^j instead of 1 (rho = 1, eps = mu) and the
// sum over k becomes a Horner sum with factor mu (factor 1 for lam <= 1, where rho = lam).
#pragma once
#include <cmath>

#include "common/macros.h"
#include "ops/trajectory_balance.h"  // offsets_ok

namespace gfn {

template <typename scalar_t>
struct SubTBParams {
  const scalar_t* log_pf;
  const scalar_t* log_pb;
  const scalar_t* log_flow;
  const int64_t* offsets;
  const scalar_t* log_reward;
  int64_t B, T;
  double rho;  // lam for lam <= 1, else 1
  double eps;  // 1 for lam <= 1, else 1 / lam
  scalar_t* out;             // forward: [B]
  const scalar_t* grad_out;  // backward: [B]
  scalar_t* grad_pf;         // [T]
  scalar_t* grad_pb;         // [T]
  scalar_t* grad_flow;       // [T]
  scalar_t* grad_reward;     // [B]
  double* work;              // backward: [T + B], node k of trajectory i at offsets[i] + i + k
};

template <typename scalar_t, bool kBackward>
struct SubTBRow {
  SubTBParams<scalar_t> p;
  ErrorSink err;

  GFN_HD double log_flow_at(int64_t o, int64_t L, int64_t i, int64_t k) const {
    return k < L ? static_cast<double>(p.log_flow[o + k]) : static_cast<double>(p.log_reward[i]);
  }
  // log P_B of row o + k; the stop row's (k = L - 1) is 0 by definition, whatever is stored there.
  GFN_HD double log_pb_at(int64_t o, int64_t L, int64_t k) const {
    return k < L - 1 ? static_cast<double>(p.log_pb[o + k]) : 0.0;
  }
  // d_k = u_k - u_{k+1}: the residual of the one-edge sub-trajectory k -> k+1.
  GFN_HD double edge(int64_t o, int64_t L, int64_t i, int64_t k) const {
    return log_flow_at(o, L, i, k) + static_cast<double>(p.log_pf[o + k]) - log_pb_at(o, L, k) -
           log_flow_at(o, L, i, k + 1);
  }

  GFN_HD void operator()(int64_t i) const {
    if (!offsets_ok(p.offsets, i, p.B, p.T)) {
      err.report(i, kBadOffsets);
      return;
    }
    const int64_t o = p.offsets[i], L = p.offsets[i + 1] - o;
    const double rho = p.rho, eps = p.eps;
    double* work = kBackward ? p.work + o + i : nullptr;
    double S = 0.0, D = 0.0, Q = 0.0, e = 1.0, sumQ = 0.0, sumS = 0.0;
    for (int64_t k = 0; k < L; ++k) {
      if (kBackward) work[k] = D;
      const double d = edge(o, L, i, k);
      const double S1 = S + e;
      Q = rho * (Q + d * (2.0 * D + d * S1));
      D = rho * (D + d * S1);
      S = rho * S1;
      e *= eps;
      sumQ = sumQ * eps + Q;  // Horner: sum_k eps^(L-k) Q_k
      sumS = sumS * eps + S;
    }
    if (!kBackward) {
      p.out[i] = static_cast<scalar_t>(sumQ / sumS);
      return;
    }
    work[L] = D;
    const double c = 2.0 * static_cast<double>(p.grad_out[i]) / sumS;
    double R = 0.0, A = 0.0, f = 1.0, e_tail = 1.0, suffix = 0.0;  // e_tail = eps^(L-m)
    for (int64_t m = L; m >= 0; --m) {
      const double e_head = eps == 1.0 ? 1.0 : pow(eps, static_cast<double>(m));
      const double g = c * (e_head * A - e_tail * work[m]);
      if (m == L) {
        p.grad_reward[i] = static_cast<scalar_t>(g);
      } else {
        p.grad_flow[o + m] = static_cast<scalar_t>(g);
        p.grad_pf[o + m] = static_cast<scalar_t>(-suffix);
        p.grad_pb[o + m] = m < L - 1 ? static_cast<scalar_t>(suffix) : scalar_t(0);
      }
      suffix += g;
      if (m > 0) {
        const double d = edge(o, L, i, m - 1);
        const double R1 = R + f;
        A = rho * (A + d * R1);
        R = rho * R1;
        f *= eps;
        e_tail *= eps;
      }
    }
  }
};

}  // namespace gfn
