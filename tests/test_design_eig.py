"""Expected information gain, checked exactly on enumerable graphs: the exact EIG (every DAG, inner
sum exact, outer Monte Carlo with its standard error) of every single-node intervention, nested
Monte Carlo and the GFlowNet-weighted estimator against it, the d = 3 chain, and the supports."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gfncore.causal import all_dags, sample_erdos_renyi_sem
from gfncore.causal.data import sample_linear_gaussian
from gfncore.design import (Experiment, GraphSupport, NodeStats, ScoreModel, eig_nested_mc, eig_support,
                            exact_support)
from gfncore.design.predictive import predictive_log_prob


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def singles(d, n=10, value=2.0):
    return [Experiment((j,), n, value) for j in range(d)]


def chain_data(n=100, seed=0):
    G = torch.zeros(3, 3, dtype=torch.bool)
    G[0, 1] = G[1, 2] = True
    W = torch.zeros(3, 3, dtype=torch.float64)
    W[0, 1], W[1, 2] = 1.5, -1.2
    return G, sample_linear_gaussian(G, W, n, 1.0, np.random.default_rng(seed))


def test_chain_intervening_on_the_middle_node_has_the_highest_eig():
    """X -> Y -> Z, observational data: the BGe posterior (score equivalent) cannot tell the chain,
    its reverse and the fork apart. do(Y) separates all three (X <- Y or X -> Y, Y -> Z or Y <- Z);
    do(X) only tells X -> Y from X <- Y, do(Z) only Y -> Z from Y <- Z. The exact EIG says so."""
    G, x = chain_data()
    model = ScoreModel(score="bge")
    sup = exact_support(model, x)
    chain, rev, fork = sup.index_of(G), sup.index_of(G.T), sup.index_of(torch.tensor([[0, 0, 0], [1, 0, 1],
                                                                                          [0, 0, 0]]).bool())
    p = sup.probs
    assert math.isclose(float(p[chain]), float(p[rev]), rel_tol=1e-9)
    assert math.isclose(float(p[chain]), float(p[fork]), rel_tol=1e-9)
    assert float(p[chain] + p[rev] + p[fork]) > 0.9          # the class holds the posterior
    est = eig_support(model, NodeStats.of(x), sup, singles(3), outer=3000, generator=torch.Generator().manual_seed(0))
    v, se = est.values, est.stderr
    print("\nchain X->Y->Z (BGe, N = 100, do(.=2) x 10): exact EIG",
          [f"{a:.4f} +- {b:.4f}" for a, b in zip(v.tolist(), se.tolist())])
    for other in (0, 2):
        assert float(v[1] - v[other]) > 4 * math.hypot(float(se[1]), float(se[other]))
    # do(Y) resolves the three-way ambiguity: close to log 3 nats; do(X), do(Z) at most log 3 - (2/3) log 2
    assert float(v[1]) > 0.9 * math.log(3)
    assert float(v[0]) < math.log(3) - 2 / 3 * math.log(2) + 0.1


def d4_case(score):
    cd = sample_erdos_renyi_sem(4, 30, expected_edges=4, seed=3)
    return cd, ScoreModel(score=score)


@pytest.mark.parametrize("score", ["lingauss", "bge"])
def test_exact_eig_of_every_single_node_intervention_and_nested_mc_agrees(score):
    """d = 4 (543 DAGs): exact EIG (inner sum over every DAG, 2000 outer draws) of each do(X_j = 2)
    with 10 rows; its two forms (mean information gain, the definition's integrand) agree, and
    nested Monte Carlo (N = 1000 outer, M = 1024 inner) agrees with it within 4 combined standard
    errors (M is large enough that its O(1/M) bias is below them)."""
    cd, model = d4_case(score)
    sup = exact_support(model, cd.data)
    assert sup.graphs.shape[0] == 543
    stats = NodeStats.of(cd.data)
    gen = torch.Generator().manual_seed(0)
    ex = eig_support(model, stats, sup, singles(4), outer=2000, generator=gen)
    nm = eig_nested_mc(model, stats, sup, singles(4), outer=1000, inner=1024, generator=gen)
    print(f"\nd=4 {score}: exact EIG", [f"{a:.4f}+-{b:.4f}" for a, b in zip(ex.values.tolist(), ex.stderr.tolist())],
          "nested MC", [f"{a:.4f}+-{b:.4f}" for a, b in zip(nm.values.tolist(), nm.stderr.tolist())])
    assert bool((ex.values > 0).all())
    z_def = (ex.values - ex.extra["definition"]) / torch.hypot(ex.stderr, ex.extra["definition_stderr"])
    assert bool((z_def.abs() < 4).all()), z_def
    z = (nm.values - ex.values) / torch.hypot(nm.stderr, ex.stderr)
    assert bool((z.abs() < 4).all()), z
    # the candidates are told apart: the spread of the EIGs is many standard errors
    assert float(ex.values.max() - ex.values.min()) > 10 * float(ex.stderr.max())


def test_eig_is_zero_when_the_graph_is_known_and_log_likelihoods_add_up():
    cd, model = d4_case("lingauss")
    graphs = all_dags(4)
    point = GraphSupport.from_probs(graphs, torch.nn.functional.one_hot(torch.tensor(7), graphs.shape[0]).double())
    est = eig_support(model, NodeStats.of(cd.data), point, singles(4), outer=16)
    assert bool((est.values.abs() < 1e-12).all())
    # log P(y | e, G, D) of the support is the sum of its families' terms
    sup = GraphSupport(graphs[:50])
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(5, 3, 4, generator=gen, dtype=torch.float64)
    T = torch.tensor([True, False, False, False])
    y[:, :, 0] = 2.0
    F = predictive_log_prob(model, sup.families, NodeStats.of(cd.data), y, T)
    ll = sup.log_likelihood(F)
    ref = torch.stack([sum(F[:, sup.family_ids[s, j]] for j in range(4)) for s in range(50)], 1)
    assert torch.allclose(ll, ref, rtol=0, atol=1e-12)


def test_support_from_samples_and_reweighting():
    graphs = all_dags(3)
    samples = torch.cat([graphs[[1, 1, 1, 4]], graphs[[4]]])
    sup = GraphSupport.from_samples(samples)
    assert sup.graphs.shape[0] == 2
    assert sorted(sup.probs.tolist()) == pytest.approx([0.4, 0.6])
    rw = sup.reweighted(torch.tensor([0.0, math.log(3.0)]))
    assert float(rw.probs.sum()) == pytest.approx(1.0)
    assert sup.entropy() == pytest.approx(-(0.4 * math.log(0.4) + 0.6 * math.log(0.6)))


def test_estimators_bad_input():
    cd, model = d4_case("lingauss")
    sup = GraphSupport(all_dags(4)[:10])
    stats = NodeStats.of(cd.data)
    with pytest.raises(ValueError, match="node 4, which does not exist"):
        eig_support(model, stats, sup, [Experiment((4,), 5)])
    with pytest.raises(ValueError, match="no candidate experiments"):
        eig_nested_mc(model, stats, sup, [])
    with pytest.raises(ValueError, match="outer must be >= 2"):
        eig_support(model, stats, sup, singles(4), outer=1)
    with pytest.raises(ValueError, match="sample size n must be an int >= 1"):
        Experiment((0,), 0)
    with pytest.raises(ValueError, match="log_weights must have one entry per graph"):
        GraphSupport(all_dags(3), torch.zeros(4))
