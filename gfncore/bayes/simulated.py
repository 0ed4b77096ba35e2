"""Exact posterior samples for free: a data set D drawn from the model's prior predictive comes with
the θ* that generated it, and (θ*, D) ~ P(θ) P(D | θ) means θ* | D ~ P(θ | D) exactly. A posterior
sampler amortized over simulated data sets can train on backward trajectories ending at θ* beside
its own samples (off-policy trajectory balance; any full-support behaviour leaves its fixed point
alone), so that it sees where the posterior mass is before its own proposals find it."""
from __future__ import annotations

import torch

from ..replay import ReplayBuffer


class TrueParameterReplay(ReplayBuffer):
    """A replay buffer that keeps only the generating θ* of the latest simulated data sets (FIFO up to
    `capacity`), pushed by `simulated_datasets`; the Trainer replays them as backward trajectories.
    The Trainer's own samples are not kept: they are draws from Q, not from P(θ | D)."""

    def add(self, x, log_reward, context=None) -> int:
        return 0

    def push(self, theta_index: torch.Tensor, context: torch.Tensor) -> int:
        """Store grid indices θ* [n, p] with their data sets (contexts [n, C]) and log R(θ* | D)."""
        x = theta_index.to(torch.int32)
        return super().add(x, self.env.log_reward(x, context), context)


def simulated_datasets(draw, replay: TrueParameterReplay | None = None):
    """A context sampler (n, generator) -> [n, C] from `draw(n, generator) -> (contexts, θ* grid
    indices)` (`prior_datasets(..., with_theta=True)`), that also pushes each data set's θ* into `replay`."""

    def sample(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        c, idx = draw(n, generator)
        if replay is not None:
            replay.push(idx, c)
        return c

    return sample
