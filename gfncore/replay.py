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
        # Conditional environments keep each object with its context (the reward is R(c, x)).
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.env, self.capacity, self.prioritized, self.alpha = env, int(capacity), bool(prioritized), float(alpha)
        self.x = torch.empty(0, env.state_dim, dtype=torch.int32)
        self.log_reward = torch.empty(0, dtype=torch.float64)
        self.context = torch.empty(0, env.context_dim, dtype=torch.float64) if env.context_dim else None
        self._keys: set[tuple] = set()

    def __len__(self) -> int:
        return self.x.shape[0]

    def add(self, x: torch.Tensor, log_reward: torch.Tensor, context: torch.Tensor | None = None) -> int:
        """Adds the objects (with their contexts) not already stored; returns how many were new."""
        x = x.detach().to("cpu", torch.int32)
        log_reward = log_reward.detach().to("cpu", torch.float64)
        ctx = self.env._context(context, x.shape[0])
        ctx = None if ctx is None else ctx.detach().to("cpu", torch.float64)
        keep, new_keys = [], []
        ctx_rows = ctx.tolist() if ctx is not None else None
        for i, row in enumerate(x.tolist()):
            k = tuple(row) if ctx_rows is None else (tuple(row), tuple(ctx_rows[i]))
            if k not in self._keys and k not in new_keys:
                keep.append(i)
                new_keys.append(k)
        if not keep:
            return 0
        idx = torch.tensor(keep)
        self.x = torch.cat([self.x, x[idx]])
        self.log_reward = torch.cat([self.log_reward, log_reward[idx]])
        if ctx is not None:
            self.context = torch.cat([self.context, ctx[idx]])
        self._keys.update(new_keys)
        overflow = self.x.shape[0] - self.capacity
        if overflow > 0:
            old_ctx = self.context[:overflow].tolist() if self.context is not None else None
            for i, row in enumerate(self.x[:overflow].tolist()):
                self._keys.discard(tuple(row) if old_ctx is None else (tuple(row), tuple(old_ctx[i])))
            self.x, self.log_reward = self.x[overflow:], self.log_reward[overflow:]
            if self.context is not None:
                self.context = self.context[overflow:]
        return len(keep)

    def state_dict(self) -> dict:
        """The stored objects (and contexts) and settings, as tensors and numbers
        (torch.load(weights_only=True))."""
        sd = {"x": self.x.clone(), "log_reward": self.log_reward.clone(), "capacity": self.capacity,
              "prioritized": self.prioritized, "alpha": self.alpha}
        if self.context is not None:
            sd["context"] = self.context.clone()
        return sd

    def load_state_dict(self, sd: dict) -> None:
        x, lr = sd["x"].to("cpu", torch.int32), sd["log_reward"].to("cpu", torch.float64)
        if x.dim() != 2 or x.shape[1] != self.env.state_dim or lr.shape != (x.shape[0],):
            raise ValueError(f"replay state holds objects of shape {list(x.shape)}; this buffer stores "
                             f"[n, {self.env.state_dim}] with one log-reward each")
        ctx = sd.get("context")
        if (ctx is None) != (self.context is None) or (ctx is not None and ctx.shape != (x.shape[0], self.env.context_dim)):
            raise ValueError(f"replay state's contexts do not match this buffer's environment (context_dim = "
                             f"{self.env.context_dim})")
        self.capacity, self.prioritized, self.alpha = int(sd["capacity"]), bool(sd["prioritized"]), float(sd["alpha"])
        self.x, self.log_reward = x, lr
        if ctx is None:
            self._keys = set(map(tuple, x.tolist()))
        else:
            self.context = ctx.to("cpu", torch.float64)
            self._keys = {(tuple(r), tuple(c)) for r, c in zip(x.tolist(), self.context.tolist())}

    def _indices(self, k: int, generator: torch.Generator | None) -> torch.Tensor:
        if len(self) == 0:
            raise ValueError("the replay buffer is empty: add objects before sampling")
        if self.prioritized:
            w = torch.softmax(self.alpha * self.log_reward, 0)
            return torch.multinomial(w, k, replacement=True, generator=generator)
        return torch.randint(0, len(self), (k,), generator=generator)

    def sample_objects(self, k: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self._indices(k, generator)
        return self.x[idx], self.log_reward[idx]

    def sample(self, k: int, policy=None, generator: torch.Generator | None = None) -> Trajectories:
        """k trajectories ending at replayed objects, drawn backward from each x to s0."""
        from .backward import BackwardSampler

        idx = self._indices(k, generator)
        x = self.x[idx]
        ctx = None if self.context is None else self.context[idx].to(torch.get_default_dtype())
        pb_policy = policy if policy is not None and getattr(policy, "pb", "uniform") != "uniform" else None
        traj, _ = BackwardSampler(self.env, pb_policy).sample(x, generator=generator, context=ctx)
        return traj
