"""BitSequence: n-bit sequences built by appending k-bit words (Malkin et al. 2022)."""
from __future__ import annotations

import torch

from .compiled import CompiledEnv


def random_modes(n: int, n_modes: int, seed: int) -> torch.Tensor:
    """n_modes distinct random bit sequences of length n (int64 [n_modes, n])."""
    gen = torch.Generator().manual_seed(int(seed))
    if n < 63 and n_modes > 2 ** n:
        raise ValueError(f"BitSequence: {n_modes} distinct modes do not exist among 2^{n} sequences")
    modes, seen = [], set()
    while len(modes) < n_modes:
        m = torch.randint(0, 2, (n,), generator=gen, dtype=torch.int64)
        key = tuple(m.tolist())
        if key not in seen:
            seen.add(key)
            modes.append(m)
    return torch.stack(modes)


class BitSequence(CompiledEnv, kind="bit_sequence"):
    """Bit sequences of n bits built by appending k-bit words (n/k actions, then stop); the reward
    is log R(x) = -min_m Hamming(x, mode_m) / temperature (torchgfn's append-only BitSequence). The
    state graph is a tree. Without ``modes``, ``n_modes`` random modes are drawn from ``seed``.

    A state is [length, word_0, ..., word_{L-1}] with -1 for words not yet appended.
    """

    param_help = {"n_modes": "how many random target sequences (modes) when none are given"}

    def __init__(self, n: int = 8, k: int = 2, modes: torch.Tensor | None = None, temperature: float = 1.0, *,
                 n_modes: int = 4, seed: int = 0, log_reward=None):
        if modes is None and isinstance(n, int) and not isinstance(n, bool) and 0 < n <= 4096:
            modes = random_modes(n, n_modes, seed)
        super().__init__(n=n, k=k, modes=modes, temperature=temperature, log_reward=log_reward)

    def bits(self, x: torch.Tensor) -> torch.Tensor:
        """The bits [N, n] of full sequences x (most significant bit of each word first)."""
        x = self._states(x, "x")
        words = x[:, 1:].to(torch.int64).clamp_min(0)
        shifts = torch.arange(self.k - 1, -1, -1)
        return ((words.unsqueeze(-1) >> shifts) & 1).reshape(x.shape[0], -1)

    def all_terminal_states(self) -> torch.Tensor:
        """Every full sequence (2^n of them, n <= 22)."""
        if self.n > 22:
            raise ValueError(f"{self!r} has 2^{self.n} sequences: too many to enumerate (n <= 22)")
        L, W = self.n // self.k, 2 ** self.k
        idx = torch.arange(W ** L, dtype=torch.int64).unsqueeze(-1)
        words = (idx // (W ** torch.arange(L - 1, -1, -1, dtype=torch.int64))) % W
        return torch.cat([torch.full((W ** L, 1), L, dtype=torch.int64), words], 1).to(torch.int32)

    def all_states(self) -> torch.Tensor:
        """Every prefix of every full sequence (n <= 22)."""
        full = self.all_terminal_states()
        L = self.n // self.k
        out = []
        for m in range(L + 1):
            pre = torch.unique(full[:, 1:1 + m], dim=0) if m else full[:1, 1:1]
            rows = torch.full((pre.shape[0], L + 1), -1, dtype=torch.int32)
            rows[:, 0] = m
            rows[:, 1:1 + m] = pre
            out.append(rows)
        return torch.cat(out)
