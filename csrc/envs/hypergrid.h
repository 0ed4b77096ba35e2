// HyperGrid (Bengio et al. 2021): a state is a point of {0..H-1}^ndim, an action increments one
// coordinate, and the last action stops. The standard reward has 2^ndim high-reward modes.
#pragma once
#include <cmath>

#include "common/macros.h"
#include "envs/params.h"

namespace gfn {

struct HyperGrid {
  static constexpr const char* kName = "hypergrid";
  static constexpr bool kCuda = true;
  // Bounds the feature width ndim * height (a one-hot block per coordinate).
  static constexpr int64_t kMaxFeatures = int64_t{1} << 20;
  int ndim;
  int height;
  double R0, R1, R2;

  static void declare(ParamDecl& d) {
    d.integer("ndim", 2, 1, kMaxFeatures / 2, "grid dimensions")
        .integer("height", 8, 2, kMaxFeatures, "points per dimension")
        .real("R0", 0.1, 0.0, HUGE_VAL, "base reward (> 0, so every object has a finite log-reward)", true)
        .real("R1", 0.5, 0.0, HUGE_VAL, "bonus of the outer region")
        .real("R2", 2.0, 0.0, HUGE_VAL, "bonus of the mode ring");
  }
  static HyperGrid make(const Params& p) {
    HyperGrid e;
    const int64_t ndim = p.integer("ndim"), height = p.integer("height");
    if (ndim * height > kMaxFeatures)  // both are bounded above, so the product cannot overflow
      p.fail("ndim * height = ", ndim * height, " exceeds ", kMaxFeatures, " (the one-hot feature width)");
    e.ndim = static_cast<int>(ndim);
    e.height = static_cast<int>(height);
    e.R0 = p.real("R0"), e.R1 = p.real("R1"), e.R2 = p.real("R2");
    if (!std::isfinite(e.R0 + e.R1 + e.R2)) p.fail("R0 + R1 + R2 overflows");
    return e;
  }

  GFN_HD int n_actions() const { return ndim + 1; }
  GFN_HD int n_backward_actions() const { return ndim; }
  GFN_HD int state_dim() const { return ndim; }
  GFN_HD int feature_dim() const { return ndim * height; }
  GFN_HD int max_parents() const { return ndim; }
  GFN_HD int max_length() const { return ndim * (height - 1) + 1; }  // moves plus the stop row
  GFN_HD bool is_stop(int64_t a) const { return a == ndim; }

  GFN_HD void initial(int32_t* s) const {
    for (int i = 0; i < ndim; ++i) s[i] = 0;
  }
  GFN_HD bool valid(const int32_t* s) const {
    for (int i = 0; i < ndim; ++i)
      if (s[i] < 0 || s[i] >= height) return false;
    return true;
  }
  GFN_HD bool legal(const int32_t* s, int64_t a) const {
    if (a < 0 || a > ndim) return false;
    return a == ndim || s[a] < height - 1;
  }
  GFN_HD void forward_mask(const int32_t* s, bool* m) const {
    for (int i = 0; i < ndim; ++i) m[i] = s[i] < height - 1;
    m[ndim] = true;
  }
  GFN_HD void step(const int32_t* s, int64_t a, int32_t* out) const {
    for (int i = 0; i < ndim; ++i) out[i] = s[i];
    if (a < ndim) out[a] += 1;
  }
  // Backward action a undoes forward action a: it decrements coordinate a.
  GFN_HD bool backward_legal(const int32_t* s, int64_t a) const { return a >= 0 && a < ndim && s[a] > 0; }
  GFN_HD void backward_mask(const int32_t* s, bool* m) const {
    for (int i = 0; i < ndim; ++i) m[i] = s[i] > 0;
  }
  GFN_HD int n_parents(const int32_t* s) const {
    int c = 0;
    for (int i = 0; i < ndim; ++i) c += s[i] > 0;
    return c;
  }
  GFN_HD void backward_step(const int32_t* s, int64_t a, int32_t* out) const {
    for (int i = 0; i < ndim; ++i) out[i] = s[i];
    out[a] -= 1;
  }
  // The forward action that backward action a undoes, and vice versa.
  GFN_HD int64_t forward_action_of(int64_t b) const { return b; }
  GFN_HD int64_t backward_action_of(int64_t a) const { return a; }
  GFN_HD bool is_initial(const int32_t* s) const {
    for (int i = 0; i < ndim; ++i)
      if (s[i] != 0) return false;
    return true;
  }
  // k-hot: one one-hot block of width `height` per coordinate.
  template <typename F>
  GFN_HD void encode(const int32_t* s, F* f) const {
    for (int i = 0; i < ndim * height; ++i) f[i] = F(0);
    for (int i = 0; i < ndim; ++i) f[i * height + s[i]] = F(1);
  }
  // The region tests |x/(H-1) - 1/2| > 1/4 and 3/10 < |x/(H-1) - 1/2| < 4/10, in exact integer
  // arithmetic with u = |2x - (H-1)|: u/(2(H-1)) > 1/4 <=> 2u > H-1, and so on. Floating point
  // would put x = 4(H-1)/5 inside the ring but not its mirror x = (H-1)/5 (0.8 - 0.5 rounds up).
  GFN_HD double log_reward(const int32_t* s) const {
    const int64_t h1 = height - 1;
    bool all_outer = true, all_ring = true;
    for (int i = 0; i < ndim; ++i) {
      int64_t u = 2 * static_cast<int64_t>(s[i]) - h1;
      u = u < 0 ? -u : u;
      all_outer = all_outer && (2 * u > h1);
      all_ring = all_ring && (5 * u > 3 * h1) && (5 * u < 4 * h1);
    }
    return log(R0 + (all_outer ? R1 : 0.0) + (all_ring ? R2 : 0.0));
  }
};

}  // namespace gfn
