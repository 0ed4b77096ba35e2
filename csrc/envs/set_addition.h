// SetAddition: choose a set of up to k of n items by adding one item at a time. A set of size m
// has m! construction orders and m parents (the sets with one item removed). Objects are the sets
// of size <= k (or exactly k with fixed_size). The built-in reward is a table model,
//   log R(x) = sum_{i in x} weights[i] + sum_{i<j in x} interactions[i, j],
// with both tables optional (a Python log_reward=fn replaces it).
#pragma once
#include <cmath>

#include "common/macros.h"
#include "envs/params.h"

namespace gfn {

struct SetAddition {
  static constexpr const char* kName = "set_addition";
  static constexpr bool kCuda = false;  // the reward tables are read on the host
  static constexpr int kMaxItems = 1 << 16;
  int n, k;
  bool fixed_size;
  const double* weights = nullptr;       // [n] or null
  const double* interactions = nullptr;  // [n, n] or null (only i < j is read)

  static void declare(ParamDecl& d) {
    d.integer("n", 6, 1, kMaxItems, "number of items")
        .integer("k", 3, 1, kMaxItems, "most items in a set")
        .flag("fixed_size", false, "objects are the sets of exactly k items (else any size up to k)")
        .tensor("weights", DType::kFloat64, 1, "log-reward of each item [n]", true)
        .tensor("interactions", DType::kFloat64, 2, "log-reward of each pair of items [n, n] (i < j is read)", true);
  }
  static SetAddition make(const Params& p) {
    SetAddition e;
    e.n = p.as_int("n"), e.k = p.as_int("k"), e.fixed_size = p.flag("fixed_size");
    if (e.k > e.n) p.fail("k = ", e.k, " exceeds n = ", e.n);
    if (const TensorArg* w = p.tensor("weights")) {
      if (w->size(0) != e.n) p.fail("weights must have shape [n] = [", e.n, "], got ", w->shape_str());
      e.weights = w->data<double>();
      for (int i = 0; i < e.n; ++i)
        if (!std::isfinite(e.weights[i])) p.fail("weights[", i, "] is not finite");
    }
    if (const TensorArg* q = p.tensor("interactions")) {
      if (static_cast<int64_t>(e.n) * e.n > (int64_t{1} << 28)) p.fail("interactions would hold n^2 values: too many");
      if (q->size(0) != e.n || q->size(1) != e.n) p.fail("interactions must have shape [n, n], got ", q->shape_str());
      e.interactions = q->data<double>();
      for (int64_t i = 0; i < q->numel; ++i)
        if (!std::isfinite(e.interactions[i])) p.fail("interactions holds a non-finite value at flat index ", i);
    }
    return e;
  }

  // Actions: i adds item i (legal while it is out and the set has fewer than k items); n stops.
  GFN_HD int n_actions() const { return n + 1; }
  GFN_HD int n_backward_actions() const { return n; }
  GFN_HD int state_dim() const { return n; }
  GFN_HD int feature_dim() const { return n; }
  GFN_HD int max_parents() const { return k; }
  GFN_HD int max_length() const { return k + 1; }
  GFN_HD bool is_stop(int64_t a) const { return a == n; }

  GFN_HD int size(const int32_t* s) const {
    int c = 0;
    for (int i = 0; i < n; ++i) c += s[i];
    return c;
  }
  GFN_HD void initial(int32_t* s) const {
    for (int i = 0; i < n; ++i) s[i] = 0;
  }
  GFN_HD bool valid(const int32_t* s) const {
    int c = 0;
    for (int i = 0; i < n; ++i) {
      if (s[i] != 0 && s[i] != 1) return false;
      c += s[i];
    }
    return c <= k;
  }
  GFN_HD bool can_stop(int m) const { return fixed_size ? m == k : true; }
  GFN_HD bool legal(const int32_t* s, int64_t a) const {
    if (a < 0 || a > n) return false;
    const int m = size(s);
    if (a == n) return can_stop(m);
    return s[a] == 0 && m < k;
  }
  GFN_HD void forward_mask(const int32_t* s, bool* m) const {
    const int c = size(s);
    for (int i = 0; i < n; ++i) m[i] = s[i] == 0 && c < k;
    m[n] = can_stop(c);
  }
  GFN_HD void step(const int32_t* s, int64_t a, int32_t* out) const {
    for (int i = 0; i < n; ++i) out[i] = s[i];
    if (a < n) out[a] = 1;
  }
  // Backward action i removes item i.
  GFN_HD bool backward_legal(const int32_t* s, int64_t b) const { return b >= 0 && b < n && s[b] == 1; }
  GFN_HD void backward_mask(const int32_t* s, bool* m) const {
    for (int i = 0; i < n; ++i) m[i] = s[i] == 1;
  }
  GFN_HD int n_parents(const int32_t* s) const { return size(s); }
  GFN_HD void backward_step(const int32_t* s, int64_t b, int32_t* out) const {
    for (int i = 0; i < n; ++i) out[i] = s[i];
    out[b] = 0;
  }
  GFN_HD int64_t forward_action_of(int64_t b) const { return b; }
  GFN_HD int64_t backward_action_of(int64_t a) const { return a; }
  GFN_HD bool is_initial(const int32_t* s) const { return size(s) == 0; }
  template <typename F>
  GFN_HD void encode(const int32_t* s, F* f) const {
    for (int i = 0; i < n; ++i) f[i] = F(s[i]);
  }
  GFN_HD double log_reward(const int32_t* s) const {
    double r = 0.0;
    for (int i = 0; i < n; ++i) {
      if (!s[i]) continue;
      if (weights) r += weights[i];
      if (interactions)
        for (int j = i + 1; j < n; ++j)
          if (s[j]) r += interactions[static_cast<int64_t>(i) * n + j];
    }
    return r;
  }
};

}  // namespace gfn
