"""Ising: spin configurations of an n x n lattice built one site at a time; the reward is the
Boltzmann weight, so log Z is the model's log-partition function."""
from __future__ import annotations

import math
from functools import lru_cache

import torch

from ..ops.reference import IsingReference
from .base import Env, register

_MAX_SIDE = 64  # csrc/envs/ising.h (Ising::kMaxSide)


@register
class Ising(Env):
    """Ising model on an n x n lattice with R(x) = exp(-beta E(x)),

    E(x) = -J sum_<ij> x_i x_j - h sum_i x_i  over nearest-neighbour pairs,

    on a torus (periodic boundaries) for n >= 3 and with open boundaries for n <= 2, where a
    wrap-around pair would repeat an in-lattice pair (n = 2) or pair a site with itself (n = 1).

    A state is n*n spins in {-1 (set down), 0 (unset), +1 (set up)}, s0 all unset. Action i sets
    site i to -1, action n*n + i sets it to +1 (legal while the site is unset) and action 2*n*n
    stops, legal only once every site is set: the objects x are complete configurations. Backward
    action b mirrors forward action b (it unsets the site that b set), so a state's parents are
    its set sites. Features: a (down, unset, up) one-hot per site. ``log_reward`` of a partial
    state uses the same formula with unset sites as 0.
    """

    kind = 2
    name = "ising"

    def __init__(self, n: int = 3, J: float = 1.0, h: float = 0.0, beta: float = 1.0):
        if isinstance(n, bool) or int(n) != n or not 1 <= int(n) <= _MAX_SIDE:
            raise ValueError(f"Ising: n must be an integer in [1, {_MAX_SIDE}], got {n}")
        for name, v in (("J", J), ("h", h), ("beta", beta)):
            if not math.isfinite(float(v)):
                raise ValueError(f"Ising: {name} must be finite, got {v}")
        if float(beta) < 0:
            raise ValueError(f"Ising: beta (inverse temperature) must be >= 0, got {beta}")
        self.n, self.J, self.h, self.beta = int(n), float(J), float(h), float(beta)
        super().__init__((self.kind, (self.n,), (self.J, self.h, self.beta)))

    @classmethod
    def from_spec(cls, ints, floats):
        return _cached(tuple(ints), tuple(floats))

    def reference(self) -> IsingReference:
        return IsingReference(self.n, self.J, self.h, self.beta)

    def _configurations(self, values: tuple[int, ...], limit: int, what: str) -> torch.Tensor:
        N = self.n * self.n
        if len(values) ** N > limit:
            raise ValueError(f"{self!r}: {what} has {len(values)}^{N} elements; enumeration is limited to "
                             f"{limit} (n <= {_max_side(len(values), limit)})")
        # Mixed-radix digits of 0 .. k^N - 1, site 0 the most significant: a fixed, sorted order.
        k = len(values)
        idx = torch.arange(k ** N, dtype=torch.int64).unsqueeze(-1)
        digits = (idx // (k ** torch.arange(N - 1, -1, -1, dtype=torch.int64))) % k
        return torch.tensor(values, dtype=torch.int32)[digits]

    def all_states(self) -> torch.Tensor:
        """Every state (3^(n*n) partial configurations); n <= 3."""
        return self._configurations((-1, 0, 1), 3 ** 9, "the state space")

    def all_terminal_states(self) -> torch.Tensor:
        """Every complete configuration (2^(n*n)); n <= 4."""
        return self._configurations((-1, 1), 2 ** 16, "the set of complete configurations")

    def __repr__(self) -> str:
        return f"Ising(n={self.n}, J={self.J}, h={self.h}, beta={self.beta})"


def _max_side(k: int, limit: int) -> int:
    n = 1
    while k ** ((n + 1) ** 2) <= limit:
        n += 1
    return n


@lru_cache(maxsize=64)
def _cached(ints, floats) -> Ising:
    return Ising(*ints, *floats)
