"""The amortized-expectation library: a regressor Ŝ(x) ≈ E_y R(x, y) trained on single noisy draws, and
the Monte-Carlo estimator it replaces. The package docstring (gfncore.amortize) gives the theory."""
from __future__ import annotations

import math
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
        from ..train.regression import fit_regression

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
        every = eval_every or max(1, c.steps // 20)
        t_start = time.perf_counter()

        def step_loss(i: int) -> torch.Tensor:
            xb = x_train[torch.randint(N, (c.batch_size,), generator=gen)]
            log_r = draw_log_rewards(xb.repeat_interleave(c.y_per_x, 0), sampler, log_reward, gen)
            t = self._target(log_r.view(c.batch_size, c.y_per_x))
            if c.criterion == "log_mse" and bool(torch.isinf(t).any()):
                raise ValueError("log_reward returned -inf (R = 0): the log_mse criterion needs R > 0")
            return self.loss(self.forward(xb), t)

        def record(step: int, running: float) -> dict:
            rec = {"step": step, "loss": running, "seconds": time.perf_counter() - t_start}
            post = {"loss": f"{running:.3g}"}
            if validation is not None:
                rec["val_rel_err"] = float(relative_error(self.log_expectation(xv), lsv).mean())
                post["val_rel_err"] = f"{rec['val_rel_err']:.3f}"
            self.history.append(rec)
            return post

        fit_regression(self.parameters(), step_loss, c.steps, c.lr, c.lr_final, progress=progress,
                       desc=f"amortize {c.criterion}", record=record, every=every, ema=(0.95, 0.05))
        return self.history


def relative_error(log_est: torch.Tensor, log_exact: torch.Tensor) -> torch.Tensor:
    """|Ŝ − S| / S per query, from log Ŝ and log S (float64)."""
    return (log_est.double() - log_exact.double()).expm1().abs()
