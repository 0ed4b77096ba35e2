// The exact posterior over DAGs by dynamic programming over node subsets: log Z and every
// edge marginal P(i -> j | D), for any modular score (every prior of causal/scores.h, the
// uniform one included) with an in-degree cap, up to d ~ 14.
//
// Order-modular DPs (Koivisto & Sood 2004) are exact for a prior over (order, graph) pairs, not
// for a prior over DAGs, so they are not used. Instead Z = sum over DAGs G of prod_j f_j(Pa_j)
// (f_j = exp LocalScore) comes from the sink recursion (Robinson's DAG count with weights;
// Tian & He 2009, "Computing posterior probabilities of structural features in Bayesian
// networks", eq. 7): for a node set S, with Z(empty) = 1,
//     Z(S) = sum_{empty != T subset S} (-1)^(|T|+1) Z(S \ T) prod_{j in T} A_j(S \ T),
//     A_j(U) = sum_{P subset U, |P| <= cap} f_j(P),
// (inclusion-exclusion over the set of sinks T of the DAG on S). A_j comes from a subset-sum
// (zeta) transform of the local scores, in O(d 2^d) per node; the recursion is O(3^d) and is run
// "pushing": once Z(U) is final, it adds its term to every S = U + T, with the weight
// sum_{j in T} log A_j(U) built one bit at a time. Everything is in log space; the signed sums
// keep a running (max, scaled sum) pair, and a sum that cancels to <= 0 raises (it never did in
// the tests: the positive terms exceed the result by a small factor, as in the DAG count).
//
// The edge marginal P(i -> j) = Z_ij / Z where Z_ij is the same recursion with f_j(P) set to 0
// for every P without i: d (d - 1) more recursions, run in parallel over edges. Cost at d = 12:
// 3^12 = 531,441 terms per recursion; d = 14: 4.8 M (seconds in all, on one thread).
#pragma once
#include <cstdint>
#include <vector>

#include "causal/scores.h"

namespace gfn {
namespace causal {

constexpr int kDpMaxNodes = 16;

struct DagDpResult {
  double log_z = 0;
  std::vector<double> edge_marginals;  // [d, d] row-major: P(i -> j | D) at i * d + j
  int64_t families = 0;                // local scores evaluated
};

// Raises gfn::ValueError on d > kDpMaxNodes, a NaN local score, or a cancelled sum.
DagDpResult exact_dag_dp(const CausalScore& score, int max_parents, bool edges);

}  // namespace causal
}  // namespace gfn
