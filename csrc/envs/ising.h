// Ising: an n x n lattice of spins, each set to -1 or +1, one site at a time in any order, so an
// object x (a complete configuration) has (n*n)! construction orders and a state with k set sites
// has k parents. R(x) = exp(-beta * E(x)), E(x) = -J sum_<ij> x_i x_j - h sum_i x_i over
// nearest-neighbour pairs: learning Z here is estimating an energy model's partition function.
#pragma once
#include <cmath>

#include "common/macros.h"
#include "envs/params.h"

namespace gfn {

struct Ising {
  static constexpr const char* kName = "ising";
  static constexpr bool kCuda = true;
  // Bounds the row width (n*n) so that parents [N, n*n, n*n] and every index stay small; far
  // beyond what enumeration-based checks or a dense MLP over 3*n*n features would use anyway.
  static constexpr int kMaxSide = 64;
  int n;
  double J, h, beta;

  static void declare(ParamDecl& d) {
    d.integer("n", 3, 1, kMaxSide, "lattice side (n x n spins)")
        .real("J", 1.0, -HUGE_VAL, HUGE_VAL, "nearest-neighbour coupling")
        .real("h", 0.0, -HUGE_VAL, HUGE_VAL, "external field")
        .real("beta", 1.0, 0.0, HUGE_VAL, "inverse temperature");
  }
  static Ising make(const Params& p) {
    Ising e;
    e.n = p.as_int("n");
    e.J = p.real("J"), e.h = p.real("h"), e.beta = p.real("beta");
    // The largest |log R| is beta * (2 |J| + |h|) * n^2: it must be a finite float64.
    if (!std::isfinite(e.beta * (2.0 * std::fabs(e.J) + std::fabs(e.h)) * e.sites()))
      p.fail("beta * (2|J| + |h|) * n^2 overflows; log-rewards would not be finite");
    return e;
  }

  GFN_HD int sites() const { return n * n; }
  // Actions: i < n*n sets site i to -1, n*n + i sets it to +1, 2*n*n stops.
  GFN_HD int n_actions() const { return 2 * sites() + 1; }
  GFN_HD int n_backward_actions() const { return 2 * sites(); }
  GFN_HD int state_dim() const { return sites(); }
  GFN_HD int feature_dim() const { return 3 * sites(); }
  GFN_HD int max_parents() const { return sites(); }
  GFN_HD int max_length() const { return sites() + 1; }  // every site set, then the stop row
  GFN_HD bool is_stop(int64_t a) const { return a == 2 * sites(); }

  GFN_HD void initial(int32_t* s) const {
    for (int i = 0; i < sites(); ++i) s[i] = 0;
  }
  GFN_HD bool valid(const int32_t* s) const {
    for (int i = 0; i < sites(); ++i)
      if (s[i] < -1 || s[i] > 1) return false;
    return true;
  }
  GFN_HD bool complete(const int32_t* s) const {
    for (int i = 0; i < sites(); ++i)
      if (s[i] == 0) return false;
    return true;
  }
  GFN_HD bool legal(const int32_t* s, int64_t a) const {
    const int N = sites();
    if (a < 0 || a > 2 * N) return false;
    if (a == 2 * N) return complete(s);
    return s[a % N] == 0;
  }
  GFN_HD void forward_mask(const int32_t* s, bool* m) const {
    const int N = sites();
    bool all_set = true;
    for (int i = 0; i < N; ++i) {
      m[i] = m[N + i] = s[i] == 0;
      all_set = all_set && s[i] != 0;
    }
    m[2 * N] = all_set;
  }
  GFN_HD void step(const int32_t* s, int64_t a, int32_t* out) const {
    const int N = sites();
    for (int i = 0; i < N; ++i) out[i] = s[i];
    if (a < N) out[a] = -1;
    else if (a < 2 * N) out[a - N] = 1;
  }
  // Backward action b mirrors forward action b: b < n*n unsets a -1 site, n*n + i unsets a +1 site.
  GFN_HD bool backward_legal(const int32_t* s, int64_t b) const {
    const int N = sites();
    if (b < 0 || b >= 2 * N) return false;
    return b < N ? s[b] == -1 : s[b - N] == 1;
  }
  GFN_HD void backward_mask(const int32_t* s, bool* m) const {
    const int N = sites();
    for (int i = 0; i < N; ++i) {
      m[i] = s[i] == -1;
      m[N + i] = s[i] == 1;
    }
  }
  GFN_HD int n_parents(const int32_t* s) const {
    int c = 0;
    for (int i = 0; i < sites(); ++i) c += s[i] != 0;
    return c;
  }
  GFN_HD void backward_step(const int32_t* s, int64_t b, int32_t* out) const {
    const int N = sites();
    for (int i = 0; i < N; ++i) out[i] = s[i];
    out[b % N] = 0;
  }
  GFN_HD int64_t forward_action_of(int64_t b) const { return b; }
  GFN_HD int64_t backward_action_of(int64_t a) const { return a; }
  GFN_HD bool is_initial(const int32_t* s) const {
    for (int i = 0; i < sites(); ++i)
      if (s[i] != 0) return false;
    return true;
  }
  // One one-hot block (down, unset, up) per site.
  template <typename F>
  GFN_HD void encode(const int32_t* s, F* f) const {
    for (int i = 0; i < 3 * sites(); ++i) f[i] = F(0);
    for (int i = 0; i < sites(); ++i) f[3 * i + s[i] + 1] = F(1);
  }
  // -beta * E(s), with unset sites counting as 0 (so a partial state scores its set part).
  // Periodic boundaries need n >= 3: at n = 2 the wrap-around neighbour is the in-row neighbour
  // again (each pair would count twice) and at n = 1 a site would pair with itself.
  GFN_HD double log_reward(const int32_t* s) const {
    const bool periodic = n >= 3;
    double pairs = 0.0, field = 0.0;
    for (int r = 0; r < n; ++r)
      for (int c = 0; c < n; ++c) {
        const double v = static_cast<double>(s[r * n + c]);
        field += v;
        if (c + 1 < n) pairs += v * s[r * n + c + 1];
        else if (periodic) pairs += v * s[r * n];
        if (r + 1 < n) pairs += v * s[(r + 1) * n + c];
        else if (periodic) pairs += v * s[c];
      }
    return beta * (J * pairs + h * field);
  }
};

}  // namespace gfn
