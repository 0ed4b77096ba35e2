"""Amortized expectations: a network Ŝ(x) ≈ S(x) = E_{y~p(y|x)} R(x, y), trained by regression on
stochastic targets R(x, y) (the seed's section 1), beside the Monte-Carlo estimator it replaces.

The seed's observation: among all functions f, E[(f(x) − R(x, y))²] with y ~ p(y|x) is minimised by
f(x) = E[R(x, y) | x] = S(x). So a network trained on single noisy draws (x, y, R(x, y)) converges
to the expectation, and afterwards one forward pass answers a query that Monte Carlo answers with K
draws of y and K reward calls, at a standard error ~ 1/sqrt(K).

Three criteria (`RegressorConfig.criterion`); the network always outputs f(x) = log Ŝ(x), so Ŝ > 0:

- ``"gamma"`` (the default): E[R/Ŝ(x) + log Ŝ(x)], the Gamma deviance. Setting its derivative in
  f = log Ŝ to zero, 1 − E[R|x]/Ŝ = 0, gives Ŝ = S: a log-domain fit whose minimiser is still S
  itself (so log Ŝ → log S, no Jensen gap). Its gradient is the relative residual 1 − R/Ŝ, so
  every x counts the same whatever the scale of S(x). Its excess over the minimum is the
  Itakura-Saito divergence; the progress bar shows the per-draw R/Ŝ − log(R/Ŝ) − 1 ≥ 0.
- ``"mse"``: E[(Ŝ(x) − R)²], the seed's criterion. Minimiser Ŝ = S as well, but it weighs
  absolute errors, so where S(x) spans orders of magnitude the small values are fitted poorly in
  relative terms (on the demo problem its held-out relative error is about 4x gamma's).
- ``"log_mse"``: E[(log Ŝ(x) − log R)²]. Minimiser log Ŝ = E[log R | x], which is NOT log S:
  by Jensen E[log R] ≤ log E[R], with a gap that grows with the spread of R given x. It estimates
  the geometric mean of R; use it only when that is the quantity wanted, or when y is (nearly)
  determined by x. The demo reports its bias next to the other two.

A sampler is ``sampler(x [B, k], generator) -> y [B, ...]`` (one draw of y per row of x) and a
reward is ``log_reward(x [B, k], y [B, ...]) -> log R [B]`` (R ≥ 0; −inf means R = 0).

    problem = BernoulliExpProblem(x_dim=4, n=10)
    reg = ExpectationRegressor(x_dim=4, config=RegressorConfig(criterion="gamma", steps=2000))
    reg.fit(problem.sample_x(4096, gen), problem.sample_y, problem.log_reward)
    reg.log_expectation(x_new)                       # log Ŝ(x_new), one forward pass
    monte_carlo(x_new, problem.sample_y, problem.log_reward, K=256, generator=gen).log_s

``python -m gfncore.amortize --out DIR`` runs the demonstration (`run_demo`).
"""
from .demo import BernoulliExpProblem, DemoConfig, run_demo
from .library import (CRITERIA, ExpectationRegressor, MCEstimate, RegressorConfig, draw_log_rewards, monte_carlo,
                      relative_error)
from .report import format_tables, plot_demo

__all__ = ["CRITERIA", "BernoulliExpProblem", "DemoConfig", "ExpectationRegressor", "MCEstimate", "RegressorConfig",
           "draw_log_rewards", "format_tables", "monte_carlo", "plot_demo", "relative_error", "run_demo"]
