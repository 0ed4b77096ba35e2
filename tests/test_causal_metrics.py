"""Posterior metrics for causal graphs: SHD, edges, AUROC, JSD, edge-marginal agreement, Markov
equivalence."""
from __future__ import annotations

import math

import pytest
import torch

from gfncore.causal import CausalScore, all_dags, exact_posterior, sample_erdos_renyi_sem
from gfncore.causal import metrics as M


def graph(d: int, *edges) -> torch.Tensor:
    a = torch.zeros(d, d, dtype=torch.bool)
    for i, j in edges:
        a[i, j] = True
    return a


def test_shd_by_hand():
    true = graph(3, (0, 1), (1, 2))
    cases = [
        (graph(3, (0, 1), (1, 2)), 0),
        (graph(3, (1, 0), (1, 2)), 1),          # one reversal
        (graph(3), 2),                          # two missing
        (graph(3, (0, 1), (1, 2), (0, 2)), 1),  # one extra
        (graph(3, (1, 0), (2, 1), (0, 2)), 3),  # two reversals and one extra
    ]
    G = torch.stack([g for g, _ in cases])
    assert M.shd(G, true).tolist() == [s for _, s in cases]
    assert M.expected_shd(G, true) == pytest.approx(sum(s for _, s in cases) / len(cases))
    w = torch.tensor([0.5, 0.5, 0.0, 0.0, 0.0], dtype=torch.float64)
    assert M.expected_shd(G, true, w) == pytest.approx(0.5)
    assert M.expected_edges(G) == pytest.approx((2 + 2 + 0 + 3 + 3) / 5)
    assert M.n_distinct(torch.cat([G, G[:2]])) == 5


def test_edge_auroc():
    true = graph(3, (0, 1), (1, 2))
    perfect = true.double() * 0.9 + 0.05
    assert M.edge_auroc(perfect, true) == 1.0
    assert M.edge_auroc(1 - perfect, true) == 0.0
    assert M.edge_auroc(torch.full((3, 3), 0.3), true) == 0.5  # all ties
    # Positives 0.8 and 0.4 against negatives 0.5, 0.4, 0.1, 0.0: 4 + (2 + one tie) wins of 8.
    m = torch.tensor([[0.0, 0.8, 0.5], [0.4, 0.0, 0.4], [0.1, 0.0, 0.0]], dtype=torch.float64)
    assert M.edge_auroc(m, true) == pytest.approx((4 + 2.5) / 8)
    with pytest.raises(ValueError, match="at least one edge and one non-edge"):
        M.edge_auroc(m, graph(3))


def test_edge_marginal_agreement_and_jsd():
    a = torch.tensor([[0, 0.2, 0.9], [0.1, 0, 0.5], [0.0, 0.3, 0]], dtype=torch.float64)
    assert M.edge_marginal_rmse(a, a) == 0.0
    assert M.edge_marginal_corr(a, a) == pytest.approx(1.0)
    assert M.edge_marginal_corr(a, 1 - a) == pytest.approx(-1.0)
    b = a.clone()
    b[0, 1] += 0.6
    assert M.edge_marginal_rmse(a, b) == pytest.approx(math.sqrt(0.36 / 6))
    assert math.isnan(M.edge_marginal_corr(a, torch.full((3, 3), 0.5)))
    p = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    q = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    assert M.jsd(p, p) == 0.0
    assert M.jsd(p, q) == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="probability vector"):
        M.jsd(p, 2 * q)
    with pytest.raises(ValueError, match="same graphs"):
        M.jsd(p, q[:2])


def test_exact_expectations_match_sample_estimates():
    data = sample_erdos_renyi_sem(3, 40, seed=1)
    post = exact_posterior(CausalScore(data, "bge"))
    assert torch.allclose(M.edge_marginals(post.graphs, post.probs), post.edge_marginals)
    gen = torch.Generator().manual_seed(0)
    idx = torch.multinomial(post.probs, 20000, replacement=True, generator=gen)
    S = post.graphs[idx]
    assert M.expected_shd(S, data.graph) == pytest.approx(M.expected_shd(post.graphs, data.graph, post.probs),
                                                         abs=0.05)
    assert M.edge_marginal_rmse(M.edge_marginals(S), post.edge_marginals) < 0.01
    assert M.jsd(post.empirical(S), post.probs) < 0.005
    assert M.n_distinct(S) <= 25


def test_markov_equivalence_classes():
    chain, fork, collider = graph(3, (0, 1), (1, 2)), graph(3, (1, 0), (1, 2)), graph(3, (0, 1), (2, 1))
    assert bool(M.markov_equivalent(chain, fork))
    assert not bool(M.markov_equivalent(chain, collider))
    assert M.v_structures(collider).sum() == 2  # (0, 1, 2) and (2, 1, 0)
    assert M.v_structures(graph(3, (0, 1), (2, 1), (0, 2))).sum() == 0  # shielded collider
    # Number of Markov equivalence classes of DAGs on d nodes: 1, 2, 11, 185 (OEIS A007984).
    for d, n_classes in [(1, 1), (2, 2), (3, 11), (4, 185)]:
        G = all_dags(d)
        keys = torch.cat([M.skeleton(G).flatten(1), M.v_structures(G).flatten(1)], 1)
        assert torch.unique(keys, dim=0).shape[0] == n_classes
    G = all_dags(3)
    p = torch.full((25,), 1 / 25, dtype=torch.float64)
    assert M.mec_probability(G, chain, p) == pytest.approx(3 / 25)
    assert M.mec_probability(G, collider, p) == pytest.approx(1 / 25)


def test_bad_metric_input():
    with pytest.raises(ValueError, match=r"graphs must have shape \[S, d, d\]"):
        M.expected_edges(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="true_graph must have shape"):
        M.expected_shd(torch.zeros(2, 3, 3), torch.zeros(4, 4))
    with pytest.raises(ValueError, match="weights must be non-negative and sum to 1"):
        M.expected_edges(torch.zeros(2, 3, 3), torch.tensor([0.5, 0.6]))
