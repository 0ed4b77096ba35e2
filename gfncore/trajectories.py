"""Packed, aligned trajectories (DESIGN.md): row t is one transition, the state it leaves and the
action taken there; trajectory i owns rows offsets[i]:offsets[i+1] and ends with its stop row."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


@dataclass
class Trajectories:
    """A batch of B trajectories packed into T rows.

    states [T, D] int32, actions [T] int64, offsets [B+1] int64, log_reward [B] float;
    per-row extras recorded during rollout: mask [T, A] bool (forward mask at each state),
    features [T, F] float32 (encoded states), log_prob [T] (log-probability of each action under
    the behaviour policy that sampled it: tempered / epsilon-mixed).
    """

    states: torch.Tensor
    actions: torch.Tensor
    offsets: torch.Tensor
    log_reward: torch.Tensor
    mask: torch.Tensor | None = None
    features: torch.Tensor | None = None
    log_prob: torch.Tensor | None = None

    @property
    def n(self) -> int:
        return self.offsets.shape[0] - 1

    def __len__(self) -> int:
        return self.n

    @property
    def T(self) -> int:
        return self.states.shape[0]

    @property
    def lengths(self) -> torch.Tensor:
        """Rows per trajectory (moves plus the stop row)."""
        return self.offsets[1:] - self.offsets[:-1]

    @property
    def last_rows(self) -> torch.Tensor:
        return self.offsets[1:] - 1

    @property
    def terminal_states(self) -> torch.Tensor:
        """The finished objects x_i = states[offsets[i+1] - 1], [B, D]."""
        return self.states[self.last_rows]

    @property
    def traj_index(self) -> torch.Tensor:
        """Which trajectory each row belongs to, [T] int64."""
        return torch.repeat_interleave(torch.arange(self.n, device=self.offsets.device), self.lengths)

    @property
    def is_stop(self) -> torch.Tensor:
        """True on each trajectory's last (stop) row, [T] bool."""
        s = torch.zeros(self.T, dtype=torch.bool, device=self.states.device)
        s[self.last_rows] = True
        return s

    def to(self, device) -> "Trajectories":
        kw = {f.name: (getattr(self, f.name).to(device) if getattr(self, f.name) is not None else None) for f in fields(self)}
        return Trajectories(**kw)

    def with_log_reward(self, log_reward: torch.Tensor) -> "Trajectories":
        return replace(self, log_reward=log_reward)

    @staticmethod
    def cat(items: list["Trajectories"]) -> "Trajectories":
        """Concatenate batches (offsets are shifted)."""
        offs, base = [items[0].offsets[:1]], 0
        for it in items:
            offs.append(it.offsets[1:] + base)
            base += it.T

        def cat_opt(name):
            vals = [getattr(it, name) for it in items]
            return None if any(v is None for v in vals) else torch.cat(vals)

        return Trajectories(
            states=torch.cat([it.states for it in items]),
            actions=torch.cat([it.actions for it in items]),
            offsets=torch.cat(offs),
            log_reward=torch.cat([it.log_reward for it in items]),
            mask=cat_opt("mask"),
            features=cat_opt("features"),
            log_prob=cat_opt("log_prob"),
        )
