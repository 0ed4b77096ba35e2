"""Any-order K-ary assignment: n variables set to one of K values each, in any order."""
from __future__ import annotations

import torch

from .compiled import CompiledEnv


def _grid(values: list[int], n: int, limit: int, what: str, env) -> torch.Tensor:
    k = len(values)
    if k ** n > limit:
        raise ValueError(f"{env!r}: {what} has {k}^{n} elements; enumeration is limited to {limit}")
    idx = torch.arange(k ** n, dtype=torch.int64).unsqueeze(-1)
    digits = (idx // (k ** torch.arange(n - 1, -1, -1, dtype=torch.int64))) % k
    return torch.tensor(values, dtype=torch.int32)[digits]


class Assignment(CompiledEnv, kind="assignment"):
    """n variables, each set to one of K values, one at a time in any order (Ising generalised).

    A state holds -1 (unset) or a value in 0..K-1 per variable; action i*K + v sets variable i to
    v, action n*K stops once every variable is set, and a state with m set variables has m
    parents. The built-in reward is the pairwise table model
    log R(x) = sum_i unary[i, x_i] + sum_{i<j} pairwise[i, j, x_i, x_j] (0 without tables);
    ``log_reward=fn`` replaces it (gfncore.bayes builds parameter-grid posteriors this way).
    Objects: the K^n complete assignments.
    """

    def all_terminal_states(self) -> torch.Tensor:
        """Every complete assignment (K^n of them, at most 5,000,000)."""
        return _grid(list(range(self.K)), self.n, 5_000_000, "the set of complete assignments", self)

    def all_states(self) -> torch.Tensor:
        """Every partial assignment ((K+1)^n of them, at most 5,000,000)."""
        return _grid(list(range(-1, self.K)), self.n, 5_000_000, "the state space", self)
