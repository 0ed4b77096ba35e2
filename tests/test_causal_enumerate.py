"""Exact enumeration of DAGs and the exact posterior, including how interventions break the
symmetry between Markov-equivalent graphs."""
from __future__ import annotations

import math

import pytest
import torch

from gfncore.causal import CausalScore, Intervention, all_dags, exact_posterior, is_dag, sample_erdos_renyi_sem
from gfncore.causal.enumerate import count_dags, graph_keys


def dfs_acyclic(a: torch.Tensor) -> bool:
    """Independent check: depth-first search for a back edge."""
    d = a.shape[0]
    state = [0] * d  # 0 new, 1 on the stack, 2 done

    def visit(u):
        state[u] = 1
        for v in a[u].nonzero().flatten().tolist():
            if state[v] == 1 or (state[v] == 0 and not visit(v)):
                return False
        state[u] = 2
        return True

    return all(state[u] or visit(u) for u in range(d))


@pytest.mark.parametrize("d,count", [(1, 1), (2, 3), (3, 25), (4, 543), (5, 29281)])
def test_dag_counts(d, count):
    G = all_dags(d)
    assert G.shape == (count, d, d) and G.dtype == torch.bool
    assert count_dags(d) == count  # Robinson's recurrence agrees with OEIS A003024
    assert torch.unique(graph_keys(G)).shape[0] == count
    assert not bool(G.diagonal(dim1=1, dim2=2).any())
    assert bool(is_dag(G).all())
    assert G[0].sum() == 0  # the empty graph first
    if d <= 4:
        assert all(dfs_acyclic(a) for a in G)


def test_is_dag_against_dfs():
    gen = torch.Generator().manual_seed(0)
    A = torch.rand(400, 5, 5, generator=gen) < 0.15
    got = is_dag(A)
    want = torch.tensor([dfs_acyclic(a) for a in A])
    assert torch.equal(got, want)
    assert 50 < int(got.sum()) < 350  # both kinds were tested


def test_all_dags_rejects_large_d():
    with pytest.raises(ValueError, match=r"d in \[1, 5\]"):
        all_dags(6)
    with pytest.raises(TypeError):
        all_dags(3.0)


def test_exact_posterior_is_normalised_and_consistent():
    data = sample_erdos_renyi_sem(4, 50, seed=0)
    s = CausalScore(data, "bge", prior="edge", edge_penalty=0.5)
    post = exact_posterior(s)
    assert math.isclose(float(post.probs.sum()), 1.0, abs_tol=1e-12)
    assert math.isclose(post.log_z, float(torch.logsumexp(s.log_score(post.graphs), 0)), rel_tol=1e-12)
    # Edge marginals by a plain loop over the support.
    m = torch.zeros(4, 4, dtype=torch.float64)
    for p, g in zip(post.probs, post.graphs):
        m += p * g.double()
    assert torch.allclose(post.edge_marginals, m, atol=1e-12)
    assert torch.equal(post.index(post.graphs), torch.arange(post.graphs.shape[0]))
    # Samples drawn from the exact posterior have that histogram in the limit; here: the exact
    # support indexes back to itself, and a non-DAG is refused.
    emp = post.empirical(post.graphs[[0, 0, 3]])
    assert emp[0] == pytest.approx(2 / 3) and emp[3] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="not a DAG"):
        post.index(torch.ones(1, 4, 4, dtype=torch.bool))


def test_exact_posterior_of_a_flat_reward_is_uniform():
    post = exact_posterior(lambda g: torch.zeros(g.shape[0], dtype=torch.float64), d=3)
    assert torch.allclose(post.probs, torch.full((25,), 1 / 25, dtype=torch.float64))
    assert math.isclose(post.log_z, math.log(25))
    # Of the 25 DAGs on 3 nodes, 8 contain a given edge i -> j.
    G = all_dags(3)
    n_with = G[:, 0, 1].sum()
    assert math.isclose(float(post.edge_marginals[0, 1]), int(n_with) / 25, rel_tol=1e-12)
    assert int(n_with) == 8


def two_node_data(truth: str, n_obs: int, n_int: int, intervene: str | None, seed: int = 0):
    """Samples of X -> Y (truth "XY") or Y -> X, effect = 1.2 cause + N(0, 1): n_obs observational
    rows, then n_int rows where the named node is drawn from N(0, 2^2) regardless of its parent."""
    import numpy as np

    from gfncore.causal.data import sample_linear_gaussian

    g = torch.zeros(2, 2, dtype=torch.bool)
    g[(0, 1) if truth == "XY" else (1, 0)] = True
    w = 1.2 * g.double()
    rng = np.random.default_rng(seed)
    x = sample_linear_gaussian(g, w, n_obs, 1.0, rng)
    if intervene is None:
        return x, None
    col = 0 if intervene == "X" else 1
    x = torch.cat([x, sample_linear_gaussian(g, w, n_int, 1.0, rng, intervened=[col], intervention_std=2.0)])
    mask = torch.zeros(n_obs + n_int, 2, dtype=torch.bool)
    mask[n_obs:, col] = True
    return x, mask


def edge_probs(post):
    """P(X -> Y), P(Y -> X) from the exact posterior on 2 nodes."""
    return float(post.edge_marginals[0, 1]), float(post.edge_marginals[1, 0])


@pytest.mark.parametrize("kind", ["bge"])
def test_observational_data_cannot_orient_an_edge(kind):
    data, _ = two_node_data("XY", 200, 0, None)
    post = exact_posterior(CausalScore(data, kind))
    xy, yx = edge_probs(post)
    assert xy > 0.45 and math.isclose(xy, yx, rel_tol=1e-9)  # Markov equivalent: equal mass


@pytest.mark.parametrize("truth", ["XY", "YX"])
@pytest.mark.parametrize("kind", ["bge", "lingauss"])
def test_interventions_on_x_orient_the_edge(truth, kind):
    data, mask = two_node_data(truth, 100, 100, "X")
    post = exact_posterior(CausalScore(data, kind, interventions=mask))
    xy, yx = edge_probs(post)
    right, wrong = (xy, yx) if truth == "XY" else (yx, xy)
    assert right > 0.95 and wrong < 0.01, (xy, yx)
    # The same rows without their intervention labels cannot orient it under BGe.
    if kind == "bge":
        xy0, yx0 = edge_probs(exact_posterior(CausalScore(data, kind)))
        assert math.isclose(xy0, yx0, rel_tol=1e-9)


def test_interventions_shrink_the_class_on_three_nodes():
    """Chain X0 -> X1 -> X2: observationally its class has 3 members with equal mass; intervening
    on X1 leaves only the chain."""
    from gfncore.causal.metrics import markov_equivalent

    truth = torch.zeros(3, 3, dtype=torch.bool)
    truth[0, 1] = truth[1, 2] = True
    w = torch.zeros(3, 3, dtype=torch.float64)
    w[0, 1], w[1, 2] = 1.5, -1.2
    import numpy as np

    from gfncore.causal.data import sample_linear_gaussian

    rng = np.random.default_rng(0)
    x_obs = sample_linear_gaussian(truth, w, 300, 1.0, rng)
    x_int = sample_linear_gaussian(truth, w, 300, 1.0, rng, intervened=[1], intervention_std=2.0)
    G = all_dags(3)
    cls = markov_equivalent(G, truth)
    assert int(cls.sum()) == 3
    p_obs = exact_posterior(CausalScore(x_obs, "bge")).probs
    in_class = p_obs[cls]
    assert float(in_class.sum()) > 0.9
    assert float(in_class.max() - in_class.min()) < 1e-9 * float(in_class.max())
    x = torch.cat([x_obs, x_int])
    mask = torch.zeros(600, 3, dtype=torch.bool)
    mask[300:, 1] = True
    post = exact_posterior(CausalScore(x, "bge", interventions=mask))
    chain = int(post.index(truth.unsqueeze(0))[0])
    assert float(post.probs[chain]) > 0.9
    others = cls.clone()
    others[chain] = False
    assert float(post.probs[others].sum()) < 0.01


def test_intervention_generator_feeds_the_score():
    data = sample_erdos_renyi_sem(3, 50, seed=2, interventions=[Intervention(0, 30)])
    s = CausalScore(data, "bge")
    assert s.rows_per_node() == [50, 80, 80]
