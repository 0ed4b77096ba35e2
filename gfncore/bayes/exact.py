"""The exact posterior over a parameter grid by enumeration: what a GFlowNet posterior sampler's
terminal distribution and log Z must match on small problems."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .models import ParameterGrid
from .reward import LogLikelihoodFn, LogPriorFn, MinibatchLogReward


@dataclass
class GridPosterior:
    """P(θ|D) on every grid setting θ, and the log evidence log P(D) = log Σ_θ P(θ) P(D|θ) (= log Z
    of the reward R(θ) = P(θ) P(D|θ)). Rows are in `ParameterGrid.all_indices()` order."""

    grid: ParameterGrid
    index: torch.Tensor  # [|Θ|, n] int64 grid indices
    log_joint: torch.Tensor  # [|Θ|] log P(θ) + log P(D|θ), float64
    log_evidence: float

    @property
    def theta(self) -> torch.Tensor:
        """Grid values [|Θ|, n]."""
        return self.grid.theta(self.index)

    @property
    def log_probs(self) -> torch.Tensor:
        return self.log_joint - self.log_evidence

    @property
    def probs(self) -> torch.Tensor:
        """P(θ|D) [|Θ|] (float64; sums to 1)."""
        return self.log_probs.exp()

    def marginals(self) -> torch.Tensor:
        """P(θ_j = grid value k | D) [n, K]."""
        p = self.probs
        out = torch.zeros(self.grid.n, self.grid.K, dtype=torch.float64)
        for j in range(self.grid.n):
            out[j].index_add_(0, self.index[:, j], p)
        return out

    def mean(self) -> torch.Tensor:
        """Posterior mean of θ [n]."""
        return self.probs @ self.theta

    def sample(self, m: int, generator: torch.Generator) -> torch.Tensor:
        """m i.i.d. θ ~ P(θ|D) as grid indices [m, n]."""
        return self.index[torch.multinomial(self.probs, m, replacement=True, generator=generator)]

    def position(self, index: torch.Tensor) -> torch.Tensor:
        """Row of each θ (grid indices [B, n]) in this table: the mixed-radix number of its digits."""
        self.grid.theta(index)  # range and shape checks
        w = self.grid.K ** torch.arange(self.grid.n - 1, -1, -1)
        return (index.long() * w).sum(-1)

    def empirical(self, index: torch.Tensor) -> torch.Tensor:
        """Histogram of sampled θ's (grid indices [m, n]) over the table, normalised [|Θ|]."""
        h = torch.bincount(self.position(index), minlength=self.index.shape[0]).to(torch.float64)
        return h / max(index.shape[0], 1)

    def l1(self, q: torch.Tensor) -> float:
        """Σ_θ |q(θ) − P(θ|D)| for a distribution q [|Θ|] over the table."""
        return float((q.to(torch.float64) - self.probs).abs().sum())


def grid_posterior(log_prior: LogPriorFn, log_likelihood: LogLikelihoodFn, grid: ParameterGrid, data,
                    chunk: int = 1024, max_size: int = 1 << 22) -> GridPosterior:
    """Enumerate Θ: the log joint of every θ in float64 (full-batch `MinibatchLogReward`, chunks of
    `chunk` settings), then log P(D) by log-sum-exp."""
    reward = MinibatchLogReward(log_prior, log_likelihood, data, batch_size=None, grid=grid)
    index = grid.all_indices(max_size)
    log_joint = torch.cat([reward.full(grid.theta(index[i:i + chunk])) for i in range(0, index.shape[0], chunk)])
    if bool(torch.isneginf(log_joint).all()):
        raise ValueError("every θ on the grid has zero prior × likelihood: the evidence is 0")
    return GridPosterior(grid, index, log_joint, float(torch.logsumexp(log_joint, 0)))


def exact_posterior_of(model, data, **kw) -> GridPosterior:
    """grid_posterior for a built-in model (or any object with log_prior, log_likelihood and grid)."""
    return grid_posterior(model.log_prior, model.log_likelihood, model.grid, data, **kw)


# the names before issue 16 (two ExactPosterior classes, bayes's and causal's, clashed)
ExactPosterior, exact_posterior = GridPosterior, grid_posterior
