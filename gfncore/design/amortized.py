"""An amortized estimator EIĜ(e, D) of the expected information gain: a network trained once on
stochastic targets, then one forward pass per candidate at decision time.

It is the seed's section 1 applied to design (gfncore.amortize): with x = features of (e, D) and a
stochastic target R(x, y) whose expectation over y is EIG(e | D), the regressor trained with the
MSE criterion E[(Ŝ(x) - R)^2] converges to E[R | x] = EIG(e | D). The target of one draw
y ~ P(y | e, D) is the information gain KL(P(G | D, e, y) || P(G | D)) of that draw on the
posterior's support (>= 0, as the regressor's positive output wants; its mean is the EIG).

Training distribution over data sets D: the data sets the active loop can reach from the current
one. A history draws (G*, theta*) from the current posterior, simulates 0..max_rounds random
experiments from it (so the data sets follow the prior predictive of the design loop) and
updates the posterior on the support exactly by their likelihood; every candidate e is an
instance at every history's end, with `draws` information-gain draws each.

Features of (e, D): the posterior's edge marginals P(i -> j | D), log(1 + rows intervened on per
node), log(1 + rows), the experiment (target mask, log n, its value or spread) and two summaries of
the edges it touches (the entropy of the three-way state i -> j / j -> i / none of every pair at a
target, and their probability of an edge). At decision time the same features come from the
GFlowNet's posterior.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from .eig import EIGEstimate, GraphSupport, information_gain_draws
from .experiments import Experiment
from .predictive import NodeStats, ScoreModel, base_log_marginal, sample_parameters, simulate


@dataclass
class AmortizedConfig:
    """Training of the amortized EIG estimator (the regressor is gfncore.amortize's, criterion mse)."""

    histories: int = field(default=128, metadata={"help": "amortized EIG: simulated data sets D to train on"})
    max_rounds: int = field(default=10, metadata={"help": "amortized EIG: most experiments in a simulated history"})
    draws: int = field(default=8, metadata={"help": "amortized EIG: information-gain draws per (D, e) instance"})
    steps: int = field(default=3000, metadata={"help": "amortized EIG: regressor training steps"})
    hidden: int = field(default=128, metadata={"help": "amortized EIG: MLP width"})
    layers: int = field(default=2, metadata={"help": "amortized EIG: MLP hidden layers"})
    batch_size: int = field(default=256, metadata={"help": "amortized EIG: instances per step"})
    lr: float = field(default=3e-3, metadata={"help": "amortized EIG: Adam learning rate (cosine decay)"})

    def __post_init__(self):
        for name in ("histories", "draws", "hidden", "layers", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if self.max_rounds < 0 or self.steps < 0:
            raise ValueError(f"max_rounds and steps must be >= 0, got {self.max_rounds}, {self.steps}")


def pair_entropy(marginals: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each pair's state i -> j, j -> i or no edge, from edge marginals [d, d]: [d, d]
    (symmetric, 0 on the diagonal)."""
    p = marginals.double().clamp(0, 1)
    q = p.T
    none = (1 - p - q).clamp_min(0)

    def h(v):
        return torch.where(v > 0, -v * v.clamp_min(1e-300).log(), torch.zeros_like(v))

    out = h(p) + h(q) + h(none)
    return out * (1 - torch.eye(p.shape[0], dtype=out.dtype))


def design_features(marginals: torch.Tensor, intervened_rows: torch.Tensor, num_rows: int,
                    experiments: Sequence[Experiment]) -> torch.Tensor:
    """Features of (e, D) for every experiment: float32 [C, d (d - 1) + 2 d + 7]."""
    m = torch.as_tensor(marginals, dtype=torch.float64)
    d = m.shape[0]
    off = ~torch.eye(d, dtype=torch.bool)
    H = pair_entropy(m)
    edge = (m + m.T) * off
    shared = torch.cat([m[off], torch.log1p(torch.as_tensor(intervened_rows, dtype=torch.float64)),
                        torch.tensor([math.log1p(num_rows)], dtype=torch.float64)])
    rows = []
    for e in experiments:
        t = e.mask(d).double()
        touch = ((t[:, None] + t[None, :]) > 0).double() * off   # pairs with a target at one end
        rows.append(torch.cat([shared, t, torch.tensor([
            math.log(e.n), e.value if e.value is not None else 0.0, 1.0 if e.value is None else 0.0,
            e.std if e.value is None else 0.0, float((H * touch).sum() / 2), float((edge * touch).sum() / 2)],
            dtype=torch.float64)]))
    return torch.stack(rows).float()


class AmortizedEIG:
    """EIĜ(e, D) over a fixed candidate set: fit on simulated data sets, then `estimate` answers a
    decision with one forward pass of the regressor over all candidates."""

    def __init__(self, d: int, candidates: Sequence[Experiment], config: AmortizedConfig | None = None,
                 seed: int = 0):
        from ..amortize import ExpectationRegressor, RegressorConfig

        self.d = int(d)
        self.candidates = [e.check(self.d) for e in candidates]
        if not self.candidates:
            raise ValueError("no candidate experiments")
        self.config = config or AmortizedConfig()
        c = self.config
        self.x_dim = self.d * (self.d - 1) + 2 * self.d + 7
        self.regressor = ExpectationRegressor(self.x_dim, RegressorConfig(
            criterion="mse", hidden=c.hidden, layers=c.layers, steps=c.steps, batch_size=c.batch_size, y_per_x=1,
            lr=c.lr, seed=seed))
        self.seed = seed
        self.fitted = False
        self.info: dict = {}

    # -- training data -------------------------------------------------------------------------
    def simulate_instances(self, model: ScoreModel, stats: NodeStats, support: GraphSupport,
                           intervened_rows: torch.Tensor, num_rows: int, generator: torch.Generator):
        """(features [I, F], information-gain draws [I, draws], history lengths [H]) over simulated
        histories from the current data set (see the module docstring)."""
        c, d = self.config, self.d
        base0 = base_log_marginal(model, support.families, stats)
        xs, ys, lengths = [], [], []
        for _ in range(c.histories):
            t = int(torch.randint(0, c.max_rounds + 1, (1,), generator=generator))
            lengths.append(t)
            st, sup, base = stats, support, base0
            counts = torch.as_tensor(intervened_rows, dtype=torch.float64).clone()
            rows = num_rows
            if t:
                g = support.graphs[support.sample(1, generator)]
                w, b, s = sample_parameters(model, stats, g, generator)
                ys_hist, ms = [], []
                for _ in range(t):
                    e = self.candidates[int(torch.randint(0, len(self.candidates), (1,), generator=generator))]
                    mask = e.mask(d)
                    ys_hist.append(simulate(w, b, s, e.n, mask, e.value, e.std, generator)[0])
                    ms.append(mask.expand(e.n, d))
                    counts += mask.double() * e.n
                    rows += e.n
                st = stats.add(torch.cat(ys_hist), torch.cat(ms))
                base = base_log_marginal(model, support.families, st)
                sup = support.reweighted(support.log_likelihood((base - base0)[None])[0])
            x = design_features(sup.edge_marginals(), counts, rows, self.candidates)
            xs.append(x)
            for e in self.candidates:
                kl, _ = information_gain_draws(model, st, sup, e, c.draws, generator, base)
                ys.append(kl)
        return torch.cat(xs), torch.stack(ys), lengths

    def fit(self, model: ScoreModel, stats: NodeStats, support: GraphSupport, intervened_rows, num_rows: int,
            generator: torch.Generator | None = None, progress: bool = False) -> dict:
        """Simulate the training set from the current posterior (support) and data (stats), then
        train the regressor. Returns what it cost (seconds, instances, draws)."""
        gen = generator if generator is not None else torch.Generator().manual_seed(self.seed)
        t0 = time.perf_counter()
        x, draws, lengths = self.simulate_instances(model, stats, support, intervened_rows, num_rows, gen)
        t1 = time.perf_counter()
        self.train(x, draws, gen, progress=progress)
        t2 = time.perf_counter()
        self.info = {"instances": int(x.shape[0]), "draws_per_instance": int(draws.shape[1]),
                     "histories": len(lengths), "simulate_seconds": t1 - t0, "train_seconds": t2 - t1,
                     "steps": self.config.steps, "final_loss": self.info.get("final_loss")}
        return self.info

    def train(self, x: torch.Tensor, draws: torch.Tensor, generator: torch.Generator, progress: bool = False) -> None:
        """Regression of log EIĜ(x) on single information-gain draws with the MSE criterion (a fresh
        draw of the instance's pool each time a row is picked)."""
        from ..train.regression import fit_regression

        reg, c = self.regressor, self.config
        x = x.float()
        I, K = draws.shape
        log_r = draws.double().log()          # 0 gain -> -inf, which the mse criterion takes (R = 0)
        with torch.no_grad():
            if not bool(reg.initialised):
                reg.x_mean.copy_(x.mean(0))
                reg.x_std.copy_(x.std(0).nan_to_num(1.0).clamp(min=1e-3) if I > 1 else torch.ones(x.shape[1]))
                scale = float(torch.logsumexp(log_r.flatten(), 0) - math.log(log_r.numel()))
                if not math.isfinite(scale):
                    raise ValueError("every simulated information gain is 0: the posterior is already certain")
                reg.log_scale.fill_(scale)
                reg.net[-1].bias.fill_(scale)
                reg.initialised.fill_(True)
        def step_loss(i: int) -> torch.Tensor:
            rows = torch.randint(0, I, (c.batch_size,), generator=generator)
            pick = torch.randint(0, K, (c.batch_size,), generator=generator)
            return reg.loss(reg(x[rows]), log_r[rows, pick])

        running = fit_regression(reg.parameters(), step_loss, c.steps, c.lr, 0.01, progress=progress,
                                 desc="amortized EIG", ema=(0.98, 0.02))
        self.info["final_loss"] = running
        self.fitted = True

    # -- decisions -----------------------------------------------------------------------------
    def predict(self, marginals: torch.Tensor, intervened_rows, num_rows: int,
                experiments: Sequence[Experiment] | None = None) -> torch.Tensor:
        """EIĜ (nats) of each experiment (the candidates by default): float64 [C], one forward pass."""
        if not self.fitted:
            raise RuntimeError("AmortizedEIG.predict before fit")
        x = design_features(marginals, intervened_rows, num_rows, self.candidates if experiments is None else experiments)
        return self.regressor.log_expectation(x, check=False).exp()

    def estimate(self, marginals: torch.Tensor, intervened_rows, num_rows: int,
                 experiments: Sequence[Experiment] | None = None) -> EIGEstimate:
        t0 = time.perf_counter()
        v = self.predict(marginals, intervened_rows, num_rows, experiments)
        return EIGEstimate(v, torch.full_like(v, math.nan), "amortized", 0, None, time.perf_counter() - t0)
