"""The GFlowNet posterior sampler over a parameter grid against the exact posterior by enumeration
(full-batch and minibatch rewards), the second-order control variate, bad input, and `gfncore bayes`."""
from __future__ import annotations

import json
import math

import pytest
import torch

from gfncore.bayes import MinibatchLogReward, ParameterGrid, exact_posterior_of, synthetic_problem
from gfncore.bayes.cli import BayesDataConfig, main as bayes_main, read_csv
from gfncore.bayes.models import LinearRegression
from gfncore.bayes.posterior import PosteriorConfig, PosteriorSampler


@pytest.fixture(scope="module")
def linear():
    """The issue's problem: Bayesian linear regression, 5 weights x 5 grid values (3,125 settings),
    200 examples; the exact posterior and log P(D) by enumeration."""
    p = synthetic_problem("linear", seed=0)
    return p, exact_posterior_of(p.model, p.data)


def _untrained_l1(p, post, cfg):
    q = PosteriorSampler.from_model(p.model, p.data, cfg)
    return q.evaluate(post, evidence_samples=0)["l1"]


@pytest.mark.slow
def test_full_batch_training_reaches_the_exact_posterior(linear, kernel_threads):
    p, post = linear
    cfg = PosteriorConfig(steps=600, threads=1, evidence_samples=2048)
    assert _untrained_l1(p, post, cfg) > 0.5
    q = PosteriorSampler.from_model(p.model, p.data, cfg)
    q.fit(progress=False)
    ev = q.evaluate(post)
    assert ev["l1"] < 0.05, ev
    assert abs(ev["log_z_error"]) < 0.05, ev
    assert abs(ev["log_z_is_error"]) < 0.05, ev


@pytest.mark.slow
def test_minibatch_training_reaches_the_exact_posterior(linear, kernel_threads):
    """Minibatches of 20 of the 200 examples, one per step shared by its 64 θ's, reshuffled every
    epoch, with the default second-order control variate around the MAP. For this model (Gaussian
    likelihood, θ in the mean) the log-likelihood is quadratic in θ, so that variate leaves no noise
    at all: the test checks the minibatch path end to end (and that the noise is indeed gone); the
    noisy case is the logistic test below and, with the first-order variate, the benchmark
    bench/bayes_minibatch.py."""
    p, post = linear
    q = PosteriorSampler.from_model(p.model, p.data, PosteriorConfig(steps=400, minibatch=20, threads=1))
    assert q.reward.batch_size == 20 and q.reward.cv_order == 2 and not q.reward.full_batch
    assert float(q.reward.noise_variance(post.theta).max()) < 1e-12
    q.fit(progress=False)
    ev = q.evaluate(post, evidence_samples=0)
    assert ev["l1"] < 0.1 and abs(ev["log_z_error"]) < 0.1, ev


@pytest.mark.slow
def test_noisy_minibatch_reward_trains_logistic_regression(kernel_threads):
    """Logistic regression (5 x 5 grid, 200 examples), minibatches of 20: the second-order variate
    leaves a noisy reward (its sd over the posterior is printed by the assertion), and the sampler
    still reaches the exact posterior and log P(D)."""
    p = synthetic_problem("logistic", seed=0)
    post = exact_posterior_of(p.model, p.data)
    q = PosteriorSampler.from_model(p.model, p.data, PosteriorConfig(steps=800, minibatch=20, threads=1))
    sd = float(post.probs @ q.reward.noise_variance(post.theta).sqrt())
    assert sd > 0.01, sd  # the reward really is noisy
    q.fit(progress=False)
    ev = q.evaluate(post, evidence_samples=2048)
    assert ev["l1"] < 0.1 and abs(ev["log_z_error"]) < 0.1 and abs(ev["log_z_is_error"]) < 0.1, (ev, sd)


# ---------------------------------------------------------------------------------------------
# the second-order control variate


def test_second_order_control_variate_is_unbiased_and_its_variance_exact():
    p = synthetic_problem("logistic", seed=1)
    post = exact_posterior_of(p.model, p.data)
    theta = post.theta[torch.cat([post.probs.argsort(descending=True)[:4], torch.tensor([0, 1562, 3124])])]
    ref = p.model.grid.values[post.index[post.probs.argmax()]] + 0.1
    r = MinibatchLogReward.from_model(p.model, p.data, 20, torch.Generator().manual_seed(0), reference=ref,
                                      shuffle="independent", cv_order=2)
    first = MinibatchLogReward.from_model(p.model, p.data, 20, reference=ref, cv_order=1)
    exact = r.full(theta)
    draws = torch.stack([r(theta) for _ in range(3000)])
    z = (draws.mean(0) - exact) / (draws.std(0) / math.sqrt(3000))
    assert bool((z.abs() < 4.5).all()), z
    ratio = draws.var(0) / r.noise_variance(theta)
    assert bool(((ratio - 1).abs() < 0.15).all()), ratio
    # near the reference it is far quieter than the first-order variate
    assert bool((r.noise_variance(theta[:4]) < 0.05 * first.noise_variance(theta[:4])).all())


def test_second_order_control_variate_is_exact_for_a_gaussian_likelihood(linear):
    p, post = linear
    r = MinibatchLogReward.from_model(p.model, p.data, 20, reference=torch.zeros(5), cv_order=2)
    theta = post.theta[::97]
    for _ in range(5):
        torch.testing.assert_close(r(theta), r.full(theta), rtol=0, atol=1e-8)


def test_second_order_control_variate_errors():
    p = synthetic_problem("linear", seed=0, n_examples=30)
    with pytest.raises(ValueError, match="reference"):
        MinibatchLogReward.from_model(p.model, p.data, 10, cv_order=2)
    with pytest.raises(ValueError, match="cv_order"):
        MinibatchLogReward.from_model(p.model, p.data, 10, reference=torch.zeros(5), cv_order=3)

    def through_numpy(theta, batch):  # leaves torch: autodiff cannot see through it
        X, y = batch
        return -(y - torch.from_numpy(theta.detach().numpy().copy()) @ X.T) ** 2

    with pytest.raises(ValueError, match="twice differentiable"):
        MinibatchLogReward(p.model.log_prior, through_numpy, p.data, 10, reference=torch.zeros(5), cv_order=2)
    # the sampler's default (second order) says what to do instead
    with pytest.raises(ValueError, match="control-variate 1"):
        PosteriorSampler(p.model.log_prior, through_numpy, p.model.grid, p.data, PosteriorConfig(minibatch=10))
    # with no control variate it trains on the plain minibatch estimate
    PosteriorSampler(p.model.log_prior, through_numpy, p.model.grid, p.data,
                     PosteriorConfig(minibatch=10, control_variate=0, steps=2)).fit(progress=False)


# ---------------------------------------------------------------------------------------------
# bad input


def _bad(kind):
    def ll(theta, batch):
        X, y = batch
        out = -(y - theta @ X.T) ** 2
        if kind == "shape":
            return out.sum(1)
        if kind == "inf":
            return out + math.inf
        return out * math.nan

    return ll


@pytest.mark.parametrize("kind,match", [("shape", r"must return shape \[B, \|batch\|\]"),
                                        ("inf", "inf"), ("nan", "nan")])
def test_bad_log_likelihood_fails_before_training(kind, match):
    p = synthetic_problem("linear", seed=0, n_examples=30)
    with pytest.raises(ValueError, match=match):
        PosteriorSampler(p.model.log_prior, _bad(kind), p.model.grid, p.data, PosteriorConfig(steps=1))


def test_bad_log_likelihood_in_a_later_minibatch_names_the_example():
    """A likelihood that turns NaN on one example only fails with the example's index (here when the
    sampler first scores the full data, for the shift of log R), never a silent NaN in the loss."""
    p = synthetic_problem("linear", seed=0, n_examples=40)

    def ll(theta, batch):
        X, y = batch
        out = -(y - theta @ X.T) ** 2
        return torch.where(X[:, 0] == p.data[0][17, 0], math.nan, out)

    with pytest.raises(ValueError, match="data example 17"):
        PosteriorSampler(p.model.log_prior, ll, p.model.grid, p.data,
                         PosteriorConfig(steps=10, minibatch=10, control_variate=0, batch_size=8)).fit(progress=False)
    # and a minibatch reward that meets it during training says the same
    r = MinibatchLogReward(p.model.log_prior, ll, p.data, 10, generator=torch.Generator().manual_seed(0))
    theta = p.model.grid.theta(torch.zeros(4, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="data example 17"):
        for _ in range(4):  # one epoch: some minibatch holds example 17
            r(theta)


def test_other_bad_input():
    p = synthetic_problem("linear", seed=0, n_examples=30)
    with pytest.raises(ValueError, match="at least 2 values"):
        ParameterGrid([0.5], 3)
    with pytest.raises(ValueError, match="larger than the data"):
        PosteriorSampler.from_model(p.model, p.data, PosteriorConfig(minibatch=31))
    with pytest.raises(TypeError, match="ParameterGrid"):
        PosteriorSampler(p.model.log_prior, p.model.log_likelihood, [0.0, 1.0], p.data)
    with pytest.raises(ValueError, match="control_variate"):
        PosteriorConfig(control_variate=3)
    with pytest.raises(ValueError, match="lr_final"):
        PosteriorConfig(lr_final=0.0)


# ---------------------------------------------------------------------------------------------
# gfncore bayes


def test_cli_builtin_problem_writes_everything(tmp_path, kernel_threads):
    from gfncore.cli import main

    out = tmp_path / "run"
    rc = main(["bayes", "--model", "linear", "--out", str(out), "--steps", "40", "--samples", "500", "--threads", "1",
                     "--evidence-samples", "256", "--no-progress"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    for k in ("log_z", "log_z_is", "true_log_z", "l1", "log_z_error", "predictive", "marginals", "exact_marginals"):
        assert k in s, k
    assert s["grid_size"] == 3125 and s["n_train"] == 200
    assert 0 <= s["l1"] <= 2 and math.isfinite(s["log_z"])
    assert {"rmse", "coverage", "calibration_error", "log_predictive"} <= set(s["predictive"])
    rows = (out / "samples.csv").read_text().splitlines()
    assert rows[0] == "w0,w1,w2,w3,w4" and len(rows) == 501
    assert (out / "marginals.png").stat().st_size > 1000
    assert (out / "predictive.csv").read_text().startswith("y,mean,std,log_prob")
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 10


def test_cli_logistic_from_a_csv(tmp_path, kernel_threads):
    p = synthetic_problem("logistic", n_weights=3, n_examples=150, n_test=0, seed=3)
    X, y = p.data
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,label,c\n" + "\n".join(f"{r[0]:.5f},{r[1]:.5f},{int(t)},{r[2]:.5f}"
                                              for r, t in zip(X.tolist(), y.tolist())))
    Xr, yr, names = read_csv(str(csv), "label")
    assert names == ["a", "b", "c"] and Xr.shape == (150, 3) and torch.equal(yr, y)
    out = tmp_path / "run"
    rc = bayes_main(["--model", "logistic", "--data", str(csv), "--target", "label", "--intercept", "--out", str(out),
                     "--steps", "30", "--samples", "300", "--minibatch", "25", "--threads", "1", "--no-progress"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["n_weights"] == 4 and s["n_train"] == 120  # 3 features + intercept; 20% held out
    assert {"accuracy", "ece", "brier"} <= set(s["predictive"])
    assert (out / "samples.csv").read_text().splitlines()[0] == "a,b,c,intercept"


@pytest.mark.parametrize("argv,match", [
    (["--model", "probit"], "linear or logistic"),
    (["--data", "x.csv", "--synthetic"], "not both"),
    (["--K", "1"], "at least 2 values"),
    (["--minibatch", "500"], "larger than the data"),
    (["--grid-low", "-1", "--grid-high", "2"], "symmetric"),
])
def test_cli_bad_flags(tmp_path, argv, match, capsys):
    rc = bayes_main(argv + ["--out", str(tmp_path), "--steps", "1", "--no-progress"])
    assert rc == 2 and match in capsys.readouterr().err


def test_read_csv_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n4,x,6\n")
    with pytest.raises(ValueError, match="not all numbers"):
        read_csv(str(bad), header=False)
    with pytest.raises(ValueError, match="first row .* is numbers"):  # no header: refused unless said so
        read_csv(str(bad))
    bad.write_text("1,2,3\n4,5\n")
    with pytest.raises(ValueError, match="fields"):
        read_csv(str(bad), header=False)
    with pytest.raises(ValueError, match="no such file"):
        read_csv(str(tmp_path / "missing.csv"))
    bad.write_text("1,2,3\n")
    with pytest.raises(ValueError, match="--target"):
        read_csv(str(bad), "7", header=False)
    assert BayesDataConfig(data="f.csv").data == "f.csv"
