"""Backward sampling: trajectories drawn from a known finished object x back to s0 by a backward
policy P_B, returned in the forward packed format, to train from known objects (replay, data)."""
from __future__ import annotations

import torch

from . import ops
from .envs.base import Env
from .trajectories import Trajectories


class BackwardSampler:
    """Draws, for each given object x, a trajectory s0 -> ... -> x by walking back from x:
    s_{t} ~ P_B(. | s_{t+1}) until s0.

    P_B is uniform over parents (``policy=None`` or a policy with ``pb="uniform"``) or the
    policy's learned backward policy: softmax of ``policy(features).pb_logits`` masked by
    ``env.backward_mask``. Each step is one call of the compiled ``backward_rollout_step`` (the
    forward sampler's Philox-keyed rule: same seed, trajectory id and step give the same draw on
    any device or thread count).
    """

    def __init__(self, env: Env, policy=None, temperature: float = 1.0, epsilon: float = 0.0):
        self.env, self.policy = env, policy
        self.temperature, self.epsilon = float(temperature), float(epsilon)
        self.learned = policy is not None and getattr(policy, "pb", "learned") != "uniform"

    def _device(self, x: torch.Tensor) -> torch.device:
        if self.policy is not None:
            for p in self.policy.parameters():
                return p.device
        return x.device

    @torch.no_grad()
    def sample(self, x: torch.Tensor, *, seed: int | None = None,
               generator: torch.Generator | None = None) -> tuple[Trajectories, torch.Tensor]:
        """Backward-sample one trajectory per row of x [B, state_dim] (finished objects: stop legal).

        Returns ``(traj, log_pb)``: ``traj`` in the forward packed format (row t: state s_t and the
        forward action to s_{t+1}; each trajectory starts at s0 and ends with the stop row at x_i),
        with forward masks, features and log R(x) filled in and ``log_prob=None`` (no forward
        policy sampled it); ``log_pb [T]`` = log P_B(s_t | s_{t+1}) as sampled, 0 on stop rows.
        """
        env = self.env
        if seed is None:
            seed = ops.draw_seed(generator)
        x = env._states(x).to(self._device(x))
        dev, B = x.device, x.shape[0]
        stop = env.stop_action
        if B:
            can_stop = env.forward_mask(x)[:, stop]
            if not bool(can_stop.all()):
                bad = int((~can_stop).nonzero()[0, 0])
                raise ValueError(f"x must hold finished objects (stop legal); row {bad} is not one: {x[bad].tolist()}")
        dtype = torch.get_default_dtype()
        ids = torch.arange(B, device=dev)
        # Rows are recorded newest-first (x, then its parent, ...) and reordered into forward time below.
        rec_states, rec_actions, rec_lp, rec_ids, rec_step = [x], [torch.full((B,), stop, device=dev)], [], [ids], [
            torch.full((B,), -1, device=dev)]
        active = ~env.is_initial(x) if B else torch.zeros(0, dtype=torch.bool, device=dev)
        cur, cur_ids, k = x[active], ids[active], 0
        while cur.shape[0]:
            if k >= env.max_length:
                raise RuntimeError(f"{env!r}: backward walk did not reach s0 within max_length={env.max_length} steps")
            logits = self._pb_logits(cur)
            _, lp, fwd, par, done = ops.backward_rollout_step(env, cur, logits, seed=seed, offset=k, ids=cur_ids,
                                                              temperature=self.temperature, epsilon=self.epsilon)
            dtype = lp.dtype
            rec_states.append(par)
            rec_actions.append(fwd)
            rec_lp.append(lp)
            rec_ids.append(cur_ids)
            rec_step.append(torch.full_like(cur_ids, k))
            keep = ~done
            cur, cur_ids, k = par[keep], cur_ids[keep], k + 1
        states, actions = torch.cat(rec_states), torch.cat(rec_actions)
        log_pb = torch.cat([torch.zeros(B, dtype=dtype, device=dev)] + [lp.to(dtype) for lp in rec_lp])
        tid, step = torch.cat(rec_ids), torch.cat(rec_step)
        # Forward order: by trajectory, then from the last backward step (s0) to the stop row (step -1).
        order = torch.argsort(tid * (k + 2) + (k - step))
        lengths = torch.bincount(tid, minlength=B)
        offsets = torch.zeros(B + 1, dtype=torch.int64, device=dev)
        torch.cumsum(lengths, 0, out=offsets[1:])
        states = states[order]
        traj = Trajectories(states=states, actions=actions[order], offsets=offsets,
                            log_reward=env.log_reward(x).to(dtype), mask=env.forward_mask(states),
                            features=env.encode(states), log_prob=None)
        return traj, log_pb[order]

    def _pb_logits(self, states: torch.Tensor) -> torch.Tensor | None:
        if not self.learned:
            return None
        out = self.policy(self.env.encode(states))
        if out.pb_logits is None:
            raise ValueError("policy returned no pb_logits: use pb='learned' or 'shared', or policy=None for uniform P_B")
        return out.pb_logits
