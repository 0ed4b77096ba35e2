"""The minibatch log-reward of the posterior over parameters: unbiased for log R(θ) (and a check
that catches biased estimators), its exact variance, the control variate, and bad input."""
from __future__ import annotations

import math

import pytest
import torch

from gfncore.bayes import MinibatchLogReward, ParameterGrid, exact_posterior_of, synthetic_problem


@pytest.fixture(scope="module")
def problem():
    return synthetic_problem("linear", seed=0)


@pytest.fixture(scope="module")
def thetas(problem):
    """The posterior's most probable settings and a few from across the grid."""
    post = exact_posterior_of(problem.model, problem.data)
    top = post.index[post.probs.argsort(descending=True)[:4]]
    spread = post.index[torch.tensor([0, 777, 1562, 3124])]
    return problem.grid.theta(torch.cat([top, spread]))


def _draws(fn, theta, n: int) -> torch.Tensor:
    return torch.stack([fn(theta) for _ in range(n)])  # [n, B]


def _z(draws: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """(mean of the draws − exact) in standard errors; 0 where the estimate is exact every time (the
    control variate at θ = θ_ref) and agrees with the exact value."""
    dev = draws.mean(0) - exact
    se = draws.std(0) / math.sqrt(draws.shape[0])
    return torch.where((se == 0) & (dev.abs() < 1e-9), torch.zeros_like(dev), dev / se)


def _looks_unbiased(draws: torch.Tensor, exact: torch.Tensor) -> bool:
    """The check: every θ's mean within 4.5 standard errors of the full-batch log R (8 θ's at once,
    so a false alarm of an unbiased estimator has probability below 1e-4)."""
    return bool((_z(draws, exact).abs() < 4.5).all())


@pytest.mark.parametrize("batch_size", [1, 20, 199])
@pytest.mark.parametrize("control", [False, True])
def test_minibatch_estimate_is_unbiased(problem, thetas, batch_size, control):
    """Independent draws (each a fresh uniform subset): the mean of 3000 is within 4.5 standard errors
    of the full-batch log R, and their variance is the exact formula's."""
    ref = problem.theta_true if control else None
    r = MinibatchLogReward.from_model(problem.model, problem.data, batch_size=batch_size,
                                      generator=torch.Generator().manual_seed(batch_size), reference=ref,
                                      shuffle="independent")
    exact = r.full(thetas)
    draws = _draws(r, thetas, 3000)
    assert _looks_unbiased(draws, exact), _z(draws, exact)
    # the exact variance formula (without replacement) matches the draws
    var = r.noise_variance(thetas)
    ratio = draws.var(0) / var.clamp(min=1e-300)
    exact_everywhere = var < 1e-20  # θ = θ_ref with the control variate: no noise at all
    assert bool(((ratio - 1).abs() < 0.15)[~exact_everywhere].all()), ratio
    assert bool((draws.std(0)[exact_everywhere] < 1e-9).all())


def test_epoch_shuffling_gives_uniform_disjoint_minibatches(problem, thetas):
    """Random reshuffling: each slice is a uniform subset (unbiased per draw; checked on draws one
    epoch apart, which are independent), the slices of an epoch are disjoint, and the mean over a
    whole epoch is the full-batch value exactly."""
    r = MinibatchLogReward.from_model(problem.model, problem.data, batch_size=40,
                                      generator=torch.Generator().manual_seed(1))
    epoch = [r.sample_batch() for _ in range(5)]
    assert torch.equal(torch.cat(epoch).sort().values, torch.arange(200))
    exact = r.full(thetas)
    one_epoch = torch.stack([r(thetas) for _ in range(5)])
    assert torch.allclose(one_epoch.mean(0), exact, rtol=0, atol=1e-9)
    draws = torch.stack([torch.stack([r(thetas) for _ in range(5)])[0] for _ in range(2000)])  # first of each epoch
    assert _looks_unbiased(draws, exact), _z(draws, exact)
    ratio = draws.var(0) / r.noise_variance(thetas)
    assert bool(((ratio - 1).abs() < 0.15).all()), ratio
    # a batch size that does not divide |D|: the remainder is skipped, never a short batch
    r = MinibatchLogReward.from_model(problem.model, problem.data, batch_size=60)
    assert [r.sample_batch().numel() for _ in range(7)] == [60] * 7
    with pytest.raises(ValueError, match="shuffle"):
        MinibatchLogReward.from_model(problem.model, problem.data, batch_size=60, shuffle="random")


def test_the_same_check_rejects_biased_estimators(problem, thetas):
    r = MinibatchLogReward.from_model(problem.model, problem.data, batch_size=20,
                                      generator=torch.Generator().manual_seed(0), shuffle="independent")
    exact = r.full(thetas)

    def no_scale(t):  # forgets |D|/|b|
        b = r.sample_batch()
        return r._log_prior(t) + r._log_likelihood(t, b).sum(1)

    def off_by_one(t):  # |D|/(|b|+1)
        b = r.sample_batch()
        return r._log_prior(t) + r.n_data / (b.numel() + 1) * r._log_likelihood(t, b).sum(1)

    def unshuffled(t):  # minibatches from the first half of the data only
        return r.on_batch(t, torch.randperm(100, generator=r.generator)[:20])

    for biased in (no_scale, off_by_one, unshuffled):
        draws = _draws(biased, thetas, 3000)
        assert not _looks_unbiased(draws, exact), (biased.__name__, _z(draws, exact))


def test_control_variate_cuts_the_noise_near_the_reference(problem, thetas):
    plain = MinibatchLogReward.from_model(problem.model, problem.data, batch_size=20)
    cv = MinibatchLogReward.from_model(problem.model, problem.data, batch_size=20, reference=problem.theta_true)
    sd_plain, sd_cv = plain.noise_variance(thetas).sqrt(), cv.noise_variance(thetas).sqrt()
    # the most probable settings lie near θ_true: there the difference estimator is much quieter
    assert bool((sd_cv[:4] < 0.5 * sd_plain[:4]).all()), (sd_cv, sd_plain)
    assert torch.allclose(cv.full(thetas), plain.full(thetas), rtol=0, atol=1e-9)


def test_full_batch_is_exact_and_draws_are_seeded(problem, thetas):
    full = MinibatchLogReward.from_model(problem.model, problem.data)
    assert full.full_batch and full.scale == 1.0
    manual = problem.model.log_prior(thetas) + problem.model.log_likelihood(thetas, problem.data).sum(1)
    assert torch.allclose(full(thetas), manual, rtol=0, atol=1e-9)
    assert torch.allclose(full(thetas), full.full(thetas), rtol=0, atol=0)
    small = MinibatchLogReward.from_model(problem.model, problem.data, batch_size=200)  # = |D|: full batch
    assert small.full_batch and torch.allclose(small(thetas), manual, rtol=0, atol=1e-9)
    chunked = MinibatchLogReward.from_model(problem.model, problem.data)
    chunked.chunk = 7 * thetas.shape[0]  # 7 examples per call: chunking changes nothing
    assert torch.allclose(chunked.full(thetas), manual, rtol=0, atol=1e-9)
    a = MinibatchLogReward.from_model(problem.model, problem.data, 20, torch.Generator().manual_seed(3))
    b = MinibatchLogReward.from_model(problem.model, problem.data, 20, torch.Generator().manual_seed(3))
    assert torch.equal(torch.stack([a(thetas) for _ in range(3)]), torch.stack([b(thetas) for _ in range(3)]))
    assert a.scale == 10.0 and a.sample_batch().unique().numel() == 20
    # grid indices, and an empty batch of θ's
    idx = problem.theta_true_index[None]
    assert torch.allclose(full.of_index(idx), full(problem.theta_true[None]), rtol=0, atol=0)
    assert a(thetas[:0]).shape == (0,) and full(thetas[:0]).shape == (0,)
    with pytest.raises(ValueError, match="needs the reward's grid"):
        MinibatchLogReward(problem.model.log_prior, problem.model.log_likelihood, problem.data).of_index(idx)


# ------------------------------------------------------------------------------------ bad input

def _pair(problem):
    return problem.model.log_prior, problem.model.log_likelihood


def test_log_likelihood_of_wrong_shape_raises(problem, thetas):
    lp, ll = _pair(problem)
    r = MinibatchLogReward(lp, lambda t, b: ll(t, b).sum(1), problem.data, batch_size=20)
    with pytest.raises(ValueError, match=r"log_likelihood\(theta, batch\) must return shape "
                                         r"\[B, \|batch\|\] = \(8, 20\), got \(8,\)"):
        r(thetas)
    r = MinibatchLogReward(lp, lambda t, b: ll(t, b).T, problem.data)
    with pytest.raises(ValueError, match=r"\(8, 200\), got \(200, 8\)"):
        r(thetas)
    r = MinibatchLogReward(lambda t: lp(t)[:, None], ll, problem.data)
    with pytest.raises(ValueError, match=r"log_prior\(theta\) must return shape \[B\]"):
        r(thetas)
    r = MinibatchLogReward(lp, lambda t, b: ll(t, b).tolist(), problem.data)
    with pytest.raises(TypeError, match="torch.Tensor"):
        r(thetas)
    r = MinibatchLogReward(lp, lambda t, b: ll(t, b).long(), problem.data)
    with pytest.raises(TypeError, match="floating point"):
        r(thetas)


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_log_likelihood_inf_or_nan_names_the_theta(problem, thetas, bad):
    lp, ll = _pair(problem)

    def broken(t, batch):
        out = ll(t, batch)
        hit = (t[:, 0] == problem.grid.values[-1]) & (t[:, 1] == problem.grid.values[-1])
        out[hit, 0] = bad
        return out

    r = MinibatchLogReward(lp, broken, problem.data)
    row = int(((thetas[:, 0] == 1.0) & (thetas[:, 1] == 1.0)).nonzero()[0, 0])
    with pytest.raises(ValueError, match=rf"log_likelihood.*returned {bad} for theta\[{row}\] = \[1.0, 1.0, "
                                         rf".*data example 0"):
        r(thetas)
    with pytest.raises(ValueError, match=r"log_prior.*nan.*theta\[2\]"):
        MinibatchLogReward(lambda t: lp(t).index_fill(0, torch.tensor([2]), math.nan), ll, problem.data)(thetas)
    # −inf (a zero probability) is allowed and propagates as R = 0
    zero = MinibatchLogReward(lambda t: lp(t).index_fill(0, torch.tensor([1]), -math.inf), ll, problem.data)
    out = zero(thetas)
    assert out[1] == -math.inf and bool(torch.isfinite(out[[0, 2, 3]]).all())


def test_grid_with_one_value_raises():
    with pytest.raises(ValueError, match="at least 2 values, got 1"):
        synthetic_problem("linear", K=1)
    with pytest.raises(ValueError, match="at least 2 values"):
        ParameterGrid([0.3], 5)


def test_batch_size_and_data_checks(problem, thetas):
    lp, ll = _pair(problem)
    with pytest.raises(ValueError, match=r"batch_size = 201 is larger than the data \(200 examples\)"):
        MinibatchLogReward(lp, ll, problem.data, batch_size=201)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
            MinibatchLogReward(lp, ll, problem.data, batch_size=bad)
    with pytest.raises(ValueError, match="same number of examples"):
        MinibatchLogReward(lp, ll, (problem.data[0], problem.data[1][:-1]))
    with pytest.raises(ValueError, match="no examples"):
        MinibatchLogReward(lp, ll, (problem.data[0][:0], problem.data[1][:0]))
    with pytest.raises(TypeError, match=r"data\[1\] must be a torch.Tensor"):
        MinibatchLogReward(lp, ll, (problem.data[0], [1.0]))
    with pytest.raises(TypeError, match="callables"):
        MinibatchLogReward(None, ll, problem.data)
    r = MinibatchLogReward.from_model(problem.model, problem.data, batch_size=20)
    with pytest.raises(ValueError, match="5 columns"):
        r(thetas[:, :4])
    with pytest.raises(TypeError, match="ParameterGrid.theta"):
        r(torch.zeros(2, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="2-D"):
        r(thetas[0])
    with pytest.raises(ValueError, match=r"reference θ has log P\(z\|θ_ref\) = -inf at data example 0"):
        MinibatchLogReward(lp, lambda t, b: ll(t, b) + torch.where(t[:, :1] > 5, -math.inf, 0.0), problem.data,
                           reference=torch.full((5,), 9.0))
