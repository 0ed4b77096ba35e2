// Bayesian scores of causal graphs: the log reward of a DAG GFlowNet,
//
//     log R(G) = log P(G) + log P(D | G) = sum_j LocalScore(j, Pa_j),
//     LocalScore(j, Pa_j) = log P(D_j | D_Pa_j) + log P_prior(j, |Pa_j|),
//
// for two marginal likelihoods (BGe; linear-Gaussian with known noise) and three modular graph
// priors (uniform, Erdos-Renyi, edge count). Host-only and torch-free: an environment struct
// holds a `const CausalScore*` and calls local_score / log_score_delta from any thread; whoever
// builds the environment keeps a std::shared_ptr to the score alive (causal/scores_py.h hands
// out the one behind a Python CausalScore). The object is not copyable.
//
// Interventional data (perfect interventions, Cooper & Yoo 1999; Eaton & Murphy 2007): row r
// may name the nodes set by intervention in that row, and node j's family is scored only on the
// rows where j was NOT intervened on. Nodes with the same intervened rows share one table of
// sufficient statistics (observational data: one table for every node).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "causal/score_cache.h"

namespace gfn {
namespace causal {

constexpr int kSingleWordNodes = 64;  // d <= 64: a parent set is one uint64
constexpr int kMaxWords = 4;
constexpr int kMaxNodes = 64 * kMaxWords;  // d > 64 only with ScoreConfig::multiword

enum class ScoreKind : int { kBGe = 0, kLinGauss = 1 };
enum class GraphPrior : int { kUniform = 0, kErdosRenyi = 1, kEdge = 2 };

// Every hyperparameter, with the defaults of DAG-GFlowNet (Deleu et al. 2022). Validated by the
// CausalScore constructor, which raises gfn::ValueError naming the bad field.
struct ScoreConfig {
  ScoreKind kind = ScoreKind::kBGe;
  GraphPrior prior = GraphPrior::kUniform;
  // BGe (Geiger & Heckerman 1994, 2002; Kuipers, Moffa & Heckerman 2014, addendum):
  // Normal-Wishart prior, mean ~ N(nu, (alpha_mu W)^-1), W ~ Wishart(alpha_w, T^-1) with
  // T = t I, t = alpha_mu (alpha_w - d - 1) / (alpha_mu + 1). alpha_w <= 0 means d + 2.
  double alpha_mu = 1.0;
  double alpha_w = 0.0;
  std::vector<double> mean_prior;  // nu, length d; empty means zeros
  // Linear-Gaussian: x_j = X_Pa w + e, e ~ N(0, noise_var I), w ~ N(weight_mean 1, weight_var I);
  // the weights integrated out, x_j | X_Pa ~ N(weight_mean X_Pa 1, noise_var I + weight_var X_Pa X_Pa^T).
  // No intercept: centre the data (defaults of DAG-GFlowNet's LinearGaussianScore: noise 0.1, prior 1).
  double noise_var = 0.1;
  double weight_var = 1.0;
  double weight_mean = 0.0;
  // Erdos-Renyi: each ordered pair (i, j) an edge with probability edge_prob, independently, so
  // log P(G) = |E| log p + (d(d-1) - |E|) log(1 - p), i.e. per node k log p + (d-1-k) log(1-p)
  // (DAG-GFlowNet's ErdosRenyiPrior, with p given directly).
  double edge_prob = 0.5;
  // Edge count: log P(G) = -edge_penalty |E| (DAG-GFlowNet's EdgePrior(beta) is edge_penalty = -log beta).
  double edge_penalty = 1.0;
  // Local-score cache.
  bool cache = true;
  int cache_shards = 64;
  uint64_t cache_capacity = uint64_t(1) << 22;  // entries kept; 0: unbounded
  // d > 64 (up to kMaxNodes) is an explicit opt-in: parent sets then take ceil(d/64) words.
  bool multiword = false;
};

const char* kind_name(ScoreKind k);
const char* prior_name(GraphPrior p);

// The graph prior's share of LocalScore(j, Pa) for |Pa| = k = 0..d-1 (a modular prior splits
// log P(G) over the nodes). Raises gfn::ValueError on edge_prob outside (0, 1) for Erdos-Renyi
// or a non-finite edge_penalty. Used by CausalScore and by a DAG environment without data.
std::vector<double> graph_prior_terms(GraphPrior prior, int d, double edge_prob, double edge_penalty);

class CausalScore {
 public:
  // data: [n_rows, n_nodes] row-major float64 (copied; the score keeps only sufficient
  // statistics). intervened: [n_rows, n_nodes] row-major, nonzero where node j was set by
  // intervention in row r, or nullptr for purely observational data (also copied).
  // Raises gfn::ValueError on bad sizes, non-finite data or hyperparameters out of range.
  CausalScore(const double* data, int64_t n_rows, int64_t n_nodes, const uint8_t* intervened, const ScoreConfig& cfg);

  int num_nodes() const { return d_; }
  int num_words() const { return words_; }  // uint64 words per parent set
  int64_t num_rows() const { return n_rows_; }
  int64_t rows_for_node(int j) const { return groups_[group_of_[j]].n; }  // rows where j was not intervened on
  int num_groups() const { return static_cast<int>(groups_.size()); }
  const ScoreConfig& config() const { return cfg_; }  // alpha_w and mean_prior filled in

  // ---- The hot path. Thread-safe (const; the cache synchronises itself); never raises. ----
  // `parents` points to num_words() words: bit i (word i / 64, bit i % 64) set when i -> j.
  // Preconditions (the caller's, checked by the Python bindings): 0 <= j < d, bit j clear,
  // no bit >= d set, and for deltas bit i clear and i != j. A numerically singular family
  // (never for BGe, whose scatter matrix is >= t I) returns NaN.
  double local_score(int j, const uint64_t* parents) const;
  double local_score(int j, uint64_t parents) const { return local_score(j, &parents); }  // d <= 64
  // LocalScore(j, Pa ∪ {i}) - LocalScore(j, Pa): the change of log R(G) when i -> j is added.
  double log_score_delta(int j, const uint64_t* parents_before, int i) const;
  double log_score_delta(int j, uint64_t parents_before, int i) const;  // d <= 64
  // The same without touching the cache (for tests and benchmarks).
  double compute_local_score(int j, const uint64_t* parents) const;
  // log R(G) of one graph: adj row-major [d, d] bytes, adj[i * d + j] != 0 when i -> j.
  double log_score(const uint8_t* adj) const;
  // The prior's share of LocalScore(j, Pa) when |Pa| = k.
  double log_prior_term(int k) const { return prior_term_[static_cast<size_t>(k)]; }

  // Counters are exact while no clear_cache runs concurrently; clear_cache may overlap queries
  // (they miss and recompute) but not the destructor.
  CacheStats cache_stats() const;
  void clear_cache();

 private:
  struct Group {
    int64_t n = 0;              // rows scored
    std::vector<double> mat;    // [d, d]: BGe posterior scatter R, or the Gram matrix X^T X (lin-Gauss)
    std::vector<double> konst;  // [d]: everything in the local score that depends only on |Pa|
  };
  void build_groups(const double* data, const uint8_t* intervened);
  void finish_group(Group& g) const;
  double bge(const Group& g, int j, const int* pa, int k) const;
  double lingauss(const Group& g, int j, const int* pa, int k) const;

  ScoreConfig cfg_;
  int d_ = 0;
  int words_ = 1;
  int64_t n_rows_ = 0;
  double t_ = 0;  // BGe prior scale t
  std::vector<Group> groups_;
  std::vector<int> group_of_;         // [d]
  std::vector<double> prior_term_;    // [d]: log prior share for k parents
  std::unique_ptr<LocalScoreCache<1>> cache1_;
  std::unique_ptr<LocalScoreCache<kMaxWords>> cacheN_;
};

}  // namespace causal
}  // namespace gfn
