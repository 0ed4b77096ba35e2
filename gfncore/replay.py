"""Replay buffer of finished objects x, re-expanded into fresh trajectories by backward sampling."""
from __future__ import annotations

import torch

from .envs.base import Env
from .trajectories import Trajectories


class ReplayBuffer:
    """Keeps the finished objects x (and log R(x)) seen during training, FIFO up to `capacity`,
    without duplicates. `sample` draws objects uniformly or, with `prioritized=True`, with
    probability ∝ R(x)^alpha, then draws a fresh trajectory s0 -> ... -> x for each by backward
    sampling (uniform P_B, or the policy's learned P_B), so replayed objects are trained on with
    new trajectories rather than stale ones."""

    def __init__(self, env: Env, capacity: int = 10_000, prioritized: bool = False, alpha: float = 1.0):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.env, self.capacity, self.prioritized, self.alpha = env, int(capacity), bool(prioritized), float(alpha)
        self.x = torch.empty(0, env.state_dim, dtype=torch.int32)
        self.log_reward = torch.empty(0, dtype=torch.float64)
        self._keys: set[tuple] = set()

    def __len__(self) -> int:
        return self.x.shape[0]

    def add(self, x: torch.Tensor, log_reward: torch.Tensor) -> int:
        """Adds the objects not already stored; returns how many were new."""
        x = x.detach().to("cpu", torch.int32)
        log_reward = log_reward.detach().to("cpu", torch.float64)
        keep, new_keys = [], []
        for i, row in enumerate(x.tolist()):
            k = tuple(row)
            if k not in self._keys and k not in new_keys:
                keep.append(i)
                new_keys.append(k)
        if not keep:
            return 0
        idx = torch.tensor(keep)
        self.x = torch.cat([self.x, x[idx]])
        self.log_reward = torch.cat([self.log_reward, log_reward[idx]])
        self._keys.update(new_keys)
        overflow = self.x.shape[0] - self.capacity
        if overflow > 0:
            for row in self.x[:overflow].tolist():
                self._keys.discard(tuple(row))
            self.x, self.log_reward = self.x[overflow:], self.log_reward[overflow:]
        return len(keep)

    def state_dict(self) -> dict:
        """The stored objects and settings, as tensors and numbers (torch.load(weights_only=True))."""
        return {"x": self.x.clone(), "log_reward": self.log_reward.clone(), "capacity": self.capacity,
                "prioritized": self.prioritized, "alpha": self.alpha}

    def load_state_dict(self, sd: dict) -> None:
        x, lr = sd["x"].to("cpu", torch.int32), sd["log_reward"].to("cpu", torch.float64)
        if x.dim() != 2 or x.shape[1] != self.env.state_dim or lr.shape != (x.shape[0],):
            raise ValueError(f"replay state holds objects of shape {list(x.shape)}; this buffer stores "
                             f"[n, {self.env.state_dim}] with one log-reward each")
        self.capacity, self.prioritized, self.alpha = int(sd["capacity"]), bool(sd["prioritized"]), float(sd["alpha"])
        self.x, self.log_reward = x, lr
        self._keys = set(map(tuple, x.tolist()))

    def sample_objects(self, k: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self) == 0:
            raise ValueError("the replay buffer is empty: add objects before sampling")
        if self.prioritized:
            w = torch.softmax(self.alpha * self.log_reward, 0)
            idx = torch.multinomial(w, k, replacement=True, generator=generator)
        else:
            idx = torch.randint(0, len(self), (k,), generator=generator)
        return self.x[idx], self.log_reward[idx]

    def sample(self, k: int, policy=None, generator: torch.Generator | None = None) -> Trajectories:
        """k trajectories ending at replayed objects, drawn backward from each x to s0."""
        from .backward import BackwardSampler

        x, _ = self.sample_objects(k, generator)
        pb_policy = policy if policy is not None and getattr(policy, "pb", "uniform") != "uniform" else None
        traj, _ = BackwardSampler(self.env, pb_policy).sample(x, generator=generator)
        return traj
