"""Balance objectives over packed, aligned trajectories as torch custom ops with fused
forward and backward kernels."""
from __future__ import annotations

import torch

from .. import _C
from . import reference
from ._dispatch import check_same_device, compiled_for, require_tensors, stream, warn_fallback


@torch.library.custom_op("gfncore::trajectory_balance", mutates_args=())
def _tb(log_pf: torch.Tensor, log_pb: torch.Tensor, offsets: torch.Tensor, log_reward: torch.Tensor,
        log_z: torch.Tensor) -> torch.Tensor:
    if not compiled_for(log_pf):
        warn_fallback("trajectory_balance", log_pf)
        return reference.trajectory_balance(log_pf, log_pb, offsets, log_reward, log_z)
    args = [t.contiguous() for t in (log_pf, log_pb, offsets, log_reward, log_z)]
    out = log_pf.new_empty(max(offsets.shape[0] - 1, 0) if offsets.dim() == 1 else 0)
    _C.trajectory_balance(*args, out, None, None, None, None, None, stream(log_pf))
    return out


@_tb.register_fake
def _(log_pf, log_pb, offsets, log_reward, log_z):
    check_same_device("trajectory_balance", log_pf=log_pf, log_pb=log_pb, offsets=offsets, log_reward=log_reward,
                      log_z=log_z)
    return log_pf.new_empty(log_reward.shape[:1])


@torch.library.custom_op("gfncore::trajectory_balance_backward", mutates_args=())
def _tb_backward(grad: torch.Tensor, log_pf: torch.Tensor, log_pb: torch.Tensor, offsets: torch.Tensor,
                 log_reward: torch.Tensor, log_z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if not compiled_for(log_pf):
        return reference.trajectory_balance_backward(grad, log_pf, log_pb, offsets, log_reward, log_z)
    args = [t.contiguous() for t in (log_pf, log_pb, offsets, log_reward, log_z)]
    B = log_reward.shape[0]
    gpf, gpb = torch.empty_like(log_pf), torch.empty_like(log_pb)
    gr, gz = torch.empty_like(log_reward), log_pf.new_empty(B)
    _C.trajectory_balance(*args, None, grad.contiguous(), gpf, gpb, gr, gz, stream(log_pf))
    if log_z.dim() == 0:
        gz = gz.sum()
    return gpf, gpb, gr, gz


@_tb_backward.register_fake
def _(grad, log_pf, log_pb, offsets, log_reward, log_z):
    check_same_device("trajectory_balance_backward", log_pf=log_pf, grad=grad, log_pb=log_pb, offsets=offsets,
                      log_reward=log_reward, log_z=log_z)
    return torch.empty_like(log_pf), torch.empty_like(log_pb), torch.empty_like(log_reward), torch.empty_like(log_z)


def _tb_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _tb_bwd(ctx, grad):
    log_pf, log_pb, offsets, log_reward, log_z = ctx.saved_tensors
    gpf, gpb, gr, gz = _tb_backward(grad, log_pf, log_pb, offsets, log_reward, log_z)
    return gpf, gpb, None, gr, gz


_tb.register_autograd(_tb_bwd, setup_context=_tb_setup)


def trajectory_balance(log_pf: torch.Tensor, log_pb: torch.Tensor, offsets: torch.Tensor, log_reward: torch.Tensor,
                       log_z: torch.Tensor) -> torch.Tensor:
    """Per-trajectory trajectory-balance residuals squared, ``[B]``.

    For trajectory i with packed rows ``offsets[i]:offsets[i+1]``:
    ``(log_z[i] + sum log_pf - log_reward[i] - sum log_pb) ** 2``. ``log_z`` is a scalar (one
    partition function) or ``[B]`` (one per trajectory, e.g. conditional). Gradients flow to
    log_pf, log_pb, log_reward and log_z.
    """
    require_tensors("trajectory_balance", log_pf=log_pf, log_pb=log_pb, offsets=offsets, log_reward=log_reward)
    if not isinstance(log_z, torch.Tensor):
        log_z = torch.tensor(float(log_z), dtype=log_pf.dtype, device=log_pf.device)
    return _tb(log_pf, log_pb, offsets, log_reward, log_z)
