"""Balance objectives over packed, aligned trajectories as torch custom ops with fused
forward and backward kernels."""
from __future__ import annotations

import concurrent.futures
import math

import torch

from .. import _C
from . import reference
from ._dispatch import (EagerFused, FusedKernels, check_same_device, compiled_for, eager_fast, register_fused_autograd,
                        require_tensors, stream, warn_fallback)


@torch.library.custom_op("gfncore::trajectory_balance", mutates_args=())
def _tb(log_pf: torch.Tensor, log_pb: torch.Tensor, offsets: torch.Tensor, log_reward: torch.Tensor,
        log_z: torch.Tensor) -> torch.Tensor:
    if not compiled_for(log_pf):
        warn_fallback("trajectory_balance", log_pf)
        return reference.trajectory_balance(log_pf, log_pb, offsets, log_reward, log_z)
    return _tb_forward(log_pf, log_pb, offsets, log_reward, log_z)


def _tb_forward(log_pf, log_pb, offsets, log_reward, log_z):
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
    return _tb_backward_kernels(grad, log_pf, log_pb, offsets, log_reward, log_z)


def _tb_backward_kernels(grad, log_pf, log_pb, offsets, log_reward, log_z):
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


_TB = FusedKernels(_tb_forward, _tb_backward_kernels, (0, 1, 3, 4))
register_fused_autograd(_tb, _tb_backward, _TB.grad_slots)


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
    if eager_fast(log_pf, log_pb, offsets, log_reward, log_z):
        return EagerFused.apply(_TB, log_pf, log_pb, offsets, log_reward, log_z)
    return _tb(log_pf, log_pb, offsets, log_reward, log_z)


# ---------------------------------------------------------------------------------------------
# Detailed, modified detailed, sub-trajectory balance, flow matching and log-partition variance.
# Each follows trajectory_balance: a forward op, a backward op (itself a custom op, so the
# backward survives torch.compile), and a public function. On a device without a compiled
# kernel both fall back to the reference (the backward through torch.autograd on it).
def _reference_grads(fn, grad, inputs, diff):
    """Gradients of reference fn(*inputs) w.r.t. inputs[i] for i in diff, weighted by grad.

    A custom op's body runs with autograd excluded from the thread's dispatch state (so
    torch.enable_grad alone records nothing); a fresh thread starts with autograd on."""
    def run():
        xs = list(inputs)
        for i in diff:
            xs[i] = xs[i].detach().requires_grad_(True)
        y = fn(*xs)
        if not y.requires_grad:  # an empty batch: the reference built no graph
            return [torch.zeros_like(xs[i]) for i in diff]
        gs = torch.autograd.grad(y, [xs[i] for i in diff], grad, allow_unused=True, materialize_grads=True)
        return [g.clone() for g in gs]  # a custom op's outputs may not alias its inputs (grad)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def _empty(t: torch.Tensor) -> torch.Tensor:
    # Gradient buffers are dense row-major whatever the input's strides: the kernels index them so.
    return torch.empty_like(t, memory_format=torch.contiguous_format)


def _contig(*ts):
    return [t.contiguous() for t in ts]


def _num_traj(offsets: torch.Tensor) -> int:
    return max(offsets.shape[0] - 1, 0) if offsets.dim() == 1 else 0


# --- detailed balance -------------------------------------------------------------------------
@torch.library.custom_op("gfncore::detailed_balance", mutates_args=())
def _db(log_pf: torch.Tensor, log_pb: torch.Tensor, log_flow: torch.Tensor, offsets: torch.Tensor,
        log_reward: torch.Tensor) -> torch.Tensor:
    if not compiled_for(log_pf):
        warn_fallback("detailed_balance", log_pf)
        return reference.detailed_balance(log_pf, log_pb, log_flow, offsets, log_reward)
    return _db_forward(log_pf, log_pb, log_flow, offsets, log_reward)


def _db_forward(log_pf, log_pb, log_flow, offsets, log_reward):
    out = log_pf.new_empty(log_pf.shape[:1])
    _C.detailed_balance(*_contig(log_pf, log_pb, log_flow, offsets, log_reward), out, None, None, None, None, None,
                        stream(log_pf))
    return out


@_db.register_fake
def _(log_pf, log_pb, log_flow, offsets, log_reward):
    return log_pf.new_empty(log_pf.shape[:1])


@torch.library.custom_op("gfncore::detailed_balance_backward", mutates_args=())
def _db_backward(grad: torch.Tensor, log_pf: torch.Tensor, log_pb: torch.Tensor, log_flow: torch.Tensor,
                 offsets: torch.Tensor, log_reward: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if not compiled_for(log_pf):
        return tuple(_reference_grads(reference.detailed_balance, grad, (log_pf, log_pb, log_flow, offsets, log_reward),
                                      (0, 1, 2, 4)))
    return _db_backward_kernels(grad, log_pf, log_pb, log_flow, offsets, log_reward)


def _db_backward_kernels(grad, log_pf, log_pb, log_flow, offsets, log_reward):
    gpf, gpb, gf, gr = (_empty(t) for t in (log_pf, log_pb, log_flow, log_reward))
    _C.detailed_balance(*_contig(log_pf, log_pb, log_flow, offsets, log_reward), None, grad.contiguous(), gpf, gpb,
                        gf, gr, stream(log_pf))
    return gpf, gpb, gf, gr


@_db_backward.register_fake
def _(grad, log_pf, log_pb, log_flow, offsets, log_reward):
    return tuple(_empty(t) for t in (log_pf, log_pb, log_flow, log_reward))


_DB = FusedKernels(_db_forward, _db_backward_kernels, (0, 1, 2, 4))
register_fused_autograd(_db, _db_backward, _DB.grad_slots)


def detailed_balance(log_pf: torch.Tensor, log_pb: torch.Tensor, log_flow: torch.Tensor, offsets: torch.Tensor,
                     log_reward: torch.Tensor) -> torch.Tensor:
    """Per-transition detailed-balance residuals squared, ``[T]``.

    Move row t: ``(log_flow[t] + log_pf[t] - log_flow[t+1] - log_pb[t]) ** 2``; the stop row of
    trajectory i: ``(log_flow[t] + log_pf[t] - log_reward[i]) ** 2``. ``log_pf``, ``log_pb``,
    ``log_flow`` are ``[T]`` float, ``offsets`` ``[B+1]`` int64, ``log_reward`` ``[B]``.
    Gradients flow to log_pf, log_pb, log_flow and log_reward.
    """
    require_tensors("detailed_balance", log_pf=log_pf, log_pb=log_pb, log_flow=log_flow, offsets=offsets,
                    log_reward=log_reward)
    if eager_fast(log_pf, log_pb, log_flow, offsets, log_reward):
        return EagerFused.apply(_DB, log_pf, log_pb, log_flow, offsets, log_reward)
    return _db(log_pf, log_pb, log_flow, offsets, log_reward)


# --- modified detailed balance ----------------------------------------------------------------
@torch.library.custom_op("gfncore::modified_detailed_balance", mutates_args=())
def _mdb(log_pf: torch.Tensor, log_pb: torch.Tensor, log_pf_stop: torch.Tensor, log_reward_state: torch.Tensor,
         offsets: torch.Tensor) -> torch.Tensor:
    if not compiled_for(log_pf):
        warn_fallback("modified_detailed_balance", log_pf)
        return reference.modified_detailed_balance(log_pf, log_pb, log_pf_stop, log_reward_state, offsets)
    return _mdb_forward(log_pf, log_pb, log_pf_stop, log_reward_state, offsets)


def _mdb_forward(log_pf, log_pb, log_pf_stop, log_reward_state, offsets):
    out = log_pf.new_empty(log_pf.shape[:1])
    _C.modified_detailed_balance(*_contig(log_pf, log_pb, log_pf_stop, log_reward_state, offsets), out, None, None,
                                 None, None, None, stream(log_pf))
    return out


@_mdb.register_fake
def _(log_pf, log_pb, log_pf_stop, log_reward_state, offsets):
    return log_pf.new_empty(log_pf.shape[:1])


@torch.library.custom_op("gfncore::modified_detailed_balance_backward", mutates_args=())
def _mdb_backward(grad: torch.Tensor, log_pf: torch.Tensor, log_pb: torch.Tensor, log_pf_stop: torch.Tensor,
                  log_reward_state: torch.Tensor, offsets: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if not compiled_for(log_pf):
        return tuple(_reference_grads(reference.modified_detailed_balance, grad,
                                      (log_pf, log_pb, log_pf_stop, log_reward_state, offsets), (0, 1, 2, 3)))
    return _mdb_backward_kernels(grad, log_pf, log_pb, log_pf_stop, log_reward_state, offsets)


def _mdb_backward_kernels(grad, log_pf, log_pb, log_pf_stop, log_reward_state, offsets):
    gpf, gpb, gs, gr = (_empty(t) for t in (log_pf, log_pb, log_pf_stop, log_reward_state))
    _C.modified_detailed_balance(*_contig(log_pf, log_pb, log_pf_stop, log_reward_state, offsets), None,
                                 grad.contiguous(), gpf, gpb, gs, gr, stream(log_pf))
    return gpf, gpb, gs, gr


@_mdb_backward.register_fake
def _(grad, log_pf, log_pb, log_pf_stop, log_reward_state, offsets):
    return tuple(_empty(t) for t in (log_pf, log_pb, log_pf_stop, log_reward_state))


_MDB = FusedKernels(_mdb_forward, _mdb_backward_kernels, (0, 1, 2, 3))
register_fused_autograd(_mdb, _mdb_backward, _MDB.grad_slots)


def modified_detailed_balance(log_pf: torch.Tensor, log_pb: torch.Tensor, log_pf_stop: torch.Tensor,
                              log_reward_state: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Per-transition modified detailed-balance residuals squared, ``[T]`` (Deleu et al. 2022),
    for environments where every state may terminate.

    Move row t: ``(lr[t+1] + log_pb[t] + log_pf_stop[t] - lr[t] - log_pf[t] - log_pf_stop[t+1]) ** 2``
    with ``lr = log_reward_state`` (log R of the state each row leaves) and ``log_pf_stop[t]`` =
    log P_F(stop | s_t); stop rows give 0 with zero gradient. All float inputs are ``[T]``.
    """
    require_tensors("modified_detailed_balance", log_pf=log_pf, log_pb=log_pb, log_pf_stop=log_pf_stop,
                    log_reward_state=log_reward_state, offsets=offsets)
    if eager_fast(log_pf, log_pb, log_pf_stop, log_reward_state, offsets):
        return EagerFused.apply(_MDB, log_pf, log_pb, log_pf_stop, log_reward_state, offsets)
    return _mdb(log_pf, log_pb, log_pf_stop, log_reward_state, offsets)


# --- sub-trajectory balance -------------------------------------------------------------------
def _check_lam(lam: float) -> None:
    if not (math.isfinite(lam) and lam > 0):
        raise ValueError(f"lam must be a finite number > 0, got {lam}")


@torch.library.custom_op("gfncore::subtrajectory_balance", mutates_args=())
def _subtb(log_pf: torch.Tensor, log_pb: torch.Tensor, log_flow: torch.Tensor, offsets: torch.Tensor,
           log_reward: torch.Tensor, lam: float) -> torch.Tensor:
    _check_lam(lam)
    if not compiled_for(log_pf):
        warn_fallback("subtrajectory_balance", log_pf)
        return reference.subtrajectory_balance(log_pf, log_pb, log_flow, offsets, log_reward, lam)
    return _subtb_forward(log_pf, log_pb, log_flow, offsets, log_reward, lam)


def _subtb_forward(log_pf, log_pb, log_flow, offsets, log_reward, lam):
    out = log_pf.new_empty(_num_traj(offsets))
    _C.subtrajectory_balance(*_contig(log_pf, log_pb, log_flow, offsets, log_reward), lam, out, None, None, None,
                             None, None, None, stream(log_pf))
    return out


@_subtb.register_fake
def _(log_pf, log_pb, log_flow, offsets, log_reward, lam):
    return log_pf.new_empty(log_reward.shape[:1])


@torch.library.custom_op("gfncore::subtrajectory_balance_backward", mutates_args=())
def _subtb_backward(grad: torch.Tensor, log_pf: torch.Tensor, log_pb: torch.Tensor, log_flow: torch.Tensor,
                    offsets: torch.Tensor, log_reward: torch.Tensor, lam: float
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if not compiled_for(log_pf):
        fn = lambda *a: reference.subtrajectory_balance(*a, lam)  # noqa: E731
        return tuple(_reference_grads(fn, grad, (log_pf, log_pb, log_flow, offsets, log_reward), (0, 1, 2, 4)))
    return _subtb_backward_kernels(grad, log_pf, log_pb, log_flow, offsets, log_reward, lam)


def _subtb_backward_kernels(grad, log_pf, log_pb, log_flow, offsets, log_reward, lam):
    gpf, gpb, gf, gr = (_empty(t) for t in (log_pf, log_pb, log_flow, log_reward))
    work = torch.empty(log_pf.shape[0] + log_reward.shape[0], dtype=torch.float64, device=log_pf.device)
    _C.subtrajectory_balance(*_contig(log_pf, log_pb, log_flow, offsets, log_reward), lam, None, grad.contiguous(),
                             gpf, gpb, gf, gr, work, stream(log_pf))
    return gpf, gpb, gf, gr


@_subtb_backward.register_fake
def _(grad, log_pf, log_pb, log_flow, offsets, log_reward, lam):
    return tuple(_empty(t) for t in (log_pf, log_pb, log_flow, log_reward))


_SUBTB = FusedKernels(_subtb_forward, _subtb_backward_kernels, (0, 1, 2, 4))
register_fused_autograd(_subtb, _subtb_backward, _SUBTB.grad_slots)


def subtrajectory_balance(log_pf: torch.Tensor, log_pb: torch.Tensor, log_flow: torch.Tensor, offsets: torch.Tensor,
                          log_reward: torch.Tensor, lam: float = 0.9) -> torch.Tensor:
    """Per-trajectory sub-trajectory balance SubTB(lambda), ``[B]`` (Madan et al. 2023).

    Trajectory i with L rows has nodes k = 0..L with log F_k = log_flow[o+k] (k < L) and
    log F_L = log_reward[i]; every sub-trajectory j -> k has residual
    ``log F_j + sum_{t=j}^{k-1} (log_pf - log_pb)[o+t] - log F_k`` and weight ``lam ** (k - j)``;
    the loss is the weighted mean of the squared residuals. O(L) time and no L x L memory per
    trajectory (see csrc/ops/subtb.h). ``lam`` must be a finite number > 0.
    """
    require_tensors("subtrajectory_balance", log_pf=log_pf, log_pb=log_pb, log_flow=log_flow, offsets=offsets,
                    log_reward=log_reward)
    _check_lam(float(lam))
    if eager_fast(log_pf, log_pb, log_flow, offsets, log_reward):
        return EagerFused.apply(_SUBTB, log_pf, log_pb, log_flow, offsets, log_reward, float(lam))
    return _subtb(log_pf, log_pb, log_flow, offsets, log_reward, float(lam))


# --- flow matching ----------------------------------------------------------------------------
@torch.library.custom_op("gfncore::flow_matching", mutates_args=())
def _fm(log_in: torch.Tensor, in_count: torch.Tensor, log_out: torch.Tensor, out_mask: torch.Tensor) -> torch.Tensor:
    if not compiled_for(log_in):
        warn_fallback("flow_matching", log_in)
        return reference.flow_matching(log_in, in_count, log_out, out_mask)
    return _fm_forward(log_in, in_count, log_out, out_mask)


def _fm_forward(log_in, in_count, log_out, out_mask):
    out = log_in.new_empty(log_in.shape[:1])
    _C.flow_matching(*_contig(log_in, in_count, log_out, out_mask), out, None, None, None, stream(log_in))
    return out


@_fm.register_fake
def _(log_in, in_count, log_out, out_mask):
    return log_in.new_empty(log_in.shape[:1])


@torch.library.custom_op("gfncore::flow_matching_backward", mutates_args=())
def _fm_backward(grad: torch.Tensor, log_in: torch.Tensor, in_count: torch.Tensor, log_out: torch.Tensor,
                 out_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not compiled_for(log_in):
        return tuple(_reference_grads(reference.flow_matching, grad, (log_in, in_count, log_out, out_mask), (0, 2)))
    return _fm_backward_kernels(grad, log_in, in_count, log_out, out_mask)


def _fm_backward_kernels(grad, log_in, in_count, log_out, out_mask):
    gi, go = _empty(log_in), _empty(log_out)
    _C.flow_matching(*_contig(log_in, in_count, log_out, out_mask), None, grad.contiguous(), gi, go, stream(log_in))
    return gi, go


@_fm_backward.register_fake
def _(grad, log_in, in_count, log_out, out_mask):
    return _empty(log_in), _empty(log_out)


_FM = FusedKernels(_fm_forward, _fm_backward_kernels, (0, 2))
register_fused_autograd(_fm, _fm_backward, _FM.grad_slots)


def flow_matching(log_in: torch.Tensor, in_count: torch.Tensor, log_out: torch.Tensor,
                  out_mask: torch.Tensor) -> torch.Tensor:
    """Per-state flow-matching residuals squared, ``[N]``.

    ``(logsumexp_{k < in_count[n]} log_in[n, k] - logsumexp_{a: out_mask[n, a]} log_out[n, a]) ** 2``:
    the log of the flow into state n along its parent edges against the log of the flow out of it
    (a terminal state's out-edge being its stop edge, carrying R(x)). ``log_in`` ``[N, P]`` float,
    ``in_count`` ``[N]`` int64 in ``[0, P]``, ``log_out`` ``[N, A]``, ``out_mask`` ``[N, A]`` bool
    with at least one legal edge per row. A state with no parent (``in_count == 0``, the initial
    state) contributes 0 with zero gradient. Gradients flow to log_in and log_out.
    """
    require_tensors("flow_matching", log_in=log_in, in_count=in_count, log_out=log_out, out_mask=out_mask)
    if eager_fast(log_in, in_count, log_out, out_mask):
        return EagerFused.apply(_FM, log_in, in_count, log_out, out_mask)
    return _fm(log_in, in_count, log_out, out_mask)


# --- log-partition variance (ZVar) ------------------------------------------------------------
@torch.library.custom_op("gfncore::log_partition_variance", mutates_args=())
def _zvar(log_pf: torch.Tensor, log_pb: torch.Tensor, offsets: torch.Tensor, log_reward: torch.Tensor) -> torch.Tensor:
    if not compiled_for(log_pf):
        warn_fallback("log_partition_variance", log_pf)
        return reference.log_partition_variance(log_pf, log_pb, offsets, log_reward)
    return _zvar_forward(log_pf, log_pb, offsets, log_reward)


def _zvar_forward(log_pf, log_pb, offsets, log_reward):
    B = _num_traj(offsets)
    out = log_pf.new_empty(B)
    work = torch.empty(B + 2, dtype=torch.float64, device=log_pf.device)
    _C.log_partition_variance(*_contig(log_pf, log_pb, offsets, log_reward), out, None, None, None, None, work,
                              stream(log_pf))
    return out


@_zvar.register_fake
def _(log_pf, log_pb, offsets, log_reward):
    return log_pf.new_empty(log_reward.shape[:1])


@torch.library.custom_op("gfncore::log_partition_variance_backward", mutates_args=())
def _zvar_backward(grad: torch.Tensor, log_pf: torch.Tensor, log_pb: torch.Tensor, offsets: torch.Tensor,
                   log_reward: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if not compiled_for(log_pf):
        return tuple(_reference_grads(reference.log_partition_variance, grad, (log_pf, log_pb, offsets, log_reward),
                                      (0, 1, 3)))
    return _zvar_backward_kernels(grad, log_pf, log_pb, offsets, log_reward)


def _zvar_backward_kernels(grad, log_pf, log_pb, offsets, log_reward):
    gpf, gpb, gr = (_empty(t) for t in (log_pf, log_pb, log_reward))
    work = torch.empty(log_reward.shape[0] + 2, dtype=torch.float64, device=log_pf.device)
    _C.log_partition_variance(*_contig(log_pf, log_pb, offsets, log_reward), None, grad.contiguous(), gpf, gpb, gr,
                              work, stream(log_pf))
    return gpf, gpb, gr


@_zvar_backward.register_fake
def _(grad, log_pf, log_pb, offsets, log_reward):
    return tuple(_empty(t) for t in (log_pf, log_pb, log_reward))


_ZVAR = FusedKernels(_zvar_forward, _zvar_backward_kernels, (0, 1, 3))
register_fused_autograd(_zvar, _zvar_backward, _ZVAR.grad_slots)


def log_partition_variance(log_pf: torch.Tensor, log_pb: torch.Tensor, offsets: torch.Tensor,
                           log_reward: torch.Tensor) -> torch.Tensor:
    """Per-trajectory log-partition variance terms, ``[B]`` (ZVar, Zhang et al. 2023).

    Each trajectory implies a log Z estimate ``zeta_i = log_reward[i] + sum log_pb - sum log_pf``;
    returns ``(zeta_i - mean_j zeta_j) ** 2`` (the batch mean of it is the variance). Gradients
    are exact, including the path through the batch mean. B = 0 gives an empty tensor.
    """
    require_tensors("log_partition_variance", log_pf=log_pf, log_pb=log_pb, offsets=offsets, log_reward=log_reward)
    if eager_fast(log_pf, log_pb, offsets, log_reward):
        return EagerFused.apply(_ZVAR, log_pf, log_pb, offsets, log_reward)
    return _zvar(log_pf, log_pb, offsets, log_reward)
