"""The plain-PyTorch baseline: HyperGrid as vectorised torch ops, a Python rollout loop with
torch sampling, packed trajectories and trajectory balance in plain torch.

Written the way a competent torchgfn-style user would write it: batched tensor ops only, no
per-row Python, no validation in the hot loop (validation runs once, in ``check``). It shares the
policy class (an ordinary nn.Module) and the optimizer settings with gfncore so the comparison
measures everything around the network, not the network itself.
"""
from __future__ import annotations

import math

import torch

from gfncore.envs.twins import PyHyperGrid


class TorchHyperGrid:
    """HyperGrid's masks, steps, encoding and reward as batched torch ops (no checks)."""

    def __init__(self, ndim: int, height: int, R0: float = 0.1, R1: float = 0.5, R2: float = 2.0):
        self.ndim, self.height = ndim, height
        self.R0, self.R1, self.R2 = R0, R1, R2
        self.n_actions = ndim + 1
        self.reference = PyHyperGrid(ndim, height, R0, R1, R2)

    def initial(self, n: int) -> torch.Tensor:
        return torch.zeros(n, self.ndim, dtype=torch.int64)

    def forward_mask(self, s: torch.Tensor) -> torch.Tensor:
        return torch.cat([s < self.height - 1, torch.ones(s.shape[0], 1, dtype=torch.bool)], 1)

    def step(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        # only called on move actions (a < ndim)
        return s.scatter_add(1, a.unsqueeze(1), torch.ones_like(a).unsqueeze(1))

    def encode(self, s: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(s, self.height).view(s.shape[0], -1).to(torch.float32)

    def n_parents(self, s: torch.Tensor) -> torch.Tensor:
        return (s > 0).sum(1)

    def log_reward(self, s: torch.Tensor) -> torch.Tensor:
        ax = (s.to(torch.float32) / (self.height - 1) - 0.5).abs()
        outer = (ax > 0.25).all(1)
        ring = ((ax > 0.3) & (ax < 0.4)).all(1)
        return torch.log(self.R0 + self.R1 * outer + self.R2 * ring)


class Packed:
    """Packed trajectories: rows of trajectory i are offsets[i]:offsets[i+1], stop row last."""

    def __init__(self, states, actions, offsets, features, mask):
        self.states, self.actions, self.offsets = states, actions, offsets
        self.features, self.mask = features, mask


class TorchPipeline:
    """On-policy trajectory balance with a Python rollout loop."""

    def __init__(self, env: TorchHyperGrid, policy, optimizer: torch.optim.Optimizer, batch_size: int,
                 generator: torch.Generator | None = None):
        self.env, self.policy, self.optimizer = env, policy, optimizer
        self.batch_size = batch_size
        self.generator = generator

    @torch.no_grad()
    def rollout(self, n: int, forward_logits=None) -> Packed:
        env = self.env
        forward_logits = forward_logits or self.policy.forward_logits
        stop = env.n_actions - 1
        states = env.initial(n)
        ids = torch.arange(n)
        rec_s, rec_a, rec_i, rec_f, rec_m = [], [], [], [], []
        while states.shape[0] > 0:
            feats = env.encode(states)
            mask = env.forward_mask(states)
            logits = forward_logits(feats).masked_fill(~mask, -math.inf)
            actions = torch.multinomial(torch.softmax(logits, 1), 1, generator=self.generator).squeeze(1)
            rec_s.append(states), rec_a.append(actions), rec_i.append(ids), rec_f.append(feats), rec_m.append(mask)
            move = actions != stop
            states = env.step(states[move], actions[move])
            ids = ids[move]
        ids = torch.cat(rec_i)
        order = torch.argsort(ids, stable=True)
        offsets = torch.zeros(n + 1, dtype=torch.int64)
        torch.cumsum(torch.bincount(ids, minlength=n), 0, out=offsets[1:])
        return Packed(torch.cat(rec_s)[order], torch.cat(rec_a)[order], offsets, torch.cat(rec_f)[order],
                      torch.cat(rec_m)[order])

    def loss(self, traj: Packed) -> torch.Tensor:
        env = self.env
        out = self.policy(traj.features)
        log_pf = torch.log_softmax(out.pf_logits.masked_fill(~traj.mask, -math.inf), 1)
        log_pf = log_pf.gather(1, traj.actions.unsqueeze(1)).squeeze(1)
        n, T = traj.offsets.shape[0] - 1, traj.states.shape[0]
        last = traj.offsets[1:] - 1
        # uniform P_B: -log #parents(s_{t+1}) on move rows, 0 on stop rows
        n_par = env.n_parents(traj.states).roll(-1).clamp_min(1)
        log_pb = -torch.log(n_par.to(log_pf.dtype))
        log_pb[last] = 0.0
        traj_idx = torch.repeat_interleave(torch.arange(n), traj.offsets[1:] - traj.offsets[:-1])
        diff = torch.zeros(n, dtype=log_pf.dtype).index_add(0, traj_idx, log_pf - log_pb)
        log_r = env.log_reward(traj.states[last])
        return ((self.policy.log_z + diff - log_r) ** 2).mean()

    def train_step(self) -> float:
        traj = self.rollout(self.batch_size)
        loss = self.loss(traj)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def check(self, traj: Packed) -> None:
        """Raises AssertionError unless traj holds valid packed HyperGrid trajectories."""
        ref = self.env.reference
        s = traj.states.to(torch.int32)
        assert bool(ref.valid(s).all()), "state outside the grid"
        lengths = traj.offsets[1:] - traj.offsets[:-1]
        assert bool((lengths >= 1).all()) and int(traj.offsets[-1]) == s.shape[0]
        is_stop = torch.zeros(s.shape[0], dtype=torch.bool)
        is_stop[traj.offsets[1:] - 1] = True
        assert bool((traj.actions[is_stop] == self.env.n_actions - 1).all()), "last row is not the stop row"
        assert bool((traj.actions[~is_stop] < self.env.n_actions - 1).all()), "stop inside a trajectory"
        first = traj.offsets[:-1]
        assert bool((s[first] == 0).all()), "trajectory does not start at s0"
        move = (~is_stop).nonzero().squeeze(1)
        assert torch.equal(ref.step(s[move], traj.actions[move]), s[move + 1]), "rows do not chain"
        assert torch.equal(traj.features, ref.encode(s)) and torch.equal(traj.mask, ref.forward_mask(s))
