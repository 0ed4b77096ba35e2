// _C.causal_mcmc and _C.causal_exact_dp: structure MCMC and the exact subset DP over DAGs from
// Python. The bindings validate every argument (score, counts, start graphs, output buffers),
// then run with the GIL released.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "causal/dag_dp.h"
#include "causal/mcmc.h"
#include "causal/scores_py.h"
#include "common/parallel.h"
#include "common/registry.h"
#include "common/tensor_arg.h"

namespace gfn {
namespace causal {
namespace {

namespace py = pybind11;

TensorArg out_arg(py::handle obj, const char* name, DType dt, const std::vector<int64_t>& shape) {
  TensorArg t = tensor_arg(obj, name);
  GFN_CHECK_TYPE(!t.cuda, name, " must be a CPU tensor: structure MCMC is host-only");
  check_dtype(t, dt);
  GFN_CHECK(t.shape == shape, name, " has shape ", t.shape_str(), ", expected [",
            [&] {
              std::string s;
              for (size_t q = 0; q < shape.size(); ++q) s += (q ? ", " : "") + std::to_string(shape[q]);
              return s;
            }(),
            "]");
  return t;
}

int check_max_parents(int max_parents, int d) {
  GFN_CHECK(max_parents >= -1, "max_parents must be >= -1 (-1: no cap), got ", max_parents);
  return max_parents;
}

// Runs `chains` MC^3 chains. start: None or int64 [chains, d] parent bitsets (bit i of row j:
// i -> j); the outputs are preallocated by gfncore.causal.mcmc.
py::dict causal_mcmc(py::handle score_o, int chains, int64_t burn_in, int64_t steps, int64_t thin, int max_parents,
                     uint64_t seed, bool swaps, py::handle start_o, py::handle samples_o, py::handle sample_log_r_o,
                     py::handle edge_counts_o) {
  std::shared_ptr<const CausalScore> s = causal_score_from_python(score_o);
  const int d = s->num_nodes();
  GFN_CHECK(d <= kSingleWordNodes, "structure MCMC supports d <= ", kSingleWordNodes, " nodes, got ", d);
  GFN_CHECK(chains >= 1, "chains must be >= 1, got ", chains);
  GFN_CHECK(burn_in >= 0, "burn_in must be >= 0, got ", burn_in);
  GFN_CHECK(steps >= 0, "steps must be >= 0, got ", steps);
  GFN_CHECK(thin >= 1, "thin must be >= 1, got ", thin);
  check_max_parents(max_parents, d);
  const int64_t n_rec = steps / thin;
  McmcParams p;
  p.chains = chains;
  p.d = d;
  p.max_parents = max_parents;
  p.burn_in = burn_in;
  p.steps = steps;
  p.thin = thin;
  p.seed = seed;
  p.swaps = swaps;
  const uint64_t all = d == 64 ? ~uint64_t(0) : (uint64_t(1) << d) - 1;
  if (!start_o.is_none()) {
    TensorArg st = out_arg(start_o, "start", DType::kInt64, {chains, d});
    const uint64_t* pa = reinterpret_cast<const uint64_t*>(st.data<int64_t>());
    for (int c = 0; c < chains; ++c) {
      for (int j = 0; j < d; ++j) {
        const uint64_t w = pa[c * d + j];
        GFN_CHECK(!(w & ~all), "start[", c, "] names a parent >= d = ", d, " of node ", j);
        GFN_CHECK(!((w >> j) & 1), "start[", c, "] has a self-loop at node ", j);
        GFN_CHECK(max_parents < 0 || __builtin_popcountll(w) <= max_parents, "start[", c, "]: node ", j, " has ",
                  __builtin_popcountll(w), " parents, over max_parents = ", max_parents);
      }
      GFN_CHECK(count_moves(pa + c * d, d, max_parents, false) >= 0, "start[", c, "] has a directed cycle");
    }
    p.start = pa;
  }
  TensorArg samples = out_arg(samples_o, "samples", DType::kInt64, {chains, n_rec, d});
  TensorArg slr = out_arg(sample_log_r_o, "sample_log_r", DType::kFloat64, {chains, n_rec});
  TensorArg counts = out_arg(edge_counts_o, "edge_counts", DType::kFloat64, {chains, d, d});
  std::vector<int64_t> proposed(static_cast<size_t>(kMoveKinds * chains)), accepted(static_cast<size_t>(kMoveKinds * chains));
  std::vector<uint64_t> final_state(static_cast<size_t>(chains) * d);
  std::vector<double> final_log_r(static_cast<size_t>(chains));
  p.samples = reinterpret_cast<uint64_t*>(samples.data<int64_t>());
  p.sample_log_r = slr.data<double>();
  p.edge_counts = counts.data<double>();
  p.proposed = proposed.data();
  p.accepted = accepted.data();
  p.final_state = final_state.data();
  p.final_log_r = final_log_r.data();
  int64_t bad;
  {
    py::gil_scoped_release nogil;
    bad = run_mcmc(*s, p);
  }
  GFN_CHECK(bad == 0, "chain ", bad - 1, ": a local score is NaN (numerically singular family)");
  py::dict r;
  py::list prop, acc, fin, flr;
  for (int c = 0; c < chains; ++c) {
    py::list pr, ac;
    for (int q = 0; q < kMoveKinds; ++q) {
      pr.append(proposed[static_cast<size_t>(kMoveKinds * c + q)]);
      ac.append(accepted[static_cast<size_t>(kMoveKinds * c + q)]);
    }
    prop.append(pr);
    acc.append(ac);
    py::list row;
    for (int j = 0; j < d; ++j) row.append(static_cast<int64_t>(final_state[static_cast<size_t>(c) * d + j]));
    fin.append(row);
    flr.append(final_log_r[static_cast<size_t>(c)]);
  }
  r["proposed"] = prop;  // per chain: (add, delete, reverse, swap)
  r["accepted"] = acc;
  r["final_state"] = fin;
  r["final_log_r"] = flr;
  return r;
}

// Delta log R of every legal candidate edge of a batch of DAG-environment feature rows
// [B, 2 d^2 + 1] = [adjacency, legal edges, r(s)] (csrc/envs/dag.h encode): out[b, i d + j] =
// LocalScore(j, Pa_j + i) - LocalScore(j, Pa_j) where i -> j is legal, 0 elsewhere. The policy of
// gfncore.causal.delta_policy adds it to the edge logits (log R of the child each edge leads to).
template <typename F, typename O>
void edge_deltas(const CausalScore& s, const F* feat, int64_t B, int d, O* out) {
  const int64_t stride = 2 * static_cast<int64_t>(d) * d + 1;
  parallel_for(B, 8, [&](int64_t b) {
    const F* f = feat + b * stride;
    const F* legal = f + d * d;
    O* o = out + b * d * d;
    for (int j = 0; j < d; ++j) {
      uint64_t pa = 0;
      for (int i = 0; i < d; ++i) pa |= static_cast<uint64_t>(f[i * d + j] != 0) << i;
      bool any = false;
      for (int i = 0; i < d; ++i) any |= legal[i * d + j] != 0;
      const double base = any ? s.local_score(j, pa) : 0.0;
      for (int i = 0; i < d; ++i)
        o[i * d + j] = legal[i * d + j] != 0 ? static_cast<O>(s.local_score(j, pa | (uint64_t(1) << i)) - base) : O(0);
    }
  });
}

}  // namespace

GFN_BINDINGS(bind_causal_structure) {
  m.def(
      "causal_edge_deltas",
      [](py::handle score_o, py::handle features_o, py::handle out_o) {
        std::shared_ptr<const CausalScore> s = causal_score_from_python(score_o);
        const int d = s->num_nodes();
        GFN_CHECK(d <= kSingleWordNodes, "edge deltas support d <= ", kSingleWordNodes, " nodes, got ", d);
        TensorArg f = tensor_arg(features_o, "features");
        GFN_CHECK_TYPE(!f.cuda, "features must be a CPU tensor: the causal score is host-only");
        check_float(f);
        GFN_CHECK(f.dim() == 2 && f.size(1) == 2 * d * d + 1, "features must have shape [B, ", 2 * d * d + 1,
                  "] (the DAG environment's encoding at d = ", d, "), got ", f.shape_str());
        const int64_t B = f.size(0);
        TensorArg o = tensor_arg(out_o, "out");
        GFN_CHECK_TYPE(!o.cuda, "out must be a CPU tensor");
        GFN_CHECK(o.dtype == f.dtype, "out must have the dtype of features");
        GFN_CHECK(o.dim() == 2 && o.size(0) == B && o.size(1) == d * d, "out must have shape [", B, ", ", d * d, "], got ",
                  o.shape_str());
        py::gil_scoped_release nogil;
        if (f.dtype == DType::kFloat32) edge_deltas(*s, f.data<float>(), B, d, o.data<float>());
        else edge_deltas(*s, f.data<double>(), B, d, o.data<double>());
      },
      py::arg("score"), py::arg("features"), py::arg("out"),
      "Delta log R of every legal candidate edge of DAG feature rows [B, 2 d^2 + 1] -> out [B, d^2]");
  m.attr("causal_dp_max_nodes") = kDpMaxNodes;
  m.def("causal_mcmc", &causal_mcmc, py::arg("score"), py::arg("chains"), py::arg("burn_in"), py::arg("steps"),
        py::arg("thin"), py::arg("max_parents"), py::arg("seed"), py::arg("swaps"), py::arg("start"), py::arg("samples"),
        py::arg("sample_log_r"), py::arg("edge_counts"),
        "MC^3 structure MCMC (add / delete / reverse, Hastings ratio with neighbourhood sizes) on a causal score");
  m.def(
      "causal_count_moves",
      [](py::handle parents_o, int max_parents, bool swaps) {
        TensorArg t = tensor_arg(parents_o, "parents");
        check_dtype(t, DType::kInt64);
        GFN_CHECK(t.dim() == 1 && t.size(0) >= 1 && t.size(0) <= kSingleWordNodes, "parents must have shape [d], d in [1, ",
                  kSingleWordNodes, "], got ", t.shape_str());
        const int d = static_cast<int>(t.size(0));
        check_max_parents(max_parents, d);
        const uint64_t* pa = reinterpret_cast<const uint64_t*>(t.data<int64_t>());
        const uint64_t all = d == 64 ? ~uint64_t(0) : (uint64_t(1) << d) - 1;
        for (int j = 0; j < d; ++j) GFN_CHECK(!(pa[j] & ~all) && !((pa[j] >> j) & 1), "parents[", j, "] is not a parent set of node ", j);
        const int64_t n = count_moves(pa, d, max_parents, swaps);
        GFN_CHECK(n >= 0, "parents describe a graph with a directed cycle");
        return n;
      },
      py::arg("parents"), py::arg("max_parents"), py::arg("swaps") = false, "|N(G)|: the legal add / delete / reverse moves of one DAG");
  m.def(
      "causal_exact_dp",
      [](py::handle score_o, int max_parents, bool edges) {
        std::shared_ptr<const CausalScore> s = causal_score_from_python(score_o);
        check_max_parents(max_parents, s->num_nodes());
        DagDpResult r;
        {
          py::gil_scoped_release nogil;
          r = exact_dag_dp(*s, max_parents, edges);
        }
        return py::make_tuple(r.log_z, r.edge_marginals, r.families);
      },
      py::arg("score"), py::arg("max_parents"), py::arg("edges") = true,
      "log Z and edge marginals of the posterior over DAGs by the sink recursion over node subsets");
}

}  // namespace causal
}  // namespace gfn
