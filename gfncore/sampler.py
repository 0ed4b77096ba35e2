"""Sampler: no-grad batched rollout of a forward policy into packed trajectories."""
from __future__ import annotations

import threading

import torch

from . import _C, ops
from .envs.base import Env
from .losses import remember_uniform_log_pb
from .trajectories import Trajectories


def _policy_device(policy) -> torch.device:
    for p in policy.parameters():
        return p.device
    return torch.device("cpu")


class Sampler:
    """Draws trajectories s0 -> ... -> x from P_F(.|s) (optionally tempered / epsilon-uniform).

    On the CPU every step is one call into the compiled core that samples the actions, steps the
    environment, writes next masks and features, and compacts the trajectories that continue, so
    the policy only ever sees the active rows and Python does nothing per row. On other devices
    it runs the ``gfncore.ops.rollout_step`` op and compacts with torch. Both paths draw the same
    Philox numbers (keyed by seed, trajectory id and step), so they return the same samples.
    """

    def __init__(self, env: Env, policy, temperature: float = 1.0, epsilon: float = 0.0):
        self.env, self.policy = env, policy
        self.temperature, self.epsilon = float(temperature), float(epsilon)
        self._cached = None
        self._lock = threading.Lock()

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        temperature: float | None = None,
        epsilon: float | None = None,
        device=None,
        compiled_path: bool = True,
    ) -> Trajectories:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if seed is None:
            seed = ops.draw_seed(generator)
        temp = self.temperature if temperature is None else float(temperature)
        eps = self.epsilon if epsilon is None else float(epsilon)
        dev = torch.device(device) if device is not None else _policy_device(self.policy)
        if dev.type == "cpu" and compiled_path:
            traj = self._sample_cpu(n, seed, temp, eps)
        else:
            traj = self._sample_generic(n, seed, temp, eps, dev)
        return traj

    def _finish(self, states, actions, ids, mask, features, log_prob, n) -> Trajectories:
        order = torch.argsort(ids, stable=True)
        lengths = torch.bincount(ids, minlength=n)
        offsets = torch.zeros(n + 1, dtype=torch.int64, device=ids.device)
        torch.cumsum(lengths, 0, out=offsets[1:])
        states = states[order]
        log_reward = self.env.log_reward(states[offsets[1:] - 1]) if n else torch.zeros(0, dtype=torch.float64)
        return Trajectories(states=states, actions=actions[order], offsets=offsets,
                            log_reward=log_reward.to(log_prob.dtype if log_prob is not None else torch.float32),
                            mask=mask[order], features=features[order],
                            log_prob=log_prob[order] if log_prob is not None else None)

    def _recorder(self, n: int):
        """A recorder with room for n trajectories. The last one is kept and reused (its buffers
        are only scratch: pack copies every row out), unless it is far larger than needed."""
        need = max(n, 1) * max(self.env.max_length, 1)
        rec = self._cached
        if rec is not None and need <= rec.capacity <= 4 * need:
            return rec
        rec = _C.RolloutRecorder(self.env.spec, torch.empty(need, self.env.feature_dim, dtype=torch.float32))
        self._cached = rec
        return rec

    def _sample_cpu(self, n: int, seed: int, temp: float, eps: float) -> Trajectories:
        # One Python iteration per step: the policy forward on the active rows' features and one
        # call that samples, steps and compacts. A concurrent or re-entrant call gets its own buffers.
        if not self._lock.acquire(blocking=False):
            rec = _C.RolloutRecorder(self.env.spec, torch.empty(max(n, 1) * max(self.env.max_length, 1),
                                                                self.env.feature_dim, dtype=torch.float32))
            return self._rollout(rec, n, seed, temp, eps)
        try:
            return self._rollout(self._recorder(n), n, seed, temp, eps)
        finally:
            self._lock.release()

    def _rollout(self, rec, n: int, seed: int, temp: float, eps: float) -> Trajectories:
        env, forward = self.env, self.policy.forward_logits
        feats = rec.features
        pos, m = 0, rec.start(n, seed, temp, eps)
        dtype = torch.float32
        if m:
            logits = forward(feats[:m])
            dtype = logits.dtype
            while True:
                m_next = rec.step(logits)
                pos += m
                m = m_next
                if not m:
                    break
                logits = forward(feats[pos:pos + m])
        T = pos
        empty = torch.empty
        traj = Trajectories(states=empty(T, env.state_dim, dtype=torch.int32), actions=empty(T, dtype=torch.int64),
                            offsets=empty(n + 1, dtype=torch.int64), log_reward=empty(n, dtype=dtype),
                            mask=empty(T, env.n_actions, dtype=torch.bool), features=empty(T, env.feature_dim),
                            log_prob=empty(T, dtype=dtype))
        log_pb = empty(T, dtype=dtype)  # the dtype the loss uses it in
        rec.pack(traj.states, traj.actions, traj.offsets, traj.log_reward, traj.mask, traj.features, traj.log_prob, log_pb)
        remember_uniform_log_pb(env, traj, log_pb)
        return traj

    def _sample_generic(self, n: int, seed: int, temp: float, eps: float, dev) -> Trajectories:
        env, policy = self.env, self.policy
        states = env.initial_states(n, device=dev)
        mask = env.forward_mask(states)
        feats = env.encode(states)
        ids = torch.arange(n, device=dev)
        rec = []
        t = 0
        while ids.numel() > 0:
            logits = policy.forward_logits(feats)
            a, lp, ns, nm, nf, done = ops.rollout_step(env, states, mask, logits, seed=seed, offset=t, ids=ids,
                                                       temperature=temp, epsilon=eps)
            rec.append((states, a, ids, mask, feats, lp))
            keep = ~done
            states, mask, feats, ids = ns[keep], nm[keep], nf[keep], ids[keep]
            t += 1
        if not rec:
            z = torch.zeros
            return Trajectories(z(0, env.state_dim, dtype=torch.int32, device=dev), z(0, dtype=torch.int64, device=dev),
                                z(1, dtype=torch.int64, device=dev), z(0, device=dev),
                                z(0, env.n_actions, dtype=torch.bool, device=dev),
                                z(0, env.feature_dim, device=dev), z(0, device=dev))
        cols = list(zip(*rec))
        s, a, i, mk, f, lp = (torch.cat(c) for c in cols)
        return self._finish(s, a, i, mk, f, lp, n)
