"""A GFlowNet posterior sampler over a parameter grid: θ is built one coordinate at a time, in any
order, on the K-ary assignment environment, and trained on the reward R(θ) = P(θ)·P(D|θ) or its
unbiased minibatch estimate; its log Z estimates the evidence log P(D) (the seed's section 4).

    model = LinearRegression(ParameterGrid.linspace(-1, 1, 5, 5), noise_std=4.0)
    q = PosteriorSampler.from_model(model, (X, y), PosteriorConfig(steps=1000, minibatch=20))
    q.fit()
    theta = q.sample_theta(1000)          # θ ~ Q(θ|D)
    q.log_evidence                        # log Z ≈ log P(D)
    q.predictive(X_test, y_test)          # Q(y|x, D) from posterior samples: accuracy, calibration
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from .models import ParameterGrid
from .reward import MinibatchLogReward, as_data, fit_reference


@dataclass
class PosteriorConfig:
    """Settings of a GFlowNet posterior sampler; `gfncore bayes`'s training flags come from these fields."""

    steps: int = field(default=1000, metadata={"help": "training steps"})
    batch_size: int = field(default=64, metadata={"help": "θ's (trajectories) per step; they share one minibatch"})
    minibatch: int = field(default=0, metadata={
        "help": "examples per reward estimate (0: the full data every step)"})
    control_variate: int = field(default=2, metadata={
        "help": "minibatch reward's control variate around a reference θ: 0 none, 1 its log-likelihood, "
                "2 its second-order Taylor expansion (needs a twice-differentiable likelihood)"})
    shuffle: str = field(default="epoch", metadata={"help": "minibatches: epoch (reshuffled slices) or independent"})
    loss: str = field(default="tb", metadata={"help": "GFlowNet objective (tb, db, subtb, zvar, ...)"})
    hidden: int = field(default=128, metadata={"help": "MLP width"})
    layers: int = field(default=2, metadata={"help": "MLP hidden layers"})
    lr: float = field(default=1e-2, metadata={"help": "Adam learning rate (cosine-decayed to lr * lr_final)"})
    lr_log_z: float = field(default=0.1, metadata={"help": "Adam learning rate of log Z"})
    lr_final: float = field(default=0.01, metadata={"help": "final learning rate as a fraction of the initial one"})
    seed: int = field(default=0, metadata={"help": "seed of the network, the rollouts and the minibatches"})
    threads: int = field(default=0, metadata={"help": "torch and kernel threads (0: leave as is)"})
    eval_every: int = field(default=0, metadata={
        "help": "steps between exact evaluations when the exact posterior is known (0: 10 per run)"})
    evidence_samples: int = field(default=4096, metadata={
        "help": "posterior samples for the importance-sampling estimate of log P(D) on the full data (0: skip)"})

    def __post_init__(self):
        for name in ("steps", "minibatch", "threads", "eval_every", "evidence_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an int >= 0, got {v!r}")
        for name in ("batch_size", "hidden", "layers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        from ..limits import check_threads

        check_threads(self.threads, "--threads")
        if self.shuffle not in ("epoch", "independent"):  # checked with or without --minibatch
            raise ValueError(f"shuffle must be 'epoch' or 'independent', got {self.shuffle!r}")
        if self.control_variate not in (0, 1, 2):
            raise ValueError(f"control_variate must be 0, 1 or 2, got {self.control_variate!r}")
        for name in ("lr", "lr_log_z"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite float > 0, got {v!r}")
        if not 0 < self.lr_final <= 1:
            raise ValueError(f"lr_final must be in (0, 1], got {self.lr_final!r}")


class PosteriorSampler:
    """A GFlowNet posterior sampler Q(θ|D) over a parameter grid, with log Z ≈ log P(D).

    The objects are the K^n grid settings θ, built on `gfn.envs.Assignment(n, K)` (coordinate i set to
    grid value v by action i*K + v, in any order), whose reward is the user's log P(θ) + log P(D|θ):
    exact (`minibatch=0`) or the unbiased minibatch estimate of `MinibatchLogReward`, one minibatch
    drawn per training step and shared by the step's θ's (the environment scores a batch in one call),
    minibatches reshuffled every epoch, with a control variate around a reference θ (fitted by
    `fit_reference`, or a built-in model's `map_estimate`, unless given).

    log R is shifted by a constant (the full-data log R near the reference) before training, so the
    network and log Z work with numbers of order 1 whatever |D|; `log_evidence` adds it back.
    """

    def __init__(self, log_prior, log_likelihood, grid: ParameterGrid, data, config: PosteriorConfig | None = None,
                 reference: torch.Tensor | None = None, model=None):
        from .. import envs
        from ..nn import MLPPolicy
        from ..train import Trainer

        if not isinstance(grid, ParameterGrid):
            raise TypeError(f"grid must be a ParameterGrid, got {type(grid).__name__}")
        cfg = config if config is not None else PosteriorConfig()
        self.config, self.grid, self.model = cfg, grid, model
        self.data = as_data(data)
        N = self.data[0].shape[0]
        if cfg.minibatch > N:
            raise ValueError(f"minibatch = {cfg.minibatch} is larger than the data ({N} examples); "
                             "use minibatch=0 for the full batch")
        self._threads = cfg.threads
        with self._pinned_threads():
            self.full_reward = MinibatchLogReward(log_prior, log_likelihood, self.data, None, grid=grid)
            # the user's functions meet a few rows before training starts, so a wrong shape or NaN
            # fails here with their message, not inside a rollout
            self.full_reward.on_batch(grid.theta(torch.zeros(1, grid.n, dtype=torch.int64)), torch.arange(min(N, 2)))
            minibatch = cfg.minibatch if 0 < cfg.minibatch < N else None
            self.reference = None
            if minibatch is not None and cfg.control_variate:
                if reference is None:
                    est = getattr(model, "map_estimate", None)
                    reference = est(self.data) if callable(est) else fit_reference(log_prior, log_likelihood,
                                                                                   self.data, grid.n)
                self.reference = torch.as_tensor(reference, dtype=torch.float64).reshape(grid.n)
            gen = torch.Generator().manual_seed(cfg.seed + 101)
            self.reward = (self.full_reward if minibatch is None else
                           MinibatchLogReward(log_prior, log_likelihood, self.data, minibatch, generator=gen, grid=grid,
                                              reference=self.reference, shuffle=cfg.shuffle,
                                              cv_order=max(cfg.control_variate, 1)))
            self.offset = self._offset(gen)
            self.env = envs.Assignment(grid.n, grid.K, log_reward=self._log_reward)
            self.exact_env = envs.Assignment(grid.n, grid.K, log_reward=self._full_log_reward)
            torch.manual_seed(cfg.seed)
            self.policy = MLPPolicy(self.env, hidden=cfg.hidden, layers=cfg.layers, flow=cfg.loss in ("db", "subtb"))
            self.trainer = Trainer(self.env, self.policy, loss=cfg.loss, batch_size=cfg.batch_size, lr=cfg.lr,
                                   lr_log_z=cfg.lr_log_z, seed=cfg.seed)
            if cfg.loss == "tb":
                from ..train import initialise_log_z

                initialise_log_z(self.env, self.policy, None, n=4 * cfg.batch_size, generator=gen)
        self.history: list[dict] = []
        self._schedule = None

    @classmethod
    def from_model(cls, model, data, config: PosteriorConfig | None = None, reference: torch.Tensor | None = None):
        """The sampler of a built-in model's posterior (or of any object with log_prior, log_likelihood, grid)."""
        return cls(model.log_prior, model.log_likelihood, model.grid, data, config, reference, model)

    # -- rewards ---------------------------------------------------------------------------------
    def _log_reward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reward.of_index(x) - self.offset

    def _full_log_reward(self, x: torch.Tensor) -> torch.Tensor:
        return self.full_reward.of_index(x) - self.offset

    def _offset(self, gen: torch.Generator) -> float:
        """A constant near log P(D) to subtract from log R: the full-data log R at the grid point
        nearest the reference, or the best of 64 random grid points."""
        g = self.grid
        if self.reference is not None:
            idx = (self.reference[:, None] - g.values[None, :]).abs().argmin(1)[None]
        else:
            idx = torch.randint(g.K, (64, g.n), generator=gen)
        lr = self.full_reward.full(g.theta(idx))
        finite = lr[torch.isfinite(lr)]
        return float(finite.max()) if finite.numel() else 0.0

    def _pinned_threads(self):
        from ..runtime import pinned_threads

        return pinned_threads(self._threads)

    # -- training --------------------------------------------------------------------------------
    def fit(self, steps: int | None = None, *, progress: bool = True, exact=None, log_path: str | None = None) -> list[dict]:
        """Train for `steps` (default config.steps) steps with the cosine learning-rate schedule,
        a progress bar (loss, log P(D) estimate and, given the exact posterior, exact L1), and with
        `exact` (an GridPosterior) exact evaluations every eval_every steps into history."""
        from ..train import Evaluate, LRSchedule

        cfg = self.config
        steps = cfg.steps if steps is None else int(steps)
        if self._schedule is None:  # planned over the first fit's steps; later fits continue it
            self._schedule = LRSchedule.cosine(cfg.lr_final, steps)
        hooks = [self._schedule]
        if exact is not None:
            hooks.append(Evaluate(cfg.eval_every or max(steps // 10, 1),
                                  lambda t: self.evaluate(exact, evidence_samples=0), self.history, log_path,
                                  show=("log_z", "l1")))
        with self._pinned_threads():
            self.trainer.fit(steps, progress=progress, hooks=hooks, desc=f"posterior {self.grid.K}^{self.grid.n}")
        return self.history

    @property
    def train_seconds(self) -> float:
        return self.trainer.train_seconds

    @property
    def log_evidence(self) -> float:
        """The learned estimate of log P(D) = log Z (the objective's log Z plus the reward's shift)."""
        return self.trainer.log_z + self.offset

    def log_evidence_is(self, n: int | None = None, seed: int = 0) -> float:
        """log P(D) by importance sampling (a float, as log_evidence): importance_evidence()["log_z"]."""
        return self.importance_evidence(n, seed)["log_z"]

    def importance_evidence(self, n: int | None = None, seed: int = 0) -> dict:
        """log P(D) by importance sampling from the trained sampler with the exact full-data reward:
        log (1/n) Σ R(θ) P_B(τ|θ) / P_F(τ) over n trajectories (consistent whatever the training
        reward's noise; costs n·|D| likelihood terms). Returns {"log_z", "ess" (effective sample
        size of the weights), "n"}."""
        from ..metrics import importance_log_z

        n = self.config.evidence_samples if n is None else n
        with self._pinned_threads():
            out = importance_log_z(self.exact_env, self.policy, n, generator=torch.Generator().manual_seed(seed))
        out["log_z"] += self.offset
        return out

    # -- the posterior -------------------------------------------------------------------------
    def sample(self, m: int) -> torch.Tensor:
        """m θ ~ Q(θ|D) as grid indices [m, n] (int64)."""
        with self._pinned_threads():
            return self.trainer.sample(m).to(torch.int64)

    def sample_theta(self, m: int) -> torch.Tensor:
        """m θ ~ Q(θ|D) as grid values [m, n] (float64)."""
        return self.grid.theta(self.sample(m))

    def distribution(self) -> torch.Tensor:
        """Q(θ|D) of every grid setting exactly (rows in `ParameterGrid.all_indices()` order, as
        `GridPosterior`), by pushing probability through the state graph: (K+1)^n states."""
        from ..metrics import exact_terminal_distribution

        with self._pinned_threads():
            return exact_terminal_distribution(self.env, self.policy)

    def evaluate(self, exact, evidence_samples: int | None = None) -> dict:
        """Against the exact posterior (an GridPosterior): exact L1 of Q(θ|D), and log Z against
        log P(D); with evidence_samples, the importance-sampling estimate too."""
        q = self.distribution()
        out = {"l1": exact.l1(q), "log_z": self.log_evidence, "true_log_z": exact.log_evidence}
        out["log_z_error"] = out["log_z"] - exact.log_evidence
        n = self.config.evidence_samples if evidence_samples is None else evidence_samples
        if n:
            est = self.importance_evidence(n)
            out.update(log_z_is=est["log_z"], log_z_is_error=est["log_z"] - exact.log_evidence, log_z_is_ess=est["ess"])
        return out

    def predictive(self, X: torch.Tensor, y: torch.Tensor, m: int = 4096, n_bins: int = 10) -> dict:
        """Accuracy and calibration of the posterior predictive Q(y|x, D), averaged over m samples
        θ ~ Q(θ|D) (`evaluate_predictive`; needs a built-in model or one with the same methods)."""
        from .predictive import evaluate_predictive

        if self.model is None:
            raise TypeError("the posterior predictive needs the model (build the sampler with from_model)")
        return evaluate_predictive(self.model, self.sample_theta(m), X, y, n_bins=n_bins)

    def summary(self) -> dict:
        return {"config": dataclasses.asdict(self.config), "grid": self.grid.to_config(),
                "n_data": self.data[0].shape[0], "offset": self.offset,
                "reference": None if self.reference is None else self.reference.tolist(),
                "steps": self.trainer.step_count, "train_s": self.train_seconds, "log_z": self.log_evidence}
