// Exact log Z and edge marginals by the sink recursion: see causal/dag_dp.h.
#include "causal/dag_dp.h"

#include <atomic>
#include <cmath>
#include <limits>

#include "common/check.h"
#include "common/parallel.h"

namespace gfn {
namespace causal {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

inline double log_add(double a, double b) {
  if (a == kNegInf) return b;
  if (b == kNegInf) return a;
  return a > b ? a + std::log1p(std::exp(b - a)) : b + std::log1p(std::exp(a - b));
}

// A signed sum of exp(t) terms kept as exp(m) * s.
struct SignedLogSum {
  double m = kNegInf, s = 0;
  void add(double t, bool negative) {
    if (t == kNegInf) return;
    const double sg = negative ? -1.0 : 1.0;
    if (t <= m) {
      s += sg * std::exp(t - m);
    } else {
      s = s * std::exp(m - t) + sg;
      m = t;
    }
  }
};

// log A_j(U) for every U over the d bits, from log f_j (-inf off the allowed families), in place.
void zeta_log(std::vector<double>& a, int d) {
  const uint64_t n = uint64_t(1) << d;
  for (int b = 0; b < d; ++b) {
    const uint64_t m = uint64_t(1) << b;
    for (uint64_t U = 0; U < n; ++U)
      if (U & m) a[U] = log_add(a[U], a[U ^ m]);
  }
}

// log Z(V) by the pushing sink recursion, given log A_j(U) at logA[j][U]. Returns NaN when a sum
// cancels to <= 0.
double sink_recursion(const std::vector<std::vector<double>>& logA, int d, std::vector<SignedLogSum>& acc,
                      std::vector<double>& logZ, std::vector<double>& w) {
  const uint64_t n = uint64_t(1) << d, full = n - 1;
  for (uint64_t S = 0; S < n; ++S) acc[S] = SignedLogSum{};
  logZ[0] = 0;
  for (uint64_t U = 0; U < n; ++U) {
    if (U) {
      const SignedLogSum& a = acc[U];
      if (a.m == kNegInf) logZ[U] = kNegInf;  // every term was zero: no DAG on U has positive weight
      else if (!(a.s > 0)) return std::nan("");
      else logZ[U] = a.m + std::log(a.s);
    }
    const double z = logZ[U];
    if (z == kNegInf) continue;
    const uint64_t comp = full & ~U;
    w[0] = 0;
    // Subsets T of comp in increasing order; T minus its lowest bit comes earlier.
    for (uint64_t T = (0 - comp) & comp; T; T = (T - comp) & comp) {
      const int low = __builtin_ctzll(T);
      const uint64_t rest = T & (T - 1);
      const double wt = w[rest] + logA[static_cast<size_t>(low)][U];
      w[T] = wt;
      acc[U | T].add(z + wt, (__builtin_popcountll(T) & 1) == 0);
    }
  }
  return logZ[full];
}

}  // namespace

DagDpResult exact_dag_dp(const CausalScore& score, int max_parents, bool edges) {
  const int d = score.num_nodes();
  GFN_CHECK(d >= 1 && d <= kDpMaxNodes, "the exact DP runs over all 2^d node subsets and 3^d (subset, sink set) ",
            "pairs: d must be in [1, ", kDpMaxNodes, "], got d = ", d, " (use MCMC beyond)");
  const int K = max_parents < 0 ? d - 1 : max_parents;
  const uint64_t n = uint64_t(1) << d;

  // log f_j(P) for every allowed family, -inf elsewhere; scored in parallel over nodes.
  std::vector<std::vector<double>> logf(static_cast<size_t>(d), std::vector<double>(n, kNegInf));
  std::atomic<int64_t> families{0};
  std::atomic<int> nan_node{-1};
  parallel_for(d, 0, [&](int64_t j) {
    int64_t cnt = 0;
    for (uint64_t P = 0; P < n; ++P) {
      if ((P >> j) & 1 || __builtin_popcountll(P) > K) continue;
      const double v = score.local_score(static_cast<int>(j), P);
      if (std::isnan(v)) nan_node.store(static_cast<int>(j));
      logf[static_cast<size_t>(j)][P] = v;
      ++cnt;
    }
    families += cnt;
  });
  GFN_CHECK(nan_node.load() < 0, "a local score of node ", nan_node.load(), " is NaN (numerically singular family)");

  std::vector<std::vector<double>> logA = logf;
  parallel_for(d, 0, [&](int64_t j) { zeta_log(logA[static_cast<size_t>(j)], d); });

  DagDpResult res;
  res.families = families.load();
  {
    std::vector<SignedLogSum> acc(n);
    std::vector<double> logZ(n), w(n);
    res.log_z = sink_recursion(logA, d, acc, logZ, w);
  }
  GFN_CHECK(std::isfinite(res.log_z), "the exact DP's signed sum cancelled to <= 0 (log Z = ", res.log_z,
            "): the scores are too extreme for double precision");
  res.edge_marginals.assign(static_cast<size_t>(d) * d, 0.0);
  if (!edges || d == 1) return res;

  // One recursion per edge i -> j, with f_j restricted to families holding i.
  std::atomic<int64_t> bad_edge{-1};
  parallel_for(static_cast<int64_t>(d) * d, 0, [&](int64_t e) {
    const int i = static_cast<int>(e / d), j = static_cast<int>(e % d);
    if (i == j || K == 0) return;
    std::vector<std::vector<double>> A = logA;  // only row j changes; copying keeps the code plain
    std::vector<double>& aj = A[static_cast<size_t>(j)];
    aj = logf[static_cast<size_t>(j)];
    for (uint64_t P = 0; P < n; ++P)
      if (!((P >> i) & 1)) aj[P] = kNegInf;
    zeta_log(aj, d);
    std::vector<SignedLogSum> acc(n);
    std::vector<double> logZ(n), w(n);
    const double lz = sink_recursion(A, d, acc, logZ, w);
    if (std::isnan(lz)) bad_edge.store(e);
    else res.edge_marginals[static_cast<size_t>(e)] = std::exp(lz - res.log_z);
  });
  GFN_CHECK(bad_edge.load() < 0, "the exact DP's signed sum cancelled to <= 0 for the edge ", bad_edge.load() / d,
            " -> ", bad_edge.load() % d, ": the scores are too extreme for double precision");
  return res;
}

}  // namespace causal
}  // namespace gfn
