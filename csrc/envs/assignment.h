// Any-order K-ary assignment: n variables, each set to one of K values, one at a time in any order
// (Ising generalised: an object x has n! construction orders and a state with k set variables has
// k parents). The built-in reward is a pairwise table model,
//   log R(x) = sum_i unary[i, x_i] + sum_{i<j} pairwise[i, j, x_i, x_j],
// over the set variables of a partial state (0 when neither table is given). A reward given from
// Python (log_reward=fn: a likelihood over data, a proxy network) replaces it; the Bayesian
// posterior sampler over parameter grids (gfncore.bayes) builds on this environment.
#pragma once
#include <cmath>

#include "common/macros.h"
#include "envs/params.h"

namespace gfn {

struct Assignment {
  static constexpr const char* kName = "assignment";
  static constexpr bool kCuda = false;  // the reward tables are read on the host
  static constexpr int64_t kMaxActions = int64_t{1} << 20;
  int n, K;
  const double* unary = nullptr;     // [n, K] or null
  const double* pairwise = nullptr;  // [n, n, K, K] or null (only i < j is read)

  static void declare(ParamDecl& d) {
    d.integer("n", 4, 1, kMaxActions, "number of variables")
        .integer("K", 3, 2, kMaxActions, "values per variable")
        .tensor("unary", DType::kFloat64, 2, "log-potentials [n, K] of each variable's value", true)
        .tensor("pairwise", DType::kFloat64, 4, "log-potentials [n, n, K, K] of each pair's values (i < j is read)",
                true);
  }
  static Assignment make(const Params& p) {
    Assignment e;
    const int64_t n = p.integer("n"), K = p.integer("K");
    if (n * K > kMaxActions) p.fail("n * K = ", n * K, " exceeds ", kMaxActions, " actions");
    e.n = static_cast<int>(n), e.K = static_cast<int>(K);
    if (const TensorArg* u = p.tensor("unary")) {
      if (u->size(0) != n || u->size(1) != K) p.fail("unary must have shape [n, K] = [", n, ", ", K, "], got ", u->shape_str());
      e.unary = u->data<double>();
      for (int64_t i = 0; i < u->numel; ++i)
        if (!std::isfinite(e.unary[i])) p.fail("unary holds a non-finite value at flat index ", i);
    }
    if (const TensorArg* q = p.tensor("pairwise")) {
      if (n * n * K * K > (int64_t{1} << 28)) p.fail("pairwise would hold n^2 K^2 = ", n * n * K * K, " values: too many");
      if (q->size(0) != n || q->size(1) != n || q->size(2) != K || q->size(3) != K)
        p.fail("pairwise must have shape [n, n, K, K], got ", q->shape_str());
      e.pairwise = q->data<double>();
      for (int64_t i = 0; i < q->numel; ++i)
        if (!std::isfinite(e.pairwise[i])) p.fail("pairwise holds a non-finite value at flat index ", i);
    }
    return e;
  }

  // Actions: i * K + v sets variable i to v (legal while i is unset); n * K stops once all are set.
  GFN_HD int n_actions() const { return n * K + 1; }
  GFN_HD int n_backward_actions() const { return n * K; }
  GFN_HD int state_dim() const { return n; }
  GFN_HD int feature_dim() const { return n * (K + 1); }
  GFN_HD int max_parents() const { return n; }
  GFN_HD int max_length() const { return n + 1; }
  GFN_HD bool is_stop(int64_t a) const { return a == static_cast<int64_t>(n) * K; }

  GFN_HD void initial(int32_t* s) const {
    for (int i = 0; i < n; ++i) s[i] = -1;
  }
  GFN_HD bool valid(const int32_t* s) const {
    for (int i = 0; i < n; ++i)
      if (s[i] < -1 || s[i] >= K) return false;
    return true;
  }
  GFN_HD bool complete(const int32_t* s) const {
    for (int i = 0; i < n; ++i)
      if (s[i] < 0) return false;
    return true;
  }
  GFN_HD bool legal(const int32_t* s, int64_t a) const {
    if (a < 0 || a > static_cast<int64_t>(n) * K) return false;
    if (is_stop(a)) return complete(s);
    return s[a / K] < 0;
  }
  GFN_HD void forward_mask(const int32_t* s, bool* m) const {
    bool all = true;
    for (int i = 0; i < n; ++i) {
      const bool unset = s[i] < 0;
      all = all && !unset;
      for (int v = 0; v < K; ++v) m[i * K + v] = unset;
    }
    m[n * K] = all;
  }
  GFN_HD void step(const int32_t* s, int64_t a, int32_t* out) const {
    for (int i = 0; i < n; ++i) out[i] = s[i];
    if (!is_stop(a)) out[a / K] = static_cast<int32_t>(a % K);
  }
  // Backward action i * K + v unsets variable i where it holds v.
  GFN_HD bool backward_legal(const int32_t* s, int64_t b) const {
    if (b < 0 || b >= static_cast<int64_t>(n) * K) return false;
    return s[b / K] == static_cast<int32_t>(b % K);
  }
  GFN_HD void backward_mask(const int32_t* s, bool* m) const {
    for (int i = 0; i < n; ++i)
      for (int v = 0; v < K; ++v) m[i * K + v] = s[i] == v;
  }
  GFN_HD int n_parents(const int32_t* s) const {
    int c = 0;
    for (int i = 0; i < n; ++i) c += s[i] >= 0;
    return c;
  }
  GFN_HD void backward_step(const int32_t* s, int64_t b, int32_t* out) const {
    for (int i = 0; i < n; ++i) out[i] = s[i];
    out[b / K] = -1;
  }
  GFN_HD int64_t forward_action_of(int64_t b) const { return b; }
  GFN_HD int64_t backward_action_of(int64_t a) const { return a; }
  GFN_HD bool is_initial(const int32_t* s) const {
    for (int i = 0; i < n; ++i)
      if (s[i] != -1) return false;
    return true;
  }
  // One one-hot block (unset, 0, ..., K-1) per variable.
  template <typename F>
  GFN_HD void encode(const int32_t* s, F* f) const {
    for (int i = 0; i < n * (K + 1); ++i) f[i] = F(0);
    for (int i = 0; i < n; ++i) f[i * (K + 1) + s[i] + 1] = F(1);
  }
  GFN_HD double log_reward(const int32_t* s) const {
    double r = 0.0;
    if (unary)
      for (int i = 0; i < n; ++i)
        if (s[i] >= 0) r += unary[static_cast<int64_t>(i) * K + s[i]];
    if (pairwise)
      for (int i = 0; i < n; ++i) {
        if (s[i] < 0) continue;
        for (int j = i + 1; j < n; ++j)
          if (s[j] >= 0)
            r += pairwise[((static_cast<int64_t>(i) * n + j) * K + s[i]) * K + s[j]];
      }
    return r;
  }
};

}  // namespace gfn
