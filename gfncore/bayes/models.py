"""Bayesian models over a grid of parameter values: the pieces of the posterior reward
R(θ) = P(θ)·P(D|θ) that a GFlowNet sampler of θ (built one coordinate at a time) is trained on.

θ is a vector of n parameters, each on the same grid of K values (`ParameterGrid`). A model gives
`log_prior(theta [B, n]) -> [B]` and a per-example `log_likelihood(theta [B, n], batch) -> [B, |batch|]`
as torch functions of the grid *values* (float64), where `batch` is a tuple of tensors whose rows
are examples, e.g. `(X [b, d], y [b])`. Any pair of functions with these signatures works with
`MinibatchLogReward` and `grid_posterior`; the two built-in models add what the posterior
predictive needs (`predictive_log_prob`, and `predictive_cdf` or `predict_proba`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

F = torch.nn.functional


class ParameterGrid:
    """The discrete parameter space Θ = G^n: n coordinates, each on the same K sorted grid values."""

    def __init__(self, values, n: int):
        v = torch.as_tensor(values, dtype=torch.float64).flatten().clone()
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n (number of parameters) must be an int >= 1, got {n!r}")
        if v.numel() < 2:
            raise ValueError(f"a parameter grid needs at least 2 values, got {v.numel()} ({v.tolist()}): "
                             "with one value there is nothing to infer")
        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"grid values must be finite, got {v.tolist()}")
        if not bool((v[1:] > v[:-1]).all()):
            raise ValueError(f"grid values must be strictly increasing, got {v.tolist()}")
        self.values, self.n = v, n

    @classmethod
    def linspace(cls, low: float, high: float, K: int, n: int) -> "ParameterGrid":
        if isinstance(K, bool) or not isinstance(K, int):
            raise ValueError(f"K must be an int, got {K!r}")
        return cls(torch.linspace(low, high, K, dtype=torch.float64), n)

    @property
    def K(self) -> int:
        return self.values.numel()

    @property
    def size(self) -> int:
        """|Θ| = K^n."""
        return self.K ** self.n

    def theta(self, index: torch.Tensor) -> torch.Tensor:
        """Grid values [B, n] (float64) of grid indices [B, n] in [0, K)."""
        if not isinstance(index, torch.Tensor) or index.dtype.is_floating_point or index.dtype == torch.bool:
            raise TypeError(f"grid indices must be an integer tensor, got {getattr(index, 'dtype', type(index))}")
        if index.dim() != 2 or index.shape[1] != self.n:
            raise ValueError(f"grid indices must have shape [B, {self.n}], got {tuple(index.shape)}")
        bad = (index < 0) | (index >= self.K)
        if bool(bad.any()):
            r = int(bad.any(1).nonzero()[0, 0])
            raise ValueError(f"grid index out of range [0, {self.K}) in row {r}: {index[r].tolist()}")
        return self.values[index.long()]

    def all_indices(self, max_size: int = 1 << 22) -> torch.Tensor:
        """Every θ's grid indices [K^n, n] (int64), first coordinate slowest."""
        if self.size > max_size:
            raise ValueError(f"the grid has K^n = {self.K}^{self.n} = {self.size} settings, more than "
                             f"max_size = {max_size}: too many to enumerate")
        digits = torch.arange(self.size)[:, None] // (self.K ** torch.arange(self.n - 1, -1, -1))
        return digits % self.K

    def to_config(self) -> dict:
        return {"values": self.values.tolist(), "n": self.n}

    def __repr__(self) -> str:
        return f"ParameterGrid(K={self.K}, n={self.n}, values={[round(v, 4) for v in self.values.tolist()]})"


def _check_theta(theta: torch.Tensor, n: int, who: str) -> torch.Tensor:
    if not isinstance(theta, torch.Tensor):
        raise TypeError(f"{who}: theta must be a torch.Tensor [B, {n}] of grid values, got {type(theta).__name__}")
    if not theta.is_floating_point():
        raise TypeError(f"{who}: theta must hold grid values (floating point), got {theta.dtype}; "
                        "map grid indices with ParameterGrid.theta(index)")
    if theta.dim() != 2 or theta.shape[1] != n:
        raise ValueError(f"{who}: theta must have shape [B, {n}], got {tuple(theta.shape)}")
    return theta.to(torch.float64)


def _check_xy(batch, n: int, who: str, need_y: bool = True):
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise TypeError(f"{who}: batch must be a pair (X [b, {n}], y [b]), got {type(batch).__name__}")
    X, y = batch
    if not isinstance(X, torch.Tensor) or X.dim() != 2 or X.shape[1] != n:
        raise ValueError(f"{who}: X must have shape [b, {n}], got {tuple(getattr(X, 'shape', ()))}")
    if need_y and (not isinstance(y, torch.Tensor) or tuple(y.shape) != (X.shape[0],)):
        raise ValueError(f"{who}: y must have shape ({X.shape[0]},), got {tuple(getattr(y, 'shape', ()))}")
    return X.to(torch.float64), (y.to(torch.float64) if y is not None else None)


class GridGaussianPrior:
    """Independent N(0, prior_std²) on each coordinate, restricted to the grid and renormalised over
    it, so Σ_θ P(θ) = 1 on Θ and log P(D) = log Σ_θ P(θ) P(D|θ) is a proper evidence."""

    def __init__(self, grid: ParameterGrid, prior_std: float):
        if not (math.isfinite(prior_std) and prior_std > 0):
            raise ValueError(f"prior_std must be a finite float > 0, got {prior_std!r}")
        self.grid, self.prior_std = grid, float(prior_std)
        logits = -0.5 * (grid.values / prior_std) ** 2
        self.log_norm = float(torch.logsumexp(logits, 0))

    def log_prob(self, theta: torch.Tensor) -> torch.Tensor:
        return (-0.5 * (theta / self.prior_std) ** 2 - self.log_norm).sum(-1)

    def sample_index(self, m: int, generator: torch.Generator) -> torch.Tensor:
        p = torch.softmax(-0.5 * (self.grid.values / self.prior_std) ** 2, 0)
        return torch.multinomial(p.expand(self.grid.n, -1), m, replacement=True, generator=generator).T


class LinearRegression:
    """Bayesian linear regression on a grid: y = x·θ + ε, ε ~ N(0, noise_std²) with known noise,
    and the grid-restricted Gaussian prior N(0, prior_std²) on each weight. Batches are (X [b, n], y [b])."""

    task = "regression"

    def __init__(self, grid: ParameterGrid, noise_std: float = 1.0, prior_std: float = 1.0):
        if not isinstance(grid, ParameterGrid):
            raise TypeError(f"grid must be a ParameterGrid, got {type(grid).__name__}")
        if not (math.isfinite(noise_std) and noise_std > 0):
            raise ValueError(f"noise_std must be a finite float > 0, got {noise_std!r}")
        self.grid, self.noise_std = grid, float(noise_std)
        self.prior = GridGaussianPrior(grid, prior_std)

    def log_prior(self, theta: torch.Tensor) -> torch.Tensor:
        """log P(θ) [B]."""
        return self.prior.log_prob(_check_theta(theta, self.grid.n, "LinearRegression.log_prior"))

    def log_likelihood(self, theta: torch.Tensor, batch) -> torch.Tensor:
        """log P(y_i | x_i, θ) [B, b] for each example of the batch."""
        theta = _check_theta(theta, self.grid.n, "LinearRegression.log_likelihood")
        X, y = _check_xy(batch, self.grid.n, "LinearRegression.log_likelihood")
        return self.predictive_log_prob(theta, X, y)

    def map_estimate(self, data) -> torch.Tensor:
        """The posterior mode of θ [n] under the continuous Gaussian prior (ridge regression,
        closed form): a reference θ for the minibatch reward's control variate."""
        X, y = _check_xy(data, self.grid.n, "LinearRegression.map_estimate")
        A = X.T @ X / self.noise_std ** 2 + torch.eye(self.grid.n, dtype=torch.float64) / self.prior.prior_std ** 2
        return torch.linalg.solve(A, X.T @ y / self.noise_std ** 2)

    def predictive_mean(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """E[y | x, θ] = x·θ [S, M]."""
        return theta.to(torch.float64) @ X.to(torch.float64).T

    def predictive_log_prob(self, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log N(y_m; x_m·θ_s, noise_std²) [S, M]."""
        z = (y.to(torch.float64) - self.predictive_mean(theta, X)) / self.noise_std
        return -0.5 * z * z - math.log(self.noise_std) - 0.5 * math.log(2 * math.pi)

    def predictive_cdf(self, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """P(Y ≤ y_m | x_m, θ_s) [S, M] (for probability-integral-transform calibration)."""
        z = (y.to(torch.float64) - self.predictive_mean(theta, X)) / self.noise_std
        return 0.5 * torch.special.erfc(-z / math.sqrt(2))

    def sample_y(self, theta: torch.Tensor, X: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """y ~ P(y | X, θ) for one θ [n]: [M]."""
        mu = X.to(torch.float64) @ theta.to(torch.float64)
        return mu + self.noise_std * torch.randn(mu.shape, generator=generator, dtype=torch.float64)


class LogisticRegression:
    """Bayesian logistic regression on a grid: P(y = 1 | x, θ) = σ(x·θ), y ∈ {0, 1}, with the
    grid-restricted Gaussian prior N(0, prior_std²) on each weight. Batches are (X [b, n], y [b])."""

    task = "classification"

    def __init__(self, grid: ParameterGrid, prior_std: float = 1.0):
        if not isinstance(grid, ParameterGrid):
            raise TypeError(f"grid must be a ParameterGrid, got {type(grid).__name__}")
        self.grid = grid
        self.prior = GridGaussianPrior(grid, prior_std)

    def log_prior(self, theta: torch.Tensor) -> torch.Tensor:
        """log P(θ) [B]."""
        return self.prior.log_prob(_check_theta(theta, self.grid.n, "LogisticRegression.log_prior"))

    def log_likelihood(self, theta: torch.Tensor, batch) -> torch.Tensor:
        """log P(y_i | x_i, θ) [B, b] for each example of the batch."""
        theta = _check_theta(theta, self.grid.n, "LogisticRegression.log_likelihood")
        X, y = _check_xy(batch, self.grid.n, "LogisticRegression.log_likelihood")
        return self.predictive_log_prob(theta, X, y)

    def predictive_log_prob(self, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log P(y_m | x_m, θ_s) = y z − softplus(z), z = x·θ [S, M]."""
        z = theta.to(torch.float64) @ X.to(torch.float64).T
        return y.to(torch.float64) * z - F.softplus(z)

    def predict_proba(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """P(y = 1 | x_m, θ_s) [S, M]."""
        return torch.sigmoid(theta.to(torch.float64) @ X.to(torch.float64).T)

    def sample_y(self, theta: torch.Tensor, X: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """y ~ P(y | X, θ) for one θ [n]: [M] of 0./1."""
        p = torch.sigmoid(X.to(torch.float64) @ theta.to(torch.float64))
        return (torch.rand(p.shape, generator=generator, dtype=torch.float64) < p).to(torch.float64)


MODELS = {"linear": LinearRegression, "logistic": LogisticRegression}


@dataclass
class BayesProblem:
    """A model, a training set D, a held-out test set, and the θ that generated both."""

    model: object
    data: tuple  # (X [N, n], y [N])
    test: tuple  # (X [M, n], y [M])
    theta_true: torch.Tensor  # [n] grid values
    theta_true_index: torch.Tensor  # [n] grid indices

    @property
    def grid(self) -> ParameterGrid:
        return self.model.grid


def synthetic_problem(model: str = "linear", n_weights: int = 5, K: int = 5, n_examples: int = 200,
                      n_test: int = 1000, seed: int = 0, grid_range: float = 1.0, prior_std: float = 1.0,
                      noise_std: float = 4.0, feature_std: float | None = None) -> BayesProblem:
    """Synthetic data for a built-in model: θ drawn from the (grid) prior, features x ~ N(0, feature_std²),
    labels y ~ P(y | x, θ); the test set shares θ. Seeded.

    The defaults are the enumerable problem of the tests (5 weights × 5 values = 3,125 settings, 200
    examples, grid linspace(−1, 1, 5)), set so that the posterior is spread over tens of settings
    (perplexity 15-55 on seeds 0-2) instead of sitting on one: noise_std = 4 for the linear model,
    features with std 1 (linear) or 0.5 (logistic; feature_std=None picks these)."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {model!r}")
    for name, v in (("n_examples", n_examples), ("n_test", n_test)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be an int >= 0, got {v!r}")
    grid = ParameterGrid.linspace(-grid_range, grid_range, K, n_weights)
    m = LinearRegression(grid, noise_std, prior_std) if model == "linear" else LogisticRegression(grid, prior_std)
    if feature_std is None:
        feature_std = 1.0 if model == "linear" else 0.5
    g = torch.Generator().manual_seed(seed)
    idx = m.prior.sample_index(1, g)[0]
    theta = grid.values[idx]
    X = feature_std * torch.randn(n_examples + n_test, n_weights, generator=g, dtype=torch.float64)
    y = m.sample_y(theta, X, g)
    return BayesProblem(m, (X[:n_examples], y[:n_examples]), (X[n_examples:], y[n_examples:]), theta, idx)
