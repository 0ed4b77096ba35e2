"""Ising: spin configurations of an n x n lattice built one site at a time; the reward is the
Boltzmann weight, so log Z is the model's log-partition function."""
from __future__ import annotations

import torch

from .compiled import CompiledEnv


class Ising(CompiledEnv, kind="ising"):
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

    def reference(self):
        """The same environment written as a PythonEnv (batched torch): the tests' oracle."""
        from .twins import PyIsing

        return PyIsing(self.n, self.J, self.h, self.beta)

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


def _max_side(k: int, limit: int) -> int:
    n = 1
    while k ** ((n + 1) ** 2) <= limit:
        n += 1
    return n
