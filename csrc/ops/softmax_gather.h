// Masked log-softmax gather: out[n] = log softmax(logits[n] restricted to mask[n])[actions[n]].
// Forward and backward are each one pass per row; the backward recomputes the normaliser
// instead of storing the [N, A] softmax. The bool mask is read as bytes and tested != 0: a bool
// whose byte is not 0 or 1 (a reinterpreted uint8 tensor, say) is undefined behaviour as bool.
#pragma once
#include <cmath>

#include "common/macros.h"

namespace gfn {

template <typename scalar_t>
struct GatherParams {
  const scalar_t* logits;
  const uint8_t* mask;       // [N, A] a torch.bool tensor's bytes: legal where != 0
  const int64_t* actions;
  int64_t A;
  scalar_t* out;             // forward: [N]
  const scalar_t* grad_out;  // backward: [N]
  scalar_t* grad_logits;     // backward: [N, A]
};

// Returns the status; writes log-sum-exp over legal entries.
template <typename scalar_t>
GFN_HD int masked_lse(const scalar_t* z, const uint8_t* m, int64_t A, int64_t a, double* lse) {
  if (a < 0 || a >= A || m[a] == 0) return kIllegalAction;
  double zmax = -INFINITY;
  for (int64_t j = 0; j < A; ++j) {
    if (m[j] == 0) continue;
    double v = static_cast<double>(z[j]);
    if (v != v) return kNanLogit;
    if (v > zmax) zmax = v;
  }
  if (!(zmax > -INFINITY) || zmax == INFINITY) return kNoMass;
  double s = 0.0;
  for (int64_t j = 0; j < A; ++j)
    if (m[j] != 0) s += exp(static_cast<double>(z[j]) - zmax);
  *lse = zmax + log(s);
  return kOk;
}

template <typename scalar_t, bool kBackward>
struct GatherRow {
  GatherParams<scalar_t> p;
  ErrorSink err;
  GFN_HD void operator()(int64_t i) const {
    const int64_t A = p.A;
    const scalar_t* z = p.logits + i * A;
    const uint8_t* m = p.mask + i * A;
    const int64_t a = p.actions[i];
    double lse = 0.0;
    int st = masked_lse(z, m, A, a, &lse);
    if (st != kOk) {
      err.report(i, st);
      return;
    }
    if (!kBackward) {
      p.out[i] = static_cast<scalar_t>(static_cast<double>(z[a]) - lse);
    } else {
      const double g = static_cast<double>(p.grad_out[i]);
      scalar_t* gz = p.grad_logits + i * A;
      for (int64_t j = 0; j < A; ++j) {
        double v = m[j] != 0 ? -g * exp(static_cast<double>(z[j]) - lse) : 0.0;
        if (j == a) v += g;
        gz[j] = static_cast<scalar_t>(v);
      }
    }
  }
};

}  // namespace gfn
