"""Bayesian models on a parameter grid: the grid, the grid-restricted prior, the likelihoods
against scipy, and the synthetic data generator."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from gfncore.bayes import LinearRegression, LogisticRegression, ParameterGrid, synthetic_problem


def test_grid_enumerates_every_setting_once_in_order():
    g = ParameterGrid([-1.0, 0.0, 2.5], 3)
    idx = g.all_indices()
    assert idx.shape == (27, 3) and g.size == 27 and g.K == 3
    assert len({tuple(r) for r in idx.tolist()}) == 27
    assert idx[0].tolist() == [0, 0, 0] and idx[1].tolist() == [0, 0, 1] and idx[-1].tolist() == [2, 2, 2]
    assert torch.equal(g.theta(idx[:2]), torch.tensor([[-1.0, -1.0, -1.0], [-1.0, -1.0, 0.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="too many to enumerate"):
        ParameterGrid.linspace(-1, 1, 10, 8).all_indices(max_size=1000)


@pytest.mark.parametrize("values, match", [
    ([0.5], "at least 2 values, got 1"), ([], "at least 2 values, got 0"), ([0.0, 0.0, 1.0], "strictly increasing"),
    ([1.0, 0.0], "strictly increasing"), ([0.0, math.nan], "finite")])
def test_bad_grids_raise(values, match):
    with pytest.raises(ValueError, match=match):
        ParameterGrid(values, 2)


def test_bad_grid_indices_and_thetas_raise():
    g = ParameterGrid.linspace(-1, 1, 5, 3)
    with pytest.raises(ValueError, match=r"out of range \[0, 5\) in row 1"):
        g.theta(torch.tensor([[0, 1, 2], [0, 5, 0]]))
    with pytest.raises(ValueError, match=r"\[B, 3\]"):
        g.theta(torch.zeros(2, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match="integer"):
        g.theta(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="n"):
        ParameterGrid([0.0, 1.0], 0)
    m = LinearRegression(g)
    with pytest.raises(TypeError, match="grid values"):
        m.log_prior(torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"theta must have shape \[B, 3\]"):
        m.log_prior(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"X must have shape \[b, 3\]"):
        m.log_likelihood(torch.zeros(2, 3), (torch.zeros(4, 2), torch.zeros(4)))
    with pytest.raises(ValueError, match=r"y must have shape \(4,\)"):
        m.log_likelihood(torch.zeros(2, 3), (torch.zeros(4, 3), torch.zeros(5)))
    with pytest.raises(ValueError, match="noise_std"):
        LinearRegression(g, noise_std=0.0)
    with pytest.raises(ValueError, match="prior_std"):
        LogisticRegression(g, prior_std=-1.0)
    with pytest.raises(TypeError, match="ParameterGrid"):
        LogisticRegression([0.0, 1.0])


@pytest.mark.parametrize("cls", [LinearRegression, LogisticRegression])
def test_prior_is_normalised_over_the_grid(cls):
    g = ParameterGrid.linspace(-2, 1, 4, 3)
    m = cls(g, prior_std=0.7)
    lp = m.log_prior(g.theta(g.all_indices()))
    assert float(torch.logsumexp(lp, 0)) == pytest.approx(0.0, abs=1e-12)
    # proportional to the Gaussian density at the grid values
    t = g.theta(g.all_indices())
    ref = stats.norm.logpdf(t.numpy(), scale=0.7).sum(1)
    assert np.allclose(lp.numpy() - lp.numpy()[0], ref - ref[0], atol=1e-10)


def test_likelihoods_match_scipy():
    g = ParameterGrid.linspace(-1, 1, 3, 4)
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    X = torch.randn(9, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(9, generator=gen, dtype=torch.float64)
    lin = LinearRegression(g, noise_std=1.7)
    ll = lin.log_likelihood(theta, (X, y))
    mu = theta.numpy() @ X.numpy().T
    assert ll.shape == (6, 9)
    assert np.allclose(ll.numpy(), stats.norm.logpdf(y.numpy()[None], loc=mu, scale=1.7), atol=1e-12)
    assert np.allclose(lin.predictive_cdf(theta, X, y).numpy(), stats.norm.cdf(y.numpy()[None], loc=mu, scale=1.7),
                       atol=1e-12)
    yb = (torch.rand(9, generator=gen) < 0.5).double()
    logit = LogisticRegression(g)
    ll = logit.log_likelihood(theta, (X, yb))
    p = 1 / (1 + np.exp(-mu))
    assert np.allclose(ll.numpy(), stats.bernoulli.logpmf(yb.numpy()[None], p), atol=1e-12)
    assert np.allclose(logit.predict_proba(theta, X).numpy(), p, atol=1e-12)
    # float32 inputs are computed in float64
    assert lin.log_likelihood(theta.float(), (X.float(), y.float())).dtype == torch.float64


@pytest.mark.parametrize("model", ["linear", "logistic"])
def test_synthetic_problem_is_seeded_and_shaped(model):
    a = synthetic_problem(model, n_weights=5, K=5, n_examples=200, n_test=50, seed=3)
    b = synthetic_problem(model, n_weights=5, K=5, n_examples=200, n_test=50, seed=3)
    c = synthetic_problem(model, n_weights=5, K=5, n_examples=200, n_test=50, seed=4)
    assert a.data[0].shape == (200, 5) and a.data[1].shape == (200,) and a.test[0].shape == (50, 5)
    assert torch.equal(a.data[1], b.data[1]) and torch.equal(a.theta_true, b.theta_true)
    assert not torch.equal(a.data[1], c.data[1])
    assert torch.equal(a.grid.theta(a.theta_true_index[None])[0], a.theta_true)
    if model == "logistic":
        assert set(a.data[1].unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="model"):
        synthetic_problem("poisson")
    with pytest.raises(ValueError, match="n_examples"):
        synthetic_problem(model, n_examples=-1)


def test_prior_draws_follow_the_prior():
    """θ_true of the synthetic problems is drawn from the grid prior: frequencies vs P(θ_j = g_k)."""
    g = ParameterGrid.linspace(-1, 1, 5, 2)
    m = LinearRegression(g, prior_std=0.6)
    idx = m.prior.sample_index(40000, torch.Generator().manual_seed(0))
    freq = torch.bincount(idx[:, 1], minlength=5).double() / idx.shape[0]
    p = torch.softmax(-0.5 * (g.values / 0.6) ** 2, 0)
    se = (p * (1 - p) / idx.shape[0]).sqrt()
    assert bool(((freq - p).abs() < 4.5 * se).all()), (freq, p)
