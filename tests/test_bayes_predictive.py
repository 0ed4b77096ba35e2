"""Posterior predictive Q(y|x, D): the same numbers from exact-posterior weights and from samples,
and calibration measures that pass a calibrated predictive and fail a miscalibrated one."""
from __future__ import annotations

import math

import pytest
import torch

from gfncore.bayes import (LinearRegression, LogisticRegression, ParameterGrid, evaluate_predictive,
                           exact_posterior_of, posterior_predictive, synthetic_problem)


@pytest.mark.parametrize("model", ["linear", "logistic"])
def test_weights_and_samples_give_the_same_predictive(model):
    problem = synthetic_problem(model, seed=2, n_test=300)
    post = exact_posterior_of(problem.model, problem.data)
    X, y = problem.test
    exact = posterior_predictive(problem.model, post.theta, X, y, weights=post.probs)
    # duplicated samples with weights=None == their distinct settings weighted by counts
    idx = post.sample(5000, torch.Generator().manual_seed(0))
    theta = problem.grid.theta(idx)
    by_samples = posterior_predictive(problem.model, theta, X, y)
    uniq, counts = idx.unique(dim=0, return_counts=True)
    by_counts = posterior_predictive(problem.model, problem.grid.theta(uniq), X, y, weights=counts)
    for k in by_samples:
        assert torch.allclose(by_samples[k], by_counts[k], rtol=0, atol=1e-10), k
    # 5000 samples approximate the exact predictive to Monte-Carlo accuracy
    key = "p" if model == "logistic" else "mean"
    assert float((by_samples[key] - exact[key]).abs().max()) < 0.05
    assert abs(float(by_samples["log_prob"].mean() - exact["log_prob"].mean())) < 0.01
    # the log density is the log of the weighted mixture of the per-θ densities
    lp = problem.model.predictive_log_prob(post.theta, X, y)
    assert torch.allclose(exact["log_prob"], (post.probs[:, None] * lp.exp()).sum(0).log(), atol=1e-10)
    # chunking over test points changes nothing
    small = posterior_predictive(problem.model, post.theta, X, y, weights=post.probs, chunk=3125 * 7)
    assert all(torch.allclose(small[k], exact[k], rtol=0, atol=1e-12) for k in exact)


def test_logistic_accuracy_and_calibration():
    grid = ParameterGrid.linspace(-1, 1, 5, 3)
    m = LogisticRegression(grid)
    gen = torch.Generator().manual_seed(0)
    theta = torch.tensor([[1.0, -1.0, 0.5]], dtype=torch.float64)
    X = torch.randn(40000, 3, generator=gen, dtype=torch.float64) * 1.5
    y = m.sample_y(theta[0], X, gen)
    good = evaluate_predictive(m, theta, X, y, n_bins=10)
    over = evaluate_predictive(m, 3 * theta, X, y, n_bins=10)  # overconfident: logits 3x too large
    assert good["ece"] < 0.015 and over["ece"] > 0.1, (good["ece"], over["ece"])
    assert good["log_predictive"] > over["log_predictive"] and good["brier"] < over["brier"]
    assert good["accuracy"] == pytest.approx(over["accuracy"])  # same decision boundary
    p = torch.sigmoid(X @ theta[0])
    assert good["accuracy"] == pytest.approx(float(torch.maximum(p, 1 - p).mean()), abs=0.01)
    assert sum(b["count"] for b in good["reliability"]) == 40000
    assert good["effective_samples"] == 1.0


def test_regression_calibration():
    grid = ParameterGrid.linspace(-1, 1, 5, 2)
    gen = torch.Generator().manual_seed(1)
    theta = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    X = torch.randn(40000, 2, generator=gen, dtype=torch.float64)
    truth = LinearRegression(grid, noise_std=2.0)
    y = truth.sample_y(theta[0], X, gen)
    good = evaluate_predictive(truth, theta, X, y)
    narrow = evaluate_predictive(LinearRegression(grid, noise_std=1.0), theta, X, y)  # too-narrow predictive
    assert good["calibration_error"] < 0.01 and narrow["calibration_error"] > 0.1
    assert good["rmse"] == pytest.approx(2.0, rel=0.02)
    assert all(abs(v - 0.1) < 0.01 for v in good["pit_histogram"])
    assert narrow["coverage"]["0.9"] < 0.7
    # the mixture's spread adds to the noise: two θ's far apart widen the predictive
    mix = posterior_predictive(truth, torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64),
                               torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    assert float(mix["mean"]) == pytest.approx(0.0) and float(mix["std"]) == pytest.approx(math.sqrt(4 + 1))


def test_exact_posterior_predictive_beats_the_prior():
    # seed 1: θ_true = (−1, −1, 1, −1, 0), a data set with signal (on seed 0, θ_true ≈ 0 and the prior
    # predictive is as good as the posterior's, as it may be on any one data set)
    for model in ("linear", "logistic"):
        problem = synthetic_problem(model, seed=1, n_test=1000)
        post = exact_posterior_of(problem.model, problem.data)
        prior_w = problem.model.log_prior(post.theta).exp()
        X, y = problem.test
        ev_post = evaluate_predictive(problem.model, post.theta, X, y, weights=post.probs)
        ev_prior = evaluate_predictive(problem.model, post.theta, X, y, weights=prior_w)
        assert ev_post["log_predictive"] > ev_prior["log_predictive"] + 0.05, (model, ev_post, ev_prior)
        if model == "logistic":
            assert ev_post["accuracy"] > ev_prior["accuracy"] + 0.1
        assert 1 < ev_post["effective_samples"] < ev_prior["effective_samples"]


def test_bad_predictive_input_raises():
    problem = synthetic_problem("logistic", seed=0, n_test=20)
    m, (X, y) = problem.model, problem.test
    theta = problem.grid.theta(problem.grid.all_indices()[:4])
    with pytest.raises(ValueError, match=r"weights must have shape \(4,\)"):
        posterior_predictive(m, theta, X, y, weights=torch.ones(3))
    for w in (torch.tensor([1.0, -1.0, 0.0, 0.0]), torch.zeros(4), torch.tensor([1.0, math.nan, 0.0, 0.0])):
        with pytest.raises(ValueError, match="weights must be finite, >= 0 and not all 0"):
            posterior_predictive(m, theta, X, y, weights=w)
    with pytest.raises(ValueError, match=r"X must have shape \[M, 5\]"):
        posterior_predictive(m, theta, X[:, :3])
    with pytest.raises(ValueError, match=r"y must have shape \(20,\)"):
        posterior_predictive(m, theta, X, y[:5])
    with pytest.raises(ValueError, match="S = 0"):
        posterior_predictive(m, theta[:0], X)
    with pytest.raises(ValueError, match="n_bins"):
        evaluate_predictive(m, theta, X, y, n_bins=0)
    with pytest.raises(ValueError, match="0 or 1"):
        evaluate_predictive(m, theta, X, y + 0.5)

    class NoPredictive:
        task = "classification"

    with pytest.raises(TypeError, match="predict_proba"):
        posterior_predictive(NoPredictive(), theta, X)
