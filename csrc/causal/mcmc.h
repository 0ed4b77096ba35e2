// Structure MCMC over DAGs: MC^3 (Madigan & York 1995; Giudici & Castelo 2003) with add,
// delete and reverse moves, on the same score (and local-score cache, and interventional rows)
// as the DAG environment.
//
// From graph G the sampler proposes one move uniformly among every legal move: add i -> j
// (acyclic, j under the in-degree cap), delete i -> j, reverse i -> j (acyclic without the edge,
// i under the cap). Every move leads to a different graph and its inverse is legal from there,
// so with N(G) the number of legal moves, q(G' | G) = 1 / |N(G)| and the Metropolis-Hastings
// acceptance is
//     min(1, R(G') |N(G)| / (R(G) |N(G')|)),
// the neighbourhood sizes included (without them the chain is biased towards graphs with few
// neighbours). log R(G') - log R(G) needs the local scores of the one or two changed families.
//
// Optionally (swaps = true) a fourth move replaces one parent of j by a non-parent: i -> j
// becomes k -> j (k not a descendant of j; its inverse is legal from the new graph). With an
// in-degree cap a full node otherwise changes a parent only through a delete then an add, and at
// d = 20 MC^3 chains stay stuck far below the posterior's mass (measured: the README).
//
// Acyclicity: the chain keeps each node's descendants as a bitset (d <= 64: one word), rebuilt
// in O(d + |E|) word operations by a topological pass after every proposal; adding i -> j closes
// a cycle iff i is a descendant of j, and reversing i -> j does iff i reaches j through another
// child.
//
// Chains run in parallel (parallel_for over chains); chain c draws its randoms from Philox with
// (seed, subsequence c, offset = step), so the result does not depend on the thread count.
// Torch-free; causal/structure_bind.cpp validates every argument before calling run_mcmc.
#pragma once
#include <cstdint>

#include "causal/scores.h"

namespace gfn {
namespace causal {

constexpr int kMoveKinds = 4;  // add, delete, reverse, swap

struct McmcParams {
  int chains = 1;
  int d = 0;                 // nodes (<= 64)
  int max_parents = -1;      // in-degree cap; < 0: none
  int64_t burn_in = 0;       // moves before anything is recorded
  int64_t steps = 0;         // moves recorded per chain after the burn-in
  int64_t thin = 1;          // a sample every `thin` recorded moves (steps / thin samples per chain)
  uint64_t seed = 0;
  bool swaps = true;         // the parent-swap move
  const uint64_t* start = nullptr;  // [chains, d] parent bitsets of the start graphs (DAGs under the cap), or null: empty

  // Outputs (all written; sized by the caller).
  uint64_t* samples = nullptr;      // [chains, steps / thin, d] parent bitsets
  double* sample_log_r = nullptr;   // [chains, steps / thin]
  double* edge_counts = nullptr;    // [chains, d, d]: how many of the `steps` recorded states hold i -> j
  int64_t* proposed = nullptr;      // [chains, kMoveKinds]: add, delete, reverse, swap proposals (burn-in included)
  int64_t* accepted = nullptr;      // [chains, kMoveKinds]
  uint64_t* final_state = nullptr;  // [chains, d]
  double* final_log_r = nullptr;    // [chains]
};

// Returns 0, or the smallest chain + 1 whose score came out NaN (a numerically singular family).
int64_t run_mcmc(const CausalScore& score, const McmcParams& p);

// The number of legal add / delete / reverse (/ swap) moves of the graph with parent bitsets pa[d]: the
// |N(G)| of the Hastings ratio (exposed for the tests, which count it by brute force).
int64_t count_moves(const uint64_t* pa, int d, int max_parents, bool swaps);

}  // namespace causal
}  // namespace gfn
