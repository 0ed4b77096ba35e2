// MC^3 structure MCMC: see causal/mcmc.h for the moves and the Hastings ratio.
#include "causal/mcmc.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/parallel.h"
#include "common/philox.h"

namespace gfn {
namespace causal {
namespace {

enum MoveKind : int { kAdd = 0, kDelete = 1, kReverse = 2, kSwap = 3 };

struct Move {
  int kind, i, j;  // the edge i -> j added, deleted or reversed (swap: i -> j replaced by k -> j)
  int k;
};

inline uint64_t bit(int i) { return uint64_t(1) << i; }
inline int popcount(uint64_t x) { return __builtin_popcountll(x); }

// The k-th (from 0) set bit of x; x has more than k bits set.
inline int kth_bit(uint64_t x, int64_t k) {
  for (; k > 0; --k) x &= x - 1;
  return __builtin_ctzll(x);
}

// One graph: parent and child bitsets, in-degrees, and every node's descendants.
struct Graph {
  int d = 0;
  uint64_t all = 0;  // the d node bits
  uint64_t pa[64], ch[64], desc[64];
  int npa[64];

  void copy_from(const Graph& o) {
    d = o.d;
    all = o.all;
    std::memcpy(pa, o.pa, sizeof(uint64_t) * d);
    std::memcpy(npa, o.npa, sizeof(int) * d);
  }

  // Children and descendants from the parent sets (Kahn's order, then descendants in reverse
  // order): O(d + |E|). False when the graph has a cycle.
  bool rebuild() {
    int indeg[64], order[64];
    for (int u = 0; u < d; ++u) ch[u] = 0;
    int head = 0, tail = 0;
    for (int j = 0; j < d; ++j) {
      npa[j] = popcount(pa[j]);
      indeg[j] = npa[j];
      for (uint64_t x = pa[j]; x; x &= x - 1) ch[__builtin_ctzll(x)] |= bit(j);
      if (indeg[j] == 0) order[tail++] = j;
    }
    while (head < tail) {
      const int u = order[head++];
      for (uint64_t x = ch[u]; x; x &= x - 1) {
        const int c = __builtin_ctzll(x);
        if (--indeg[c] == 0) order[tail++] = c;
      }
    }
    if (tail < d) return false;
    for (int q = d - 1; q >= 0; --q) {
      const int u = order[q];
      uint64_t r = 0;
      for (uint64_t x = ch[u]; x; x &= x - 1) {
        const int c = __builtin_ctzll(x);
        r |= bit(c) | desc[c];
      }
      desc[u] = r;
    }
    return true;
  }

  // Nodes i may add as parents of j: not already parents, not j, not descendants of j.
  uint64_t add_candidates(int j) const { return all & ~pa[j] & ~bit(j) & ~desc[j]; }

  // Whether reversing i -> j keeps the graph acyclic: i must not reach j through another child
  // (a path from another child c cannot use the edge i -> j itself: c would then reach i).
  bool reversible(int i, int j) const {
    uint64_t r = 0;
    for (uint64_t x = ch[i] & ~bit(j); x; x &= x - 1) {
      const int c = __builtin_ctzll(x);
      r |= bit(c) | desc[c];
    }
    return !((r >> j) & 1);
  }
};

// |N(G)|, counted in the order `select_move` walks.
int64_t count_graph_moves(const Graph& g, int K, bool swaps) {
  int64_t n = 0;
  for (int j = 0; j < g.d; ++j) {
    n += g.npa[j];
    const int a = popcount(g.add_candidates(j));
    if (g.npa[j] < K) n += a;
    if (swaps) n += static_cast<int64_t>(g.npa[j]) * a;
    for (uint64_t x = g.pa[j]; x; x &= x - 1) {
      const int i = __builtin_ctzll(x);
      if (g.npa[i] < K && g.reversible(i, j)) ++n;
    }
  }
  return n;
}

// The u-th legal move (0 <= u < count_graph_moves): node by node, its deletions, additions,
// then reversals of its in-edges.
Move select_move(const Graph& g, int K, bool swaps, int64_t u) {
  for (int j = 0; j < g.d; ++j) {
    if (u < g.npa[j]) return Move{kDelete, kth_bit(g.pa[j], u), j, 0};
    u -= g.npa[j];
    const uint64_t cand = g.add_candidates(j);
    const int c = popcount(cand);
    if (g.npa[j] < K) {
      if (u < c) return Move{kAdd, kth_bit(cand, u), j, 0};
      u -= c;
    }
    if (swaps) {
      const int64_t ns = static_cast<int64_t>(g.npa[j]) * c;
      if (u < ns) return Move{kSwap, kth_bit(g.pa[j], u / c), j, kth_bit(cand, u % c)};
      u -= ns;
    }
    for (uint64_t x = g.pa[j]; x; x &= x - 1) {
      const int i = __builtin_ctzll(x);
      if (g.npa[i] < K && g.reversible(i, j)) {
        if (u == 0) return Move{kReverse, i, j, 0};
        --u;
      }
    }
  }
  return Move{-1, 0, 0, 0};  // unreachable for u < |N(G)|
}

struct EdgeClock {
  // Recorded-state bookkeeping without touching d^2 counters per move: an edge's count grows by
  // the number of recorded states it was present in, settled when it leaves.
  std::vector<int64_t> since;
  double* counts;
  int d;
  void open(int i, int j, int64_t t) { since[static_cast<size_t>(i * d + j)] = t; }
  void close(int i, int j, int64_t t) { counts[i * d + j] += static_cast<double>(t - since[static_cast<size_t>(i * d + j)]); }
};

}  // namespace

int64_t count_moves(const uint64_t* pa, int d, int max_parents, bool swaps) {
  Graph g;
  g.d = d;
  g.all = d == 64 ? ~uint64_t(0) : bit(d) - 1;
  for (int j = 0; j < d; ++j) g.pa[j] = pa[j];
  if (!g.rebuild()) return -1;
  return count_graph_moves(g, max_parents < 0 ? d : max_parents, swaps);
}

int64_t run_mcmc(const CausalScore& score, const McmcParams& p) {
  const int d = p.d;
  const int K = p.max_parents < 0 ? d : p.max_parents;
  const int64_t n_rec = p.thin > 0 ? p.steps / p.thin : 0;
  std::atomic<int64_t> first_bad{0};

  parallel_for(p.chains, 0, [&](int64_t c) {
    Graph cur, nxt;
    cur.d = d;
    cur.all = d == 64 ? ~uint64_t(0) : bit(d) - 1;
    for (int j = 0; j < d; ++j) cur.pa[j] = p.start ? p.start[c * d + j] : 0;
    cur.rebuild();  // the binding checked that the start graphs are DAGs
    double ls[64];
    for (int j = 0; j < d; ++j) ls[j] = score.local_score(j, cur.pa[j]);
    int64_t n_cur = count_graph_moves(cur, K, p.swaps);
    int64_t* prop = p.proposed + kMoveKinds * c;
    int64_t* acc = p.accepted + kMoveKinds * c;
    for (int q = 0; q < kMoveKinds; ++q) prop[q] = acc[q] = 0;
    double* counts = p.edge_counts + c * d * d;
    for (int q = 0; q < d * d; ++q) counts[q] = 0;
    EdgeClock clock{std::vector<int64_t>(static_cast<size_t>(d * d), 0), counts, d};
    bool bad = false;

    const int64_t total = p.burn_in + p.steps;
    for (int64_t s = 0; s < total && !bad; ++s) {
      const int64_t t = s - p.burn_in;  // index of the recorded state this move produces (< 0: burn-in)
      if (t == 0)
        for (int j = 0; j < d; ++j)
          for (uint64_t x = cur.pa[j]; x; x &= x - 1) clock.open(__builtin_ctzll(x), j, 0);
      if (n_cur > 0) {
        const Philox4 r = philox(p.seed, static_cast<uint64_t>(c), static_cast<uint64_t>(s));
        const double u_move = uniform53(r.x[0], r.x[1]), u_acc = uniform53(r.x[2], r.x[3]);
        int64_t idx = static_cast<int64_t>(u_move * static_cast<double>(n_cur));
        if (idx >= n_cur) idx = n_cur - 1;
        const Move m = select_move(cur, K, p.swaps, idx);
        nxt.copy_from(cur);
        double ls_j, ls_i = 0, delta;
        if (m.kind == kAdd) {
          nxt.pa[m.j] |= bit(m.i);
          ls_j = score.local_score(m.j, nxt.pa[m.j]);
          delta = ls_j - ls[m.j];
        } else if (m.kind == kDelete) {
          nxt.pa[m.j] &= ~bit(m.i);
          ls_j = score.local_score(m.j, nxt.pa[m.j]);
          delta = ls_j - ls[m.j];
        } else if (m.kind == kSwap) {
          nxt.pa[m.j] = (nxt.pa[m.j] & ~bit(m.i)) | bit(m.k);
          ls_j = score.local_score(m.j, nxt.pa[m.j]);
          delta = ls_j - ls[m.j];
        } else {
          nxt.pa[m.j] &= ~bit(m.i);
          nxt.pa[m.i] |= bit(m.j);
          ls_j = score.local_score(m.j, nxt.pa[m.j]);
          ls_i = score.local_score(m.i, nxt.pa[m.i]);
          delta = ls_j - ls[m.j] + ls_i - ls[m.i];
        }
        if (std::isnan(delta)) {
          bad = true;
          break;
        }
        nxt.rebuild();  // acyclic by construction of the move set
        const int64_t n_new = count_graph_moves(nxt, K, p.swaps);
        ++prop[m.kind];
        const double log_alpha = delta + std::log(static_cast<double>(n_cur)) - std::log(static_cast<double>(n_new));
        if (log_alpha >= 0 || u_acc < std::exp(log_alpha)) {
          ++acc[m.kind];
          if (t >= 0) {
            if (m.kind == kAdd) clock.open(m.i, m.j, t);
            else if (m.kind == kDelete) clock.close(m.i, m.j, t);
            else if (m.kind == kSwap) {
              clock.close(m.i, m.j, t);
              clock.open(m.k, m.j, t);
            } else {
              clock.close(m.i, m.j, t);
              clock.open(m.j, m.i, t);
            }
          }
          ls[m.j] = ls_j;
          if (m.kind == kReverse) ls[m.i] = ls_i;
          std::swap(cur, nxt);
          n_cur = n_new;
        }
      }
      if (t >= 0 && (t + 1) % p.thin == 0) {
        const int64_t k = (t + 1) / p.thin - 1;
        if (k < n_rec) {
          uint64_t* out = p.samples + (c * n_rec + k) * d;
          double lr = 0;
          for (int j = 0; j < d; ++j) {
            out[j] = cur.pa[j];
            lr += ls[j];
          }
          p.sample_log_r[c * n_rec + k] = lr;
        }
      }
    }
    if (bad) {
      int64_t want = c + 1, seen = first_bad.load();
      while ((seen == 0 || want < seen) && !first_bad.compare_exchange_weak(seen, want)) {
      }
      return;
    }
    if (p.steps > 0)
      for (int j = 0; j < d; ++j)
        for (uint64_t x = cur.pa[j]; x; x &= x - 1) clock.close(__builtin_ctzll(x), j, p.steps);
    double lr = 0;
    for (int j = 0; j < d; ++j) {
      p.final_state[c * d + j] = cur.pa[j];
      lr += ls[j];
    }
    p.final_log_r[c] = lr;
  });
  return first_bad.load();
}

}  // namespace causal
}  // namespace gfn
