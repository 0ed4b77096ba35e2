"""Training objectives over packed trajectories. Each recomputes the log-probabilities with one
batched forward of the policy over every packed state, then calls a fused op."""
from __future__ import annotations

import torch

from . import _C, ops
from .ops._dispatch import compiled_for, stream
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


def uniform_log_pb(env: Env, traj: Trajectories, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """log P_B(s_t | s_{t+1}) = -log #parents(s_{t+1}) on move rows, 0 on stop rows."""
    c = traj.__dict__.get("_uniform_log_pb")
    if (c is not None and c[1] is traj.states and c[3] is traj.offsets and c[2] == traj.states._version
            and c[4] == traj.offsets._version and c[0] == env.spec
            and (c[5].dtype == dtype or c[5].dtype == torch.float64)):
        return c[5].to(dtype)
    n_par = env.n_parents(traj.states)
    nxt = torch.roll(n_par, -1).clamp_min(1).to(torch.float64)
    lp = -torch.log(nxt)
    return torch.where(traj.is_stop, torch.zeros_like(lp), lp).to(dtype)


def learned_log_pb(env: Env, traj: Trajectories, pb_logits: torch.Tensor) -> torch.Tensor:
    """log P_B(s_t | s_{t+1}) from backward logits at s_{t+1}, masked by its parents; 0 on stop rows."""
    move = (~traj.is_stop).nonzero(as_tuple=True)[0]
    nxt = move + 1
    bmask = env.backward_mask(traj.states[nxt])
    lp = ops.masked_log_softmax_gather(pb_logits[nxt], bmask, env.backward_action(traj.actions[move]))
    return torch.zeros(traj.T, dtype=pb_logits.dtype, device=pb_logits.device).index_put((move,), lp)


def _forward(env: Env, policy, traj: Trajectories):
    """One batched policy forward over the packed states: (output, forward mask, log_pb)."""
    feats = traj.features if traj.features is not None else env.encode(traj.states)
    mask = traj.mask if traj.mask is not None else env.forward_mask(traj.states)
    out = policy(feats)
    if out.pb_logits is None:
        log_pb = uniform_log_pb(env, traj, out.pf_logits.dtype)
    else:
        log_pb = learned_log_pb(env, traj, out.pb_logits)
    return out, mask, log_pb


def log_probs(env: Env, policy, traj: Trajectories) -> tuple[torch.Tensor, torch.Tensor, PolicyOutput]:
    """(log_pf [T], log_pb [T], policy output) from one batched forward over the packed states."""
    out, mask, log_pb = _forward(env, policy, traj)
    log_pf = ops.masked_log_softmax_gather(out.pf_logits, mask, traj.actions)
    return log_pf, log_pb, out


class _TBFromLogits(torch.autograd.Function):
    """mean_i TB_i from P_F logits as ONE autograd node: the masked log-softmax gather kernel
    feeding the trajectory-balance kernel, forward and backward (the same _C kernels as
    ops.masked_log_softmax_gather and ops.trajectory_balance). Two custom ops plus a mean cost
    ~0.3 ms of dispatch per step on a CPU, as much as the kernels; this costs one node. Eager only:
    under torch.compile the loss uses the custom ops, which compile."""

    @staticmethod
    def forward(ctx, logits, mask, actions, log_pb, offsets, log_reward, log_z):
        logits, mask, actions = logits.contiguous(), mask.contiguous(), actions.contiguous()
        log_pb, offsets, log_reward = log_pb.contiguous(), offsets.contiguous(), log_reward.contiguous()
        st = stream(logits)
        log_pf = logits.new_empty(logits.shape[0])
        _C.masked_log_softmax_gather(logits, mask, actions, log_pf, None, None, st)
        per_traj = logits.new_empty(offsets.shape[0] - 1)
        _C.trajectory_balance(log_pf, log_pb, offsets, log_reward, log_z, per_traj, None, None, None, None, None, st)
        ctx.save_for_backward(logits, mask, actions, log_pf, log_pb, offsets, log_reward, log_z)
        return per_traj.mean()

    @staticmethod
    def backward(ctx, grad):
        logits, mask, actions, log_pf, log_pb, offsets, log_reward, log_z = ctx.saved_tensors
        st = stream(logits)
        B = offsets.shape[0] - 1
        grad_out = (grad / B).expand(B).contiguous()
        gpf, gpb = torch.empty_like(log_pf), torch.empty_like(log_pb)
        gr, gz = torch.empty_like(log_reward), log_pf.new_empty(B)
        _C.trajectory_balance(log_pf, log_pb, offsets, log_reward, log_z, None, grad_out, gpf, gpb, gr, gz, st)
        grad_logits = None
        if ctx.needs_input_grad[0]:
            grad_logits = torch.empty_like(logits)
            _C.masked_log_softmax_gather(logits, mask, actions, None, gpf, grad_logits, st)
        if log_z.dim() == 0:
            gz = gz.sum()
        return (grad_logits, None, None, gpb if ctx.needs_input_grad[3] else None, None,
                gr if ctx.needs_input_grad[5] else None, gz if ctx.needs_input_grad[6] else None)


def trajectory_balance_loss(env: Env, policy, traj: Trajectories) -> torch.Tensor:
    """Trajectory balance (Malkin et al. 2022): mean over the batch of
    (log Z + sum log P_F - log R(x) - sum log P_B)^2."""
    out, mask, log_pb = _forward(env, policy, traj)
    logits = out.pf_logits
    log_z = policy.log_z.to(logits.dtype)
    log_reward = traj.log_reward.to(logits.dtype)
    if traj.n > 0 and compiled_for(logits) and not torch.compiler.is_compiling():
        return _TBFromLogits.apply(logits, mask, traj.actions, log_pb, traj.offsets, log_reward, log_z)
    log_pf = ops.masked_log_softmax_gather(logits, mask, traj.actions)
    return ops.trajectory_balance(log_pf, log_pb, traj.offsets, log_reward, log_z).mean()


LOSSES = {"tb": trajectory_balance_loss}


def get_loss(name: str):
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}") from None
