// DAG: causal graphs built one edge at a time (DAG-GFlowNet, Deleu et al. 2022). Every state is a
// DAG and may stop, so every state is a terminal object; the reward is the Bayesian score
//   log R(G) = log P(G) + sum_j LocalScore(j, Pa_j)
// of a data set (BGe or linear-Gaussian, csrc/causal/scores.h), or the graph prior alone when no
// data is given.
//
// State row (int32 words of bits, W = ceil(d / 32) words per node):
//   [Pa_0 .. Pa_{d-1}]     Pa_j:   bit i set when i -> j (the parents of j)
//   [De_0 .. De_{d-1}]     De_u:   bit v set when a directed path u -> ... -> v exists
// Keeping the transitive closure De makes the acyclicity test O(1) per candidate edge: i -> j
// closes a cycle iff j already reaches i, i.e. bit i of De_j. So edge i -> j is legal iff i != j,
// i is not in Pa_j or De_j, and |Pa_j| is below the in-degree cap. Adding i -> j updates the
// closure in O(d W): every u that reaches i (u = i or bit i of De_u) now also reaches j and De_j.
// Removing an edge (the backward step) can shrink the closure anywhere upstream, so it recomputes
// it from Pa (topological order, O(d^2 W)). The closure is a function of Pa, so each graph has
// exactly one state row.
//
// Actions: i * d + j adds i -> j; d * d stops. Backward action i * d + j removes i -> j; a state's
// parents are the graphs with one edge removed, as many as it has edges.
//
// Host-only (kCuda = false): the reward reads the CausalScore's local-score cache. The score is
// built by make() from tensor parameters (the data matrix, the intervention mask, the
// hyperparameters), so the environment describes itself completely through its parameters
// (to_config / from_config, checkpoints, the CLI) and owns its score; see gfncore/envs/dag.py.
#pragma once
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "causal/scores.h"
#include "common/macros.h"
#include "envs/params.h"

namespace gfn {

struct DAG {
  static constexpr const char* kName = "dag";
  static constexpr bool kCuda = false;  // the reward reads a host-side score cache
  static constexpr int kMaxNodes = causal::kMaxNodes;
  static constexpr int kSingleWordNodes = causal::kSingleWordNodes;
  static constexpr int kMaxWords = (kMaxNodes + 31) / 32;  // int32 words per node row

  int d = 0;          // nodes
  int W = 1;          // int32 words per node row
  int max_in = 0;     // in-degree cap (d - 1: none)
  int max_edges = 0;  // most edges of a DAG under the cap
  const causal::CausalScore* score = nullptr;  // null: the reward is the prior alone
  const double* prior_terms = nullptr;         // [d]: the prior's share for k parents (no score)
  double log_r0 = 0.0;                         // log R of the empty graph (the reward feature's origin)

  static void declare(ParamDecl& p) {
    p.integer("num_nodes", 3, 1, kMaxNodes, "nodes d of the graph (more than 64 needs multiword)")
        .integer("max_in_degree", -1, -1, kMaxNodes - 1, "most parents of a node (-1: no limit)")
        .flag("multiword", false, "allow d > 64 (an explicit opt-in: d^2 + 1 actions, 2 d^2 + 1 features)")
        .tensor("data", DType::kFloat64, 2, "observations [N, d] scored by the reward (absent: the prior alone)", true)
        .tensor("interventions", DType::kBool, 2, "[N, d]: True where row r set node j by a perfect intervention",
                true)
        .integer("score", 0, 0, 1, "marginal likelihood: 0 BGe, 1 linear-Gaussian (names: _C.causal_score_kinds)")
        .integer("prior", 0, 0, 2, "graph prior: 0 uniform, 1 Erdos-Renyi, 2 edge count (names: _C.causal_graph_priors)")
        .real("alpha_mu", 1.0, 0.0, HUGE_VAL, "BGe: precision scale of the mean prior", true)
        .real("alpha_w", 0.0, 0.0, HUGE_VAL, "BGe: Wishart degrees of freedom (> d + 1; 0: d + 2)")
        .tensor("mean_prior", DType::kFloat64, 1, "BGe: prior mean [d] (absent: zeros)", true)
        .real("noise_var", 0.1, 0.0, HUGE_VAL, "linear-Gaussian: noise variance", true)
        .real("weight_var", 1.0, 0.0, HUGE_VAL, "linear-Gaussian: prior variance of the weights", true)
        .real("weight_mean", 0.0, -HUGE_VAL, HUGE_VAL, "linear-Gaussian: prior mean of the weights")
        .real("edge_prob", 0.5, 0.0, 1.0, "Erdos-Renyi prior: probability of each ordered pair (in (0, 1))", true)
        .real("edge_penalty", 1.0, -HUGE_VAL, HUGE_VAL, "edge-count prior: log P(G) = -edge_penalty |E|")
        .flag("cache", true, "cache local scores (thread-safe; the rollout and losses revisit families)")
        .integer("cache_capacity", int64_t{1} << 22, 0, int64_t{1} << 40, "most cached local scores (0: no bound)");
  }

  static DAG make(const Params& p) {
    DAG e;
    e.d = p.as_int("num_nodes");
    const bool multiword = p.flag("multiword");
    if (e.d > kSingleWordNodes && !multiword)
      p.fail("num_nodes = ", e.d, " needs multiword=True: more than ", kSingleWordNodes,
             " nodes is an explicit opt-in (", int64_t{e.d} * e.d + 1, " actions, ", 2 * int64_t{e.d} * e.d + 1,
             " features per state)");
    e.W = (e.d + 31) / 32;
    const int cap = p.as_int("max_in_degree");
    e.max_in = cap < 0 || cap > e.d - 1 ? e.d - 1 : cap;
    for (int k = 0; k < e.d; ++k) e.max_edges += k < e.max_in ? k : e.max_in;  // node k of a topological order
    const auto prior = static_cast<causal::GraphPrior>(p.integer("prior"));
    const TensorArg* data = p.tensor("data");
    const TensorArg* iv = p.tensor("interventions");
    if (!data) {
      if (iv) p.fail("interventions were given without data");
      if (p.tensor("mean_prior")) p.fail("mean_prior was given without data");
      try {
        auto terms = std::make_shared<std::vector<double>>(
            causal::graph_prior_terms(prior, e.d, p.real("edge_prob"), p.real("edge_penalty")));
        e.prior_terms = terms->data();
        p.own(terms);
      } catch (const ValueError& err) {
        p.fail(err.what());
      }
      e.log_r0 = e.empty_graph_log_reward();
      return e;
    }
    if (data->size(1) != e.d) p.fail("data must have num_nodes = ", e.d, " columns, got shape ", data->shape_str());
    if (iv && (iv->size(0) != data->size(0) || iv->size(1) != e.d))
      p.fail("interventions must have the shape of data [", data->size(0), ", ", e.d, "], got ", iv->shape_str());
    causal::ScoreConfig cfg;
    cfg.kind = static_cast<causal::ScoreKind>(p.integer("score"));
    cfg.prior = prior;
    cfg.alpha_mu = p.real("alpha_mu");
    cfg.alpha_w = p.real("alpha_w");
    if (const TensorArg* mp = p.tensor("mean_prior")) {
      if (mp->size(0) != e.d) p.fail("mean_prior must have shape [num_nodes] = [", e.d, "], got ", mp->shape_str());
      cfg.mean_prior.assign(mp->data<double>(), mp->data<double>() + e.d);
    }
    cfg.noise_var = p.real("noise_var");
    cfg.weight_var = p.real("weight_var");
    cfg.weight_mean = p.real("weight_mean");
    cfg.edge_prob = p.real("edge_prob");
    cfg.edge_penalty = p.real("edge_penalty");
    cfg.cache = p.flag("cache");
    cfg.cache_capacity = static_cast<uint64_t>(p.integer("cache_capacity"));
    cfg.multiword = multiword;
    // The mask tensor is bool, one byte per entry, exactly the layout the score reads.
    const uint8_t* mask = iv ? static_cast<const uint8_t*>(iv->ptr) : nullptr;
    try {
      auto s = std::make_shared<causal::CausalScore>(data->data<double>(), data->size(0), e.d, mask, cfg);
      e.score = s.get();
      p.own(s);
    } catch (const ValueError& err) {
      p.fail(err.what());
    }
    e.log_r0 = e.empty_graph_log_reward();
    if (!std::isfinite(e.log_r0)) p.fail("the score of the empty graph is not finite");
    return e;
  }
  double empty_graph_log_reward() const {
    std::vector<int32_t> s0(static_cast<size_t>(state_dim()), 0);
    return log_reward(s0.data());
  }

  // -- bit helpers ---------------------------------------------------------------------------
  static bool bit(const int32_t* row, int i) { return (static_cast<uint32_t>(row[i >> 5]) >> (i & 31)) & 1u; }
  static void set_bit(int32_t* row, int i) {
    row[i >> 5] = static_cast<int32_t>(static_cast<uint32_t>(row[i >> 5]) | (1u << (i & 31)));
  }
  int popcount(const int32_t* row) const {
    int c = 0;
    for (int w = 0; w < W; ++w) c += __builtin_popcount(static_cast<uint32_t>(row[w]));
    return c;
  }
  const int32_t* pa(const int32_t* s, int j) const { return s + j * W; }
  const int32_t* de(const int32_t* s, int u) const { return s + (d + u) * W; }
  // The score's parent-set layout: 64-bit words, two of ours each.
  void parents64(const int32_t* s, int j, uint64_t* out) const {
    const int32_t* r = pa(s, j);
    for (int w = 0; w < (W + 1) / 2; ++w) {
      const uint64_t lo = static_cast<uint32_t>(r[2 * w]);
      const uint64_t hi = 2 * w + 1 < W ? static_cast<uint32_t>(r[2 * w + 1]) : 0u;
      out[w] = lo | (hi << 32);
    }
  }

  // De from Pa (out gets the De half of a state row): Kahn's order over bitsets, then
  // De_u = OR over children c of ({c} | De_c) in reverse order. False when Pa has a cycle.
  bool closure(const int32_t* s, int32_t* de_out) const {
    int order[kMaxNodes];
    uint32_t left[kMaxWords];
    for (int w = 0; w < W; ++w) left[w] = 0;
    for (int j = 0; j < d; ++j) left[j >> 5] |= 1u << (j & 31);
    int n = 0;
    while (n < d) {
      const int before = n;
      uint32_t ready[kMaxWords];
      for (int w = 0; w < W; ++w) ready[w] = 0;
      for (int j = 0; j < d; ++j) {
        if (!((left[j >> 5] >> (j & 31)) & 1u)) continue;
        bool free = true;
        for (int w = 0; w < W && free; ++w) free = (static_cast<uint32_t>(pa(s, j)[w]) & left[w]) == 0;
        if (free) {
          ready[j >> 5] |= 1u << (j & 31);
          order[n++] = j;
        }
      }
      if (n == before) return false;
      for (int w = 0; w < W; ++w) left[w] &= ~ready[w];
    }
    for (int q = 0; q < d * W; ++q) de_out[q] = 0;
    for (int t = d - 1; t >= 0; --t) {
      const int u = order[t];
      int32_t* du = de_out + u * W;
      for (int c = 0; c < d; ++c) {
        if (!bit(pa(s, c), u)) continue;
        const int32_t* dc = de_out + c * W;
        for (int w = 0; w < W; ++w) du[w] |= dc[w];
        set_bit(du, c);
      }
    }
    return true;
  }

  // -- the environment -----------------------------------------------------------------------
  int n_actions() const { return d * d + 1; }
  int n_backward_actions() const { return d * d; }
  int state_dim() const { return 2 * d * W; }
  int feature_dim() const { return 2 * d * d + 1; }
  int max_parents() const { return max_edges; }
  int max_length() const { return max_edges + 1; }
  bool is_stop(int64_t a) const { return a == static_cast<int64_t>(d) * d; }

  void initial(int32_t* s) const {
    for (int q = 0; q < state_dim(); ++q) s[q] = 0;
  }
  // A row is a state iff Pa has no bits beyond d, no self-loop, respects the in-degree cap, is
  // acyclic, and De is exactly its closure.
  bool valid(const int32_t* s) const {
    const int tail = d & 31;
    const uint32_t beyond = tail ? ~((1u << tail) - 1u) : 0u;
    for (int j = 0; j < d; ++j) {
      if (static_cast<uint32_t>(pa(s, j)[W - 1]) & beyond) return false;
      if (bit(pa(s, j), j) || popcount(pa(s, j)) > max_in) return false;
    }
    int32_t de_ref[kMaxNodes * kMaxWords];
    if (!closure(s, de_ref)) return false;
    for (int q = 0; q < d * W; ++q)
      if (de_ref[q] != s[d * W + q]) return false;
    return true;
  }
  bool legal(const int32_t* s, int64_t a) const {
    if (a < 0 || a > static_cast<int64_t>(d) * d) return false;
    if (is_stop(a)) return true;
    const int i = static_cast<int>(a / d), j = static_cast<int>(a % d);
    return i != j && !bit(pa(s, j), i) && !bit(de(s, j), i) && popcount(pa(s, j)) < max_in;
  }
  // Per target j, the sources it may not take: itself, its parents, its descendants (a cycle),
  // or every node once its in-degree is at the cap.
  void forbidden(const int32_t* s, uint32_t* forbid) const {
    for (int j = 0; j < d; ++j) {
      const bool full = popcount(pa(s, j)) >= max_in;
      uint32_t* f = forbid + j * W;
      for (int w = 0; w < W; ++w)
        f[w] = full ? ~0u : static_cast<uint32_t>(pa(s, j)[w]) | static_cast<uint32_t>(de(s, j)[w]);
      f[j >> 5] |= 1u << (j & 31);
    }
  }
  // The d x d edge mask written row by row (contiguously) from the per-target words.
  template <typename T>
  void edge_mask(const int32_t* s, T* m) const {
    uint32_t forbid[kMaxNodes * kMaxWords];
    forbidden(s, forbid);
    for (int i = 0; i < d; ++i) {
      const int wi = i >> 5;
      const uint32_t bi = 1u << (i & 31);
      T* mi = m + i * d;
      for (int j = 0; j < d; ++j) mi[j] = T((forbid[j * W + wi] & bi) == 0);
    }
  }
  void forward_mask(const int32_t* s, bool* m) const {
    edge_mask(s, m);
    m[d * d] = true;
  }
  void step(const int32_t* s, int64_t a, int32_t* out) const {
    const int D = state_dim();
    for (int q = 0; q < D; ++q) out[q] = s[q];
    if (is_stop(a)) return;
    const int i = static_cast<int>(a / d), j = static_cast<int>(a % d);
    set_bit(out + j * W, i);
    // Every u that reaches i (and i itself) now reaches j and all j reaches. j does not reach i
    // (the edge is legal), so De_j itself is unchanged and may be read from s.
    const int32_t* dj = de(s, j);
    for (int u = 0; u < d; ++u) {
      if (u != i && !bit(de(s, u), i)) continue;
      int32_t* du = out + (d + u) * W;
      for (int w = 0; w < W; ++w) du[w] |= dj[w];
      set_bit(du, j);
    }
  }
  bool backward_legal(const int32_t* s, int64_t b) const {
    if (b < 0 || b >= static_cast<int64_t>(d) * d) return false;
    return bit(pa(s, static_cast<int>(b % d)), static_cast<int>(b / d));
  }
  void backward_mask(const int32_t* s, bool* m) const {
    for (int i = 0; i < d; ++i)
      for (int j = 0; j < d; ++j) m[i * d + j] = bit(pa(s, j), i);
  }
  int n_parents(const int32_t* s) const {
    int c = 0;
    for (int j = 0; j < d; ++j) c += popcount(pa(s, j));
    return c;
  }
  void backward_step(const int32_t* s, int64_t b, int32_t* out) const {
    for (int q = 0; q < d * W; ++q) out[q] = s[q];
    const int i = static_cast<int>(b / d), j = static_cast<int>(b % d);
    int32_t* pj = out + j * W;
    pj[i >> 5] = static_cast<int32_t>(static_cast<uint32_t>(pj[i >> 5]) & ~(1u << (i & 31)));
    closure(out, out + d * W);  // a subgraph of a DAG is acyclic
  }
  int64_t forward_action_of(int64_t b) const { return b; }
  int64_t backward_action_of(int64_t a) const { return a; }
  bool is_initial(const int32_t* s) const {
    for (int q = 0; q < d * W; ++q)
      if (s[q] != 0) return false;
    return true;
  }
  // [adjacency (i * d + j: i -> j), legal edges (the forward mask without stop), log R(s) -
  // log R(empty graph)]: the policy sees which edges exist, which it may add, and the state's
  // reward (gfncore.causal.DAGPolicy offsets the stop logit by it: P_F(stop | s) = R(s) / F(s),
  // so the network learns log F(s) - log R(s), tens of nats, instead of log F(s), hundreds).
  template <typename F>
  void encode(const int32_t* s, F* f) const {
    for (int i = 0; i < d; ++i)
      for (int j = 0; j < d; ++j) f[i * d + j] = F(bit(pa(s, j), i));
    edge_mask(s, f + d * d);
    f[2 * d * d] = F(log_reward(s) - log_r0);
  }
  double log_reward(const int32_t* s) const {
    double r = 0.0;
    if (score) {
      uint64_t p64[causal::kMaxWords];
      for (int j = 0; j < d; ++j) {
        parents64(s, j, p64);
        r += score->local_score(j, p64);
      }
    } else {
      for (int j = 0; j < d; ++j) r += prior_terms[popcount(pa(s, j))];
    }
    return r;
  }
  // log R(step(s, a)) - log R(s): one family changes, so two cached local scores (0 for stop).
  double log_reward_delta(const int32_t* s, int64_t a) const {
    if (is_stop(a)) return 0.0;
    const int i = static_cast<int>(a / d), j = static_cast<int>(a % d);
    if (!score) {
      const int k = popcount(pa(s, j));
      return prior_terms[k + 1] - prior_terms[k];
    }
    uint64_t p64[causal::kMaxWords];
    parents64(s, j, p64);
    return score->log_score_delta(j, p64, i);
  }
};

}  // namespace gfn
