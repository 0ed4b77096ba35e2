"""The posterior predictive P(y | e, G, D) of interventional rows: against the compiled score on
D + y, against the Gaussian predictive written out from the weight posterior, against Monte Carlo
over sampled parameters (both scores), and the clamped simulation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gfncore.causal import Intervention, all_dags, sample_erdos_renyi_sem
from gfncore.causal.scores import lingauss_local_score_reference
from gfncore.design.predictive import (Families, NodeStats, ScoreModel, base_log_marginal, predictive_log_prob,
                                       sample_parameters, sample_predictive, simulate)


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def data_with_interventions(d=4, n=30, seed=1):
    return sample_erdos_renyi_sem(d, n, seed=seed, interventions=[Intervention(1, 6, value=2.0),
                                                                  Intervention((0, 3), 4, value=None, std=1.5)])


@pytest.mark.parametrize("score", ["bge", "lingauss"])
def test_family_scores_match_the_compiled_score(score):
    cd = data_with_interventions()
    model = ScoreModel(score=score)
    fam, _ = Families.of_graphs(all_dags(4))
    assert len(fam) == 4 * 2 ** 3  # every (node, parent set)
    ours = base_log_marginal(model, fam, NodeStats.of(cd.data, cd.interventions))
    ref = model.causal_score(cd.data, cd.interventions).local_score(fam.nodes, fam.parents)
    assert torch.allclose(ours, ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("score", ["bge", "lingauss"])
@pytest.mark.parametrize("targets", [(2,), (0, 3)])
def test_predictive_is_the_score_ratio_on_d_plus_y(score, targets):
    """log P(y | e, G, D) per family = LocalScore(D + y) - LocalScore(D), the new rows marked as
    intervened on the targets, from the compiled score itself."""
    cd = data_with_interventions()
    d = 4
    model = ScoreModel(score=score)
    fam, _ = Families.of_graphs(all_dags(d))
    stats = NodeStats.of(cd.data, cd.interventions)
    T = torch.zeros(d, dtype=torch.bool)
    T[list(targets)] = True
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(3, 7, d, generator=gen, dtype=torch.float64)
    y[:, :, T] = 1.5
    F = predictive_log_prob(model, fam, stats, y, T)
    before = model.causal_score(cd.data, cd.interventions).local_score(fam.nodes, fam.parents)
    for b in range(3):
        after = model.causal_score(torch.cat([cd.data, y[b]]), torch.cat([cd.interventions, T.expand(7, d)]))
        ref = after.local_score(fam.nodes, fam.parents) - before
        assert torch.allclose(F[b], ref, rtol=0, atol=1e-9)
    assert bool((F[:, T[fam.nodes]] == 0).all())  # targets are set, not drawn


def test_lingauss_predictive_is_the_gaussian_of_the_weight_posterior():
    """The closed form written another way: given D, w_j ~ N(mu, Sigma) and
    y_j | Y_Pa ~ N(Y_Pa mu, s2 I + Y_Pa Sigma Y_Pa^T) (scipy density); and the ratio of the dense
    N(0, s2 I + sw X X^T) densities of D + y and D (the numpy reference)."""
    from scipy.stats import multivariate_normal

    cd = data_with_interventions()
    model = ScoreModel(score="lingauss", noise_var=0.7, weight_var=1.3, weight_mean=0.2)
    s2, sw, m = 0.7, 1.3, 0.2
    x, mask = cd.data.numpy(), cd.interventions.numpy()
    gen = torch.Generator().manual_seed(1)
    y = torch.randn(1, 5, 4, generator=gen, dtype=torch.float64)
    y[0, :, 1] = -1.0
    T = torch.tensor([False, True, False, False])
    for j, pa in [(3, [0, 1]), (2, [1]), (0, [])]:
        rows = x[~mask[:, j]]
        X, t = rows[:, pa], rows[:, j]
        Sigma = np.linalg.inv(np.eye(len(pa)) / sw + X.T @ X / s2)
        mu = Sigma @ (m * np.ones(len(pa)) / sw + X.T @ t / s2)
        Y = y[0].numpy()[:, pa]
        direct = multivariate_normal(Y @ mu, s2 * np.eye(5) + Y @ Sigma @ Y.T).logpdf(y[0].numpy()[:, j])
        dense = (lingauss_local_score_reference(np.vstack([rows, y[0].numpy()]), j, pa, noise_var=s2, weight_var=sw,
                                                weight_mean=m)
                 - lingauss_local_score_reference(rows, j, pa, noise_var=s2, weight_var=sw, weight_mean=m))
        p = torch.zeros(1, 4, dtype=torch.bool)
        p[0, pa] = True
        ours = predictive_log_prob(model, Families(torch.tensor([j]), p), NodeStats.of(cd.data, cd.interventions),
                                   y, T)
        assert math.isclose(float(ours[0, 0]), direct, rel_tol=0, abs_tol=1e-9)
        assert math.isclose(float(ours[0, 0]), dense, rel_tol=0, abs_tol=1e-9)


@pytest.mark.parametrize("score", ["bge", "lingauss"])
def test_sampled_parameters_average_to_the_closed_form(score):
    """E_theta ~ P(theta | D, G) prod_rows N(y_j; c + beta . y_Pa, sigma^2) = P(y_j | y_Pa, D): the
    parameter sampler (the predictive draws' first half) against the closed form, within 5 Monte-
    Carlo standard errors per family; a model with other hyperparameters is rejected."""
    cd = sample_erdos_renyi_sem(4, 20, seed=1, interventions=[Intervention(1, 5, value=2.0)])
    G = torch.zeros(4, 4, dtype=torch.bool)
    G[0, 1] = G[1, 3] = G[0, 3] = G[2, 3] = True
    gen = torch.Generator().manual_seed(0)
    model = ScoreModel(score=score)
    stats = NodeStats.of(cd.data, cd.interventions)
    T = torch.tensor([False, False, True, False])
    y = sample_predictive(model, stats, G[None], 3, T, 1.0, 1.0, gen)[0]
    M = 200_000
    w, c, s = sample_parameters(model, stats, G.expand(M, 4, 4), gen)
    mu = c[:, None, :] + y[None] @ w
    lp = (-0.5 * ((y[None] - mu) / s[:, None, :]) ** 2 - s[:, None, :].log() - 0.5 * math.log(2 * math.pi)).sum(1)
    mc = torch.logsumexp(lp, 0) - math.log(M)
    ratio = (lp - mc).exp()
    se = ratio.std(0) / math.sqrt(M)  # standard error of the mean relative to the mean
    fam, ids = Families.of_graphs(G[None])
    other = ScoreModel(score=score, alpha_w=9.0) if score == "bge" else ScoreModel(score=score, noise_var=1.3)
    for name, mdl, expect_close in (("model", model, True), ("other", other, False)):
        F = predictive_log_prob(mdl, fam, stats, y[None], T)[0]
        closed = torch.zeros(4, dtype=torch.float64)
        closed[fam.nodes] = F
        z = ((closed - mc) / (se + 1e-9))[~T]  # a parentless lingauss family has one exact density
        if expect_close:
            assert bool((z.abs() < 5).all()), (name, z)
        else:
            assert bool((z.abs() > 5).any()), (name, z)


def test_simulate_clamps_targets_and_solves_the_sem():
    gen = torch.Generator().manual_seed(0)
    B, n, d = 3, 4, 4
    W = torch.zeros(B, d, d, dtype=torch.float64)
    W[:, 0, 1], W[:, 1, 2], W[:, 0, 3] = 1.5, -0.7, 2.0
    c = torch.randn(B, d, generator=gen, dtype=torch.float64)
    s = torch.rand(B, d, generator=gen, dtype=torch.float64) + 0.5
    T = torch.tensor([False, True, False, False])
    y = simulate(W, c, s, n, T, 3.0, 1.0, gen)
    assert y.shape == (B, n, d)
    assert bool((y[:, :, 1] == 3.0).all())
    # every non-target column is its linear mean plus Gaussian noise of the right scale
    resid = y[:, :, 2] - (c[:, None, 2] + y[:, :, 1] * W[:, None, 1, 2])
    resid3 = y[:, :, 3] - (c[:, None, 3] + y[:, :, 0] * W[:, None, 0, 3])
    big = simulate(W[:1].expand(20000, d, d), c[:1].expand(20000, d), s[:1].expand(20000, d), 1, T, 3.0, 1.0, gen)
    r = big[:, 0, 2] - (c[0, 2] + 3.0 * W[0, 1, 2])
    assert abs(float(r.std()) - float(s[0, 2])) < 0.03
    assert abs(float(r.mean())) < 0.03
    assert resid.shape == resid3.shape == (B, n)
    rnd = simulate(W, c, s, 2000, T, None, 2.5, gen)  # random intervention values
    assert abs(float(rnd[:, :, 1].std()) - 2.5) < 0.1


def test_stats_add_is_stats_of_the_union():
    cd = data_with_interventions()
    a = NodeStats.of(cd.data[:20], cd.interventions[:20]).add(cd.data[20:], cd.interventions[20:])
    b = NodeStats.of(cd.data, cd.interventions)
    for u, v in ((a.count, b.count), (a.sums, b.sums), (a.gram, b.gram)):
        assert torch.allclose(u, v, rtol=1e-12, atol=1e-10)


def test_score_model_bad_input():
    with pytest.raises(ValueError, match="score must be one of"):
        ScoreModel(score="gaussian")
    with pytest.raises(ValueError, match="noise_var"):
        ScoreModel(score="lingauss", noise_var=0.0)
    with pytest.raises(ValueError, match="prior must be one of"):
        ScoreModel(prior="flat")
    with pytest.raises(ValueError, match="interventions must be a bool mask"):
        NodeStats.of(torch.zeros(3, 2), torch.zeros(3, 3, dtype=torch.bool))
