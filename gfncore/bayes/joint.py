"""The joint predictive posterior Q(Y, θ | X): one conditional GFlowNet whose trajectories first emit
the outcomes y_1..y_n of the inputs X = (x_1..x_n), one example at a time, each conditioned on the
examples so far, and then build θ on the any-order parameter grid. Its reward is the joint
R(X; Y, θ) = P(θ) ∏_i P(y_i | x_i, θ), so the y-steps learn the posterior predictive
P(y_i | x_i, y_1..y_{i-1}, x_1..x_{i-1}) and the θ-steps the posterior P(θ | X, Y): a prediction for a
new experiment x given past results D is one forward pass of the y-step, no θ sampled.

    jp = JointPredictive(LogisticRegression(ParameterGrid.linspace(-1, 1, 3, 2)), JointConfig(set_size=6))
    jp.fit()                                      # inputs X drawn fresh every step; Y and θ from the policy
    jp.predict(x_new, X, Y)                       # Q(y | x_new, D) over the outcome grid [M, K_y]
    jp.sample_outcomes(X, 100)                    # Y ~ Q(Y | X)
    jp.theta_distribution(X, Y)                   # Q(θ | X, Y) of every grid setting, exactly

Outcomes live on a declared grid (`OutcomeGrid`): {0, 1} for logistic regression, and for a
linear-Gaussian model the bins of a grid of y values (the Gaussian's mass on each bin, truncated to
the grid's range and renormalised), so Σ_{Y, θ} R = Σ_θ P(θ) = 1 and log Z(X) = 0 for every X: the
policy's log Z is that known constant unless `learn_log_z` is set. Everything is exact by
enumeration on small grids: `exact_predictive`, `exact_theta_posterior`, `exact_eig`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..envs.python_env import PythonEnv
from .models import ParameterGrid

F = torch.nn.functional


class OutcomeGrid:
    """The outcome space of a model as K_y grid values, and log P(y = g_k | x, θ) on it.

    A classification model (`task == "classification"`, y ∈ {0, 1}) keeps its own likelihood. A
    regression model with Gaussian noise (`predictive_mean`, `noise_std`) is discretised: value k
    stands for the bin between the midpoints to its neighbours (half a spacing beyond each end), and
    P(y = g_k | x, θ) is the Gaussian's mass on that bin over its mass on the whole covered range, so
    the outcome probabilities sum to 1 for every (x, θ) and a continuous y maps to its bin."""

    def __init__(self, model, values=None):
        task = getattr(model, "task", None)
        if task == "classification":
            if values is not None and [float(v) for v in torch.as_tensor(values).flatten()] != [0.0, 1.0]:
                raise ValueError(f"a classification model's outcomes are 0 and 1; got y_grid = {values!r}")
            self.values, self.edges = torch.tensor([0.0, 1.0], dtype=torch.float64), None
        elif task == "regression":
            if values is None:
                raise ValueError("a regression model needs a declared outcome grid (y_grid = the values y may take)")
            v = torch.as_tensor(values, dtype=torch.float64).flatten()
            if v.numel() < 2 or not bool(torch.isfinite(v).all()) or not bool((v[1:] > v[:-1]).all()):
                raise ValueError(f"y_grid must hold at least 2 finite, strictly increasing values, got {v.tolist()}")
            mid = 0.5 * (v[1:] + v[:-1])
            self.values = v
            self.edges = torch.cat([v[:1] - (mid[0] - v[0]), mid, v[-1:] + (v[-1] - mid[-1])])
            if not (math.isfinite(getattr(model, "noise_std", math.nan)) and callable(getattr(model, "predictive_mean",
                                                                                                  None))):
                raise TypeError("a regression model needs predictive_mean(theta, X) and a finite noise_std")
        else:
            raise TypeError(f"the model must say its task ('classification' or 'regression'), got {task!r}")
        self.model, self.task = model, task

    @property
    def K(self) -> int:
        return self.values.numel()

    def index(self, y) -> torch.Tensor:
        """Grid indices (int64) of outcome values: 0/1 exactly for classification, the bin of each
        value for regression; a value off the grid raises ValueError naming it."""
        y = torch.as_tensor(y, dtype=torch.float64)
        if not bool(torch.isfinite(y).all()):
            raise ValueError("outcomes must be finite")
        if self.edges is None:
            bad = (y != 0) & (y != 1)
            if bool(bad.any()):
                raise ValueError(f"outcome {float(y[bad][0])} is outside the outcome grid [0, 1] (y must be 0 or 1)")
            return y.to(torch.int64)
        lo, hi = float(self.edges[0]), float(self.edges[-1])
        bad = (y < lo) | (y > hi)
        if bool(bad.any()):
            raise ValueError(f"outcome {float(y[bad][0])} is outside the declared outcome grid's range "
                             f"[{lo:.4g}, {hi:.4g}]")
        return (torch.bucketize(y, self.edges[1:-1], right=False)).clamp(0, self.K - 1)

    def log_probs(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """log P(y = g_k | x, θ) [B, m, K_y] for θ [B, p] and X [B, m, d] (float64)."""
        z = torch.einsum("bmd,bd->bm", X.to(torch.float64), theta.to(torch.float64))
        if self.edges is None:  # log σ(−z), log σ(z)
            return torch.stack([-F.softplus(z), z - F.softplus(z)], -1)
        s = self.model.noise_std
        e = (self.edges[None, None, :] - z[..., None]) / s  # [B, m, K+1]
        # mass of [a, b] as Φ(b) − Φ(a) or, above the mean, Φ(−a) − Φ(−b): no cancellation in either tail
        a, b = e[..., :-1], e[..., 1:]
        upper = (a + b) > 0
        hi = torch.where(upper, -a, b)
        lo = torch.where(upper, -b, a)
        lhi, llo = torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)
        log_bin = lhi + torch.log1p(-torch.exp((llo - lhi).clamp(max=0.0))).clamp(min=-745.0)
        return log_bin - torch.logsumexp(log_bin, -1, keepdim=True)

    def sample(self, theta: torch.Tensor, X: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Outcome indices [B, m] ~ P(y | x, θ)."""
        p = self.log_probs(theta, X).exp()
        return torch.multinomial(p.reshape(-1, self.K), 1, generator=generator).reshape(p.shape[:2])


class JointPredictiveEnv(PythonEnv):
    """States [y_1..y_n, θ_1..θ_p]: outcome indices (−1 unset) emitted in example order, then the
    parameter grid indices (−1 unset) set in any order. Actions: k < K_y sets the next outcome to g_k;
    K_y + i·K + v sets θ_i to grid value v (once every outcome is set); the last action stops once θ
    is complete. The context is the inputs X [n·d] (row by row); log R = log P(θ) +
    Σ_i log P(y_i | x_i, θ), or with `minibatch = b` the unbiased estimate
    log P(θ) + (n / b) Σ_{i ∈ batch} log P(y_i | x_i, θ) over b examples drawn per call."""

    def __init__(self, model, outcomes: OutcomeGrid, set_size: int, minibatch: int = 0,
                 generator: torch.Generator | None = None):
        grid = getattr(model, "grid", None)
        if not isinstance(grid, ParameterGrid):
            raise TypeError(f"model must have a ParameterGrid as .grid, got {type(grid).__name__}")
        if isinstance(set_size, bool) or not isinstance(set_size, int) or set_size < 1:
            raise ValueError(f"set_size must be an int >= 1, got {set_size!r}")
        if isinstance(minibatch, bool) or not isinstance(minibatch, int) or not 0 <= minibatch <= set_size:
            raise ValueError(f"minibatch must be an int in [0, set_size = {set_size}] (0: every example), got "
                             f"{minibatch!r}")
        self.model, self.grid, self.outcomes = model, grid, outcomes
        self.n, self.p, self.K, self.Ky = set_size, grid.n, grid.K, outcomes.K
        self.x_dim = grid.n  # the built-in models have one weight per feature
        self.minibatch = minibatch
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        super().__init__(self.n + self.p, self.Ky + self.p * self.K + 1, feature_dim=self.n + self.p,
                         context_dim=self.n * self.x_dim, max_length=self.n + self.p + 1,
                         max_parents=max(self.p, 1), name="JointPredictiveEnv")

    def initial_state(self):
        return torch.full((self.n + self.p,), -1, dtype=torch.int32)

    def _split(self, s):
        return s[:, :self.n], s[:, self.n:]

    def forward_mask(self, states):
        y, th = self._split(states)
        y_phase = (y < 0).any(1, keepdim=True)
        m = torch.zeros(states.shape[0], self.n_actions, dtype=torch.bool)
        m[:, :self.Ky] = y_phase
        m[:, self.Ky:-1] = ((th < 0) & ~y_phase).repeat_interleave(self.K, 1)
        m[:, -1] = ~y_phase[:, 0] & (th >= 0).all(1)
        return m

    def step(self, states, actions):
        s = states.clone()
        a = actions.to(torch.int64)
        rows = torch.arange(s.shape[0])
        is_y = a < self.Ky
        pos = (s[:, :self.n] >= 0).sum(1)
        r = rows[is_y]
        s[r, pos[is_y]] = a[is_y].to(s.dtype)
        r, t = rows[~is_y], a[~is_y] - self.Ky
        s[r, self.n + t // self.K] = (t % self.K).to(s.dtype)
        return s

    def backward_mask(self, states):
        y, th = self._split(states)
        m = torch.zeros(states.shape[0], self.n_actions - 1, dtype=torch.bool)
        set_th = th >= 0
        any_th = set_th.any(1)
        r, i = set_th.nonzero(as_tuple=True)
        m[r, self.Ky + i * self.K + th[r, i].long()] = True
        pos = (y >= 0).sum(1)
        last = (~any_th & (pos > 0)).nonzero(as_tuple=True)[0]
        m[last, y[last, pos[last] - 1].long()] = True
        return m

    def backward_step(self, states, actions):
        s = states.clone()
        a = actions.to(torch.int64)
        rows = torch.arange(s.shape[0])
        is_y = a < self.Ky
        pos = (s[:, :self.n] >= 0).sum(1)
        r = rows[is_y]
        s[r, (pos[is_y] - 1).clamp(min=0)] = -1
        r, t = rows[~is_y], a[~is_y] - self.Ky
        s[r, self.n + t // self.K] = -1
        return s

    def encode(self, states):
        return states.to(torch.float32)

    def unpack(self, context: torch.Tensor) -> torch.Tensor:
        """Context rows [B, n·d] -> X [B, n, d] (float64)."""
        return context.to(torch.float64).reshape(context.shape[0], self.n, self.x_dim)

    def log_joint(self, theta_index: torch.Tensor, X: torch.Tensor, y_index: torch.Tensor,
                  examples: torch.Tensor | None = None) -> torch.Tensor:
        """log P(θ) + scale · Σ_{i ∈ examples} log P(y_i | x_i, θ) [B] for grid indices [B, p], X [B, n, d],
        outcome indices [B, n] (examples: a subset of positions, scaled up by n / |examples|)."""
        theta = self.grid.theta(theta_index.to(torch.int64))
        scale = 1.0
        if examples is not None:
            X, y_index, scale = X[:, examples], y_index[:, examples], self.n / examples.numel()
        lp = self.outcomes.log_probs(theta, X).gather(2, y_index.to(torch.int64)[..., None]).squeeze(2)
        return self.model.log_prior(theta).to(torch.float64) + scale * lp.sum(1)

    def log_reward(self, x, context=None):
        s = self._states(x, "x")
        c = self._context(context, s.shape[0])
        examples = None
        if 0 < self.minibatch < self.n:
            examples = torch.randperm(self.n, generator=self.generator)[:self.minibatch]
        out = self.log_joint(s[:, self.n:], self.unpack(c), s[:, :self.n], examples)
        return self._check_log_reward(out, s, f"{self.name}: log P(θ) + log P(Y|X, θ)")

    def config(self) -> dict:
        raise NotImplementedError("JointPredictiveEnv holds a model object: rebuild it with the model")


class JointPolicy(nn.Module):
    """The forward policy of `JointPredictiveEnv`: at every state it reads the examples whose outcome
    is set, {(x_j, y_j)}, through a masked DeepSets encoder (an MLP φ summed over them, plus their
    first and second moments, both divided by n, so the count is visible too), the next input
    x_{m+1} while outcomes are being emitted, and θ's partial assignment (one-hot). Examples whose
    outcome is not yet set are invisible, so a prediction after m examples does not depend on the
    padding of the inputs beyond x_{m+1}.

    log Z(X) = 0 exactly for a normalised outcome likelihood; `learn_log_z` trains a head instead
    (for a reward that is not normalised)."""

    def __init__(self, env: JointPredictiveEnv, hidden: int = 128, layers: int = 3, encoder_hidden: int = 64,
                 learn_log_z: bool = False):
        super().__init__()
        from ..nn import mlp

        self.env_shape = (env.n, env.p, env.K, env.Ky, env.x_dim)
        n, p, K, Ky, d = self.env_shape
        self.context_dim, self.pb, self.has_flow, self.conditioning = env.context_dim, "uniform", False, "set"
        v = env.outcomes.values
        scale = v.std() if v.numel() > 1 else torch.tensor(1.0)
        self.register_buffer("y_values", ((v - v.mean()) / scale).float())
        e = d + 1
        self.register_buffer("_pairs", torch.triu_indices(e, e), persistent=False)
        self.phi = mlp(e, encoder_hidden, 2, encoder_hidden)
        self.register_buffer("_key", torch.randn(n * d, generator=torch.Generator().manual_seed(0),
                                                 dtype=torch.float64), persistent=False)
        n_in = encoder_hidden + e + self._pairs.shape[1] + 1 + d + 1 + p * (K + 1)
        self.net = mlp(n_in, hidden, layers, env.n_actions)
        self.learn_log_z = bool(learn_log_z)
        self.log_z = nn.Parameter(torch.zeros(()))
        self.log_z_net = mlp(encoder_hidden + e + self._pairs.shape[1] + 1, 64, 2, 1) if learn_log_z else None

    def _summary(self, yidx: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """[pooled φ, moments, count / n] of the examples whose outcome is set."""
        n = self.env_shape[0]
        mask = (yidx >= 0).to(X.dtype)[..., None]
        yc = yidx.clamp(min=0)
        yv = self.y_values.to(X.dtype)[yc]
        el = torch.cat([X, yv[..., None]], -1)
        a, b = self._pairs
        # The rows of one trajectory share its inputs X: where that saves work, φ is evaluated once
        # per distinct X and outcome value (U·n·K_y elements, X keyed by a random projection) and
        # gathered, instead of once per row and example (T·n).
        Ky = self.y_values.numel()
        key = X.reshape(X.shape[0], -1).double() @ self._key.to(X.device)
        uniq, first, inv = _unique_rows(key)
        if uniq * Ky < X.shape[0]:
            Xu = X[first]
            grid = torch.cat([Xu[:, :, None, :].expand(-1, -1, Ky, -1),
                              self.y_values.to(X.dtype)[None, None, :, None].expand(uniq, n, -1, 1)], -1)
            phi = self.phi(grid)[inv[:, None], torch.arange(n, device=X.device)[None, :], yc]  # [T, n, H]
        else:
            phi = self.phi(el)
        pooled = (phi * mask).sum(1) / n
        mom = (el * mask).sum(1) / n
        prod = (el[..., a] * el[..., b] * mask).sum(1) / n
        return torch.cat([pooled, mom, prod, mask.sum(1) / n], -1)

    def forward_logits(self, features: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        n, p, K, Ky, d = self.env_shape
        if context is None or context.shape != (features.shape[0], self.context_dim):
            raise ValueError(f"context must have shape [{features.shape[0]}, {self.context_dim}] (the inputs X), got "
                             f"{None if context is None else list(context.shape)}")
        dtype = self.phi[0].weight.dtype
        s = features.to(torch.int64)
        yidx, th = s[:, :n], s[:, n:]
        X = context.to(dtype).reshape(-1, n, d)
        m = (yidx >= 0).sum(1)
        rows = torch.arange(s.shape[0], device=s.device)
        query = X[rows, m.clamp(max=n - 1)] * (m < n).to(dtype)[:, None]
        phase = (m == n).to(dtype)[:, None]
        onehot = F.one_hot(th + 1, K + 1).to(dtype).flatten(1)
        return self.net(torch.cat([self._summary(yidx, X), query, phase, onehot], -1))

    def forward(self, features: torch.Tensor, context: torch.Tensor | None = None):
        from ..nn import PolicyOutput

        return PolicyOutput(self.forward_logits(features, context))

    def log_z_of(self, context: torch.Tensor) -> torch.Tensor:
        if self.log_z_net is None:
            return torch.zeros(context.shape[0], dtype=self.log_z.dtype, device=context.device)
        n, _, _, _, d = self.env_shape
        X = context.to(self.phi[0].weight.dtype).reshape(-1, n, d)
        full = torch.zeros(X.shape[0], n, dtype=torch.int64, device=X.device)  # outcomes unseen: only X matters
        return self.log_z_net(self._summary(full - 1, X)).squeeze(-1)

    def log_z_parameters(self) -> list[nn.Parameter]:
        return list(self.log_z_net.parameters()) if self.log_z_net is not None else [self.log_z]

    def network_parameters(self) -> list[nn.Parameter]:
        z = {id(q) for q in self.log_z_parameters()} | {id(self.log_z)}
        return [q for q in self.parameters() if id(q) not in z]


def input_sampler(n_set: int, d: int, feature_std: float = 1.0):
    """A context sampler (n, generator) -> [n, n_set·d]: inputs x ~ N(0, feature_std²) per feature."""
    if not (math.isfinite(feature_std) and feature_std > 0):
        raise ValueError(f"feature_std must be a finite float > 0, got {feature_std!r}")

    def sample(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return (feature_std * torch.randn(n, n_set * d, generator=generator, dtype=torch.float64)).float()

    return sample


@dataclass
class JointConfig:
    """Settings of a joint predictive posterior Q(Y, θ | X)."""

    set_size: int = field(default=6, metadata={"help": "examples per data set (outcomes emitted per trajectory)"})
    y_grid: tuple = field(default=(), metadata={"help": "outcome grid of a regression model (values y may take)"})
    feature_std: float = field(default=1.0, metadata={"help": "std of the inputs x of the training data sets"})
    steps: int = field(default=1500, metadata={"help": "training steps"})
    batch_size: int = field(default=64, metadata={"help": "trajectories per step (each with its own inputs X)"})
    minibatch: int = field(default=0, metadata={"help": "examples per reward estimate (0: every example)"})
    hidden: int = field(default=128, metadata={"help": "policy MLP width"})
    layers: int = field(default=3, metadata={"help": "policy MLP hidden layers"})
    encoder_hidden: int = field(default=64, metadata={"help": "set encoder width"})
    epsilon: float = field(default=0.0, metadata={"help": "share of uniform actions in the behaviour policy"})
    lr: float = field(default=3e-3, metadata={"help": "Adam learning rate (cosine-decayed)"})
    lr_final: float = field(default=0.02, metadata={"help": "final learning rate as a fraction of the first"})
    learn_log_z: bool = field(default=False, metadata={"help": "learn log Z(X) instead of using log Z = 0"})
    seed: int = field(default=0, metadata={"help": "seed"})

    def __post_init__(self):
        for name in ("set_size", "steps", "batch_size", "hidden", "layers", "encoder_hidden"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if isinstance(self.minibatch, bool) or not isinstance(self.minibatch, int) or self.minibatch < 0:
            raise ValueError(f"minibatch must be an int >= 0, got {self.minibatch!r}")
        if not 0 <= self.epsilon < 1:
            raise ValueError(f"epsilon must be in [0, 1), got {self.epsilon!r}")
        if not 0 < self.lr_final <= 1:
            raise ValueError(f"lr_final must be in (0, 1], got {self.lr_final!r}")


class JointPredictive:
    """Q(Y, θ | X) for data sets of `set_size` examples: the posterior predictive Q(y | x, D) from one
    forward of the y-step, Y ~ Q(Y | X), and Q(θ | X, Y); trained on the reward P(θ) P(Y | X, θ)."""

    def __init__(self, model, config: JointConfig | None = None):
        from ..train import Trainer

        cfg = config if config is not None else JointConfig()
        self.config, self.model, self.grid = cfg, model, model.grid
        self.outcomes = OutcomeGrid(model, cfg.y_grid or None)
        self.env = JointPredictiveEnv(model, self.outcomes, cfg.set_size, cfg.minibatch,
                                      torch.Generator().manual_seed(cfg.seed + 7))
        torch.manual_seed(cfg.seed)
        self.policy = JointPolicy(self.env, cfg.hidden, cfg.layers, cfg.encoder_hidden, cfg.learn_log_z)
        self.inputs = input_sampler(cfg.set_size, self.env.x_dim, cfg.feature_std)
        self.trainer = Trainer(self.env, self.policy, loss="tb", batch_size=cfg.batch_size, lr=cfg.lr,
                               lr_log_z=1e-2, seed=cfg.seed, context_sampler=self.inputs, epsilon=cfg.epsilon)
        self._schedule = None

    # -- training ------------------------------------------------------------------------------
    def fit(self, steps: int | None = None, progress: bool = True) -> "JointPredictive":
        """Train for `steps` (default config.steps) through the Trainer, with a cosine learning-rate
        decay planned over the first fit's steps (later fits continue it)."""
        from ..train import LRSchedule

        steps = self.config.steps if steps is None else int(steps)
        if self._schedule is None:
            self._schedule = LRSchedule.cosine(self.config.lr_final, steps)
        self.trainer.fit(steps, progress=progress, hooks=[self._schedule], desc="joint predictive")
        return self

    # -- input checks ----------------------------------------------------------------------------
    def _X(self, X, what: str = "X", rows: int | None = None) -> torch.Tensor:
        d = self.env.x_dim
        if not isinstance(X, torch.Tensor) or X.dim() != 2 or X.shape[1] != d:
            raise ValueError(f"{what} must be a tensor [m, {d}] (one row of {d} features per example), got "
                             f"{tuple(getattr(X, 'shape', ())) if isinstance(X, torch.Tensor) else type(X).__name__}")
        if rows is not None and X.shape[0] != rows:
            raise ValueError(f"{what} must have {rows} rows, got {X.shape[0]}")
        if not bool(torch.isfinite(X).all()):
            raise ValueError(f"{what} holds NaN or inf")
        return X.to(torch.float64)

    def _data(self, X, Y, max_size: int | None, exact_size: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        X = self._X(X)
        m = X.shape[0]
        if m == 0:
            raise ValueError("the data set D is empty: a posterior predictive needs at least one example "
                             "(the prior predictive is jp.sample_outcomes)")
        if exact_size and m != max_size:
            raise ValueError(f"Q(θ | X, Y) is defined for data sets of set_size = {max_size} examples, got {m}")
        if max_size is not None and m > max_size:
            raise ValueError(f"D has {m} examples; this policy emits {self.config.set_size} outcomes per data set, so "
                             f"it predicts from at most {max_size}")
        Y = torch.as_tensor(Y)
        if Y.dim() != 1 or Y.shape[0] != m:
            raise ValueError(f"Y must have shape ({m},) (one outcome per row of X), got {tuple(Y.shape)}")
        return X, self.outcomes.index(Y)

    def _rows(self, X: torch.Tensor, yidx: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """State rows with the first m outcomes set and contexts with X in the first m slots."""
        n, p = self.env.n, self.env.p
        m = X.shape[0]
        s = torch.full((rows, n + p), -1, dtype=torch.int32)
        s[:, :yidx.shape[0]] = yidx.to(torch.int32)
        ctx = torch.zeros(rows, n, self.env.x_dim, dtype=torch.float64)
        ctx[:, :m] = X
        return s, ctx

    # -- the predictive --------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, x_new, X, Y) -> torch.Tensor:
        """Q(y = g_k | x_new, D) [M, K_y] for each query row of x_new [M, d] (or [d]) given D = (X [m, d],
        Y [m]) with 1 <= m < set_size: one forward of the policy's y-step per query, no θ."""
        n = self.env.n
        X, yidx = self._data(X, Y, n - 1)
        x_new = torch.as_tensor(x_new)
        x_new = self._X(x_new.reshape(1, -1) if x_new.dim() == 1 else x_new, "x_new")
        M, m = x_new.shape[0], X.shape[0]
        s, ctx = self._rows(X, yidx, M)
        ctx[:, m] = x_new
        logits = self.policy.forward_logits(self.env.encode(s), ctx.reshape(M, -1).float())[:, :self.env.Ky]
        return torch.softmax(logits.double(), -1)

    @torch.no_grad()
    def sample_outcomes(self, X, m: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """m draws of Y ~ Q(Y | X) for inputs X [r, d] (1 <= r <= set_size), one y-step per example:
        outcome values [m, r]."""
        n = self.env.n
        X = self._X(X)
        r = X.shape[0]
        if not 1 <= r <= n:
            raise ValueError(f"X must have between 1 and set_size = {n} rows, got {r}")
        g = generator if generator is not None else torch.Generator().manual_seed(self.config.seed)
        s, ctx = self._rows(X, torch.zeros(0, dtype=torch.int64), m)
        ctx = ctx.reshape(m, -1).float()
        for i in range(r):
            logits = self.policy.forward_logits(self.env.encode(s), ctx)[:, :self.env.Ky]
            s[:, i] = torch.multinomial(torch.softmax(logits.double(), -1), 1, generator=g)[:, 0].to(torch.int32)
        return self.outcomes.values[s[:, :r].long()]

    @torch.no_grad()
    def theta_distribution(self, X, Y) -> torch.Tensor:
        """Q(θ | X, Y) of every grid setting exactly (ParameterGrid.all_indices() order), for a full
        data set of set_size examples: probability pushed through the (K+1)^p partial assignments."""
        n, p, K = self.env.n, self.env.p, self.env.K
        X, yidx = self._data(X, Y, n, exact_size=True)
        th = torch.tensor([[v - 1 for v in t] for t in _product(K + 1, p)], dtype=torch.int64)
        S = th.shape[0]
        s, ctx = self._rows(X, yidx, S)
        s[:, n:] = th.to(torch.int32)
        probs = torch.softmax(self.policy.forward_logits(self.env.encode(s), ctx.reshape(S, -1).float()).double()
                              .masked_fill(~self.env.forward_mask(s), -math.inf), -1)
        code = lambda t: ((t + 1) * (K + 1) ** torch.arange(p - 1, -1, -1)).sum(-1)  # noqa: E731
        order = (th >= 0).sum(1)
        reach = torch.zeros(S, dtype=torch.float64)
        reach[code(torch.full((1, p), -1))] = 1.0
        for level in range(p):
            rows = (order == level).nonzero(as_tuple=True)[0]
            for i in range(p):
                for v in range(K):
                    a = self.env.Ky + i * K + v
                    ok = rows[th[rows, i] < 0]
                    child = th[ok].clone()
                    child[:, i] = v
                    reach.index_add_(0, code(child), reach[ok] * probs[ok, a])
        full = self.grid.all_indices()
        return reach[code(full)] * probs[code(full), -1]

    @torch.no_grad()
    def sample_theta(self, X, Y, m: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """m θ ~ Q(θ | X, Y) as grid indices [m, p], for a full data set of set_size examples."""
        n = self.env.n
        X, yidx = self._data(X, Y, n, exact_size=True)
        s, ctx = self._rows(X, yidx, m)
        g = generator or torch.Generator().manual_seed(self.config.seed)
        ctx = ctx.reshape(m, -1).float()
        for _ in range(self.env.p):
            logits = self.policy.forward_logits(self.env.encode(s), ctx).double()
            logits = logits.masked_fill(~self.env.forward_mask(s), -math.inf)
            a = torch.multinomial(torch.softmax(logits, -1), 1, generator=g)[:, 0]
            s = self.env.step(s, a)
        return s[:, n:].to(torch.int64)

    # -- exact answers by enumeration ----------------------------------------------------------
    def exact_theta_posterior(self, X, Y):
        """P(θ | D) on every grid setting (an ExactPosterior) for D = (X [m, d], Y [m]) with the
        outcome grid's likelihood."""
        from .exact import ExactPosterior

        X, yidx = self._data(X, Y, None)
        idx = self.grid.all_indices()
        B = idx.shape[0]
        lj = self.env.log_joint(idx, X[None].expand(B, -1, -1), yidx[None].expand(B, -1))
        return ExactPosterior(self.grid, idx, lj, float(torch.logsumexp(lj, 0)))

    def exact_predictive(self, x_new, X, Y) -> torch.Tensor:
        """P(y = g_k | x_new, D) = Σ_θ P(θ | D) P(y | x_new, θ) [M, K_y], by enumeration."""
        post = self.exact_theta_posterior(X, Y)
        x_new = torch.as_tensor(x_new)
        x_new = self._X(x_new.reshape(1, -1) if x_new.dim() == 1 else x_new, "x_new")
        lp = self.outcomes.log_probs(post.theta, x_new[None].expand(post.theta.shape[0], -1, -1))  # [|Θ|, M, Ky]
        return torch.einsum("t,tmk->mk", post.probs, lp.exp())

    def exact_eig(self, x_new, X, Y) -> torch.Tensor:
        """The expected information gain about θ of observing y at each x_new [M]:
        I(y; θ | x, D) = H[P(y | x, D)] − E_{θ ~ P(θ|D)} H[P(y | x, θ)] (nats), by enumeration."""
        post = self.exact_theta_posterior(X, Y)
        x_new = torch.as_tensor(x_new)
        x_new = self._X(x_new.reshape(1, -1) if x_new.dim() == 1 else x_new, "x_new")
        lp = self.outcomes.log_probs(post.theta, x_new[None].expand(post.theta.shape[0], -1, -1))
        pred = torch.einsum("t,tmk->mk", post.probs, lp.exp())
        aleatoric = torch.einsum("t,tm->m", post.probs, -(lp.exp() * lp).sum(-1))
        return _entropy(pred) - aleatoric

    def predictive_entropy(self, x_new, X, Y) -> torch.Tensor:
        """H[Q(y | x_new, D)] [M] (nats) from the y-step: the cheap information-gain proxy for choosing
        the next experiment (it upper-bounds the EIG; it equals it up to the outcome noise's entropy)."""
        return _entropy(self.predict(x_new, X, Y))

    # -- held-out evaluation ---------------------------------------------------------------------
    def held_out(self, n_sets: int, seed: int = 12345) -> list[dict]:
        """n_sets held-out (x, D) from the prior predictive: θ ~ P(θ), inputs ~ N(0, feature_std²),
        outcomes ~ P(y | x, θ) on the grid, |D| cycling through 1..set_size−1; each with the full
        data set of set_size examples it was cut from."""
        g = torch.Generator().manual_seed(seed)
        n, d = self.env.n, self.env.x_dim
        out = []
        for j in range(n_sets):
            idx = self.model.prior.sample_index(1, g)
            X = self.config.feature_std * torch.randn(1, n + 1, d, generator=g, dtype=torch.float64)
            X = X.float().double()  # what the policy sees (float32 contexts)
            yi = self.outcomes.sample(self.grid.theta(idx), X, g)[0]
            m = 1 + j % (n - 1) if n > 1 else 1
            y = self.outcomes.values[yi]
            out.append({"X": X[0, :m], "Y": y[:m], "x": X[0, n], "X_full": X[0, :n], "Y_full": y[:n],
                        "y_next": y[m]})
        return out

    def evaluate(self, sets: list[dict]) -> dict:
        """TV and KL(P || Q) between Q(y | x, D) and the exact predictive on each held-out (x, D), and
        the exact L1 of Q(θ | X, Y) on each full data set."""
        tv, kl, l1 = [], [], []
        for r in sets:
            q = self.predict(r["x"], r["X"], r["Y"])[0]
            p = self.exact_predictive(r["x"], r["X"], r["Y"])[0]
            tv.append(0.5 * float((q - p).abs().sum()))
            kl.append(float((p * (p.clamp_min(1e-300).log() - q.clamp_min(1e-300).log())).sum()))
            l1.append(self.exact_theta_posterior(r["X_full"], r["Y_full"]).l1(
                self.theta_distribution(r["X_full"], r["Y_full"])))
        return {"predictive_tv": sum(tv) / len(tv), "predictive_tv_max": max(tv),
                "predictive_kl": sum(kl) / len(kl), "predictive_kl_max": max(kl),
                "theta_l1": sum(l1) / len(l1), "theta_l1_max": max(l1), "tv": tv, "kl": kl, "l1": l1}

    def summary(self) -> dict:
        return {"config": dataclasses.asdict(self.config), "steps": self.trainer.step_count,
                "train_s": self.trainer.train_seconds}


def _unique_rows(key: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
    """(number of distinct keys, the first row of each, each row's distinct-key index) of a 1-D key."""
    uniq, inv = torch.unique(key, return_inverse=True)
    first = torch.full((uniq.numel(),), key.numel(), dtype=torch.int64, device=key.device)
    first.scatter_reduce_(0, inv, torch.arange(key.numel(), device=key.device), "amin")
    return uniq.numel(), first, inv


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.clamp_min(1e-300).log()).sum(-1)


def _product(k: int, r: int):
    import itertools

    return itertools.product(range(k), repeat=r)
