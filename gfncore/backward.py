"""Backward sampling: trajectories drawn from a known finished object x back to s0 by a backward
policy P_B, returned in the forward packed format, to train from known objects (replay, data)."""
from __future__ import annotations

import torch

from . import ops
from .envs.base import Env
from .envs.compiled import CompiledEnv
from .trajectories import Trajectories


class BackwardSampler:
    """Draws, for each given object x, a trajectory s0 -> ... -> x by walking back from x:
    s_{t} ~ P_B(. | s_{t+1}) until s0.

    P_B is uniform over parents (``policy=None`` or a policy with ``pb="uniform"``) or the
    policy's learned backward policy: softmax of ``policy(features).pb_logits`` masked by
    ``env.backward_mask``. Each step is one ``ops.backward_rollout_step`` (the forward sampler's
    Philox-keyed rule: same seed, trajectory id and step give the same draw on any device, thread
    count or environment route). For user environments (Python, numba) every backward step is
    checked to be undone by the forward step, so an inconsistent environment fails loudly
    instead of training on trajectories it could never sample.
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
    def sample(self, x: torch.Tensor, *, seed: int | None = None, generator: torch.Generator | None = None,
               context: torch.Tensor | None = None) -> tuple[Trajectories, torch.Tensor]:
        """Backward-sample one trajectory per row of x [B, state_dim] (finished objects: stop legal).

        Returns ``(traj, log_pb)``: ``traj`` in the forward packed format (row t: state s_t and the
        forward action to s_{t+1}; each trajectory starts at s0 and ends with the stop row at x_i),
        with forward masks, features and log R(x) filled in and ``log_prob=None`` (no forward
        policy sampled it); ``log_pb [T]`` = log P_B(s_t | s_{t+1}) as sampled, 0 on stop rows.
        """
        env = self.env
        if seed is None:
            seed = ops.draw_seed(generator)
        x = env._states(x, "x")
        B = x.shape[0]
        ctx = env._context(context, B)
        dev = self._device(x)
        stop = env.stop_action
        if B:
            can_stop = env.forward_mask(x)[:, stop]
            if not bool(can_stop.all()):
                bad = int((~can_stop).nonzero()[0, 0])
                raise ValueError(f"x must hold finished objects (stop legal); row {bad} is not one: {x[bad].tolist()}")
        check = not isinstance(env, CompiledEnv)
        dtype = torch.get_default_dtype()
        xd = x.device
        ids = torch.arange(B, device=xd)
        # Rows are recorded newest-first (x, then its parent, ...) and reordered into forward time below.
        rec_states, rec_actions, rec_lp, rec_ids, rec_step = [x], [torch.full((B,), stop, device=xd)], [], [ids], [
            torch.full((B,), -1, device=xd)]
        active = ~env.is_initial(x) if B else torch.zeros(0, dtype=torch.bool, device=xd)
        cur, cur_ids, k = x[active], ids[active], 0
        limit = env.max_length if env.max_length is not None else 10**6
        while cur.shape[0]:
            if k >= limit:
                raise RuntimeError(f"{env!r}: backward walk did not reach s0 within max_length={limit} steps")
            logits = self._pb_logits(cur, None if ctx is None else ctx[cur_ids])
            _, lp, fwd, par, done = ops.backward_rollout_step(env, cur, logits, seed=seed, offset=k, ids=cur_ids,
                                                              temperature=self.temperature, epsilon=self.epsilon)
            if check:
                _check_inverse(env, par, fwd, cur)
            dtype = lp.dtype
            rec_states.append(par)
            rec_actions.append(fwd)
            rec_lp.append(lp)
            rec_ids.append(cur_ids)
            rec_step.append(torch.full_like(cur_ids, k))
            keep = ~done
            cur, cur_ids, k = par[keep], cur_ids[keep], k + 1
        states, actions = torch.cat(rec_states), torch.cat(rec_actions)
        log_pb = torch.cat([torch.zeros(B, dtype=dtype, device=xd)] + [lp.to(dtype) for lp in rec_lp])
        tid, step = torch.cat(rec_ids), torch.cat(rec_step)
        # Forward order: by trajectory, then from the last backward step (s0) to the stop row (step -1).
        order = torch.argsort(tid * (k + 2) + (k - step))
        lengths = torch.bincount(tid, minlength=B)
        offsets = torch.zeros(B + 1, dtype=torch.int64, device=xd)
        torch.cumsum(lengths, 0, out=offsets[1:])
        states = states[order]
        lr = env.reward(x, ctx) if B else torch.zeros(0, dtype=torch.float64)
        traj = Trajectories(states=states, actions=actions[order], offsets=offsets, log_reward=lr.to(dtype),
                            mask=env.forward_mask(states), features=env.encode(states), log_prob=None, context=ctx)
        return traj.to(dev), log_pb[order].to(dev)

    def _pb_logits(self, states: torch.Tensor, ctx: torch.Tensor | None) -> torch.Tensor | None:
        if not self.learned:
            return None
        dev = self._device(states)
        f = self.env.encode(states).to(dev)
        out = self.policy(f) if ctx is None else self.policy(f, ctx.to(dev))
        if out.pb_logits is None:
            raise ValueError("policy returned no pb_logits: use pb='learned' or 'shared', or policy=None for uniform P_B")
        return out.pb_logits.to(states.device)


def _check_inverse(env: Env, parents: torch.Tensor, forward_actions: torch.Tensor, states: torch.Tensor) -> None:
    back = env.step(parents, forward_actions)
    ok = (back == states).all(-1)
    if not bool(ok.all()):
        i = int((~ok).nonzero()[0, 0])
        raise ValueError(f"{type(env).__name__}: backward_step does not invert step: backward_step({states[i].tolist()}) "
                         f"= {parents[i].tolist()}, but step(it, {int(forward_actions[i])}) = {back[i].tolist()}; "
                         f"run gfncore.envs.check_env(env)")
