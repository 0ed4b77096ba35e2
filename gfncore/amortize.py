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
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

CRITERIA = ("mse", "gamma", "log_mse")

SamplerFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
LogRewardFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------
# draws of (y, log R) with the checks every path shares


def draw_log_rewards(x: torch.Tensor, sampler: SamplerFn, log_reward: LogRewardFn, generator: torch.Generator,
                     check: bool = True) -> torch.Tensor:
    """log R(x, y) [B] (float64) for one draw y ~ p(y|x) per row of x, with the user's two callables
    checked: the sampler must give one y per x, the reward one finite-or-(−inf) value per pair."""
    y = sampler(x, generator)
    B = x.shape[0]
    if check:
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"sampler(x, generator) must return a torch.Tensor of y's, got {type(y).__name__}")
        if y.dim() == 0 or y.shape[0] != B:
            raise ValueError(f"sampler(x, generator) must return one y per row of x: expected a leading "
                             f"dimension of {B}, got shape {tuple(y.shape)}")
    lr = log_reward(x, y)
    if check:
        if not isinstance(lr, torch.Tensor):
            raise TypeError(f"log_reward(x, y) must return a torch.Tensor, got {type(lr).__name__}")
        if tuple(lr.shape) != (B,):
            raise ValueError(f"log_reward(x, y) must return log R of shape ({B},) (one per row), "
                             f"got shape {tuple(lr.shape)}")
        if not lr.is_floating_point():
            raise TypeError(f"log_reward(x, y) must return floating point log R, got {lr.dtype}")
        bad = torch.isnan(lr) | (lr == math.inf)
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise ValueError(f"log_reward(x, y) returned {float(lr[i])} at row {i} (x = {x[i].tolist()}); "
                             f"log R must be finite or -inf (R = 0)")
    return lr.to(torch.float64)


# --------------------------------------------------------------------------------------------
# Monte Carlo


@dataclass
class MCEstimate:
    """Monte-Carlo estimates of S(x) from K draws y ~ p(y|x) per query x."""

    log_s: torch.Tensor  # [M] log of the sample mean of R (the mean itself is unbiased for S; its log is not)
    rel_stderr: torch.Tensor  # [M] estimated standard error of the mean divided by the mean (nan when K = 1)
    K: int

    @property
    def s(self) -> torch.Tensor:
        return self.log_s.exp()


def monte_carlo(x: torch.Tensor, sampler: SamplerFn, log_reward: LogRewardFn, K: int, generator: torch.Generator,
                chunk: int = 1 << 16, check: bool = True) -> MCEstimate:
    """Monte-Carlo estimate of S(x) = E_{y~p(y|x)} R(x, y) with K draws per query: (1/K) Σ_k R(x, y_k),
    unbiased for S(x) with relative standard error sqrt(Var R / K) / S. Computed in the log domain
    (logsumexp), so it neither overflows nor underflows for large |log R|."""
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise ValueError(f"K (Monte-Carlo samples per query) must be an int >= 1, got {K!r}")
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"x must be a 2-D tensor [M, k] of queries, got {getattr(x, 'shape', type(x))}")
    M = x.shape[0]
    per = max(1, chunk // K)  # queries per call, so one call holds about `chunk` draws
    log_s, rse = [], []
    for i in range(0, M, per):
        xi = x[i:i + per]
        lr = draw_log_rewards(xi.repeat_interleave(K, 0), sampler, log_reward, generator, check).view(-1, K)
        ls = torch.logsumexp(lr, 1) - math.log(K)
        log_s.append(ls)
        if K > 1:
            # the variance of R relative to its mean, from R / mean = exp(log R − log mean)
            ratio = (lr - ls[:, None]).exp()
            rse.append(ratio.var(1).sqrt() / math.sqrt(K))
        else:
            rse.append(torch.full_like(ls, math.nan))
    if M == 0:
        z = torch.zeros(0, dtype=torch.float64)
        return MCEstimate(z, z.clone(), K)
    return MCEstimate(torch.cat(log_s), torch.cat(rse), K)


# --------------------------------------------------------------------------------------------
# the amortized regressor


@dataclass
class RegressorConfig:
    """Settings of an amortized expectation regressor Ŝ(x); the demo's flags come from these fields."""

    criterion: str = field(default="gamma", metadata={
        "help": "gamma (E[R/S + log S]: unbiased, relative errors), mse (E[(S-R)^2]: unbiased, the seed's, "
                "absolute errors) or log_mse (E[(log S - log R)^2]: fits E[log R|x] <= log S, biased)"})
    hidden: int = field(default=128, metadata={"help": "MLP width"})
    layers: int = field(default=2, metadata={"help": "MLP hidden layers"})
    steps: int = field(default=2000, metadata={"help": "training steps"})
    batch_size: int = field(default=256, metadata={"help": "x per step"})
    y_per_x: int = field(default=4, metadata={"help": "draws of y per x per step (their mean R is the target)"})
    lr: float = field(default=1e-2, metadata={"help": "Adam learning rate (cosine-decayed to lr * lr_final)"})
    lr_final: float = field(default=0.01, metadata={"help": "final learning rate as a fraction of lr"})
    seed: int = field(default=0, metadata={"help": "seed of the network init and of every draw"})

    def __post_init__(self):
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {self.criterion!r}")
        for name in ("hidden", "layers", "batch_size", "y_per_x"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps must be an int >= 0, got {self.steps!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite positive float, got {self.lr!r}")
        if not 0 < self.lr_final <= 1:
            raise ValueError(f"lr_final must be in (0, 1], got {self.lr_final!r}")


class ExpectationRegressor(torch.nn.Module):
    """Amortized estimator Ŝ(x) of the expected reward S(x) = E_{y~p(y|x)} R(x, y): an MLP giving
    log Ŝ(x), trained by regression on single draws R(x, y) (see the module docstring for the three
    criteria and what each converges to)."""

    def __init__(self, x_dim: int, config: RegressorConfig | None = None):
        super().__init__()
        if isinstance(x_dim, bool) or not isinstance(x_dim, int) or x_dim < 1:
            raise ValueError(f"x_dim must be an int >= 1, got {x_dim!r}")
        self.config = config if config is not None else RegressorConfig()
        self.x_dim = x_dim
        c = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            dims = [x_dim] + [c.hidden] * c.layers
            mods: list[torch.nn.Module] = []
            for a, b in zip(dims[:-1], dims[1:]):
                mods += [torch.nn.Linear(a, b), torch.nn.SiLU()]
            mods.append(torch.nn.Linear(dims[-1], 1))
            self.net = torch.nn.Sequential(*mods)
        # set by the first fit (`_initialise`)
        self.register_buffer("x_mean", torch.zeros(x_dim))
        self.register_buffer("x_std", torch.ones(x_dim))
        self.register_buffer("log_scale", torch.zeros((), dtype=torch.float64))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))  # by the first fit's pilot batch
        self.history: list[dict] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """log Ŝ(x) [M] (float32, differentiable)."""
        return self.net((x.to(self.x_mean.dtype) - self.x_mean) / self.x_std).squeeze(-1)

    def log_expectation(self, x: torch.Tensor, check: bool = True) -> torch.Tensor:
        """log Ŝ(x) [M] as float64: the amortized answer to a batch of queries, one forward pass
        (the network has no train/eval-dependent layers, so no mode switch is needed)."""
        if check:
            self._check_x(x, "x")
        with torch.inference_mode():
            return self.forward(x).double()

    def expectation(self, x: torch.Tensor) -> torch.Tensor:
        """Ŝ(x) [M] (float64)."""
        return self.log_expectation(x).exp()

    def _check_x(self, x, name):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor [M, {self.x_dim}], got {type(x).__name__}")
        if x.dim() != 2 or x.shape[1] != self.x_dim:
            raise ValueError(f"{name} must have shape [M, {self.x_dim}], got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {x.dtype}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains NaN or inf")

    def _target(self, log_r: torch.Tensor) -> torch.Tensor:
        """Per-x regression target from [B, m] draws of log R: log of their mean R (mse, gamma) or
        their mean log R (log_mse)."""
        if self.config.criterion == "log_mse":
            return log_r.mean(1)
        return torch.logsumexp(log_r, 1) - math.log(log_r.shape[1])

    def loss(self, f: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The criterion on predictions f = log Ŝ(x) [B] and targets t [B] (log mean R or mean log R);
        float64, so exp(t − f) neither overflows nor loses the small terms."""
        f = f.double()
        crit = self.config.criterion
        if crit == "mse":
            # normalised by the pilot scale so the loss and its gradients are O(1) whatever R's units
            s = self.log_scale
            return ((f - s).exp() - (t - s).exp()).square().mean()
        if crit == "gamma":
            # the Itakura-Saito divergence e^d − d − 1 (d = log R/Ŝ) has the gamma deviance's gradient
            # 1 − R/Ŝ and is 0 at a perfect fit; a draw with R = 0 contributes the deviance's log Ŝ
            # (gradient 1), written with a finite placeholder so no inf reaches the backward
            finite = torch.isfinite(t)
            d = torch.where(finite, t - f, torch.zeros_like(f))
            return torch.where(finite, d.exp() - d - 1, f - self.log_scale).mean()
        return (f - t).square().mean()

    def _initialise(self, x_train, sampler, log_reward, gen) -> None:
        """Input moments from the training set; the output bias and the mse scale at the log mean R
        (or mean log R) of a pilot batch, so the first steps do not spend themselves finding the scale."""
        c, N = self.config, x_train.shape[0]
        self.x_mean.copy_(x_train.mean(0))
        self.x_std.copy_(x_train.std(0).nan_to_num(1.0).clamp(min=1e-6) if N > 1 else torch.ones(self.x_dim))
        pilot = x_train[torch.randint(N, (min(4096, max(N, c.batch_size)),), generator=gen)]
        t0 = self._target(draw_log_rewards(pilot, sampler, log_reward, gen).view(1, -1))
        if not bool(torch.isfinite(t0).all()):
            raise ValueError("log R = -inf (R = 0) in the pilot batch: " + (
                "the log_mse criterion needs R > 0" if c.criterion == "log_mse" else "every reward is 0"))
        self.log_scale.fill_(float(t0))
        self.net[-1].bias.fill_(float(t0))
        self.initialised.fill_(True)

    def fit(self, x_train: torch.Tensor, sampler: SamplerFn, log_reward: LogRewardFn, *,
            validation: tuple[torch.Tensor, torch.Tensor] | None = None, eval_every: int = 0,
            progress: bool = True) -> list[dict]:
        """Train on the training set x_train [N, k]: each step picks batch_size rows of x_train at
        random, draws y_per_x fresh y ~ p(y|x) for each, and takes one Adam step on the criterion.
        With validation = (x_val, exact log S(x_val)) the progress bar and history also show the
        mean relative error |Ŝ − S| / S on it. Returns the history (one dict per evaluation)."""
        from tqdm.auto import tqdm

        c = self.config
        self._check_x(x_train, "x_train")
        if x_train.shape[0] == 0:
            raise ValueError("x_train is empty")
        if validation is not None:
            xv, lsv = validation
            self._check_x(xv, "validation x")
            if not isinstance(lsv, torch.Tensor) or tuple(lsv.shape) != (xv.shape[0],):
                raise ValueError(f"validation log S must have shape ({xv.shape[0]},), "
                                 f"got {tuple(getattr(lsv, 'shape', ()))}")
        x_train = x_train.to(torch.float32)
        N = x_train.shape[0]
        gen = torch.Generator().manual_seed(c.seed + 1)
        if not bool(self.initialised):  # a later fit continues training with the scales it was trained with
            with torch.no_grad():
                self._initialise(x_train, sampler, log_reward, gen)
        opt = torch.optim.Adam(self.parameters(), lr=c.lr)
        cosine = lambda i: 0.5 * (1 + math.cos(math.pi * min(i, c.steps) / max(c.steps, 1)))  # noqa: E731
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: c.lr_final + (1 - c.lr_final) * cosine(i))
        every = eval_every or max(1, c.steps // 20)
        bar = tqdm(total=c.steps, disable=not progress, desc=f"amortize {c.criterion}", dynamic_ncols=True)
        t_start = time.perf_counter()
        running = None

        def record(step: int) -> None:
            rec = {"step": step, "loss": running, "seconds": time.perf_counter() - t_start}
            post = {"loss": f"{running:.3g}"}
            if validation is not None:
                rec["val_rel_err"] = float(relative_error(self.log_expectation(xv), lsv).mean())
                post["val_rel_err"] = f"{rec['val_rel_err']:.3f}"
            self.history.append(rec)
            bar.set_postfix(post, refresh=False)

        try:
            for i in range(c.steps):
                xb = x_train[torch.randint(N, (c.batch_size,), generator=gen)]
                log_r = draw_log_rewards(xb.repeat_interleave(c.y_per_x, 0), sampler, log_reward, gen)
                t = self._target(log_r.view(c.batch_size, c.y_per_x))
                if c.criterion == "log_mse" and bool(torch.isinf(t).any()):
                    raise ValueError("log_reward returned -inf (R = 0): the log_mse criterion needs R > 0")
                loss = self.loss(self.forward(xb), t)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                v = float(loss.detach())
                running = v if running is None else 0.95 * running + 0.05 * v
                if i % every == 0 and i < c.steps - 1:
                    record(i + 1)
                bar.update(1)
            if c.steps:
                record(c.steps)
        finally:
            bar.close()
        return self.history


def relative_error(log_est: torch.Tensor, log_exact: torch.Tensor) -> torch.Tensor:
    """|Ŝ − S| / S per query, from log Ŝ and log S (float64)."""
    return (log_est.double() - log_exact.double()).expm1().abs()


# --------------------------------------------------------------------------------------------
# demonstration problem with an exact S(x)


class BernoulliExpProblem:
    """Demonstration problem with an exact expected reward: x ∈ R^k, y ∈ {0,1}^n with independent
    y_i ~ Bernoulli(σ((W x)_i)), R(x, y) = exp(a(x)·y) with a(x) = scale · tanh(A x + b).
    Because the y_i are independent and R factorises,
    S(x) = Π_i (1 − p_i + p_i e^{a_i}), i.e. log S = Σ_i [softplus(ℓ_i + a_i) − softplus(ℓ_i)]
    with ℓ = W x; `log_s_enumerate` sums p(y|x) R(x, y) over all 2^n y's instead (n ≤ 12), a check
    of the closed form. W, A, b are fixed by the seed; queries x ~ N(0, I_k)."""

    def __init__(self, x_dim: int = 4, n: int = 10, scale: float = 1.0, seed: int = 0):
        for name, v in (("x_dim", x_dim), ("n", n)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if not (math.isfinite(scale) and scale >= 0):
            raise ValueError(f"scale must be a finite float >= 0, got {scale!r}")
        self.x_dim, self.n, self.scale, self.seed = x_dim, n, float(scale), seed
        g = torch.Generator().manual_seed(seed)
        r = 1.0 / math.sqrt(x_dim)
        self.W = torch.randn(n, x_dim, generator=g, dtype=torch.float64) * r
        self.A = torch.randn(n, x_dim, generator=g, dtype=torch.float64) * r
        self.b = torch.randn(n, generator=g, dtype=torch.float64) * 0.5

    def sample_x(self, m: int, generator: torch.Generator) -> torch.Tensor:
        """m queries x ~ N(0, I_k) (float32)."""
        return torch.randn(m, self.x_dim, generator=generator)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return x.double() @ self.W.T

    def a(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.tanh(x.double() @ self.A.T + self.b)

    def sample_y(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One y ~ p(y|x) per row of x: [B, n] float32 of 0/1."""
        p = torch.sigmoid(self.logits(x))
        return (torch.rand(p.shape, generator=generator, dtype=torch.float64) < p).to(torch.float32)

    def log_reward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log R(x, y) = a(x)·y [B] (float64)."""
        return (self.a(x) * y.double()).sum(-1)

    def log_s(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log S(x) in closed form, a product over coordinates (float64)."""
        ell = self.logits(x)
        F = torch.nn.functional.softplus
        return (F(ell + self.a(x)) - F(ell)).sum(-1)

    def log_s_enumerate(self, x: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """Exact log S(x) by summing p(y|x) R(x, y) over all 2^n y's (n ≤ 12; float64)."""
        if self.n > 12:
            raise ValueError(f"enumeration needs n <= 12 (2^n y's per query), got n = {self.n}")
        ys = ((torch.arange(2 ** self.n)[:, None] >> torch.arange(self.n)) & 1).double()  # [2^n, n]
        out = []
        for i in range(0, x.shape[0], chunk):
            xi = x[i:i + chunk]
            ell, a = self.logits(xi), self.a(xi)
            lp1, lp0 = torch.nn.functional.logsigmoid(ell), torch.nn.functional.logsigmoid(-ell)
            # log p(y|x) + a·y for every (query, y) pair
            log_joint = (lp1 + a) @ ys.T + lp0 @ (1 - ys).T
            out.append(torch.logsumexp(log_joint, 1))
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)

    def log_s_geometric(self, x: torch.Tensor) -> torch.Tensor:
        """E[log R(x, y) | x] = Σ_i p_i a_i(x): what the biased log_mse criterion converges to."""
        return (torch.sigmoid(self.logits(x)) * self.a(x)).sum(-1)


# --------------------------------------------------------------------------------------------
# the demonstration: amortized Ŝ against Monte Carlo at equal query time


@dataclass
class DemoConfig:
    """The amortization demonstration (`run_demo`); the regressor's own settings are a RegressorConfig."""

    x_dim: int = field(default=4, metadata={"help": "dimension k of the query x"})
    n: int = field(default=10, metadata={"help": "binary coordinates of y (exact enumeration needs n <= 12)"})
    scale: float = field(default=1.0, metadata={"help": "reward scale: a(x) = scale * tanh(A x + b)"})
    problem_seed: int = field(default=0, metadata={"help": "seed of the problem's W, A, b"})
    n_train: int = field(default=4096, metadata={"help": "training-set size of the criterion comparison"})
    train_sizes: tuple[int, ...] = field(default=(64, 256, 1024, 4096, 16384), metadata={
        "help": "training-set sizes of the size sweep (comma-separated)"})
    train_steps: tuple[int, ...] = field(default=(250, 500, 1000, 2000, 4000), metadata={
        "help": "training lengths of the reward-draw sweep at n_train (comma-separated)"})
    mc_samples: tuple[int, ...] = field(default=(1, 4, 16, 64, 256, 1024, 4096), metadata={
        "help": "Monte-Carlo samples per query K (comma-separated)"})
    compare_criteria: bool = field(default=True, metadata={"help": "also train the other two criteria at n_train"})
    n_test: int = field(default=1000, metadata={"help": "held-out queries (x never seen in training)"})
    timing_repeats: int = field(default=7, metadata={"help": "timed repeats per method (medians reported)"})
    latency_queries: int = field(default=50, metadata={"help": "single queries timed one call at a time"})
    threads: int = field(default=1, metadata={"help": "torch threads for training and timing (0: leave as is)"})
    data_seed: int = field(default=0, metadata={"help": "seed of the training/test queries and the MC draws"})
    out: str = field(default="", metadata={"help": "directory for summary.json, table.md, amortize.png"})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})


def _errors(log_est: torch.Tensor, log_exact: torch.Tensor) -> dict:
    e = relative_error(log_est, log_exact)
    return {"rel_err_mean": float(e.mean()), "rel_err_median": float(e.median()),
            "rel_err_p90": float(e.quantile(0.9)), "log_err_mean": float((log_est - log_exact).abs().mean())}


def _time_side_by_side(fns: dict, repeats: int) -> dict:
    """Median wall time of each callable, interleaved round by round so that load on the machine
    falls on every method alike; one untimed warm-up call each first."""
    for f in fns.values():
        f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


def _interp_loglog(xs: list[float], ys: list[float], x: float) -> float | None:
    """y at x by linear interpolation in log-log coordinates; None outside [min xs, max xs]."""
    pts = sorted(zip(xs, ys))
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
        if x0 <= x <= x1 and y0 > 0 and y1 > 0:
            if x1 == x0:
                return y0
            w = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return math.exp(math.log(y0) + w * (math.log(y1) - math.log(y0)))
    return None


def run_demo(config: DemoConfig | None = None, regressor: RegressorConfig | None = None) -> dict:
    """Amortized Ŝ(x) against Monte Carlo on the Bernoulli-exp problem: errors against the exact
    S(x) on held-out x, time per query of both measured side by side in one run, MC across K and the
    regressor across training-set sizes. Writes summary.json, table.md and amortize.png into
    config.out (when set) and returns the summary."""
    cfg = config if config is not None else DemoConfig()
    rcfg = regressor if regressor is not None else RegressorConfig()
    if not cfg.mc_samples or not cfg.train_sizes:
        raise ValueError("mc_samples and train_sizes must be non-empty")
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _run_demo(cfg, rcfg)
    finally:
        torch.set_num_threads(old_threads)


def _run_demo(cfg: DemoConfig, rcfg: RegressorConfig) -> dict:
    prob = BernoulliExpProblem(cfg.x_dim, cfg.n, cfg.scale, cfg.problem_seed)
    gen = torch.Generator().manual_seed(cfg.data_seed)
    x_test = prob.sample_x(cfg.n_test, gen)
    x_pool = prob.sample_x(max(max(cfg.train_sizes), cfg.n_train), gen)  # nested training sets
    log_s = prob.log_s(x_test)
    summary: dict = {"config": dataclasses.asdict(cfg), "regressor": dataclasses.asdict(rcfg),
                     "threads": torch.get_num_threads()}
    if cfg.n <= 12:
        summary["max_abs_log_s_closed_form_vs_enumeration"] = float((prob.log_s_enumerate(x_test) - log_s).abs().max())
    summary["log_s_range"] = [float(log_s.min()), float(log_s.max())]
    summary["jensen_gap_mean"] = float((log_s - prob.log_s_geometric(x_test)).mean())

    def train(N: int, criterion: str, steps: int | None = None) -> tuple[ExpectationRegressor, dict]:
        rc = dataclasses.replace(rcfg, criterion=criterion, steps=rcfg.steps if steps is None else steps)
        reg = ExpectationRegressor(cfg.x_dim, rc)
        t = time.perf_counter()
        reg.fit(x_pool[:N], prob.sample_y, prob.log_reward, validation=(x_test, log_s), progress=cfg.progress)
        row = {"criterion": criterion, "n_train": N, "steps": rc.steps, "train_seconds": time.perf_counter() - t,
               "reward_evaluations": rc.steps * rc.batch_size * rc.y_per_x}
        row.update(_errors(reg.log_expectation(x_test), log_s))
        seen = x_pool[:min(N, cfg.n_test)]
        row["rel_err_mean_seen_x"] = float(relative_error(reg.log_expectation(seen), prob.log_s(seen)).mean())
        return reg, row

    # the criteria at one training-set size, then the main criterion across sizes
    regs, crit_rows = {}, []
    for crit in (CRITERIA if cfg.compare_criteria else (rcfg.criterion,)):
        regs[crit], row = train(cfg.n_train, crit)
        row["rel_err_vs_geometric_mean"] = float(relative_error(regs[crit].log_expectation(x_test),
                                                                prob.log_s_geometric(x_test)).mean())
        crit_rows.append(row)
    size_rows = []
    for N in cfg.train_sizes:
        if N == cfg.n_train and rcfg.criterion in regs:
            size_rows.append(next(r for r in crit_rows if r["criterion"] == rcfg.criterion))
        else:
            size_rows.append(train(N, rcfg.criterion)[1])
    main = regs[rcfg.criterion]
    main_row = next(r for r in crit_rows if r["criterion"] == rcfg.criterion)
    step_rows = [main_row if T == rcfg.steps else train(cfg.n_train, rcfg.criterion, T)[1] for T in cfg.train_steps]

    # Monte Carlo errors (one seeded run per K), then all timings interleaved in one loop
    mc_rows = []
    for K in cfg.mc_samples:
        est = monte_carlo(x_test, prob.sample_y, prob.log_reward, K, gen)
        mc_rows.append({"K": K, **_errors(est.log_s, log_s)})
    tgen = torch.Generator().manual_seed(cfg.data_seed + 7)
    fns = {"amortized": lambda: main.log_expectation(x_test, check=False)}
    for K in cfg.mc_samples:
        fns[f"mc{K}"] = (lambda K=K: monte_carlo(x_test, prob.sample_y, prob.log_reward, K, tgen, check=False))
    batch_t = _time_side_by_side(fns, cfg.timing_repeats)
    # one query per call: what a caller pays when queries arrive one at a time
    lat_x = [x_test[i:i + 1] for i in range(min(cfg.latency_queries, cfg.n_test))]
    lat_fns = {"amortized": lambda: [main.log_expectation(q, check=False) for q in lat_x]}
    for K in cfg.mc_samples:
        lat_fns[f"mc{K}"] = (lambda K=K: [monte_carlo(q, prob.sample_y, prob.log_reward, K, tgen, check=False)
                                           for q in lat_x])
    lat_t = _time_side_by_side(lat_fns, max(3, cfg.timing_repeats // 2))
    per_q = {k: v / cfg.n_test for k, v in batch_t.items()}
    lat = {k: v / len(lat_x) for k, v in lat_t.items()}
    for r in mc_rows:
        r["us_per_query_batched"] = 1e6 * per_q[f"mc{r['K']}"]
        r["us_per_query_single"] = 1e6 * lat[f"mc{r['K']}"]
    amort = dict(next(r for r in crit_rows if r["criterion"] == rcfg.criterion))
    amort["us_per_query_batched"] = 1e6 * per_q["amortized"]
    amort["us_per_query_single"] = 1e6 * lat["amortized"]
    summary.update(criteria=crit_rows, train_sizes=size_rows, train_steps=step_rows, monte_carlo=mc_rows,
                   amortized=amort)

    # equal query time: MC's K and error at the amortized query's time (log-log interpolation over
    # the measured K), and the K that MC would need to match the amortized error (error ∝ 1/sqrt K)
    Ks = [r["K"] for r in mc_rows]
    eq = {}
    for mode in ("batched", "single"):
        ts = [r[f"us_per_query_{mode}"] for r in mc_rows]
        errs = [r["rel_err_mean"] for r in mc_rows]
        ta = amort[f"us_per_query_{mode}"]
        k_eq = _interp_loglog(ts, Ks, ta)
        eq[mode] = {"amortized_us": ta, "K_at_equal_time": k_eq,
                    "mc_rel_err_at_equal_time": _interp_loglog(Ks, errs, k_eq) if k_eq else None,
                    # the cheapest MC measured (K = min(Ks), not necessarily 1) against the amortized query
                    "mc_smallest_K": min(Ks), "mc1_over_amortized_time": ts[Ks.index(min(Ks))] / ta}
    big = max(mc_rows, key=lambda r: r["K"])
    k_match = big["K"] * (big["rel_err_mean"] / amort["rel_err_mean"]) ** 2
    eq["K_to_match_amortized_error"] = k_match
    eq["mc_us_to_match_batched"] = big["us_per_query_batched"] * k_match / big["K"]
    saved = eq["mc_us_to_match_batched"] - amort["us_per_query_batched"]
    eq["queries_to_repay_training"] = amort["train_seconds"] * 1e6 / saved if saved > 0 else None
    summary["equal_time"] = eq
    summary["table"] = format_tables(summary)
    if cfg.out:
        os.makedirs(cfg.out, exist_ok=True)
        with open(os.path.join(cfg.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        with open(os.path.join(cfg.out, "table.md"), "w") as f:
            f.write(summary["table"])
        summary["plot"] = plot_demo(summary, os.path.join(cfg.out, "amortize.png"))
    return summary


def _md_row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def format_tables(s: dict) -> str:
    """The demonstration's results as markdown tables."""
    a, eq, cfg, rc = s["amortized"], s["equal_time"], s["config"], s["regressor"]
    errs = lambda r: (f"{r['rel_err_mean']:.4f}", f"{r['rel_err_median']:.4f}", f"{r['rel_err_p90']:.4f}")  # noqa: E731
    lines = [f"Problem: x in R^{cfg['x_dim']}, y in {{0,1}}^{cfg['n']}, log S(x) in "
             f"[{s['log_s_range'][0]:.2f}, {s['log_s_range'][1]:.2f}] on {cfg['n_test']} held-out x; "
             f"{s['threads']} torch thread(s).", "",
             f"Amortized (criterion {a['criterion']}, N = {a['n_train']}) vs Monte Carlo with K samples, errors "
             "against the exact S(x):", "",
             _md_row("estimator", "mean rel. err", "median", "p90", "mean abs log err",
                 f"us/query (batch of {cfg['n_test']})", "us/query (one at a time)"),
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in [("amortized Ŝ(x)", a)] + [(f"MC K={r['K']}", r) for r in s["monte_carlo"]]:
        lines.append(_md_row(name, *errs(r), f"{r['log_err_mean']:.4f}", f"{r['us_per_query_batched']:.2f}",
                         f"{r['us_per_query_single']:.1f}"))
    lines.append("")
    for mode in ("batched", "single"):
        e = eq[mode]
        if e["K_at_equal_time"] is None:
            lines.append(f"- {mode}: the amortized query ({e['amortized_us']:.2f} us) is outside the measured MC "
                         f"time range (MC K={e['mc_smallest_K']}, the smallest K measured, costs "
                         f"{e['mc1_over_amortized_time']:.2f}x the amortized query).")
        else:
            lines.append(f"- {mode}: at the amortized query's time ({e['amortized_us']:.2f} us) MC affords "
                         f"K ≈ {e['K_at_equal_time']:.1f}, mean rel. error ≈ {e['mc_rel_err_at_equal_time']:.4f} "
                         f"(amortized: {a['rel_err_mean']:.4f}).")
    repaid = eq["queries_to_repay_training"]
    lines.append(f"- MC needs K ≈ {eq['K_to_match_amortized_error']:.0f} (≈ {eq['mc_us_to_match_batched']:.1f} "
                 f"us/query batched) to match the amortized error; training took {a['train_seconds']:.1f} s, "
                 f"repaid after ≈ " + (f"{repaid:.0f} queries." if repaid else "never."))
    lines += ["", f"Criteria at N = {cfg['n_train']} (same steps and draws):", "",
              _md_row("criterion", "converges to", "mean rel. err vs S", "vs exp E[log R]", "train s"),
              "|---|---|---:|---:|---:|"]
    for r in s["criteria"]:
        target = "exp E[log R|x] (biased)" if r["criterion"] == "log_mse" else "S(x)"
        lines.append(_md_row(r["criterion"], target, f"{r['rel_err_mean']:.4f}", f"{r['rel_err_vs_geometric_mean']:.4f}",
                         f"{r['train_seconds']:.1f}"))
    lines += ["", f"Training-set size (criterion {a['criterion']}; {rc['steps']} steps of {rc['batch_size']} x "
              f"with {rc['y_per_x']} fresh y each):", "",
              _md_row("N (distinct x)", "mean rel. err held-out x", "median", "p90", "mean rel. err seen x", "train s"),
              "|---:|---:|---:|---:|---:|---:|"]
    for r in s["train_sizes"]:
        lines.append(_md_row(r["n_train"], *errs(r), f"{r['rel_err_mean_seen_x']:.4f}", f"{r['train_seconds']:.1f}"))
    lines += ["", f"Training length (criterion {a['criterion']}, N = {cfg['n_train']}): reward draws spent once, "
              "against MC's K draws per query:", "",
              _md_row("steps", "reward draws", "mean rel. err held-out x", "median", "p90", "train s"),
              "|---:|---:|---:|---:|---:|---:|"]
    for r in s["train_steps"]:
        lines.append(_md_row(r["steps"], r["reward_evaluations"], *errs(r), f"{r['train_seconds']:.1f}"))
    return "\n".join(lines) + "\n"


def plot_demo(s: dict, path: str) -> str | None:
    """Three panels: error against time per query (MC over K, the amortized Ŝ), and the amortized
    error against training-set size and against training draws, MC levels marked. Written to path;
    returns path, or None without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        print("amortize: the plot needs matplotlib (pip install matplotlib); summary.json and table.md "
              "are written")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (matplotlib.ticker.NullFormatter below)

    fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(16, 4.4))
    mc = s["monte_carlo"]
    a = s["amortized"]
    ax0.loglog([r["us_per_query_batched"] for r in mc], [r["rel_err_mean"] for r in mc], "o-", label="Monte Carlo")
    for r in mc:
        ax0.annotate(f"K={r['K']}", (r["us_per_query_batched"], r["rel_err_mean"]), fontsize=7,
                     xytext=(3, 3), textcoords="offset points")
    ax0.loglog([a["us_per_query_batched"]], [a["rel_err_mean"]], "r*", ms=14,
               label=f"amortized ({a['criterion']}, N={a['n_train']})")
    ax0.set_xlabel(f"time per query, us (batch of {s['config']['n_test']}, {s['threads']} thread)")
    ax0.set_ylabel("mean relative error on held-out x")
    ax0.set_title("accuracy vs query time")
    ax0.legend(fontsize=8)
    mc_lines = [r for r in mc if r["K"] in (16, 256, 4096)] or mc[-2:]
    for ax, rows, key, xlabel, title in (
            (ax1, s["train_sizes"], "n_train", "training-set size N (distinct x)",
             "amortized error vs training-set size"),
            (ax2, s.get("train_steps", []), "reward_evaluations", "reward draws spent in training",
             "amortized error vs training draws")):
        if not rows:
            ax.set_visible(False)
            continue
        ax.semilogx([r[key] for r in rows], [r["rel_err_mean"] for r in rows], "s-", color="C3",
                    label="amortized, held-out x")
        if key == "n_train":
            ax.semilogx([r[key] for r in rows], [r["rel_err_mean_seen_x"] for r in rows], "s--", color="C3",
                        alpha=0.5, label="amortized, training x")
        for r, c in zip(mc_lines, ("C0", "C1", "C2")):
            ax.axhline(r["rel_err_mean"], color=c, ls=":", label=f"MC K={r['K']} (per query)")
        ax.set_yscale("log")
        # ticks at the measured points: a range within one decade would otherwise get a single label
        xs = sorted({r[key] for r in rows})
        ax.set_xticks(xs, [f"{x:,}" for x in xs])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels collide on short ranges
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mean relative error")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _parser():
    import argparse

    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m gfncore.amortize",
                                description="Amortized expectations vs Monte Carlo on a problem with an exact answer")
    for cls in (DemoConfig, RegressorConfig):
        for f in dataclasses.fields(cls):
            default = f.default
            flag = "--" + f.name.replace("_", "-")
            help_ = f"{f.metadata.get('help', '')} (default: {default})"
            if f.type == "bool":
                p.add_argument(flag, dest=f.name, default=default, action=argparse.BooleanOptionalAction, help=help_)
            elif str(f.type).startswith("tuple"):
                p.add_argument(flag, dest=f.name, default=default, help=help_,
                               type=lambda v: tuple(int(t) for t in v.split(",") if t.strip()))
            else:
                p.add_argument(flag, dest=f.name, default=default, type={"int": int, "float": float}.get(f.type, str),
                               help=help_)
    return p


def main(argv: list[str] | None = None) -> dict:
    ns = _parser().parse_args(argv)
    pick = lambda cls: cls(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)})  # noqa: E731
    cfg = pick(DemoConfig)
    if not cfg.out:
        cfg = dataclasses.replace(cfg, out="runs/amortize")
    s = run_demo(cfg, pick(RegressorConfig))
    print(s["table"])
    print(f"wrote {cfg.out}/summary.json, table.md" + (", amortize.png" if s.get("plot") else ""))
    return s


if __name__ == "__main__":
    main()
