"""The joint predictive posterior Q(Y, θ | X): the environment against the contract and its reward
against the model (log Z(X) = 0), the outcome grids, the exact predictive and EIG against
enumeration with the existing exact posterior, bad input, and (slow) a trained policy's predictive
against the exact one on held-out (x, D)."""
from __future__ import annotations

import math

import pytest
import torch

import gfncore as gfn
from gfncore.bayes import LinearRegression, LogisticRegression, ParameterGrid, exact_posterior_of
from gfncore.bayes.joint import JointConfig, JointPredictive, OutcomeGrid


@pytest.fixture(scope="module")
def logistic():
    return LogisticRegression(ParameterGrid.linspace(-1, 1, 3, 2))


@pytest.fixture(scope="module")
def linear():
    return LinearRegression(ParameterGrid.linspace(-1, 1, 3, 2), noise_std=1.0)


def small(model, set_size=3, **kw):
    y_grid = tuple(torch.linspace(-2, 2, 5).tolist()) if model.task == "regression" else ()
    return JointPredictive(model, JointConfig(set_size=set_size, y_grid=y_grid, steps=1, batch_size=8, hidden=16,
                                              encoder_hidden=8, **kw))


@pytest.mark.parametrize("which", ["logistic", "linear"])
def test_env_contract_and_reward_sums_to_one(which, logistic, linear):
    """Every (Y, θ) is reachable, masks and steps agree, and Σ_{Y, θ} R(X; Y, θ) = 1 for any X: the
    outcome likelihood is normalised on its grid, so log Z(X) = 0."""
    jp = small(logistic if which == "logistic" else linear, set_size=2)
    env = jp.env
    rep = gfn.envs.check_env(env)
    assert rep["complete"] and rep["objects"] == env.Ky ** env.n * env.K ** env.p
    x = torch.cartesian_prod(*[torch.arange(env.Ky)] * env.n, *[torch.arange(env.K)] * env.p).to(torch.int32)
    ctx = jp.inputs(1, torch.Generator().manual_seed(3)).expand(x.shape[0], -1)
    assert float(torch.logsumexp(env.log_reward(x, ctx), 0)) == pytest.approx(0.0, abs=1e-9)


def test_discretised_gaussian_outcomes(linear):
    g = OutcomeGrid(linear, [-2.0, -1.0, 0.0, 1.0, 2.0])
    theta = torch.tensor([[0.5, -1.0], [1.0, 1.0]], dtype=torch.float64)
    X = torch.tensor([[[0.3, 0.2], [4.0, 3.0]]] * 2, dtype=torch.float64)
    lp = g.log_probs(theta, X)
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(2, 2, dtype=torch.float64))
    # the Gaussian's mass on each bin over its mass on [-2.5, 2.5], from the CDF directly
    mu = float(X[0, 0] @ theta[0])
    cdf = torch.special.ndtr((torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5], dtype=torch.float64) - mu) / 1.0)
    torch.testing.assert_close(lp[0, 0].exp(), (cdf[1:] - cdf[:-1]) / (cdf[-1] - cdf[0]))
    # far in the upper tail (mean 7: the bins' masses are ~1e-12 and below) still sums to 1
    assert bool(torch.isfinite(lp[1, 1]).all()) and int(lp[1, 1].argmax()) == 4
    assert g.index(torch.tensor([-2.4, 0.49, 0.51, 2.5])).tolist() == [0, 2, 3, 4]
    with pytest.raises(ValueError, match="outside the declared outcome grid"):
        g.index(torch.tensor([2.6]))
    with pytest.raises(ValueError, match="outside the outcome grid"):
        OutcomeGrid(LogisticRegression(linear.grid)).index(torch.tensor([0.0, 2.0]))
    with pytest.raises(ValueError, match="declared outcome grid"):
        OutcomeGrid(linear)


@pytest.mark.parametrize("which", ["logistic", "linear"])
def test_exact_predictive_and_eig_by_enumeration(which, logistic, linear):
    """P(y | x, D) = Σ_θ P(θ|D) P(y|x, θ) with the posterior of the existing exact code (logistic: the
    model's own likelihood), and EIG = H[predictive] − E H[P(y|x, θ)] >= 0."""
    model = logistic if which == "logistic" else linear
    jp = small(model)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(3, 2, generator=g, dtype=torch.float64)
    Y = torch.tensor([1.0, 0.0, 1.0]) if which == "logistic" else torch.tensor([0.0, -1.0, 2.0])
    x = torch.randn(4, 2, generator=g, dtype=torch.float64)
    p = jp.exact_predictive(x, X, Y)
    torch.testing.assert_close(p.sum(1), torch.ones(4, dtype=torch.float64))
    post = jp.exact_theta_posterior(X, Y)
    if which == "logistic":
        ref = exact_posterior_of(model, (X, Y))
        torch.testing.assert_close(post.probs, ref.probs)
        want = ref.probs @ model.predict_proba(ref.theta, x)
        torch.testing.assert_close(p[:, 1], want)
    else:  # by hand: the bin probabilities of each θ, weighted
        lp = jp.outcomes.log_probs(post.theta, x[None].expand(post.theta.shape[0], -1, -1))
        torch.testing.assert_close(p, (post.probs[:, None, None] * lp.exp()).sum(0))
    eig = jp.exact_eig(x, X, Y)
    assert bool((eig >= -1e-12).all()) and bool((eig <= -(p * p.log()).sum(1) + 1e-12).all())


def test_untrained_policy_is_a_distribution_and_outcome_samples(logistic):
    jp = small(logistic)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(3, 2, generator=g, dtype=torch.float64)
    Y = torch.tensor([1.0, 0.0, 1.0])
    q = jp.theta_distribution(X, Y)
    assert q.shape == (9,) and float(q.sum()) == pytest.approx(1.0, abs=1e-9)
    # the exact Q(θ|X, Y) agrees with sampled θ's
    th = jp.sample_theta(X, Y, 4000, torch.Generator().manual_seed(1))
    emp = torch.bincount(th[:, 0] * 3 + th[:, 1], minlength=9).double() / 4000
    assert float((emp - q).abs().max()) < 0.04
    pred = jp.predict(torch.randn(5, 2, generator=g), X[:2], Y[:2])
    assert pred.shape == (5, 2) and torch.allclose(pred.sum(1), torch.ones(5, dtype=torch.float64))
    ys = jp.sample_outcomes(X, 2000, torch.Generator().manual_seed(2))
    assert ys.shape == (2000, 3) and set(ys.unique().tolist()) <= {0.0, 1.0}
    # the first outcome follows the y-step at the empty data set
    s, ctx = jp._rows(X, torch.zeros(0, dtype=torch.int64), 1)
    with torch.no_grad():
        p1 = torch.softmax(jp.policy.forward_logits(jp.env.encode(s), ctx.reshape(1, -1).float()).double()[0, :2], 0)[1]
    assert abs(float(ys[:, 0].mean()) - float(p1)) < 4 * math.sqrt(0.25 / 2000)


def test_bad_input(logistic, linear):
    jp = small(logistic)
    X = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="outside the outcome grid"):
        jp.predict(torch.zeros(2), X, torch.tensor([0.0, 2.0]))
    with pytest.raises(ValueError, match=r"X must be a tensor \[m, 2\]"):
        jp.predict(torch.zeros(2), torch.zeros(2, 3), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"x_new must be a tensor \[m, 2\]"):
        jp.predict(torch.zeros(3), X, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="empty"):
        jp.predict(torch.zeros(2), torch.zeros(0, 2), torch.zeros(0))
    with pytest.raises(ValueError, match="at most 2"):
        jp.predict(torch.zeros(2), torch.zeros(3, 2), torch.zeros(3))
    with pytest.raises(ValueError, match=r"Y must have shape \(2,\)"):
        jp.predict(torch.zeros(2), X, torch.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        jp.predict(torch.full((2,), math.nan), X, torch.zeros(2))
    with pytest.raises(ValueError, match="set_size = 3"):
        jp.theta_distribution(X, torch.zeros(2))
    with pytest.raises(ValueError, match="outside the declared outcome grid"):
        small(linear).predict(torch.zeros(2), X, torch.tensor([0.0, 9.0]))
    with pytest.raises(ValueError, match="set_size"):
        JointConfig(set_size=0)


@pytest.mark.slow
def test_joint_predictive_matches_the_exact_predictive(logistic, kernel_threads):
    """Logistic regression, 2 weights x 3 values, data sets of 6: on 24 held-out (x, D) (|D| = 1..5)
    the y-step's Q(y | x, D) is within TV 0.03 of Σ_θ P(θ|D) P(y|x, θ) everywhere, and Q(θ | X, Y)
    within exact L1 0.1 on average; the untrained policy is far from both."""
    torch.set_num_threads(1)
    gfn._C.set_num_threads(1)
    jp = JointPredictive(logistic, JointConfig(set_size=6, feature_std=FEATURE_STD, steps=STEPS, batch_size=BATCH))
    sets = jp.held_out(24)
    before = jp.evaluate(sets)
    jp.fit(progress=False)
    after = jp.evaluate(sets)
    assert before["predictive_tv_max"] > 0.1 and before["theta_l1"] > 0.5, before
    assert after["predictive_tv_max"] < 0.03, after
    assert after["theta_l1"] < 0.1, after


FEATURE_STD, STEPS, BATCH = 1.0, 800, 256


@pytest.mark.parametrize("model", ["logistic", "linear"])
def test_cli_joint_predictive_writes_the_exact_comparison(tmp_path, model, kernel_threads):
    import json

    from gfncore.cli import main

    out = tmp_path / "run"
    rc = main(["bayes", "--model", model, "--joint-predictive", "--n-weights", "2", "--K", "2", "--set-size", "3",
               "--steps", "3", "--batch-size", "8", "--hidden", "16", "--held-out-sets", "6", "--threads", "1",
               "--noise-std", "1", "--no-progress", "--out", str(out)])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert 0 <= s["predictive_tv"] <= s["predictive_tv_max"] <= 1 and s["predictive_kl"] >= 0
    assert 0 <= s["theta_l1"] <= 2 and s["held_out_sets"] == 6
    cal = s["calibration"]
    key = "ece" if model == "logistic" else "calibration_error"
    assert key in cal["Q"] and key in cal["exact"]
    assert len((out / "predictive.csv").read_text().splitlines()) == 7


@pytest.mark.parametrize("argv,match", [
    (["--data", "x.csv"], "takes no --data"),
    (["--set-size", "1"], "set-size"),
    (["--model", "logistic", "--y-grid", "0:1:4"], "for --model linear"),
    (["--model", "linear", "--y-grid", "1:0:4"], "LOW < HIGH"),
    (["--model", "linear", "--y-grid", "a"], "LOW:HIGH:K"),
])
def test_cli_joint_predictive_bad_flags(tmp_path, argv, match, capsys):
    from gfncore.cli import main

    rc = main(["bayes", "--joint-predictive", "--n-weights", "2", "--K", "2", "--steps", "1", "--no-progress",
               "--out", str(tmp_path / "r"), *argv])
    assert rc == 2
    assert match in capsys.readouterr().err
