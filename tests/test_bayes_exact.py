"""Exact grid posterior: normalisation and the log evidence against an independent float64
brute force in numpy."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from gfncore.bayes import ParameterGrid, exact_posterior, exact_posterior_of, synthetic_problem


def _numpy_log_evidence(problem) -> tuple[float, np.ndarray]:
    """log Σ_θ P(θ) P(D|θ) over every grid setting, with numpy formulas written here."""
    m = problem.model
    vals = m.grid.values.numpy()
    X, y = (t.numpy() for t in problem.data)
    tau = m.prior.prior_std
    log_norm = math.log(np.exp(-0.5 * (vals / tau) ** 2).sum())
    out = []
    for digits in itertools.product(range(len(vals)), repeat=m.grid.n):  # first coordinate slowest
        th = vals[list(digits)]
        lp = float((-0.5 * (th / tau) ** 2).sum()) - m.grid.n * log_norm
        z = X @ th
        if problem.model.task == "regression":
            s = m.noise_std
            ll = float((-0.5 * ((y - z) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)).sum())
        else:
            ll = float((y * z - np.logaddexp(0.0, z)).sum())
        out.append(lp + ll)
    out = np.array(out)
    mx = out.max()
    return float(mx + math.log(np.exp(out - mx).sum())), out


@pytest.mark.parametrize("model", ["linear", "logistic"])
def test_exact_posterior_matches_numpy_brute_force(model):
    problem = synthetic_problem(model, n_weights=5, K=5, n_examples=200, seed=1)  # 3,125 settings
    post = exact_posterior_of(problem.model, problem.data, chunk=700)  # chunks of odd size
    log_z, log_joint = _numpy_log_evidence(problem)
    assert post.index.shape == (3125, 5)
    assert post.log_evidence == pytest.approx(log_z, rel=0, abs=1e-9)
    assert np.allclose(post.log_joint.numpy(), log_joint, rtol=0, atol=1e-9)
    assert float(post.probs.sum()) == pytest.approx(1.0, abs=1e-12)
    marg = post.marginals()
    assert marg.shape == (5, 5) and torch.allclose(marg.sum(1), torch.ones(5, dtype=torch.float64), atol=1e-12)
    # the posterior is neither a point mass nor the prior: enumeration is worth testing against
    assert 0.05 < float(post.probs.max()) < 0.9


def test_samples_and_positions_agree_with_the_table():
    problem = synthetic_problem("linear", seed=0)
    post = exact_posterior_of(problem.model, problem.data)
    assert torch.equal(post.position(post.index), torch.arange(3125))
    x = post.sample(200_000, torch.Generator().manual_seed(0))
    emp = post.empirical(x)
    assert float(emp.sum()) == pytest.approx(1.0)
    assert post.l1(emp) < 0.05
    assert post.l1(torch.full((3125,), 1 / 3125)) > 1.5  # and L1 is not blind: the uniform is far
    assert torch.allclose(post.mean(), post.probs @ post.theta)


def test_exact_posterior_of_user_functions_and_bad_cases():
    grid = ParameterGrid([0.0, 1.0, 2.0], 2)
    data = torch.tensor([0.5, 1.5, 1.0], dtype=torch.float64)

    def log_prior(t):
        return torch.zeros(t.shape[0], dtype=torch.float64)

    def log_lik(t, batch):
        (z,) = batch
        return -0.5 * (z[None, :] - t.sum(1, keepdim=True)) ** 2

    post = exact_posterior(log_prior, log_lik, grid, data)
    by_hand = [sum(-0.5 * (z - (a + b)) ** 2 for z in (0.5, 1.5, 1.0)) for a in (0, 1, 2) for b in (0, 1, 2)]
    assert post.log_evidence == pytest.approx(math.log(sum(math.exp(v) for v in by_hand)), abs=1e-12)
    with pytest.raises(ValueError, match="zero prior"):
        exact_posterior(lambda t: torch.full((t.shape[0],), -math.inf, dtype=torch.float64), log_lik, grid, data)
    with pytest.raises(ValueError, match="log_likelihood.*nan.*theta\\[0\\]"):
        exact_posterior(log_prior, lambda t, b: log_lik(t, b) * math.nan, grid, data)
