"""The causal-graph score: BGe and linear-Gaussian against the numpy reference and scipy, score
equivalence, delta scores, the cache under threads, interventions, and bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import gfncore
from gfncore.causal import CausalScore, Intervention, ReferenceScore, all_dags, sample_erdos_renyi_sem
from gfncore.causal.metrics import markov_equivalent, skeleton, v_structures
from gfncore.causal.scores import lingauss_local_score_reference

PRIORS = [("uniform", {}), ("erdos_renyi", {"edge_prob": 0.3}), ("edge", {"edge_penalty": 1.5})]


def random_dags(d: int, n: int, gen: torch.Generator, p: float = 0.4) -> torch.Tensor:
    """n random DAGs on d nodes: random upper-triangular graphs under random node permutations."""
    out = torch.zeros(n, d, d, dtype=torch.bool)
    for b in range(n):
        upper = torch.triu(torch.rand(d, d, generator=gen) < p, diagonal=1)
        perm = torch.randperm(d, generator=gen)
        out[b][perm[:, None], perm[None, :]] = upper
    return out


def chain_data(n: int = 60, seed: int = 0) -> torch.Tensor:
    """X -> Y -> Z, linear-Gaussian."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g, dtype=torch.float64)
    y = 1.5 * x + torch.randn(n, generator=g, dtype=torch.float64)
    z = -0.8 * y + torch.randn(n, generator=g, dtype=torch.float64)
    return torch.stack([x, y, z], 1)


def graph(d: int, *edges) -> torch.Tensor:
    a = torch.zeros(d, d, dtype=torch.bool)
    for i, j in edges:
        a[i, j] = True
    return a


def close(a, b, rtol=1e-9, atol=1e-8) -> bool:
    return torch.allclose(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64),
                          rtol=rtol, atol=atol)


# ------------------------------------------------------------------------- score equivalence


def test_bge_score_equivalence_chain_fork_collider():
    s = CausalScore(chain_data(), "bge")
    chain, rev, fork = graph(3, (0, 1), (1, 2)), graph(3, (2, 1), (1, 0)), graph(3, (1, 0), (1, 2))
    collider = graph(3, (0, 1), (2, 1))
    sc = s.log_score(torch.stack([chain, rev, fork, collider]))
    assert close(sc[0], sc[1]) and close(sc[0], sc[2])
    # The collider is a different equivalence class, and the data come from the chain.
    assert float(sc[0] - sc[3]) > 1.0


def test_lingauss_is_not_score_equivalent():
    # The linear-Gaussian marginal likelihood with a fixed prior is not score-equivalent: the check
    # above can tell classes apart only because BGe is.
    s = CausalScore(chain_data(), "lingauss")
    sc = s.log_score(torch.stack([graph(3, (0, 1), (1, 2)), graph(3, (2, 1), (1, 0))]))
    assert abs(float(sc[0] - sc[1])) > 1e-3


def test_bge_equal_within_every_markov_class_d4():
    """All 543 DAGs on 4 nodes: BGe scores agree inside each Markov equivalence class (same skeleton
    and v-structures) and differ between classes (random data: no ties), 185 classes (OEIS A007984)."""
    data = sample_erdos_renyi_sem(4, 80, seed=3)
    s = CausalScore(data, "bge")
    G = all_dags(4)
    sc = s.log_score(G)
    keys = torch.cat([skeleton(G).flatten(1), v_structures(G).flatten(1)], 1)
    classes, inv = torch.unique(keys, dim=0, return_inverse=True)
    assert classes.shape[0] == 185
    for c in range(classes.shape[0]):
        v = sc[inv == c]
        assert float(v.max() - v.min()) < 1e-8 * float(v.abs().max())
    means = torch.stack([sc[inv == c].mean() for c in range(classes.shape[0])])
    gaps = torch.sort(means).values.diff()
    assert float(gaps.min()) > 1e-6


def covered_edges(a: torch.Tensor):
    """Edges i -> j with Pa(j) = Pa(i) + {i}: reversing one keeps the Markov class (Chickering 1995)."""
    d = a.shape[0]
    out = []
    for i, j in a.nonzero().tolist():
        pa_j = a[:, j].clone()
        pa_j[i] = False
        if torch.equal(pa_j, a[:, i]):
            out.append((i, j))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_bge_equal_on_random_equivalent_pairs(seed):
    gen = torch.Generator().manual_seed(seed)
    d = 7
    data = sample_erdos_renyi_sem(d, 50, seed=seed)
    s = CausalScore(data, "bge", prior="uniform")
    checked = 0
    for a in random_dags(d, 30, gen, p=0.5):
        cov = covered_edges(a)
        if not cov:
            continue
        i, j = cov[int(torch.randint(len(cov), (1,), generator=gen))]
        b = a.clone()
        b[i, j], b[j, i] = False, True
        assert bool(markov_equivalent(a, b))
        sa, sb = s.log_score(torch.stack([a, b]))
        assert close(sa, sb), (a, b)
        checked += 1
    assert checked >= 5


# ------------------------------------------------------------------------- C++ vs reference


@pytest.mark.parametrize("kind", ["bge", "lingauss"])
@pytest.mark.parametrize("prior,kw", PRIORS, ids=[p for p, _ in PRIORS])
@pytest.mark.parametrize("interventional", [False, True])
def test_compiled_matches_reference(kind, prior, kw, interventional):
    d = 5
    ivs = [Intervention(0, 15), Intervention((2, 3), 10, value=1.5)] if interventional else []
    data = sample_erdos_renyi_sem(d, 40, seed=11, interventions=ivs)
    if kind == "lingauss":
        data.data -= data.data.mean(0)
    args = dict(prior=prior, **kw)
    if kind == "bge":
        args.update(alpha_mu=2.0, mean_prior=[0.1, -0.2, 0.0, 0.3, 0.0])
    else:
        args.update(noise_var=0.5, weight_var=2.0, weight_mean=0.25)
    s, r = CausalScore(data, kind, **args), ReferenceScore(data, kind, **args)
    if interventional:
        assert s.rows_per_node() == [50, 65, 55, 55, 65]
    G = random_dags(d, 40, torch.Generator().manual_seed(5))
    assert close(s.log_score(G), r.log_score(G))
    # Local scores of single families, prior share included.
    nodes = torch.tensor([0, 1, 4, 2])
    parents = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 0], [1, 0, 0, 0, 1]], dtype=torch.bool)
    want = [r.local_score(int(j), p.nonzero().flatten().tolist()) for j, p in zip(nodes, parents)]
    assert close(s.local_score(nodes, parents), want)


def test_bge_defaults_match_dag_gflownet_conventions():
    data = chain_data(30)
    s = CausalScore(data, "bge")
    cfg = s.config
    assert cfg["alpha_mu"] == 1.0 and cfg["alpha_w"] == 3 + 2 and cfg["mean_prior"] == [0.0, 0.0, 0.0]
    assert close(s.log_score(graph(3, (0, 1))), ReferenceScore(data, "bge").log_score(graph(3, (0, 1))))


def test_prior_shares():
    data = chain_data(30)
    G = random_dags(3, 10, torch.Generator().manual_seed(0))
    base = CausalScore(data, "bge").log_score(G)
    e = G.flatten(1).sum(1).double()
    assert close(CausalScore(data, "bge", prior="edge", edge_penalty=0.7).log_score(G) - base, -0.7 * e)
    p = 0.2
    er = CausalScore(data, "bge", prior="erdos_renyi", edge_prob=p).log_score(G) - base
    assert close(er, e * math.log(p) + (6 - e) * math.log1p(-p))
    assert close(CausalScore(data, "bge", prior="edge").log_prior(G), -e)


# ------------------------------------------------------------------------- linear-Gaussian vs scipy


@pytest.mark.parametrize("weight_mean", [0.0, 0.7])
def test_lingauss_matches_dense_gaussian_density(weight_mean):
    from scipy.stats import multivariate_normal

    g = torch.Generator().manual_seed(2)
    x = torch.randn(7, 4, generator=g, dtype=torch.float64)
    nv, wv = 0.3, 1.7
    s = CausalScore(x, "lingauss", noise_var=nv, weight_var=wv, weight_mean=weight_mean)
    X = x.numpy()
    for j, pa in [(0, []), (1, [0]), (3, [0, 2]), (2, [0, 1, 3])]:
        A = X[:, pa]
        cov = nv * np.eye(7) + wv * A @ A.T
        want = multivariate_normal(mean=weight_mean * A.sum(1), cov=cov).logpdf(X[:, j])
        mask = torch.zeros(1, 4, dtype=torch.bool)
        mask[0, pa] = True
        got = float(s.local_score([j], mask)[0])
        assert math.isclose(got, want, rel_tol=1e-10, abs_tol=1e-9), (j, pa, got, want)
        assert math.isclose(lingauss_local_score_reference(X, j, pa, noise_var=nv, weight_var=wv,
                                                           weight_mean=weight_mean), want, rel_tol=1e-10)


# ------------------------------------------------------------------------- delta scores and the cache


def addable_edges(G: torch.Tensor, gen: torch.Generator):
    """One random edge i -> j per graph that is absent and keeps the graph acyclic (j must not
    reach i), for the graphs that have one."""
    B, d, _ = G.shape
    reach = G.float() + torch.eye(d)
    for _ in range(d):
        reach = (reach @ reach).clamp_(max=1.0)
    ok = ~G & ~reach.bool().transpose(-1, -2)  # i -> j allowed unless j reaches i (or i == j)
    keep = ok.flatten(1).any(1).nonzero().flatten()
    pick = torch.multinomial(ok[keep].flatten(1).double(), 1, generator=gen).flatten()
    return pick // d, pick % d, keep


@pytest.mark.parametrize("kind", ["bge", "lingauss"])
def test_delta_equals_difference_of_full_scores(kind):
    gen = torch.Generator().manual_seed(7)
    data = sample_erdos_renyi_sem(8, 60, seed=2, interventions=[Intervention(3, 20)])
    s = CausalScore(data, kind, prior="edge", edge_penalty=0.5)
    G = random_dags(8, 50, gen)
    i, j, keep = addable_edges(G, gen)
    G = G[keep]
    after = G.clone()
    after[torch.arange(G.shape[0]), i, j] = True
    delta = s.delta_score(G, i, j)
    assert close(delta, s.log_score(after) - s.log_score(G), rtol=1e-9, atol=1e-9)
    # The environment's form of the query: the target's parent mask instead of the graph.
    parents = G[torch.arange(G.shape[0]), :, j]
    assert close(s.delta_score_from_parents(j, parents, i), delta, rtol=1e-14, atol=0)
    r = ReferenceScore(data, kind, prior="edge", edge_penalty=0.5)
    assert close(delta[:5], [r.delta_score(G[b], int(i[b]), int(j[b])) for b in range(5)])


@pytest.mark.parametrize("kind", ["bge", "lingauss"])
def test_cache_on_off_and_thread_counts_agree(kind, kernel_threads):
    gen = torch.Generator().manual_seed(1)
    data = sample_erdos_renyi_sem(12, 80, seed=4)
    G = random_dags(12, 150, gen)
    i, j, keep = addable_edges(G, gen)
    G = G[keep]
    results = {}
    for cache in (True, False):
        for threads in (1, 2):
            gfncore._C.set_num_threads(threads)
            s = CausalScore(data, kind, cache=cache)
            results[cache, threads] = (s.log_score(G), s.delta_score(G, i, j), s.log_score(G))
            st = s.cache_stats()
            assert st["enabled"] == cache
            if cache:
                # Two threads may miss on the same family at once; both count, one entry is kept.
                assert st["misses"] >= st["entries"] > 0 and st["hits"] > 0
            else:
                assert st["hits"] == st["misses"] == 0
    ref = results[False, 1]
    for key, val in results.items():
        for a, b in zip(val, ref):
            assert close(a, b, rtol=1e-12, atol=1e-10), key


def test_cache_counts_hits_and_misses():
    s = CausalScore(chain_data(), "bge")
    a = graph(3, (0, 1), (1, 2))
    s.log_score(a)
    assert s.cache_stats() == {"enabled": True, "hits": 0, "misses": 3, "entries": 3, "evictions": 0}
    s.log_score(a)
    assert s.cache_stats()["hits"] == 3
    s.delta_score(a, [0], [2])  # Pa(2) = {1} is cached, {0, 1} is new
    st = s.cache_stats()
    assert (st["hits"], st["misses"]) == (4, 4)
    s.clear_cache()
    assert s.cache_stats() == {"enabled": True, "hits": 0, "misses": 0, "entries": 0, "evictions": 0}


def test_cache_capacity_evicts_and_stays_correct():
    gen = torch.Generator().manual_seed(3)
    data = sample_erdos_renyi_sem(10, 50, seed=0)
    G = random_dags(10, 100, gen)
    small = CausalScore(data, "bge", cache_capacity=8)
    want = CausalScore(data, "bge", cache=False).log_score(G)
    assert close(small.log_score(G), want, rtol=1e-12)
    st = small.cache_stats()
    assert st["evictions"] > 0 and st["entries"] <= 8 + 63  # 64 shards, ceil(8 / 64) = 1 entry each


@pytest.mark.parametrize("capacity,shards", [(0, 1), (16, 1), (40, 8)])
def test_cache_under_concurrent_inserts_growth_and_evictions(capacity, shards, kernel_threads):
    """Four threads look up and insert into one shard at once (tables growing, or emptied when
    full): every value equals the uncached score."""
    gfncore._C.set_num_threads(4)
    gen = torch.Generator().manual_seed(9)
    d, B = 30, 6000
    data = sample_erdos_renyi_sem(d, 60, seed=1)
    s = CausalScore(data, "bge", cache_capacity=capacity)
    s._c = gfncore._C.CausalScore("bge", data.data, None, cache_capacity=capacity, cache_shards=shards)
    nodes = torch.randint(d, (B,), generator=gen)
    par = torch.rand(B, d, generator=gen) < 0.08
    par[torch.arange(B), nodes] = False
    par[B // 2:] = par[:B // 2]  # every family asked twice, the repeats half a batch apart
    nodes[B // 2:] = nodes[:B // 2]
    want = s.local_score(nodes, par, use_cache=False)
    for _ in range(3):
        assert close(s.local_score(nodes, par), want, rtol=1e-14, atol=0)
    st = s.cache_stats()
    assert st["hits"] > 0
    if capacity:
        assert st["evictions"] > 0


def test_uncached_local_score_matches_cached():
    data = sample_erdos_renyi_sem(6, 40, seed=8)
    s = CausalScore(data, "bge")
    nodes = torch.tensor([0, 3, 5])
    par = torch.tensor([[0, 1, 1, 0, 0, 0], [1, 1, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    assert close(s.local_score(nodes, par, use_cache=False), s.local_score(nodes, par), rtol=1e-14)


# ------------------------------------------------------------------------- more than 64 nodes


def test_multiword_parent_sets_d70():
    gen = torch.Generator().manual_seed(0)
    d = 70
    x = torch.randn(90, d, generator=gen, dtype=torch.float64)
    with pytest.raises(ValueError, match="multiword=True"):
        CausalScore(x, "bge")
    s = CausalScore(x, "bge", multiword=True)
    assert s._c.num_words == 2
    r = ReferenceScore(x, "bge")
    nodes = torch.tensor([69, 3, 64, 0])
    par = torch.zeros(4, d, dtype=torch.bool)
    par[0, [0, 63, 64, 68]] = True
    par[1, [65, 66]] = True
    par[2, [1, 2, 69]] = True
    want = [r.local_score(int(j), p.nonzero().flatten().tolist()) for j, p in zip(nodes, par)]
    assert close(s.local_score(nodes, par), want)
    # Delta scores across the word boundary, and the cache keys of both words.
    G = torch.zeros(2, d, d, dtype=torch.bool)
    G[0, 63, 64] = G[1, 64, 63] = True
    dl = s.delta_score(G, torch.tensor([65, 0]), torch.tensor([64, 63]))
    want = [r.local_score(64, [63, 65]) - r.local_score(64, [63]), r.local_score(63, [0, 64]) - r.local_score(63, [64])]
    assert close(dl, want)
    assert s.cache_stats()["entries"] > 0


# ------------------------------------------------------------------------- interventions


def test_intervened_rows_are_dropped_per_node():
    """Node j's family is scored on exactly the rows where j was not intervened on: the same as
    scoring those rows alone with an observational score."""
    data = sample_erdos_renyi_sem(4, 30, seed=5, interventions=[Intervention(1, 12)])
    s = CausalScore(data, "bge")
    keep = ~data.interventions[:, 1]
    obs = CausalScore(data.data[keep], "bge")
    par = torch.tensor([[1, 0, 0, 1]], dtype=torch.bool)
    assert close(s.local_score([1], par), obs.local_score([1], par))
    # Other nodes use every row.
    par0 = torch.tensor([[0, 1, 0, 0]], dtype=torch.bool)
    assert close(s.local_score([0], par0), CausalScore(data.data, "bge").local_score([0], par0))


def test_interventions_given_as_node_lists_and_names():
    data = sample_erdos_renyi_sem(3, 6, seed=1)
    lists = [[], ["X1"], [0, 2], None, "X2", [1]]
    s = CausalScore(data, "bge", interventions=lists)
    mask = s.interventions
    assert mask.tolist() == [[False] * 3, [False, True, False], [True, False, True], [False] * 3,
                             [False, False, True], [False, True, False]]
    assert s.rows_per_node() == [5, 4, 4]


def test_node_intervened_in_every_row_scores_only_its_prior():
    x = chain_data(20)
    mask = torch.zeros(20, 3, dtype=torch.bool)
    mask[:, 0] = True
    for kind in ("bge", "lingauss"):
        s = CausalScore(x, kind, interventions=mask, prior="edge", edge_penalty=0.3)
        v = s.local_score([0, 0], torch.tensor([[0, 1, 0], [0, 1, 1]], dtype=torch.bool))
        assert close(v, [-0.3, -0.6], atol=1e-10)


# ------------------------------------------------------------------------- bad input


def test_bad_data():
    x = chain_data(10)
    y = x.clone()
    y[4, 2] = float("nan")
    with pytest.raises(ValueError, match=r"data must be finite.*row 4, column 2"):
        CausalScore(y, "bge")
    with pytest.raises(ValueError, match="at least 2 rows"):
        CausalScore(x[:1], "bge")
    with pytest.raises(ValueError, match=r"data must have shape \[N, d\]"):
        CausalScore(x[:, 0], "bge")
    with pytest.raises(TypeError, match="data must be a float"):
        CausalScore(x > 0, "bge")
    with pytest.raises(ValueError, match="at most 256"):
        CausalScore(torch.randn(5, 300, dtype=torch.float64), "bge", multiword=True)


def test_bad_interventions():
    x = chain_data(4)
    with pytest.raises(ValueError, match=r"interventions\[1\] names node 3, which does not exist"):
        CausalScore(x, "bge", interventions=[[], [3], [], []])
    with pytest.raises(ValueError, match=r"names node 'W', which does not exist"):
        CausalScore(x, "bge", interventions=[[], ["W"], [], []], node_names=["X", "Y", "Z"])
    with pytest.raises(ValueError, match=r"interventions must have shape \[4, 3\]"):
        CausalScore(x, "bge", interventions=torch.zeros(4, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="each of the 4 rows"):
        CausalScore(x, "bge", interventions=[[0]])
    with pytest.raises(ValueError, match=r"interventions must have shape \[4, 3\]"):
        gfncore._C.CausalScore("bge", x, torch.zeros(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="does not exist"):
        sample_erdos_renyi_sem(3, 10, interventions=[Intervention(5, 3)])


def test_bad_hyperparameters():
    x = chain_data(10)
    with pytest.raises(ValueError, match="kind must be 'bge' or 'lingauss'"):
        CausalScore(x, "bde")
    with pytest.raises(ValueError, match="prior must be"):
        CausalScore(x, "bge", prior="fair")
    with pytest.raises(ValueError, match="needs edge_prob"):
        CausalScore(x, "bge", prior="erdos_renyi")
    with pytest.raises(ValueError, match=r"edge_prob must be in \(0, 1\)"):
        CausalScore(x, "bge", prior="erdos_renyi", edge_prob=1.0)
    with pytest.raises(ValueError, match=r"alpha_w must be > d \+ 1 = 4"):
        CausalScore(x, "bge", alpha_w=4.0)
    with pytest.raises(ValueError, match="alpha_mu must be a positive"):
        CausalScore(x, "bge", alpha_mu=0.0)
    with pytest.raises(ValueError, match="noise_var must be a positive"):
        CausalScore(x, "lingauss", noise_var=-1.0)
    with pytest.raises(ValueError, match="mean_prior must have one entry per node"):
        CausalScore(x, "bge", mean_prior=[0.0, 1.0])


def test_bad_graph_queries():
    s = CausalScore(chain_data(10), "bge")
    cyc = graph(3, (0, 1), (1, 2), (2, 0))
    ok = graph(3, (0, 1))
    with pytest.raises(ValueError, match=r"adj\[1\] has a directed cycle"):
        s.log_score(torch.stack([ok, cyc, cyc]))
    with pytest.raises(ValueError, match=r"adj\[0\] has a self-loop"):
        s.log_score(graph(3, (1, 1)))
    with pytest.raises(ValueError, match="only 0 and 1"):
        s.log_score(torch.full((3, 3), 2))
    with pytest.raises(TypeError, match="adj must be a bool or integer"):
        s.log_score(torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"adj must have shape \[B, 3, 3\]"):
        s.log_score(torch.zeros(2, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"nodes\[1\] = 3 is not a node id in \[0, 3\)"):
        s.local_score([0, 3], torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"parents\[0\] names node 2 as its own parent"):
        s.local_score([2], torch.tensor([[0, 0, 1]], dtype=torch.bool))
    with pytest.raises(ValueError, match=r"adj\[0\] already has the edge 0 -> 1"):
        s.delta_score(ok, [0], [1])
    with pytest.raises(ValueError, match="a self-loop"):
        s.delta_score(ok, [2], [2])
    with pytest.raises(ValueError, match="must be node ids"):
        s.delta_score(ok, [0], [7])
    with pytest.raises(ValueError, match="sources must have 1 entries"):
        s.delta_score(ok, [0, 1], [2])
    # uint8 masks reach the compiled checks directly (both the 8-byte and the scalar paths).
    with pytest.raises(ValueError, match=r"parents\[0\] has an entry other than 0 or 1"):
        s.local_score([0], torch.tensor([[0, 2, 0]], dtype=torch.uint8))
    s10 = CausalScore(torch.randn(20, 10, dtype=torch.float64), "bge")
    for col in (3, 9):
        p10 = torch.zeros(2, 10, dtype=torch.uint8)
        p10[1, col] = 3
        with pytest.raises(ValueError, match=r"parents\[1\] has an entry other than 0 or 1"):
            s10.local_score([0, 0], p10)
    g10 = torch.zeros(1, 10, 10, dtype=torch.uint8)
    g10[0, 4, 5] = 2
    with pytest.raises(ValueError, match=r"adj\[0\] has an entry other than 0 or 1"):
        s10.log_score(g10)
    pa = torch.tensor([[1, 0, 0]], dtype=torch.bool)  # Pa(2) = {0}
    with pytest.raises(ValueError, match=r"parents\[0\] already has node 0"):
        s.delta_score_from_parents([2], pa, [0])
    with pytest.raises(ValueError, match=r"parents\[0\] names node 0 as its own parent"):
        s.delta_score_from_parents([0], pa, [1])
    with pytest.raises(ValueError, match="must be node ids"):
        s.delta_score_from_parents([2], pa, [-1])


def test_score_handle_for_other_bindings():
    """A DAG environment's binding co-owns the C++ score of a Python CausalScore."""
    s = CausalScore(chain_data(), "bge")
    assert gfncore._C.causal_score_handle(s) == (3, 1)
    assert gfncore._C.causal_score_handle(s._c) == (3, 1)
    with pytest.raises(TypeError, match="expected a causal score"):
        gfncore._C.causal_score_handle(object())
