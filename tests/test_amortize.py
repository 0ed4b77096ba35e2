"""Amortized expectations: the demo problem's exact S(x), the regressor's convergence to it, the
Monte-Carlo estimator's unbiasedness, bad input, and the demonstration's outputs."""
from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from gfncore.amortize import (BernoulliExpProblem, DemoConfig, ExpectationRegressor, RegressorConfig,
                              draw_log_rewards, monte_carlo, relative_error, run_demo)


@pytest.fixture(autouse=True)
def one_thread():
    """Training here is many small matmuls: one thread is fastest and the budget is stated for it."""
    t = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(t)


def _brute_force_s(prob: BernoulliExpProblem, x: torch.Tensor) -> float:
    """S(x) = Σ_y p(y|x) R(x, y) in plain Python floats, independently of the library's tensors."""
    xs = [float(v) for v in x]
    W, A, b = prob.W.tolist(), prob.A.tolist(), prob.b.tolist()
    p = [1 / (1 + math.exp(-sum(w * v for w, v in zip(W[i], xs)))) for i in range(prob.n)]
    a = [prob.scale * math.tanh(sum(w * v for w, v in zip(A[i], xs)) + b[i]) for i in range(prob.n)]
    total = 0.0
    for y in itertools.product((0, 1), repeat=prob.n):
        py = math.prod(p[i] if y[i] else 1 - p[i] for i in range(prob.n))
        total += py * math.exp(sum(a[i] * y[i] for i in range(prob.n)))
    return total


def test_exact_s_closed_form_enumeration_and_brute_force_agree():
    prob = BernoulliExpProblem(x_dim=3, n=7, scale=1.5, seed=3)
    x = prob.sample_x(5, torch.Generator().manual_seed(0))
    closed, enum = prob.log_s(x), prob.log_s_enumerate(x)
    assert torch.allclose(closed, enum, rtol=0, atol=1e-12)
    brute = torch.tensor([math.log(_brute_force_s(prob, xi)) for xi in x], dtype=torch.float64)
    assert torch.allclose(closed, brute, rtol=0, atol=1e-10)
    # the default demo size too, and the y's of the sampler are what the enumeration sums over
    big = BernoulliExpProblem()
    xb = big.sample_x(300, torch.Generator().manual_seed(1))
    assert float((big.log_s(xb) - big.log_s_enumerate(xb, chunk=7)).abs().max()) < 1e-12
    y = big.sample_y(xb, torch.Generator().manual_seed(2))
    assert y.shape == (300, 10) and set(y.unique().tolist()) <= {0.0, 1.0}


def test_enumeration_refuses_large_n():
    with pytest.raises(ValueError, match="n <= 12"):
        BernoulliExpProblem(n=13).log_s_enumerate(torch.zeros(1, 4))


def _zscore(samples: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(mean − target) / standard error, per column of samples [R, M]."""
    return (samples.mean(0) - target) / (samples.std(0) / math.sqrt(samples.shape[0]))


def test_monte_carlo_is_unbiased_and_its_log_is_not():
    prob = BernoulliExpProblem()
    gen = torch.Generator().manual_seed(0)
    x = prob.sample_x(6, gen)
    R, K = 4000, 4
    est = monte_carlo(x.repeat(R, 1), prob.sample_y, prob.log_reward, K, gen)
    s_hat = est.s.view(R, -1)
    exact = prob.log_s(x).exp()
    z = _zscore(s_hat, exact)
    assert bool((z.abs() < 4.5).all()), z
    # the same check rejects a biased estimator: exp of the mean log estimate (Jensen: below S)
    z_log = _zscore(est.log_s.view(R, -1), exact.log())
    assert bool((z_log < -10).all()), z_log
    # the reported relative standard error matches the spread of the estimates (at K = 64: with few
    # draws the sample variance of a skewed R over its own sample mean runs low)
    R, K = 600, 64
    est = monte_carlo(x.repeat(R, 1), prob.sample_y, prob.log_reward, K, gen)
    rse_emp = est.s.view(R, -1).std(0) / exact
    rse_rep = est.rel_stderr.view(R, -1).pow(2).mean(0).sqrt()
    assert bool(((rse_rep / rse_emp - 1).abs() < 0.15).all()), (rse_rep, rse_emp)


def test_monte_carlo_seeded_and_chunked_alike():
    prob = BernoulliExpProblem()
    x = prob.sample_x(50, torch.Generator().manual_seed(0))
    a = monte_carlo(x, prob.sample_y, prob.log_reward, 16, torch.Generator().manual_seed(5))
    b = monte_carlo(x, prob.sample_y, prob.log_reward, 16, torch.Generator().manual_seed(5))
    c = monte_carlo(x, prob.sample_y, prob.log_reward, 16, torch.Generator().manual_seed(6))
    assert torch.allclose(a.log_s, b.log_s, rtol=0, atol=1e-12)
    assert not torch.allclose(a.log_s, c.log_s)
    assert monte_carlo(x[:0], prob.sample_y, prob.log_reward, 4, torch.Generator()).log_s.shape == (0,)
    k1 = monte_carlo(x, prob.sample_y, prob.log_reward, 1, torch.Generator().manual_seed(0))
    assert bool(torch.isnan(k1.rel_stderr).all())


def _fit(prob, criterion, steps, seed=0, n_train=4096):
    gen = torch.Generator().manual_seed(11)
    x_train, x_test = prob.sample_x(n_train, gen), prob.sample_x(500, gen)
    reg = ExpectationRegressor(prob.x_dim, RegressorConfig(criterion=criterion, steps=steps, seed=seed))
    reg.fit(x_train, prob.sample_y, prob.log_reward, progress=False)
    return reg, x_test


@pytest.mark.slow
def test_gamma_regressor_converges_to_exact_s_on_held_out_x():
    prob = BernoulliExpProblem()  # the demo problem: per-draw relative std of R ≈ 1
    untrained, x_test = _fit(prob, "gamma", steps=0)
    err0 = relative_error(untrained.log_expectation(x_test), prob.log_s(x_test)).mean()
    assert err0 > 0.3  # the pilot constant alone is far off, so the check below means something
    reg, _ = _fit(prob, "gamma", steps=2000)
    err = relative_error(reg.log_expectation(x_test), prob.log_s(x_test))
    assert float(err.mean()) < 0.05, float(err.mean())
    assert reg.history[-1]["step"] == 2000


@pytest.mark.slow
def test_mse_regressor_converges_where_s_spans_a_moderate_range():
    prob = BernoulliExpProblem(scale=0.5)
    reg, x_test = _fit(prob, "mse", steps=1000)
    err = relative_error(reg.log_expectation(x_test), prob.log_s(x_test)).mean()
    assert float(err) < 0.05, float(err)


@pytest.mark.slow
def test_log_mse_fits_the_geometric_mean_not_s():
    """The documented bias: MSE on log R converges to E[log R | x], below log S by Jensen's gap."""
    prob = BernoulliExpProblem()
    reg, x_test = _fit(prob, "log_mse", steps=1000)
    out = reg.log_expectation(x_test)
    assert float(relative_error(out, prob.log_s_geometric(x_test)).mean()) < 0.06
    assert float(relative_error(out, prob.log_s(x_test)).mean()) > 0.2
    assert float((out - prob.log_s(x_test)).mean()) < -0.2


def test_regressor_is_reproducible_from_its_seed():
    prob = BernoulliExpProblem()
    a, x = _fit(prob, "gamma", steps=30, seed=4, n_train=256)
    b, _ = _fit(prob, "gamma", steps=30, seed=4, n_train=256)
    c, _ = _fit(prob, "gamma", steps=30, seed=5, n_train=256)
    assert torch.allclose(a.log_expectation(x), b.log_expectation(x), rtol=0, atol=1e-5)
    assert not torch.allclose(a.log_expectation(x), c.log_expectation(x), rtol=0, atol=1e-3)
    assert [h["step"] for h in a.history] == [h["step"] for h in b.history]
    # a second fit continues from the trained network: no re-initialisation of scales or bias
    before = a.log_expectation(x)
    a.config.steps = 0
    prob2 = BernoulliExpProblem(scale=3.0)  # a pilot batch of these rewards would move the bias a lot
    a.fit(prob2.sample_x(64, torch.Generator()), prob2.sample_y, prob2.log_reward, progress=False)
    assert torch.equal(a.log_expectation(x), before)


def test_rewards_of_zero_are_handled_by_the_mean_criteria():
    prob = BernoulliExpProblem()

    def log_reward(x, y):  # R = 0 whenever y_0 = 0: S(x) = p_0 e^{a_0} Π_{i>0}(...)
        lr = prob.log_reward(x, y)
        return torch.where(y[:, 0] > 0, lr, torch.full_like(lr, -math.inf))

    gen = torch.Generator().manual_seed(0)
    for crit in ("mse", "gamma"):
        reg = ExpectationRegressor(4, RegressorConfig(criterion=crit, steps=20))
        reg.fit(prob.sample_x(256, gen), prob.sample_y, log_reward, progress=False)
        assert bool(torch.isfinite(reg.log_expectation(prob.sample_x(10, gen))).all())
    with pytest.raises(ValueError, match="log_mse criterion needs R > 0"):
        reg = ExpectationRegressor(4, RegressorConfig(criterion="log_mse", steps=5))
        reg.fit(prob.sample_x(256, gen), prob.sample_y, log_reward, progress=False)


# ------------------------------------------------------------------------------------ bad input

def _prob_and_x():
    prob = BernoulliExpProblem()
    return prob, prob.sample_x(8, torch.Generator().manual_seed(0))


def test_sampler_of_wrong_shape_or_type_raises():
    prob, x = _prob_and_x()
    g = torch.Generator()
    with pytest.raises(ValueError, match=r"sampler.*leading dimension of 8.*\(7, 10\)"):
        draw_log_rewards(x, lambda x, g: prob.sample_y(x, g)[:-1], prob.log_reward, g)
    with pytest.raises(ValueError, match="sampler.*one y per row"):
        monte_carlo(x, lambda x, g: torch.tensor(1.0), prob.log_reward, 4, g)
    with pytest.raises(TypeError, match="sampler.*torch.Tensor"):
        draw_log_rewards(x, lambda x, g: prob.sample_y(x, g).tolist(), prob.log_reward, g)
    reg = ExpectationRegressor(4, RegressorConfig(steps=3))
    with pytest.raises(ValueError, match="sampler"):
        reg.fit(x, lambda x, g: prob.sample_y(x[:1], g), prob.log_reward, progress=False)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_or_inf_rewards_raise_naming_the_row(bad):
    prob, x = _prob_and_x()

    def log_reward(x, y):
        lr = prob.log_reward(x, y)
        lr[3] = bad
        return lr

    g = torch.Generator()
    with pytest.raises(ValueError, match=rf"log_reward.*{bad}.*row 3"):
        draw_log_rewards(x, prob.sample_y, log_reward, g)
    with pytest.raises(ValueError, match="log_reward"):
        ExpectationRegressor(4, RegressorConfig(steps=3)).fit(x, prob.sample_y, log_reward, progress=False)
    with pytest.raises(ValueError, match="log_reward"):
        monte_carlo(x, prob.sample_y, log_reward, 2, g)


def test_reward_of_wrong_shape_or_dtype_raises():
    prob, x = _prob_and_x()
    g = torch.Generator()
    with pytest.raises(ValueError, match=r"log_reward.*shape \(8,\).*\(8, 1\)"):
        draw_log_rewards(x, prob.sample_y, lambda x, y: prob.log_reward(x, y)[:, None], g)
    with pytest.raises(TypeError, match="floating point"):
        draw_log_rewards(x, prob.sample_y, lambda x, y: y.sum(-1).long(), g)
    with pytest.raises(TypeError, match="log_reward.*torch.Tensor"):
        draw_log_rewards(x, prob.sample_y, lambda x, y: 0.0, g)


def test_bad_arguments_raise():
    prob, x = _prob_and_x()
    g = torch.Generator()
    with pytest.raises(ValueError, match="K"):
        monte_carlo(x, prob.sample_y, prob.log_reward, 0, g)
    with pytest.raises(ValueError, match="criterion"):
        RegressorConfig(criterion="l1")
    with pytest.raises(ValueError, match="batch_size"):
        RegressorConfig(batch_size=0)
    with pytest.raises(ValueError, match="x_dim"):
        ExpectationRegressor(0)
    reg = ExpectationRegressor(4, RegressorConfig(steps=2))
    with pytest.raises(ValueError, match=r"x_train must have shape \[M, 4\]"):
        reg.fit(torch.zeros(5, 3), prob.sample_y, prob.log_reward, progress=False)
    with pytest.raises(ValueError, match="x_train contains NaN"):
        reg.fit(torch.full((5, 4), math.nan), prob.sample_y, prob.log_reward, progress=False)
    with pytest.raises(ValueError, match="empty"):
        reg.fit(torch.zeros(0, 4), prob.sample_y, prob.log_reward, progress=False)
    with pytest.raises(ValueError, match=r"x must have shape \[M, 4\]"):
        reg.log_expectation(torch.zeros(3))
    with pytest.raises(ValueError, match="validation log S"):
        reg.fit(x, prob.sample_y, prob.log_reward, validation=(x, torch.zeros(3)), progress=False)


def test_demo_writes_its_tables_and_plot(tmp_path):
    cfg = DemoConfig(n_train=128, train_sizes=(64, 128), train_steps=(20,), mc_samples=(1, 4, 16), n_test=64,
                     timing_repeats=1, latency_queries=3, compare_criteria=True, out=str(tmp_path), progress=False)
    s = run_demo(cfg, RegressorConfig(criterion="gamma", steps=20, batch_size=32, hidden=16))
    assert s["max_abs_log_s_closed_form_vs_enumeration"] < 1e-12
    assert [r["criterion"] for r in s["criteria"]] == ["mse", "gamma", "log_mse"]
    assert [r["n_train"] for r in s["train_sizes"]] == [64, 128]
    assert [r["K"] for r in s["monte_carlo"]] == [1, 4, 16]
    # MC errors fall with K (one seeded run each, a factor of 4 in K apart)
    errs = [r["rel_err_mean"] for r in s["monte_carlo"]]
    assert errs[0] > errs[1] > errs[2]
    for r in s["monte_carlo"] + [s["amortized"]]:
        assert r["us_per_query_batched"] > 0 and r["us_per_query_single"] > 0
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["amortized"]["rel_err_mean"] == pytest.approx(s["amortized"]["rel_err_mean"])
    table = (tmp_path / "table.md").read_text()
    assert "| MC K=16 |" in table and "| amortized" in table
    assert (tmp_path / "amortize.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="non-empty"):
        run_demo(DemoConfig(mc_samples=()))


def test_module_entry_point_parses_its_flags(tmp_path):
    from gfncore.amortize.cli import _parser

    ns = _parser().parse_args(["--train-sizes", "64,256", "--mc-samples", "1,8", "--criterion", "mse",
                               "--no-progress", "--steps", "7", "--out", str(tmp_path)])
    assert ns.train_sizes == (64, 256) and ns.mc_samples == (1, 8) and ns.criterion == "mse"
    assert ns.steps == 7 and ns.progress is False and ns.out == str(tmp_path)
    assert _parser().parse_args([]).criterion == "gamma"
