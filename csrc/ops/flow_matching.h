// Flow matching over states: for state n with in_count[n] parents,
//   out[n] = (logsumexp_{k < in_count[n]} log_in[n, k] - logsumexp_{a: out_mask[n, a]} log_out[n, a])^2.
// A state without parents (in_count == 0, the initial state) has no in-flow to match: it gives
// 0 with zero gradient. One thread per state; the backward recomputes both log-sum-exps
// rather than storing softmax weights of size N x (P + A).
#pragma once
#include <cmath>

#include "common/macros.h"

namespace gfn {

enum FMStatus : int { kBadInCount = kBadIndex, kNoOutEdge = kNoLegalAction };

template <typename scalar_t>
struct FMParams {
  const scalar_t* log_in;   // [N, P]
  const int64_t* in_count;  // [N]
  const scalar_t* log_out;  // [N, A]
  const uint8_t* out_mask;  // [N, A] a torch.bool tensor's bytes: legal where != 0 (any other
                            // byte than 0/1 read as bool would be undefined behaviour)
  int64_t N, P, A;
  scalar_t* out;             // forward: [N]
  const scalar_t* grad_out;  // backward: [N]
  scalar_t* grad_in;         // [N, P]
  scalar_t* grad_log_out;    // [N, A]
};

// log-sum-exp over z[j] for j < n where keep is null or keep[j]. NaN propagates; all -inf gives
// -inf, any +inf gives +inf (as torch.logsumexp does).
template <typename scalar_t>
GFN_HD double fm_lse(const scalar_t* z, const uint8_t* keep, int64_t n) {
  double zmax = -INFINITY;
  bool nan = false;
  for (int64_t j = 0; j < n; ++j) {
    if (keep && keep[j] == 0) continue;
    const double v = static_cast<double>(z[j]);
    if (v != v) nan = true;
    else if (v > zmax) zmax = v;
  }
  if (nan) return NAN;
  if (!(zmax > -INFINITY) || zmax == INFINITY) return zmax;
  double s = 0.0;
  for (int64_t j = 0; j < n; ++j)
    if (!keep || keep[j] != 0) s += exp(static_cast<double>(z[j]) - zmax);
  return zmax + log(s);
}

template <typename scalar_t, bool kBackward>
struct FMRow {
  FMParams<scalar_t> p;
  ErrorSink err;
  GFN_HD void operator()(int64_t n) const {
    const int64_t c = p.in_count[n];
    const scalar_t* zi = p.log_in + n * p.P;
    const scalar_t* zo = p.log_out + n * p.A;
    const uint8_t* m = p.out_mask + n * p.A;
    if (c < 0 || c > p.P) {
      err.report(n, kBadInCount);
      return;
    }
    bool any = false;
    for (int64_t a = 0; a < p.A; ++a) any = any || m[a] != 0;
    if (!any) {
      err.report(n, kNoOutEdge);
      return;
    }
    if (c == 0) {
      if (!kBackward) {
        p.out[n] = scalar_t(0);
      } else {
        for (int64_t k = 0; k < p.P; ++k) p.grad_in[n * p.P + k] = scalar_t(0);
        for (int64_t a = 0; a < p.A; ++a) p.grad_log_out[n * p.A + a] = scalar_t(0);
      }
      return;
    }
    const double lse_in = fm_lse(zi, static_cast<const uint8_t*>(nullptr), c);
    const double lse_out = fm_lse(zo, m, p.A);
    const double r = lse_in - lse_out;
    if (!kBackward) {
      p.out[n] = static_cast<scalar_t>(r * r);
      return;
    }
    const double g = 2.0 * r * static_cast<double>(p.grad_out[n]);
    for (int64_t k = 0; k < p.P; ++k)
      p.grad_in[n * p.P + k] = static_cast<scalar_t>(k < c ? g * exp(static_cast<double>(zi[k]) - lse_in) : 0.0);
    for (int64_t a = 0; a < p.A; ++a)
      p.grad_log_out[n * p.A + a] = static_cast<scalar_t>(m[a] != 0 ? -g * exp(static_cast<double>(zo[a]) - lse_out) : 0.0);
  }
};

}  // namespace gfn
