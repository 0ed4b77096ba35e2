"""Training objectives over packed trajectories. Each recomputes the log-probabilities with one
batched forward of the policy over every packed state, then calls a fused op."""
from __future__ import annotations

import torch

from . import ops
from .envs.base import Env
from .nn import PolicyOutput
from .trajectories import Trajectories


def remember_uniform_log_pb(env: Env, traj: Trajectories, log_pb: torch.Tensor) -> None:
    """Attach uniform_log_pb(env, traj), computed where the trajectories were packed, to traj.

    uniform_log_pb returns it only while traj.states and traj.offsets are the very tensors it was
    computed from, unmodified (same object, same version counter), and for the same environment;
    any other Trajectories (replace, to, cat, edits in place) recomputes it.
    """
    traj.__dict__["_uniform_log_pb"] = (env.spec, traj.states, traj.states._version, traj.offsets,
                                        traj.offsets._version, log_pb)


def uniform_log_pb(env: Env, traj: Trajectories) -> torch.Tensor:
    """log P_B(s_t | s_{t+1}) = -log #parents(s_{t+1}) on move rows, 0 on stop rows (float64)."""
    c = traj.__dict__.get("_uniform_log_pb")
    if (c is not None and c[1] is traj.states and c[3] is traj.offsets and c[2] == traj.states._version
            and c[4] == traj.offsets._version and c[0] == env.spec):
        return c[5]
    n_par = env.n_parents(traj.states)
    nxt = torch.roll(n_par, -1).clamp_min(1).to(torch.float64)
    lp = -torch.log(nxt)
    return torch.where(traj.is_stop, torch.zeros_like(lp), lp)


def learned_log_pb(env: Env, traj: Trajectories, pb_logits: torch.Tensor) -> torch.Tensor:
    """log P_B(s_t | s_{t+1}) from backward logits at s_{t+1}, masked by its parents; 0 on stop rows."""
    move = (~traj.is_stop).nonzero(as_tuple=True)[0]
    nxt = move + 1
    bmask = env.backward_mask(traj.states[nxt])
    lp = ops.masked_log_softmax_gather(pb_logits[nxt], bmask, env.backward_action(traj.actions[move]))
    return torch.zeros(traj.T, dtype=pb_logits.dtype, device=pb_logits.device).index_put((move,), lp)


def log_probs(env: Env, policy, traj: Trajectories) -> tuple[torch.Tensor, torch.Tensor, PolicyOutput]:
    """(log_pf [T], log_pb [T], policy output) from one batched forward over the packed states."""
    feats = traj.features if traj.features is not None else env.encode(traj.states)
    mask = traj.mask if traj.mask is not None else env.forward_mask(traj.states)
    out = policy(feats)
    log_pf = ops.masked_log_softmax_gather(out.pf_logits, mask, traj.actions)
    if out.pb_logits is None:
        log_pb = uniform_log_pb(env, traj).to(log_pf.dtype)
    else:
        log_pb = learned_log_pb(env, traj, out.pb_logits)
    return log_pf, log_pb, out


def trajectory_balance_loss(env: Env, policy, traj: Trajectories) -> torch.Tensor:
    """Trajectory balance (Malkin et al. 2022): mean over the batch of
    (log Z + sum log P_F - log R(x) - sum log P_B)^2."""
    log_pf, log_pb, _ = log_probs(env, policy, traj)
    log_z = policy.log_z.to(log_pf.dtype)
    return ops.trajectory_balance(log_pf, log_pb, traj.offsets, traj.log_reward.to(log_pf.dtype), log_z).mean()


LOSSES = {"tb": trajectory_balance_loss}


def get_loss(name: str):
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}") from None
