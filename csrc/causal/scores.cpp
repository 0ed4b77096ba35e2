// The score math of causal/scores.h: sufficient statistics once, then O(|Pa|^3) per family.
#include "causal/scores.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "common/check.h"
#include "common/parallel.h"

namespace gfn {
namespace causal {

const char* kind_name(ScoreKind k) { return k == ScoreKind::kBGe ? "bge" : "lingauss"; }
const char* prior_name(GraphPrior p) {
  switch (p) {
    case GraphPrior::kUniform: return "uniform";
    case GraphPrior::kErdosRenyi: return "erdos_renyi";
    default: return "edge";
  }
}

std::vector<double> graph_prior_terms(GraphPrior prior, int d, double edge_prob, double edge_penalty) {
  if (prior == GraphPrior::kErdosRenyi)
    GFN_CHECK(edge_prob > 0 && edge_prob < 1, "edge_prob must be in (0, 1), got ", edge_prob);
  GFN_CHECK(std::isfinite(edge_penalty), "edge_penalty must be finite, got ", edge_penalty);
  std::vector<double> terms(static_cast<size_t>(d > 0 ? d : 0), 0.0);
  for (int k = 0; k < d; ++k) {
    if (prior == GraphPrior::kErdosRenyi)
      terms[static_cast<size_t>(k)] = k * std::log(edge_prob) + (d - 1 - k) * std::log1p(-edge_prob);
    else if (prior == GraphPrior::kEdge)
      terms[static_cast<size_t>(k)] = -edge_penalty * k;
  }
  return terms;
}

namespace {

constexpr double kLogPi = 1.1447298858494002;     // log(pi)
constexpr double kLog2Pi = 1.8378770664093453;    // log(2 pi)

// In-place lower Cholesky factor of a k x k symmetric positive-definite matrix (row-major;
// only the lower triangle is read). False when a pivot is not positive.
bool cholesky(double* a, int k) {
  for (int c = 0; c < k; ++c) {
    double s = a[c * k + c];
    for (int p = 0; p < c; ++p) s -= a[c * k + p] * a[c * k + p];
    if (!(s > 0)) return false;
    const double l = std::sqrt(s);
    a[c * k + c] = l;
    for (int r = c + 1; r < k; ++r) {
      double v = a[r * k + c];
      for (int p = 0; p < c; ++p) v -= a[r * k + p] * a[c * k + p];
      a[r * k + c] = v / l;
    }
  }
  return true;
}

// b <- L^-1 b, and 2 sum log L_ii (the log-determinant of L L^T).
double forward_solve(const double* L, int k, double* b) {
  double logdet = 0;
  for (int r = 0; r < k; ++r) {
    double v = b[r];
    for (int p = 0; p < r; ++p) v -= L[r * k + p] * b[p];
    b[r] = v / L[r * k + r];
    logdet += std::log(L[r * k + r]);
  }
  return 2 * logdet;
}

struct Scratch {
  std::vector<double> m, v;
  std::vector<int> idx;
};
// One per thread: the hot path allocates nothing after warm-up.
Scratch& scratch(int d) {
  thread_local Scratch s;
  if (static_cast<int>(s.idx.size()) < d) {
    s.idx.resize(static_cast<size_t>(d));
    s.v.resize(static_cast<size_t>(d));
    s.m.resize(static_cast<size_t>(d) * static_cast<size_t>(d));
  }
  return s;
}

int unpack_bits(const uint64_t* words, int n_words, int* idx) {
  int k = 0;
  for (int w = 0; w < n_words; ++w) {
    uint64_t x = words[w];
    while (x) {
      idx[k++] = w * 64 + __builtin_ctzll(x);
      x &= x - 1;
    }
  }
  return k;
}

// M += sign * sum over `rows` (all rows when rows == nullptr) of x_r x_r^T, and s += sign * sum x_r.
// Parallel over the rows of M; each entry is summed by one thread in row order, so the result
// does not depend on the thread count.
void add_moments(const double* x, int64_t n_all, int d, const std::vector<int64_t>* rows, double sign, double* M,
                 double* s) {
  const int64_t nr = rows ? static_cast<int64_t>(rows->size()) : n_all;
  parallel_for(d, 1, [&](int64_t a) {
    double* Ma = M + a * d;
    double sa = 0;
    for (int64_t q = 0; q < nr; ++q) {
      const double* xr = x + (rows ? (*rows)[static_cast<size_t>(q)] : q) * d;
      const double xa = sign * xr[a];
      sa += xa;
      for (int b = 0; b <= a; ++b) Ma[b] += xa * xr[b];
    }
    s[a] += sa;
  });
  for (int a = 0; a < d; ++a)
    for (int b = 0; b < a; ++b) M[b * d + a] = M[a * d + b];
}

}  // namespace

CausalScore::CausalScore(const double* data, int64_t n_rows, int64_t n_nodes, const uint8_t* intervened,
                         const ScoreConfig& cfg)
    : cfg_(cfg) {
  GFN_CHECK(n_nodes >= 1, "data must have at least one column (one per node), got ", n_nodes);
  GFN_CHECK(n_rows >= 2, "data must have at least 2 rows (samples), got ", n_rows);
  GFN_CHECK(n_nodes <= kMaxNodes, "data has ", n_nodes, " columns (nodes); at most ", kMaxNodes, " are supported");
  GFN_CHECK(n_nodes <= kSingleWordNodes || cfg.multiword, "data has ", n_nodes,
            " columns (nodes); more than ", kSingleWordNodes, " nodes needs multiword=True (an explicit opt-in: ",
            "parent sets then take ", (n_nodes + 63) / 64, " 64-bit words and the DAG state grows accordingly)");
  d_ = static_cast<int>(n_nodes);
  n_rows_ = n_rows;
  words_ = (d_ + 63) / 64;
  for (int64_t r = 0; r < n_rows; ++r)
    for (int j = 0; j < d_; ++j)
      GFN_CHECK(std::isfinite(data[r * d_ + j]), "data must be finite, got ", data[r * d_ + j], " at row ", r,
                ", column ", j);

  const double d = d_;
  if (!(cfg_.alpha_w > 0)) cfg_.alpha_w = d + 2;
  if (cfg_.mean_prior.empty()) cfg_.mean_prior.assign(static_cast<size_t>(d_), 0.0);
  GFN_CHECK(static_cast<int64_t>(cfg_.mean_prior.size()) == n_nodes, "mean_prior must have one entry per node (",
            d_, "), got ", cfg_.mean_prior.size());
  for (double v : cfg_.mean_prior) GFN_CHECK(std::isfinite(v), "mean_prior must be finite, got ", v);
  GFN_CHECK(std::isfinite(cfg_.alpha_mu) && cfg_.alpha_mu > 0, "alpha_mu must be a positive number, got ",
            cfg_.alpha_mu);
  GFN_CHECK(std::isfinite(cfg_.alpha_w) && cfg_.alpha_w > d + 1, "alpha_w must be > d + 1 = ", d + 1,
            " (so that the BGe prior scale t = alpha_mu (alpha_w - d - 1) / (alpha_mu + 1) is positive), got ",
            cfg_.alpha_w);
  GFN_CHECK(std::isfinite(cfg_.noise_var) && cfg_.noise_var > 0, "noise_var must be a positive number, got ",
            cfg_.noise_var);
  GFN_CHECK(std::isfinite(cfg_.weight_var) && cfg_.weight_var > 0, "weight_var must be a positive number, got ",
            cfg_.weight_var);
  GFN_CHECK(std::isfinite(cfg_.weight_mean), "weight_mean must be finite, got ", cfg_.weight_mean);
  GFN_CHECK(cfg_.cache_shards >= 1 && cfg_.cache_shards <= 4096, "cache_shards must be in [1, 4096], got ",
            cfg_.cache_shards);
  t_ = cfg_.alpha_mu * (cfg_.alpha_w - d - 1) / (cfg_.alpha_mu + 1);

  prior_term_ = graph_prior_terms(cfg_.prior, d_, cfg_.edge_prob, cfg_.edge_penalty);

  build_groups(data, intervened);

  if (cfg_.cache) {
    if (words_ == 1) cache1_.reset(new LocalScoreCache<1>(cfg_.cache_shards, cfg_.cache_capacity));
    else cacheN_.reset(new LocalScoreCache<kMaxWords>(cfg_.cache_shards, cfg_.cache_capacity));
  }
}

void CausalScore::build_groups(const double* data, const uint8_t* intervened) {
  const int d = d_;
  const int64_t N = n_rows_;
  // Nodes with the same intervened rows share one group; its statistics come from whichever is
  // cheaper: the kept rows directly, or all rows minus the intervened ones.
  std::map<std::vector<uint8_t>, int> seen;
  std::vector<std::vector<int64_t>> excluded;
  group_of_.assign(static_cast<size_t>(d), 0);
  for (int j = 0; j < d; ++j) {
    std::vector<uint8_t> col(static_cast<size_t>(intervened ? N : 0));
    for (int64_t r = 0; r < static_cast<int64_t>(col.size()); ++r) col[static_cast<size_t>(r)] = intervened[r * d + j] != 0;
    auto it = seen.find(col);
    if (it == seen.end()) {
      it = seen.emplace(col, static_cast<int>(excluded.size())).first;
      std::vector<int64_t> ex;
      for (int64_t r = 0; r < static_cast<int64_t>(col.size()); ++r)
        if (col[static_cast<size_t>(r)]) ex.push_back(r);
      excluded.push_back(std::move(ex));
    }
    group_of_[static_cast<size_t>(j)] = it->second;
  }

  // BGe works on data shifted by the column means (scatter is shift-invariant; the shift is
  // added back to the group means), which keeps the moment subtraction well conditioned.
  const bool bge = cfg_.kind == ScoreKind::kBGe;
  std::vector<double> shift(static_cast<size_t>(d), 0.0);
  std::vector<double> x(data, data + N * d);
  if (bge) {
    for (int64_t r = 0; r < N; ++r)
      for (int j = 0; j < d; ++j) shift[static_cast<size_t>(j)] += x[static_cast<size_t>(r * d + j)];
    for (int j = 0; j < d; ++j) shift[static_cast<size_t>(j)] /= static_cast<double>(N);
    for (int64_t r = 0; r < N; ++r)
      for (int j = 0; j < d; ++j) x[static_cast<size_t>(r * d + j)] -= shift[static_cast<size_t>(j)];
  }
  const size_t dd = static_cast<size_t>(d) * static_cast<size_t>(d);
  std::vector<double> M_all, s_all;
  auto all_moments = [&]() {
    if (M_all.empty()) {
      M_all.assign(dd, 0.0);
      s_all.assign(static_cast<size_t>(d), 0.0);
      add_moments(x.data(), N, d, nullptr, 1.0, M_all.data(), s_all.data());
    }
  };

  groups_.resize(excluded.size());
  for (size_t g = 0; g < excluded.size(); ++g) {
    const std::vector<int64_t>& ex = excluded[g];
    const int64_t n_ex = static_cast<int64_t>(ex.size());
    const int64_t n = N - n_ex;
    std::vector<double> M(dd, 0.0), s(static_cast<size_t>(d), 0.0);
    if (n <= n_ex) {
      std::vector<int64_t> kept;
      kept.reserve(static_cast<size_t>(n));
      for (int64_t r = 0, q = 0; r < N; ++r) {
        if (q < n_ex && ex[static_cast<size_t>(q)] == r) ++q;
        else kept.push_back(r);
      }
      add_moments(x.data(), N, d, &kept, 1.0, M.data(), s.data());
    } else {
      all_moments();
      M = M_all;
      s = s_all;
      if (n_ex) add_moments(x.data(), N, d, &ex, -1.0, M.data(), s.data());
    }
    Group& G = groups_[g];
    G.n = n;
    if (bge) {
      // R = T + S_n + (n alpha_mu / (n + alpha_mu)) (nu - xbar)(nu - xbar)^T (Kuipers et al. 2014).
      const double am = cfg_.alpha_mu;
      const double coef = n > 0 ? n * am / (n + am) : 0.0;
      std::vector<double> mc(static_cast<size_t>(d), 0.0), dev(static_cast<size_t>(d), 0.0);
      for (int a = 0; a < d; ++a) {
        mc[static_cast<size_t>(a)] = n > 0 ? s[static_cast<size_t>(a)] / n : 0.0;
        dev[static_cast<size_t>(a)] = cfg_.mean_prior[static_cast<size_t>(a)] - (shift[static_cast<size_t>(a)] + mc[static_cast<size_t>(a)]);
      }
      for (int a = 0; a < d; ++a)
        for (int b = 0; b < d; ++b) {
          const size_t ab = static_cast<size_t>(a) * d + b;
          M[ab] += -n * mc[static_cast<size_t>(a)] * mc[static_cast<size_t>(b)] +
                   coef * dev[static_cast<size_t>(a)] * dev[static_cast<size_t>(b)] + (a == b ? t_ : 0.0);
        }
    }
    G.mat = std::move(M);
    finish_group(G);
  }
}

void CausalScore::finish_group(Group& g) const {
  const double d = d_, n = static_cast<double>(g.n);
  g.konst.resize(static_cast<size_t>(d_));
  for (int k = 0; k < d_; ++k) {
    double c;
    if (cfg_.kind == ScoreKind::kBGe) {
      const double aw = cfg_.alpha_w, am = cfg_.alpha_mu;
      c = 0.5 * (std::log(am) - std::log(n + am)) + std::lgamma(0.5 * (n + aw - d + k + 1)) -
          std::lgamma(0.5 * (aw - d + k + 1)) - 0.5 * n * kLogPi + 0.5 * (aw - d + 2 * k + 1) * std::log(t_);
    } else {
      c = -0.5 * (n * (kLog2Pi + std::log(cfg_.noise_var)) + k * std::log(cfg_.weight_var / cfg_.noise_var));
    }
    g.konst[static_cast<size_t>(k)] = c + prior_term_[static_cast<size_t>(k)];
  }
}

// BGe local score (Kuipers et al. 2014, eq. 19 with T = t I; the form DAG-GFlowNet's
// scores/bge_score.py uses). With the Schur complement s = R_jj - R_jP R_PP^-1 R_Pj,
// log det R_{P+j} = log det R_PP + log s, so the two determinants cost one k x k Cholesky:
//   konst[k] + (n+aw-d+k)/2 log det R_PP - (n+aw-d+k+1)/2 log det R_{P+j}
//     = konst[k] - 1/2 log det R_PP - (n+aw-d+k+1)/2 log s.
double CausalScore::bge(const Group& g, int j, const int* pa, int k) const {
  const int d = d_;
  const double* R = g.mat.data();
  const double a = static_cast<double>(g.n) + cfg_.alpha_w - d + k + 1;
  const double rjj = R[static_cast<size_t>(j) * d + j];
  if (k == 0) return g.konst[0] - 0.5 * a * std::log(rjj);
  Scratch& s = scratch(d);
  double* A = s.m.data();
  double* z = s.v.data();
  for (int r = 0; r < k; ++r) {
    const double* Rr = R + static_cast<size_t>(pa[r]) * d;
    for (int c = 0; c <= r; ++c) A[r * k + c] = Rr[pa[c]];
    z[r] = Rr[j];
  }
  if (!cholesky(A, k)) return std::nan("");
  const double logdet = forward_solve(A, k, z);
  double schur = rjj;
  for (int r = 0; r < k; ++r) schur -= z[r] * z[r];
  if (!(schur > 0)) return std::nan("");
  return g.konst[static_cast<size_t>(k)] - 0.5 * logdet - 0.5 * a * std::log(schur);
}

// Linear-Gaussian marginal likelihood without the n x n covariance. With A = X_P (n x k),
// y = x_j, r = y - m A 1, c = noise_var / weight_var and M = c I + A^T A (k x k):
//   det(noise_var I + weight_var A A^T) = noise_var^n (weight_var / noise_var)^k det M   (determinant lemma)
//   r^T (noise_var I + weight_var A A^T)^-1 r = (r^T r - |L^-1 A^T r|^2) / noise_var   (Woodbury, M = L L^T)
// and every inner product comes from the Gram matrix G = X^T X.
double CausalScore::lingauss(const Group& g, int j, const int* pa, int k) const {
  const int d = d_;
  const double* G = g.mat.data();
  const double nv = cfg_.noise_var, m = cfg_.weight_mean;
  const double yy = G[static_cast<size_t>(j) * d + j];
  if (k == 0) return g.konst[0] - 0.5 * yy / nv;
  Scratch& s = scratch(d);
  double* A = s.m.data();
  double* b = s.v.data();
  const double c = nv / cfg_.weight_var;
  double rr = yy;
  double ysum = 0, usum = 0;
  for (int r = 0; r < k; ++r) {
    const double* Gr = G + static_cast<size_t>(pa[r]) * d;
    double u = 0;
    for (int q = 0; q < k; ++q) u += Gr[pa[q]];
    for (int q = 0; q <= r; ++q) A[r * k + q] = Gr[pa[q]];
    A[r * k + r] += c;
    b[r] = Gr[j] - m * u;
    ysum += Gr[j];
    usum += u;
  }
  if (m != 0) rr = yy - 2 * m * ysum + m * m * usum;
  if (!cholesky(A, k)) return std::nan("");
  const double logdet = forward_solve(A, k, b);
  double proj = 0;
  for (int r = 0; r < k; ++r) proj += b[r] * b[r];
  return g.konst[static_cast<size_t>(k)] - 0.5 * (logdet + (rr - proj) / nv);
}

double CausalScore::compute_local_score(int j, const uint64_t* parents) const {
  Scratch& s = scratch(d_);
  const int k = unpack_bits(parents, words_, s.idx.data());
  const Group& g = groups_[static_cast<size_t>(group_of_[static_cast<size_t>(j)])];
  return cfg_.kind == ScoreKind::kBGe ? bge(g, j, s.idx.data(), k) : lingauss(g, j, s.idx.data(), k);
}

double CausalScore::local_score(int j, const uint64_t* parents) const {
  double v;
  if (cache1_) {
    FamilyKey<1> key{{parents[0]}, j};
    const uint64_t h = key.hash();
    if (cache1_->find(key, h, &v)) return v;
    v = compute_local_score(j, parents);
    cache1_->insert(key, h, v);
    return v;
  }
  if (cacheN_) {
    FamilyKey<kMaxWords> key{{0, 0, 0, 0}, j};
    for (int w = 0; w < words_; ++w) key.words[w] = parents[w];
    const uint64_t h = key.hash();
    if (cacheN_->find(key, h, &v)) return v;
    v = compute_local_score(j, parents);
    cacheN_->insert(key, h, v);
    return v;
  }
  return compute_local_score(j, parents);
}

double CausalScore::log_score_delta(int j, const uint64_t* parents_before, int i) const {
  uint64_t after[kMaxWords];
  for (int w = 0; w < words_; ++w) after[w] = parents_before[w];
  after[i >> 6] |= uint64_t(1) << (i & 63);
  return local_score(j, after) - local_score(j, parents_before);
}

double CausalScore::log_score_delta(int j, uint64_t parents_before, int i) const {
  return local_score(j, parents_before | (uint64_t(1) << i)) - local_score(j, parents_before);
}

double CausalScore::log_score(const uint8_t* adj) const {
  uint64_t pa[kMaxWords];
  double total = 0;
  for (int j = 0; j < d_; ++j) {
    for (int w = 0; w < words_; ++w) pa[w] = 0;
    for (int i = 0; i < d_; ++i)
      if (adj[static_cast<size_t>(i) * d_ + j]) pa[i >> 6] |= uint64_t(1) << (i & 63);
    total += local_score(j, pa);
  }
  return total;
}

CacheStats CausalScore::cache_stats() const {
  if (cache1_) return cache1_->stats();
  if (cacheN_) return cacheN_->stats();
  return CacheStats{};
}

void CausalScore::clear_cache() {
  if (cache1_) cache1_->clear();
  if (cacheN_) cacheN_->clear();
}

}  // namespace causal
}  // namespace gfn
