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
    the behaviour policy that sampled it: tempered / epsilon-mixed); per trajectory, for a
    conditional GFlowNet: context [B, C] float (the reward is R(context_i, x_i)).
    """

    states: torch.Tensor
    actions: torch.Tensor
    offsets: torch.Tensor
    log_reward: torch.Tensor
    mask: torch.Tensor | None = None
    features: torch.Tensor | None = None
    log_prob: torch.Tensor | None = None
    context: torch.Tensor | None = None

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

    def row_context(self) -> torch.Tensor | None:
        """The context of each row's trajectory, [T, C] (None without contexts)."""
        return None if self.context is None else self.context[self.traj_index]

    def remember_uniform_log_pb(self, env, log_pb: torch.Tensor) -> None:
        """Attach uniform_log_pb(env), computed where the trajectories were packed.

        uniform_log_pb returns it only while states and offsets are the very tensors it was
        computed from, unmodified (same object, same version counter), and for the same
        environment; any other Trajectories (replace, to, cat, edits in place) recomputes it."""
        self.__dict__["_uniform_log_pb"] = (env, self.states, self.states._version, self.offsets,
                                            self.offsets._version, log_pb)

    def uniform_log_pb(self, env, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """log P_B(s_t | s_{t+1}) = -log #parents(s_{t+1}) on move rows, 0 on stop rows."""
        c = self.__dict__.get("_uniform_log_pb")
        if (c is not None and c[0] is env and c[1] is self.states and c[3] is self.offsets
                and c[2] == self.states._version and c[4] == self.offsets._version
                and (c[5].dtype == dtype or c[5].dtype == torch.float64)):
            return c[5].to(dtype)
        n_par = env.n_parents(self.states).to(self.states.device)
        nxt = torch.roll(n_par, -1).clamp_min(1).to(torch.float64)
        lp = -torch.log(nxt)
        return torch.where(self.is_stop, torch.zeros_like(lp), lp).to(dtype)

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
            context=cat_opt("context"),
        )
