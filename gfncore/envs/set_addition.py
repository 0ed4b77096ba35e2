"""SetAddition: sets of up to k of n items, built one item at a time."""
from __future__ import annotations

import itertools

import torch

from .compiled import CompiledEnv


class SetAddition(CompiledEnv, kind="set_addition"):
    """Choose up to k of n items, adding one item at a time: a set of m items has m! construction
    orders and m parents, so this is the many-parents benchmark with an exact answer.

    log R(x) = sum_{i in x} weights[i] + sum_{i<j in x} interactions[i, j]. Without either table
    the weights are drawn N(0, 1) from ``seed`` (pass ``weights=torch.zeros(n)`` for a uniform
    reward). With ``fixed_size`` the objects are the sets of exactly k items.
    """

    def __init__(self, n: int = 6, k: int = 3, fixed_size: bool = False, weights: torch.Tensor | None = None,
                 interactions: torch.Tensor | None = None, *, seed: int = 0, log_reward=None):
        if weights is None and interactions is None and isinstance(n, int) and not isinstance(n, bool) and 0 < n <= 2**16:
            weights = torch.randn(n, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
        super().__init__(n=n, k=k, fixed_size=fixed_size, weights=weights, interactions=interactions,
                         log_reward=log_reward)

    def all_terminal_states(self) -> torch.Tensor:
        """Every object: the sets of size <= k (exactly k with fixed_size), as 0/1 rows."""
        sizes = [self.k] if self.fixed_size else range(self.k + 1)
        rows = []
        count = 0
        for m in sizes:
            for items in itertools.combinations(range(self.n), m):
                count += 1
                if count > 5_000_000:
                    raise ValueError(f"{self!r} has more than 5,000,000 objects: too many to enumerate")
                row = [0] * self.n
                for i in items:
                    row[i] = 1
                rows.append(row)
        return torch.tensor(rows, dtype=torch.int32).reshape(-1, self.n)

    def all_states(self) -> torch.Tensor:
        """Every state: the sets of size <= k."""
        if self.fixed_size:
            return SetAddition(self.n, self.k, False, weights=torch.zeros(self.n, dtype=torch.float64)).all_terminal_states()
        return self.all_terminal_states()
