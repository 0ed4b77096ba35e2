// _C.CausalScore: the causal-graph score from Python. Validates every argument, then runs the
// batched queries over graphs with the GIL released (parallel_for; the cache is thread-safe).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "causal/scores.h"
#include "causal/scores_py.h"
#include "common/parallel.h"
#include "common/registry.h"
#include "common/tensor_arg.h"

namespace gfn {
namespace causal {
namespace {

namespace py = pybind11;

// The smallest bad row and why, whatever the thread count.
struct FirstBad {
  std::atomic<uint64_t> v{~uint64_t(0)};
  void report(int64_t row, int code) {
    const uint64_t x = (static_cast<uint64_t>(row) << 8) | static_cast<uint64_t>(code);
    uint64_t cur = v.load(std::memory_order_relaxed);
    while (x < cur && !v.compare_exchange_weak(cur, x, std::memory_order_relaxed)) {
    }
  }
  bool any() const { return v.load() != ~uint64_t(0); }
  int64_t row() const { return static_cast<int64_t>(v.load() >> 8); }
  int code() const { return static_cast<int>(v.load() & 0xff); }
};

enum Bad : int { kNotBinary = 1, kSelfLoop = 2, kCycle = 3, kNodeRange = 4, kEdgePresent = 5, kSameNode = 6, kNan = 7 };

TensorArg cpu_arg(py::handle obj, const char* name) {
  TensorArg t = tensor_arg(obj, name);
  GFN_CHECK_TYPE(!t.cuda, name, " must be a CPU tensor: the causal score is host-only");
  return t;
}

// A bool or uint8 (0/1) tensor of the given shape.
void check_mask(const TensorArg& t, const std::vector<int64_t>& shape, const char* what) {
  GFN_CHECK_TYPE(t.dtype == DType::kBool || t.dtype == DType::kUInt8, t.name, " must be bool or uint8, got ",
                 dtype_name(t.dtype));
  GFN_CHECK(t.shape == shape, t.name, " must have shape ", what, ", got ", t.shape_str());
}

void check_out(const TensorArg& out, int64_t B) {
  check_dtype(out, DType::kFloat64);
  GFN_CHECK(out.dim() == 1 && out.size(0) == B, "out must have shape [", B, "], got ", out.shape_str());
}

void check_index(const TensorArg& t, int64_t B) {
  check_dtype(t, DType::kInt64);
  GFN_CHECK(t.dim() == 1 && t.size(0) == B, t.name, " must have shape [", B, "], got ", t.shape_str());
}

// Bits of d 0/1 bytes p[0], p[stride], ... into ceil(d / 64) words (the rest zeroed), or
// kNotBinary. Each word is built in a register and without branches: a chain of read-modify-
// writes to memory (or a branch on random bits) costs several times more at d = 50.
int gather_bits(const uint8_t* p, int64_t stride, int d, uint64_t* pa) {
  uint8_t any_bad = 0;
  for (int w = 0; w < kMaxWords; ++w) {
    uint64_t acc = 0;
    const int lo = 64 * w, hi = d < lo + 64 ? d : lo + 64;
    int i = lo;
    if (stride == 1) {
      // Eight 0/1 bytes at a time: the multiply moves byte k's low bit to bit 56 + k.
      uint64_t bad8 = 0;
      for (; i + 8 <= hi; i += 8) {
        uint64_t x;
        std::memcpy(&x, p + i, 8);
        bad8 |= x & 0xFEFEFEFEFEFEFEFEULL;
        acc |= (((x & 0x0101010101010101ULL) * 0x0102040810204080ULL) >> 56) << (i - lo);
      }
      any_bad |= bad8 ? 0xFE : 0;
    }
    for (; i < hi; ++i) {
      const uint8_t v = p[i * stride];
      any_bad |= v;
      acc |= static_cast<uint64_t>(v & 1) << (i - lo);
    }
    pa[w] = acc;
  }
  return (any_bad & 0xFE) ? kNotBinary : 0;
}

// Parent bitsets of every node of one graph (column j of adj), plus a check of the graph.
int parent_words(const uint8_t* adj, int d, int W, uint64_t* pa, bool check_cycles) {
  uint64_t col[kMaxWords];
  for (int j = 0; j < d; ++j) {
    if (gather_bits(adj + j, d, d, col)) return kNotBinary;
    for (int w = 0; w < W; ++w) pa[j * W + w] = col[w];
  }
  for (int j = 0; j < d; ++j)
    if (adj[j * d + j]) return kSelfLoop;
  if (!check_cycles) return 0;
  // Kahn: repeatedly remove the nodes none of whose parents remain.
  uint64_t remaining[kMaxWords] = {0, 0, 0, 0};
  for (int j = 0; j < d; ++j) remaining[j >> 6] |= uint64_t(1) << (j & 63);
  int left = d;
  while (left > 0) {
    uint64_t sources[kMaxWords] = {0, 0, 0, 0};
    int n_src = 0;
    for (int j = 0; j < d; ++j) {
      if (!(remaining[j >> 6] >> (j & 63) & 1)) continue;
      bool free = true;
      for (int w = 0; w < W && free; ++w) free = (pa[j * W + w] & remaining[w]) == 0;
      if (free) {
        sources[j >> 6] |= uint64_t(1) << (j & 63);
        ++n_src;
      }
    }
    if (n_src == 0) return kCycle;
    for (int w = 0; w < W; ++w) remaining[w] &= ~sources[w];
    left -= n_src;
  }
  return 0;
}

std::string graph_error(int code, int64_t b, const char* name) {
  switch (code) {
    case kNotBinary: return str(name, "[", b, "] has an entry other than 0 or 1");
    case kSelfLoop: return str(name, "[", b, "] has a self-loop (a nonzero diagonal entry)");
    case kCycle: return str(name, "[", b, "] has a directed cycle: scores are defined for DAGs only");
    default: return str(name, "[", b, "] is invalid");
  }
}

class PyCausalScore {
 public:
  std::shared_ptr<CausalScore> s;

  // log R(G) for a batch of graphs adj [B, d, d] (adj[b, i, j]: i -> j). Raises on a non-DAG.
  void log_score(py::handle adj_o, py::handle out_o) const {
    const int d = s->num_nodes(), W = s->num_words();
    TensorArg adj = cpu_arg(adj_o, "adj"), out = cpu_arg(out_o, "out");
    GFN_CHECK(adj.dim() == 3, "adj must have shape [B, ", d, ", ", d, "], got ", adj.shape_str());
    const int64_t B = adj.size(0);
    check_mask(adj, {B, d, d}, str("[B, ", d, ", ", d, "]").c_str());
    check_out(out, B);
    const uint8_t* A = adj.data<uint8_t>();
    double* o = out.data<double>();
    FirstBad bad;
    {
      py::gil_scoped_release nogil;
      parallel_for(B, 4, [&](int64_t b) {
        uint64_t pa[kMaxNodes * kMaxWords];
        const int code = parent_words(A + b * d * d, d, W, pa, true);
        if (code) {
          bad.report(b, code);
          o[b] = std::nan("");
          return;
        }
        double total = 0;
        for (int j = 0; j < d; ++j) total += s->local_score(j, pa + j * W);
        o[b] = total;
        if (std::isnan(total)) bad.report(b, kNan);
      });
    }
    if (bad.any()) {
      GFN_CHECK(bad.code() != kNan, "adj[", bad.row(), "]: a local score is NaN (numerically singular family)");
      throw ValueError(graph_error(bad.code(), bad.row(), "adj"));
    }
  }

  // LocalScore(nodes[b], parents[b]) for parent masks parents [B, d].
  void local_scores(py::handle nodes_o, py::handle parents_o, py::handle out_o, bool use_cache) const {
    const int d = s->num_nodes();
    TensorArg nodes = cpu_arg(nodes_o, "nodes"), par = cpu_arg(parents_o, "parents"), out = cpu_arg(out_o, "out");
    GFN_CHECK(nodes.dim() == 1, "nodes must have shape [B], got ", nodes.shape_str());
    const int64_t B = nodes.size(0);
    check_index(nodes, B);
    check_mask(par, {B, d}, str("[", B, ", ", d, "] (one parent mask per node id)").c_str());
    check_out(out, B);
    const int64_t* J = nodes.data<int64_t>();
    const uint8_t* P = par.data<uint8_t>();
    double* o = out.data<double>();
    FirstBad bad;
    {
      py::gil_scoped_release nogil;
      parallel_for(B, 64, [&](int64_t b) {
        const int64_t j = J[b];
        if (j < 0 || j >= d) return bad.report(b, kNodeRange);
        uint64_t pa[kMaxWords];
        const int code = gather_bits(P + b * d, 1, d, pa);
        if (code) return bad.report(b, code);
        if (P[b * d + j]) return bad.report(b, kSelfLoop);
        o[b] = use_cache ? s->local_score(static_cast<int>(j), pa) : s->compute_local_score(static_cast<int>(j), pa);
        if (std::isnan(o[b])) bad.report(b, kNan);
      });
    }
    if (!bad.any()) return;
    const int64_t b = bad.row();
    switch (bad.code()) {
      case kNodeRange: throw ValueError(str("nodes[", b, "] = ", J[b], " is not a node id in [0, ", d, ")"));
      case kNotBinary: throw ValueError(str("parents[", b, "] has an entry other than 0 or 1"));
      case kSelfLoop: throw ValueError(str("parents[", b, "] names node ", J[b], " as its own parent"));
      default: throw ValueError(str("local score ", b, " is NaN (numerically singular family)"));
    }
  }

  // Delta log R of adding sources[b] -> targets[b] to graph adj[b].
  void delta_scores(py::handle adj_o, py::handle src_o, py::handle dst_o, py::handle out_o) const {
    const int d = s->num_nodes();
    TensorArg adj = cpu_arg(adj_o, "adj"), src = cpu_arg(src_o, "sources"), dst = cpu_arg(dst_o, "targets"),
              out = cpu_arg(out_o, "out");
    GFN_CHECK(adj.dim() == 3, "adj must have shape [B, ", d, ", ", d, "], got ", adj.shape_str());
    const int64_t B = adj.size(0);
    check_mask(adj, {B, d, d}, str("[B, ", d, ", ", d, "]").c_str());
    check_index(src, B);
    check_index(dst, B);
    check_out(out, B);
    const uint8_t* A = adj.data<uint8_t>();
    const int64_t* I = src.data<int64_t>();
    const int64_t* J = dst.data<int64_t>();
    double* o = out.data<double>();
    FirstBad bad;
    {
      py::gil_scoped_release nogil;
      parallel_for(B, 64, [&](int64_t b) {
        const int64_t i = I[b], j = J[b];
        if (i < 0 || i >= d || j < 0 || j >= d) return bad.report(b, kNodeRange);
        if (i == j) return bad.report(b, kSameNode);
        const uint8_t* g = A + b * d * d;
        uint64_t pa[kMaxWords];
        if (gather_bits(g + j, d, d, pa)) return bad.report(b, kNotBinary);
        if (g[j * d + j]) return bad.report(b, kSelfLoop);
        if (g[i * d + j]) return bad.report(b, kEdgePresent);
        o[b] = s->log_score_delta(static_cast<int>(j), pa, static_cast<int>(i));
        if (std::isnan(o[b])) bad.report(b, kNan);
      });
    }
    if (!bad.any()) return;
    const int64_t b = bad.row();
    switch (bad.code()) {
      case kNodeRange:
        throw ValueError(str("sources[", b, "] = ", I[b], " and targets[", b, "] = ", J[b],
                             " must be node ids in [0, ", d, ")"));
      case kSameNode: throw ValueError(str("sources[", b, "] == targets[", b, "] = ", I[b], ": a self-loop"));
      case kEdgePresent:
        throw ValueError(str("adj[", b, "] already has the edge ", I[b], " -> ", J[b], " (sources[", b, "] -> targets[", b, "])"));
      case kNan: throw ValueError(str("delta score ", b, " is NaN (numerically singular family)"));
      default: throw ValueError(graph_error(bad.code(), b, "adj"));
    }
  }

  // Delta log R of adding sources[b] -> targets[b] when Pa(targets[b]) = parents[b] [B, d]: the
  // query a DAG environment makes (CausalScore::log_score_delta), without reading whole graphs.
  void delta_scores_parents(py::handle nodes_o, py::handle parents_o, py::handle src_o, py::handle out_o) const {
    const int d = s->num_nodes();
    TensorArg nodes = cpu_arg(nodes_o, "targets"), par = cpu_arg(parents_o, "parents"), src = cpu_arg(src_o, "sources"),
              out = cpu_arg(out_o, "out");
    GFN_CHECK(nodes.dim() == 1, "targets must have shape [B], got ", nodes.shape_str());
    const int64_t B = nodes.size(0);
    check_index(nodes, B);
    check_index(src, B);
    check_mask(par, {B, d}, str("[", B, ", ", d, "] (the parents of each target before the edge)").c_str());
    check_out(out, B);
    const int64_t* J = nodes.data<int64_t>();
    const int64_t* I = src.data<int64_t>();
    const uint8_t* P = par.data<uint8_t>();
    double* o = out.data<double>();
    FirstBad bad;
    {
      py::gil_scoped_release nogil;
      parallel_for(B, 64, [&](int64_t b) {
        const int64_t i = I[b], j = J[b];
        if (i < 0 || i >= d || j < 0 || j >= d) return bad.report(b, kNodeRange);
        if (i == j) return bad.report(b, kSameNode);
        uint64_t pa[kMaxWords];
        const int code = gather_bits(P + b * d, 1, d, pa);
        if (code) return bad.report(b, code);
        if (P[b * d + j]) return bad.report(b, kSelfLoop);
        if (P[b * d + i]) return bad.report(b, kEdgePresent);
        o[b] = s->log_score_delta(static_cast<int>(j), pa, static_cast<int>(i));
        if (std::isnan(o[b])) bad.report(b, kNan);
      });
    }
    if (!bad.any()) return;
    const int64_t b = bad.row();
    switch (bad.code()) {
      case kNodeRange:
        throw ValueError(str("sources[", b, "] = ", I[b], " and targets[", b, "] = ", J[b],
                             " must be node ids in [0, ", d, ")"));
      case kSameNode: throw ValueError(str("sources[", b, "] == targets[", b, "] = ", I[b], ": a self-loop"));
      case kNotBinary: throw ValueError(str("parents[", b, "] has an entry other than 0 or 1"));
      case kSelfLoop: throw ValueError(str("parents[", b, "] names node ", J[b], " as its own parent"));
      case kEdgePresent: throw ValueError(str("parents[", b, "] already has node ", I[b], " (sources[", b, "])"));
      default: throw ValueError(str("delta score ", b, " is NaN (numerically singular family)"));
    }
  }

  py::dict cache_stats() const {
    const CacheStats st = s->cache_stats();
    py::dict r;
    r["enabled"] = s->config().cache;
    r["hits"] = st.hits;
    r["misses"] = st.misses;
    r["entries"] = st.entries;
    r["evictions"] = st.evictions;
    return r;
  }

  py::dict config() const {
    const ScoreConfig& c = s->config();
    py::dict r;
    r["kind"] = kind_name(c.kind);
    r["prior"] = prior_name(c.prior);
    r["alpha_mu"] = c.alpha_mu;
    r["alpha_w"] = c.alpha_w;
    r["mean_prior"] = c.mean_prior;
    r["noise_var"] = c.noise_var;
    r["weight_var"] = c.weight_var;
    r["weight_mean"] = c.weight_mean;
    r["edge_prob"] = c.edge_prob;
    r["edge_penalty"] = c.edge_penalty;
    r["cache"] = c.cache;
    r["cache_capacity"] = c.cache_capacity;
    r["cache_shards"] = c.cache_shards;
    r["multiword"] = c.multiword;
    return r;
  }
};

ScoreKind parse_kind(const std::string& k) {
  if (k == "bge") return ScoreKind::kBGe;
  if (k == "lingauss") return ScoreKind::kLinGauss;
  throw ValueError(str("kind must be 'bge' or 'lingauss', got '", k, "'"));
}

GraphPrior parse_prior(const std::string& p) {
  if (p == "uniform") return GraphPrior::kUniform;
  if (p == "erdos_renyi") return GraphPrior::kErdosRenyi;
  if (p == "edge") return GraphPrior::kEdge;
  throw ValueError(str("prior must be 'uniform', 'erdos_renyi' or 'edge', got '", p, "'"));
}

PyCausalScore make_score(const std::string& kind, py::handle data_o, py::handle interventions_o,
                         const std::string& prior, double alpha_mu, py::object alpha_w, py::object mean_prior,
                         double noise_var, double weight_var, double weight_mean, py::object edge_prob,
                         double edge_penalty, bool cache, uint64_t cache_capacity, int cache_shards, bool multiword) {
  ScoreConfig cfg;
  cfg.kind = parse_kind(kind);
  cfg.prior = parse_prior(prior);
  TensorArg data = cpu_arg(data_o, "data");
  check_float(data);
  GFN_CHECK(data.dim() == 2, "data must have shape [N, d] (rows = samples, columns = nodes), got ", data.shape_str());
  const int64_t N = data.size(0), d = data.size(1);
  std::vector<double> x(static_cast<size_t>(N * d));
  if (data.dtype == DType::kFloat64) std::copy(data.data<double>(), data.data<double>() + N * d, x.begin());
  else std::copy(data.data<float>(), data.data<float>() + N * d, x.begin());
  std::vector<uint8_t> iv;
  if (!interventions_o.is_none()) {
    TensorArg t = cpu_arg(interventions_o, "interventions");
    check_mask(t, {N, d}, str("[", N, ", ", d, "] (the shape of data)").c_str());
    iv.assign(t.data<uint8_t>(), t.data<uint8_t>() + N * d);
    for (size_t q = 0; q < iv.size(); ++q)
      GFN_CHECK(iv[q] <= 1, "interventions must hold 0 or 1, got ", int(iv[q]), " at row ", q / d, ", column ", q % d);
  }
  cfg.alpha_mu = alpha_mu;
  if (!alpha_w.is_none()) {
    cfg.alpha_w = alpha_w.cast<double>();
    GFN_CHECK(cfg.alpha_w > 0, "alpha_w must be > d + 1 = ", d + 1, ", got ", cfg.alpha_w);
  }
  if (!mean_prior.is_none()) cfg.mean_prior = mean_prior.cast<std::vector<double>>();
  cfg.noise_var = noise_var;
  cfg.weight_var = weight_var;
  cfg.weight_mean = weight_mean;
  if (!edge_prob.is_none()) cfg.edge_prob = edge_prob.cast<double>();
  else GFN_CHECK(cfg.prior != GraphPrior::kErdosRenyi, "prior='erdos_renyi' needs edge_prob (in (0, 1))");
  cfg.edge_penalty = edge_penalty;
  cfg.cache = cache;
  cfg.cache_capacity = cache_capacity;
  cfg.cache_shards = cache_shards;
  cfg.multiword = multiword;
  PyCausalScore p;
  py::gil_scoped_release nogil;
  p.s = std::make_shared<CausalScore>(x.data(), N, d, iv.empty() ? nullptr : iv.data(), cfg);
  return p;
}

}  // namespace

std::shared_ptr<const CausalScore> causal_score_from_python(py::handle obj) {
  py::handle h = obj;
  py::object inner;
  if (!py::isinstance<PyCausalScore>(h) && py::hasattr(h, "_c")) {
    inner = h.attr("_c");
    h = inner;
  }
  GFN_CHECK_TYPE(py::isinstance<PyCausalScore>(h), "expected a causal score (gfncore.causal.CausalScore), got ",
                 std::string(py::str(py::type::of(obj).attr("__name__"))));
  return h.cast<const PyCausalScore&>().s;
}

GFN_BINDINGS(bind_causal_score) {
  m.attr("causal_max_nodes") = kMaxNodes;
  m.attr("causal_single_word_nodes") = kSingleWordNodes;
  m.attr("causal_score_kinds") = py::make_tuple("bge", "lingauss");
  m.attr("causal_graph_priors") = py::make_tuple("uniform", "erdos_renyi", "edge");
  py::class_<PyCausalScore>(m, "CausalScore",
                            "log R(G) = log P(G) + sum_j LocalScore(j, Pa_j) of causal graphs (BGe or linear-Gaussian), "
                            "with a thread-safe local-score cache")
      .def(py::init(&make_score), py::arg("kind"), py::arg("data"), py::arg("interventions") = py::none(),
           py::kw_only(), py::arg("prior") = "uniform", py::arg("alpha_mu") = 1.0, py::arg("alpha_w") = py::none(),
           py::arg("mean_prior") = py::none(), py::arg("noise_var") = 0.1, py::arg("weight_var") = 1.0,
           py::arg("weight_mean") = 0.0, py::arg("edge_prob") = py::none(), py::arg("edge_penalty") = 1.0,
           py::arg("cache") = true, py::arg("cache_capacity") = ScoreConfig{}.cache_capacity,
           py::arg("cache_shards") = ScoreConfig{}.cache_shards, py::arg("multiword") = false)
      .def_property_readonly("num_nodes", [](const PyCausalScore& p) { return p.s->num_nodes(); })
      .def_property_readonly("num_rows", [](const PyCausalScore& p) { return p.s->num_rows(); })
      .def_property_readonly("num_words", [](const PyCausalScore& p) { return p.s->num_words(); })
      .def_property_readonly("num_groups", [](const PyCausalScore& p) { return p.s->num_groups(); })
      .def("rows_per_node",
           [](const PyCausalScore& p) {
             std::vector<int64_t> r;
             for (int j = 0; j < p.s->num_nodes(); ++j) r.push_back(p.s->rows_for_node(j));
             return r;
           })
      .def("log_prior_terms",
           [](const PyCausalScore& p) {
             std::vector<double> r;
             for (int k = 0; k < p.s->num_nodes(); ++k) r.push_back(p.s->log_prior_term(k));
             return r;
           })
      .def("log_score", &PyCausalScore::log_score, py::arg("adj"), py::arg("out"))
      .def("local_scores", &PyCausalScore::local_scores, py::arg("nodes"), py::arg("parents"), py::arg("out"),
           py::arg("use_cache") = true)
      .def("delta_scores", &PyCausalScore::delta_scores, py::arg("adj"), py::arg("sources"), py::arg("targets"),
           py::arg("out"))
      .def("delta_scores_parents", &PyCausalScore::delta_scores_parents, py::arg("targets"), py::arg("parents"),
           py::arg("sources"), py::arg("out"))
      .def("cache_stats", &PyCausalScore::cache_stats)
      .def("clear_cache", [](PyCausalScore& p) { p.s->clear_cache(); })
      .def("config", &PyCausalScore::config);
  // How another binding reaches the shared C++ score (see causal/scores_py.h); returns its node
  // count and how many owners it has.
  m.def("causal_score_handle", [](py::handle obj) {
    std::shared_ptr<const CausalScore> p = causal_score_from_python(obj);
    return py::make_tuple(p->num_nodes(), p.use_count() - 1);
  });
}

}  // namespace causal
}  // namespace gfn
