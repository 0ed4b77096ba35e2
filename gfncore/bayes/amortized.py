"""A posterior sampler amortized over data sets: a conditional GFlowNet whose context is the data set
D itself, seen through a permutation-invariant set encoder, so that for a new D it returns Q(θ|D)
and log Z(D) ≈ log P(D) with no retraining (the seed's point about generalizable structure).

    amortized = AmortizedPosterior(LinearRegression(ParameterGrid.linspace(-1, 1, 5, 4), noise_std=2.0),
                                   AmortizedConfig(set_size=32))
    amortized.fit()                               # on data sets drawn from the model's prior predictive
    amortized.log_evidence(X_new, y_new)          # one forward: log Z(D_new)
    amortized.sample(X_new, y_new, 1000)          # θ ~ Q(θ | D_new)
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from ..envs.assignment import Assignment
from .models import ParameterGrid


class DatasetPosteriorEnv(Assignment):
    """The posterior over a parameter grid as a conditional environment: objects are the grid
    settings θ (built one coordinate at a time, in any order), the context is a data set of
    `set_size` examples (x [d], y) packed row by row into [set_size * (d + 1)] numbers, and
    log R(θ | D) = log P(θ) + Σ_{(x, y) ∈ D} log P(y | x, θ)."""

    def __init__(self, model, set_size: int):
        grid = getattr(model, "grid", None)
        if not isinstance(grid, ParameterGrid):
            raise TypeError(f"model must have a ParameterGrid as .grid, got {type(grid).__name__}")
        for name in ("log_prior", "log_likelihood"):
            if not callable(getattr(model, name, None)):
                raise TypeError(f"model must define {name}")
        if isinstance(set_size, bool) or not isinstance(set_size, int) or set_size < 1:
            raise ValueError(f"set_size must be an int >= 1, got {set_size!r}")
        super().__init__(grid.n, grid.K)
        self.model, self.grid, self.set_size = model, grid, set_size
        self.x_dim = grid.n  # the built-in models have one weight per feature
        self.element_dim = self.x_dim + 1
        self.context_dim = set_size * self.element_dim

    def pack(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One data set (X [set_size, d], y [set_size]) as a context row [1, C], in float32 (what a
        sampler hands the policy and the reward)."""
        if not isinstance(X, torch.Tensor) or tuple(X.shape) != (self.set_size, self.x_dim):
            raise ValueError(f"X must have shape [{self.set_size}, {self.x_dim}] (set_size examples), got "
                             f"{tuple(getattr(X, 'shape', ()))}")
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != (self.set_size,):
            raise ValueError(f"y must have shape [{self.set_size}], got {tuple(getattr(y, 'shape', ()))}")
        c = torch.cat([X.to(torch.float64), y.to(torch.float64)[:, None]], 1).reshape(1, -1).float()
        if not bool(torch.isfinite(c).all()):
            raise ValueError("the data set holds NaN or inf (or values beyond float32)")
        return c

    def unpack(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Context rows [B, C] -> (X [B, set_size, d], y [B, set_size]), float64."""
        e = context.to(torch.float64).reshape(context.shape[0], self.set_size, self.element_dim)
        return e[..., :-1], e[..., -1]

    def log_reward(self, x, context=None):
        s = self._states(x, "x")
        c = self._context(context, s.shape[0])
        theta = self.grid.theta(s.to(torch.int64))
        out = torch.empty(s.shape[0], dtype=torch.float64)
        if s.shape[0]:
            # rows share data sets (several trajectories per context): one likelihood call per data set
            uniq, inv = torch.unique(c, dim=0, return_inverse=True)
            X, y = self.unpack(uniq)
            for u in range(uniq.shape[0]):
                rows = (inv == u).nonzero().squeeze(1)
                t = theta[rows]
                out[rows] = (self.model.log_prior(t) + self.model.log_likelihood(t, (X[u], y[u])).sum(1)).to(
                    torch.float64)
        return self._check_log_reward(out, s, f"{self.name}: log P(θ) + log P(D|θ)")

    def config(self) -> dict:
        raise NotImplementedError("DatasetPosteriorEnv holds a model object: rebuild it with the model")


def prior_datasets(model, set_size: int, feature_std: float = 1.0, with_theta: bool = False):
    """A context sampler (n, generator) -> [n, C]: n data sets from the model's prior predictive,
    θ ~ P(θ) on the grid, x ~ N(0, feature_std²) per feature, y ~ P(y | x, θ); packed as
    `DatasetPosteriorEnv.pack` does. with_theta: (contexts, the generating θ's grid indices [n, p])."""
    if not (math.isfinite(feature_std) and feature_std > 0):
        raise ValueError(f"feature_std must be a finite float > 0, got {feature_std!r}")
    grid = model.grid

    def sample(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        idx = model.prior.sample_index(n, generator)
        X = feature_std * torch.randn(n, set_size, grid.n, generator=generator, dtype=torch.float64)
        y = torch.stack([model.sample_y(grid.values[idx[i]], X[i], generator) for i in range(n)])
        c = torch.cat([X, y[..., None]], -1).reshape(n, -1).float()
        return (c, idx) if with_theta else c

    return sample


@dataclass
class AmortizedConfig:
    """Settings of a posterior sampler amortized over data sets."""

    set_size: int = field(default=32, metadata={"help": "examples per data set (the context)"})
    feature_std: float = field(default=1.0, metadata={"help": "std of the features of the training data sets"})
    steps: int = field(default=3000, metadata={"help": "training steps"})
    batch_size: int = field(default=128, metadata={"help": "trajectories per step"})
    trajectories_per_dataset: int = field(default=8, metadata={"help": "trajectories per data set in a step"})
    hidden: int = field(default=128, metadata={"help": "policy MLP width"})
    layers: int = field(default=2, metadata={"help": "policy MLP hidden layers"})
    encoder_hidden: int = field(default=64, metadata={"help": "set encoder width"})
    encoder_dim: int = field(default=64, metadata={"help": "data-set embedding width"})
    encoder: str = field(default="deepsets", metadata={
        "help": "set encoder: deepsets (pooled MLP and moments) or attention (self-attention, attention pooling)"})
    conditioning: str = field(default="concat", metadata={"help": "concat or film"})
    epsilon: float = field(default=0.05, metadata={
        "help": "behaviour policy mixes in this share of uniform actions, so that posteriors far from the "
                "ones the sampler already proposes get visited"})
    true_theta_fraction: float = field(default=0.0, metadata={
        "help": "share of each batch replayed backward from the θ* that generated recent training data sets "
                "(exact posterior samples; gfncore.bayes.simulated)"})
    loss: str = field(default="tb", metadata={
        "help": "objective: tb, or zvar (the variance of ζ within each data set for the policy, and the log Z(D) "
                "head regressed on each data set's mean ζ)"})
    lr: float = field(default=3e-3, metadata={"help": "Adam learning rate (cosine-decayed)"})
    lr_log_z: float = field(default=1e-2, metadata={"help": "Adam learning rate of the log Z(D) head"})
    lr_final: float = field(default=0.02, metadata={"help": "final learning rate as a fraction of the first"})
    seed: int = field(default=0, metadata={"help": "seed"})


class AmortizedPosterior:
    """Q(θ | D) and log Z(D) ≈ log P(D) for any data set D of `set_size` examples, from one
    conditional GFlowNet trained on data sets drawn from the model's prior predictive."""

    def __init__(self, model, config: AmortizedConfig | None = None):
        from ..nn import MLPPolicy, SetAttentionEncoder, SetEncoder
        from ..train import Trainer, initialise_log_z

        cfg = config if config is not None else AmortizedConfig()
        self.config, self.model = cfg, model
        self.env = DatasetPosteriorEnv(model, cfg.set_size)
        torch.manual_seed(cfg.seed)
        if cfg.encoder not in ("deepsets", "attention"):
            raise ValueError(f"encoder must be 'deepsets' or 'attention', got {cfg.encoder!r}")
        enc = (SetEncoder if cfg.encoder == "deepsets" else SetAttentionEncoder)(
            self.env.element_dim, cfg.set_size, hidden=cfg.encoder_hidden, out_dim=cfg.encoder_dim)
        self.policy = MLPPolicy(self.env, hidden=cfg.hidden, layers=cfg.layers, conditioning=cfg.conditioning,
                                context_encoder=enc)
        replay = None
        if cfg.true_theta_fraction:
            from .simulated import TrueParameterReplay, simulated_datasets

            k = round(cfg.batch_size * cfg.true_theta_fraction)
            if not 0 < k < cfg.batch_size or (cfg.batch_size - k) % cfg.trajectories_per_dataset:
                raise ValueError(f"true_theta_fraction x batch_size ({k}) must be in (0, batch_size) and leave a "
                                 f"multiple of trajectories_per_dataset ({cfg.trajectories_per_dataset}) for fresh "
                                 f"data sets")
            replay = TrueParameterReplay(self.env, capacity=2 * k)
            self.datasets = simulated_datasets(prior_datasets(model, cfg.set_size, cfg.feature_std, with_theta=True),
                                               replay)
        else:
            self.datasets = prior_datasets(model, cfg.set_size, cfg.feature_std)
        self.trainer = Trainer(self.env, self.policy, loss=cfg.loss, batch_size=cfg.batch_size, lr=cfg.lr,
                               loss_options={"head": True} if cfg.loss == "zvar" else None,
                               lr_log_z=cfg.lr_log_z, seed=cfg.seed, context_sampler=self.datasets,
                               trajectories_per_context=cfg.trajectories_per_dataset, epsilon=cfg.epsilon,
                               replay=replay, replay_fraction=cfg.true_theta_fraction or 0.5)
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        initialise_log_z(self.env, self.policy, self.datasets(8, gen), n=64, generator=gen)
        self._schedule = None

    def fit(self, steps: int | None = None, progress: bool = True, validation: list | None = None,
            eval_every: int = 0) -> list[dict]:
        """Train on fresh data sets every step; with `validation` (a list of (X, y) data sets) also
        record the mean exact L1 and |log Z error| on them every eval_every steps."""
        from ..train import Evaluate, LRSchedule

        cfg = self.config
        steps = cfg.steps if steps is None else int(steps)
        if self._schedule is None:  # planned over the first fit's steps; later fits continue it
            self._schedule = LRSchedule.cosine(cfg.lr_final, steps)
        history: list[dict] = []

        def validate(trainer) -> dict:
            rows = self.evaluate(validation, is_samples=0)
            return {"l1": sum(r["l1"] for r in rows) / len(rows),
                    "log_z_error": sum(r["log_z_error"] for r in rows) / len(rows)}

        hooks = [self._schedule]
        if validation and eval_every:
            hooks.append(Evaluate(eval_every, validate, history, show=("l1", "log_z_error"),
                                  extra=lambda t, rec: {"step": t.step_count, "train_s": t.train_seconds}))
        self.trainer.fit(steps, progress=progress, hooks=hooks, desc="amortized posterior")
        return history

    def context(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.env.pack(X, y)

    def log_evidence(self, X: torch.Tensor, y: torch.Tensor) -> float:
        """log Z(D), the amortized estimate of log P(D): one forward of the set encoder and head."""
        with torch.no_grad():
            return float(self.policy.log_z_of(self.context(X, y))[0])

    def log_evidence_is(self, X: torch.Tensor, y: torch.Tensor, n: int = 1024, seed: int = 0) -> float:
        """log P(D) by importance sampling (a float, as log_evidence): importance_evidence()["log_z"]."""
        return self.importance_evidence(X, y, n, seed)["log_z"]

    def importance_evidence(self, X: torch.Tensor, y: torch.Tensor, n: int = 1024, seed: int = 0) -> dict:
        """log P(D) by importance sampling from the amortized sampler at D (no training):
        {"log_z", "ess" (effective sample size of the weights), "n"}."""
        from ..metrics import importance_log_z

        return importance_log_z(self.env, self.policy, n, context=self.context(X, y),
                                generator=torch.Generator().manual_seed(seed))

    def sample(self, X: torch.Tensor, y: torch.Tensor, m: int) -> torch.Tensor:
        """m θ ~ Q(θ | D) as grid indices [m, n]."""
        return self.trainer.sample(m, context=self.context(X, y)[0]).to(torch.int64)

    def distribution(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Q(θ | D) of every grid setting exactly (ParameterGrid.all_indices() order)."""
        from ..metrics import exact_terminal_distribution

        return exact_terminal_distribution(self.env, self.policy, context=self.context(X, y))

    def evaluate(self, datasets: list, is_samples: int = 1024) -> list[dict]:
        """For each (X, y): exact L1 of Q(θ|D), log Z(D) (head, and importance sampling with
        is_samples trajectories) against log P(D) by enumeration."""
        from .exact import grid_posterior

        rows = []
        for X, y in datasets:
            c = self.context(X, y)
            X32, y32 = self.env.unpack(c)  # the float32-rounded data the sampler sees
            post = grid_posterior(self.model.log_prior, self.model.log_likelihood, self.model.grid, (X32[0], y32[0]))
            q = self.distribution(X, y)
            r = {"l1": post.l1(q), "log_z": self.log_evidence(X, y), "true_log_z": post.log_evidence,
                 "perplexity": math.exp(-float((post.probs * post.log_probs).sum()))}
            r["log_z_error"] = abs(r["log_z"] - r["true_log_z"])
            if is_samples:
                est = self.importance_evidence(X, y, is_samples)
                r["log_z_is"], r["log_z_is_error"] = est["log_z"], abs(est["log_z"] - r["true_log_z"])
            rows.append(r)
        return rows

    def summary(self) -> dict:
        return {"config": dataclasses.asdict(self.config), "steps": self.trainer.step_count,
                "train_s": self.trainer.train_seconds}


def held_out_datasets(model, set_size: int, n: int, feature_std: float = 1.0, seed: int = 12345) -> list:
    """n data sets (X, y) from the model's prior predictive, from a generator seeded apart from
    training's."""
    g = torch.Generator().manual_seed(seed)
    packed = prior_datasets(model, set_size, feature_std)(n, g).double()
    e = packed.reshape(n, set_size, model.grid.n + 1)
    return [(e[i, :, :-1], e[i, :, -1]) for i in range(n)]
