"""The built-in environments written again through the open routes: HyperGrid and Ising as
PythonEnv subclasses (batched torch; the tests' oracle for the compiled structs) and HyperGrid as
a NumbaEnv (single-state numba functions). They are also worked examples of each route."""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from .numba_env import NumbaEnv
from .python_env import PythonEnv


class PyHyperGrid(PythonEnv):
    """HyperGrid (csrc/envs/hypergrid.h) as batched torch methods."""

    def __init__(self, ndim: int = 2, height: int = 8, R0: float = 0.1, R1: float = 0.5, R2: float = 2.0):
        super().__init__(state_dim=ndim, n_actions=ndim + 1, feature_dim=ndim * height,
                         max_length=ndim * (height - 1) + 1, max_parents=ndim, name="py_hypergrid")
        self.ndim, self.height, self.R0, self.R1, self.R2 = ndim, height, R0, R1, R2

    def config(self) -> dict:
        return {"ndim": self.ndim, "height": self.height, "R0": self.R0, "R1": self.R1, "R2": self.R2}

    def valid(self, s):
        return ((s >= 0) & (s < self.height)).all(-1)

    def _check(self, s):
        if s.numel() and not bool(self.valid(s).all()):
            raise ValueError("states holds a row that is not in the environment's state space")

    def initial_state(self):
        return torch.zeros(self.ndim, dtype=torch.int32)

    def forward_mask(self, s):
        self._check(s)
        stop = torch.ones(s.shape[0], 1, dtype=torch.bool, device=s.device)
        return torch.cat([s < self.height - 1, stop], -1)

    def backward_mask(self, s):
        self._check(s)
        return s > 0

    def step(self, s, a):
        legal = self.forward_mask(s).gather(-1, a.unsqueeze(-1)).squeeze(-1)
        if not bool(legal.all()):
            raise ValueError("actions holds an action that is out of range or masked out")
        return s + F.one_hot(a, self.ndim).to(s.dtype)

    def backward_step(self, s, a):
        if a.numel() and not bool(self.backward_mask(s).gather(-1, a.unsqueeze(-1)).all()):
            raise ValueError("actions holds an action that is out of range or masked out")
        return s - F.one_hot(a, self.ndim).to(s.dtype)

    def encode(self, s):
        self._check(s)
        return F.one_hot(s.long(), self.height).reshape(s.shape[0], self.feature_dim).to(torch.float32)

    def log_reward(self, x):
        self._check(x)
        # exact integer region tests, as in the C++ struct: u = |2x - (H-1)|
        h1 = self.height - 1
        u = (2 * x.to(torch.int64) - h1).abs()
        outer = (2 * u > h1).all(-1)
        ring = ((5 * u > 3 * h1) & (5 * u < 4 * h1)).all(-1)
        return torch.log(self.R0 + outer.to(torch.float64) * self.R1 + ring.to(torch.float64) * self.R2)


class PyIsing(PythonEnv):
    """Ising (csrc/envs/ising.h) as batched torch methods."""

    def __init__(self, n: int = 3, J: float = 1.0, h: float = 0.0, beta: float = 1.0):
        N = n * n
        super().__init__(state_dim=N, n_actions=2 * N + 1, feature_dim=3 * N, max_length=N + 1, max_parents=N,
                         name="py_ising")
        self.n, self.J, self.h, self.beta, self.sites = n, J, h, beta, N

    def config(self) -> dict:
        return {"n": self.n, "J": self.J, "h": self.h, "beta": self.beta}

    def valid(self, s):
        return ((s >= -1) & (s <= 1)).all(-1)

    def _check(self, s):
        if s.numel() and not bool(self.valid(s).all()):
            raise ValueError("states holds a row that is not in the environment's state space")

    def initial_state(self):
        return torch.zeros(self.sites, dtype=torch.int32)

    def forward_mask(self, s):
        self._check(s)
        unset = s == 0
        return torch.cat([unset, unset, (~unset).all(-1, keepdim=True)], -1)

    def backward_mask(self, s):
        self._check(s)
        return torch.cat([s == -1, s == 1], -1)

    def step(self, s, a):
        legal = self.forward_mask(s).gather(-1, a.unsqueeze(-1)).squeeze(-1)
        if not bool(legal.all()):
            raise ValueError("actions holds an action that is out of range or masked out")
        N = self.sites
        site = F.one_hot(a % N, N).bool()
        value = torch.where(a < N, -1, 1).to(s.dtype).unsqueeze(-1)
        return torch.where(site, value, s)

    def backward_step(self, s, a):
        if a.numel() and not bool(self.backward_mask(s).gather(-1, a.unsqueeze(-1)).all()):
            raise ValueError("actions holds an action that is out of range or masked out")
        return s.masked_fill(F.one_hot(a % self.sites, self.sites).bool(), 0)

    def encode(self, s):
        self._check(s)
        return F.one_hot(s.long() + 1, 3).reshape(s.shape[0], self.feature_dim).to(torch.float32)

    def log_reward(self, x):
        """-beta E(x), E = -J sum_<ij> x_i x_j - h sum_i x_i; unset sites count as 0. Torus for
        n >= 3, open boundaries for n <= 2 (a wrap-around pair would repeat an in-lattice pair)."""
        self._check(x)
        v = x.to(torch.float64).reshape(-1, self.n, self.n)
        if self.n >= 3:
            pairs = (v * v.roll(-1, -1)).sum((-2, -1)) + (v * v.roll(-1, -2)).sum((-2, -1))
        else:
            pairs = (v[..., :, :-1] * v[..., :, 1:]).sum((-2, -1)) + (v[..., :-1, :] * v[..., 1:, :]).sum((-2, -1))
        return self.beta * (self.J * pairs + self.h * v.sum((-2, -1)))


class NumbaHyperGrid(NumbaEnv):
    """HyperGrid (csrc/envs/hypergrid.h) as single-state numba functions. ``p`` is the tuple
    (ndim, height, R0, R1, R2) given as ``params``, frozen into the compiled code."""

    def __init__(self, ndim: int = 2, height: int = 8, R0: float = 0.1, R1: float = 0.5, R2: float = 2.0):
        self.ndim, self.height, self.R0, self.R1, self.R2 = ndim, height, R0, R1, R2
        super().__init__(state_dim=ndim, n_actions=ndim + 1, feature_dim=ndim * height,
                         max_length=ndim * (height - 1) + 1, max_parents=ndim,
                         params=(ndim, height, float(R0), float(R1), float(R2)), name="numba_hypergrid")

    def config(self) -> dict:
        return {"ndim": self.ndim, "height": self.height, "R0": self.R0, "R1": self.R1, "R2": self.R2}

    @staticmethod
    def initial_state(p, s):
        for i in range(p[0]):
            s[i] = 0

    @staticmethod
    def valid(p, s):
        for i in range(p[0]):
            if s[i] < 0 or s[i] >= p[1]:
                return False
        return True

    @staticmethod
    def forward_mask(p, s, mask):
        for i in range(p[0]):
            mask[i] = s[i] < p[1] - 1
        mask[p[0]] = True

    @staticmethod
    def step(p, s, a, out):
        for i in range(p[0]):
            out[i] = s[i]
        out[a] += 1

    @staticmethod
    def backward_mask(p, s, mask):
        for i in range(p[0]):
            mask[i] = s[i] > 0

    @staticmethod
    def backward_step(p, s, a, out):
        for i in range(p[0]):
            out[i] = s[i]
        out[a] -= 1

    @staticmethod
    def encode(p, s, f):
        ndim, height = p[0], p[1]
        for i in range(ndim * height):
            f[i] = 0.0
        for i in range(ndim):
            f[i * height + s[i]] = 1.0

    @staticmethod
    def log_reward(p, x):
        ndim, h1 = p[0], p[1] - 1
        outer = True
        ring = True
        for i in range(ndim):
            u = abs(2 * x[i] - h1)
            outer = outer and 2 * u > h1
            ring = ring and 5 * u > 3 * h1 and 5 * u < 4 * h1
        return math.log(p[2] + (p[3] if outer else 0.0) + (p[4] if ring else 0.0))
