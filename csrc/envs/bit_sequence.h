// BitSequence (Malkin et al. 2022, as in torchgfn's append-only BitSequence): a sequence of n bits
// built by appending k-bit words, n/k of them; stop is legal only once the sequence is full. The
// reward is log R(x) = -min_m HammingDistance(x, mode_m) / temperature over a set of modes. The
// state graph is a tree (one parent per state): the standard large, non-enumerable benchmark,
// with exact metrics at small n.
#pragma once
#include <cmath>
#include <memory>
#include <vector>

#include "common/macros.h"
#include "envs/params.h"

namespace gfn {

struct BitSequence {
  static constexpr const char* kName = "bit_sequence";
  static constexpr bool kCuda = false;  // the modes are read on the host
  static constexpr int kMaxBits = 4096, kMaxWordBits = 12;
  int n, k, L, M;            // bits, bits per word, words, modes
  double temperature;
  const uint32_t* mode_words = nullptr;  // [M, L]: each mode cut into words (owned by the handle)

  static void declare(ParamDecl& d) {
    d.integer("n", 8, 1, kMaxBits, "bits in a sequence")
        .integer("k", 2, 1, kMaxWordBits, "bits per word (one action appends a word; k divides n)")
        .tensor("modes", DType::kInt64, 2, "the modes' bits [M, n] (0/1)")
        .real("temperature", 1.0, 0.0, HUGE_VAL, "log R = -min Hamming distance to a mode / temperature", true);
  }
  static BitSequence make(const Params& p) {
    BitSequence e;
    e.n = p.as_int("n"), e.k = p.as_int("k");
    if (e.n % e.k != 0) p.fail("k = ", e.k, " must divide n = ", e.n);
    e.L = e.n / e.k;
    e.temperature = p.real("temperature");
    const TensorArg* modes = p.tensor("modes");
    if (modes->size(1) != e.n) p.fail("modes must have shape [M, n] = [M, ", e.n, "], got ", modes->shape_str());
    if (modes->size(0) < 1 || modes->size(0) > (int64_t{1} << 20)) p.fail("modes must hold between 1 and 2^20 rows");
    e.M = static_cast<int>(modes->size(0));
    auto words = std::make_shared<std::vector<uint32_t>>(static_cast<size_t>(e.M) * e.L, 0u);
    const int64_t* bits = modes->data<int64_t>();
    for (int m = 0; m < e.M; ++m)
      for (int i = 0; i < e.n; ++i) {
        const int64_t b = bits[static_cast<int64_t>(m) * e.n + i];
        if (b != 0 && b != 1) p.fail("modes must hold bits (0 or 1); mode ", m, " has ", b, " at bit ", i);
        // word w holds bits [w*k, (w+1)*k), the first bit the most significant (torchgfn's order)
        (*words)[static_cast<size_t>(m) * e.L + i / e.k] |= static_cast<uint32_t>(b) << (e.k - 1 - i % e.k);
      }
    e.mode_words = words->data();
    p.own(words);
    return e;
  }

  GFN_HD int W() const { return 1 << k; }  // words
  // Actions: w < 2^k appends word w; 2^k stops (legal once all L words are in).
  GFN_HD int n_actions() const { return W() + 1; }
  GFN_HD int n_backward_actions() const { return W(); }
  // State: [length, word_0, ..., word_{L-1}] with -1 for the words not yet appended.
  GFN_HD int state_dim() const { return L + 1; }
  GFN_HD int feature_dim() const { return L * (W() + 1); }
  GFN_HD int max_parents() const { return 1; }
  GFN_HD int max_length() const { return L + 1; }
  GFN_HD bool is_stop(int64_t a) const { return a == W(); }

  GFN_HD void initial(int32_t* s) const {
    s[0] = 0;
    for (int i = 1; i <= L; ++i) s[i] = -1;
  }
  GFN_HD bool valid(const int32_t* s) const {
    if (s[0] < 0 || s[0] > L) return false;
    for (int i = 0; i < L; ++i) {
      const int32_t w = s[i + 1];
      if (i < s[0] ? (w < 0 || w >= W()) : w != -1) return false;
    }
    return true;
  }
  GFN_HD bool legal(const int32_t* s, int64_t a) const {
    if (a < 0 || a > W()) return false;
    return is_stop(a) ? s[0] == L : s[0] < L;
  }
  GFN_HD void forward_mask(const int32_t* s, bool* m) const {
    const bool full = s[0] == L;
    for (int w = 0; w < W(); ++w) m[w] = !full;
    m[W()] = full;
  }
  GFN_HD void step(const int32_t* s, int64_t a, int32_t* out) const {
    for (int i = 0; i <= L; ++i) out[i] = s[i];
    if (!is_stop(a)) {
      out[1 + s[0]] = static_cast<int32_t>(a);
      out[0] = s[0] + 1;
    }
  }
  // Backward action w removes the last word, where it is w: the one parent.
  GFN_HD bool backward_legal(const int32_t* s, int64_t b) const {
    return b >= 0 && b < W() && s[0] > 0 && s[s[0]] == b;
  }
  GFN_HD void backward_mask(const int32_t* s, bool* m) const {
    for (int w = 0; w < W(); ++w) m[w] = false;
    if (s[0] > 0) m[s[s[0]]] = true;
  }
  GFN_HD int n_parents(const int32_t* s) const { return s[0] > 0 ? 1 : 0; }
  GFN_HD void backward_step(const int32_t* s, int64_t, int32_t* out) const {
    for (int i = 0; i <= L; ++i) out[i] = s[i];
    out[s[0]] = -1;
    out[0] = s[0] - 1;
  }
  GFN_HD int64_t forward_action_of(int64_t b) const { return b; }
  GFN_HD int64_t backward_action_of(int64_t a) const { return a; }
  GFN_HD bool is_initial(const int32_t* s) const { return s[0] == 0; }
  // One one-hot block (empty, word 0, ..., word 2^k - 1) per position.
  template <typename F>
  GFN_HD void encode(const int32_t* s, F* f) const {
    const int B = W() + 1;
    for (int i = 0; i < L * B; ++i) f[i] = F(0);
    for (int i = 0; i < L; ++i) f[i * B + s[i + 1] + 1] = F(1);
  }
  // Over the words appended so far (a partial sequence is compared on its prefix).
  GFN_HD double log_reward(const int32_t* s) const {
    int best = n + 1;
    for (int m = 0; m < M; ++m) {
      int d = 0;
      for (int i = 0; i < s[0]; ++i) {
        uint32_t x = static_cast<uint32_t>(s[i + 1]) ^ mode_words[static_cast<int64_t>(m) * L + i];
        while (x) {
          d += static_cast<int>(x & 1u);
          x >>= 1;
        }
      }
      best = d < best ? d : best;
    }
    return -static_cast<double>(best) / temperature;
  }
};

}  // namespace gfn
