"""Balance objectives over packed, aligned trajectories as fused ops (one kernel pass forward,
one backward), each declared once in the table below (see FusedOp for what a declaration makes).

Convention shared by every objective, kernel and reference: the stop row's log P_B is 0 by
definition (x has no successor to go back from). Whatever a caller stores there is ignored and
gets zero gradient; every producer in the library writes 0."""
from __future__ import annotations

import math
import numbers
import sys

import torch

from .. import _C
from . import reference
from ._args import I64, OFFSETS, Bool, F
from ._device import stream
from ._fused import FusedOp
from .softmax_gather import gather_backward, gather_forward

_PB = "one row per transition, like log_pf"
_LR = "one log-reward per trajectory (len(offsets) - 1)"


# Buffers allocated before the bindings check the arguments are sized by the numel of a dense
# argument (never by a shape alone: a [2**40, 0] tensor holds nothing), so a bad input cannot ask
# the allocator for more than the inputs already occupy.
def _num_traj(offsets: torch.Tensor) -> int:
    return max(offsets.numel() - 1, 0) if offsets.dim() == 1 else 0


def _work(n: int, like: torch.Tensor) -> torch.Tensor:
    """float64 scratch for the kernels' per-node / per-trajectory sums."""
    return torch.empty(n, dtype=torch.float64, device=like.device)


# --- trajectory balance -----------------------------------------------------------------------
def _tb_forward(log_pf, log_pb, offsets, log_reward, log_z):
    out = log_pf.new_empty(_num_traj(offsets))
    _C.trajectory_balance_forward(log_pf, log_pb, offsets, log_reward, log_z, out, stream(log_pf))
    return out


def _tb_backward(grad, log_pf, log_pb, offsets, log_reward, log_z):
    gpf, gpb, gr = torch.empty_like(log_pf), torch.empty_like(log_pb), torch.empty_like(log_reward)
    gz = log_pf.new_empty(log_reward.numel())  # per trajectory; summed below for a shared log Z
    _C.trajectory_balance_backward(log_pf, log_pb, offsets, log_reward, log_z, grad, gpf, gpb, gr, gz, stream(log_pf))
    return gpf, gpb, gr, (gz.sum() if log_z.dim() == 0 else gz)


_TB_ARGS = (F("log_pf", ("T",)), F("log_pb", ("T",), what=_PB), OFFSETS, F("log_reward", ("B",), what=_LR),
            F("log_z", (), ("B",)))
_TB = FusedOp("trajectory_balance", _TB_ARGS, grads=("log_pf", "log_pb", "log_reward", "log_z"), out=("B",),
              forward=_tb_forward, backward=_tb_backward, reference=reference.trajectory_balance,
              reference_backward=reference.trajectory_balance_backward)


def _as_log_z(log_z, like: torch.Tensor) -> torch.Tensor:
    if isinstance(log_z, torch.Tensor):
        return log_z
    if isinstance(log_z, bool) or not isinstance(log_z, numbers.Real):
        raise TypeError(f"log_z must be a torch.Tensor or a real number, got {type(log_z).__name__}")
    return torch.tensor(float(log_z), dtype=like.dtype, device=like.device)


def trajectory_balance(log_pf: torch.Tensor, log_pb: torch.Tensor, offsets: torch.Tensor, log_reward: torch.Tensor,
                       log_z: torch.Tensor) -> torch.Tensor:
    """Per-trajectory trajectory-balance residuals squared, ``[B]``.

    For trajectory i with packed rows ``offsets[i]:offsets[i+1]``:
    ``(log_z[i] + sum log_pf - log_reward[i] - sum log_pb) ** 2``, the log_pb sum running over
    the moves (the stop row's log_pb is 0 by definition: ignored, zero gradient). ``log_z`` is a
    scalar (one partition function) or ``[B]`` (one per trajectory, e.g. conditional). Gradients
    flow to log_pf, log_pb, log_reward and log_z.
    """
    if isinstance(log_pf, torch.Tensor):
        log_z = _as_log_z(log_z, log_pf)
    return _TB(log_pf, log_pb, offsets, log_reward, log_z)


# --- trajectory balance from P_F logits -------------------------------------------------------
def _tbl_forward(logits, mask, actions, log_pb, offsets, log_reward, log_z):
    log_pf = gather_forward(logits, mask, actions)
    return _tb_forward(log_pf, log_pb, offsets, log_reward, log_z), log_pf  # log_pf: kept for the backward


def _tbl_backward(grad, logits, mask, actions, log_pb, offsets, log_reward, log_z, log_pf=None):
    if log_pf is None:  # the custom op keeps one output: recompute (one pass over [T, A])
        log_pf = gather_forward(logits, mask, actions)
    gpf, gpb, gr, gz = _tb_backward(grad, log_pf, log_pb, offsets, log_reward, log_z)
    return gather_backward(gpf, logits, mask, actions), gpb, gr, gz


def _tbl_reference(logits, mask, actions, log_pb, offsets, log_reward, log_z):
    log_pf = reference.masked_log_softmax_gather(logits, mask, actions)
    return reference.trajectory_balance(log_pf, log_pb, offsets, log_reward, log_z)


def _tbl_reference_backward(grad, logits, mask, actions, log_pb, offsets, log_reward, log_z):
    log_pf = reference.masked_log_softmax_gather(logits, mask, actions)
    gpf, gpb, gr, gz = reference.trajectory_balance_backward(grad, log_pf, log_pb, offsets, log_reward, log_z)
    return reference.masked_log_softmax_gather_backward(gpf, logits, mask, actions), gpb, gr, gz


# The batch mean as part of the op: the loss then costs one autograd node, not two (a mean node
# costs about as much as this kernel at a training batch's size).
def _mean_grad(grad, offsets):
    B = _num_traj(offsets)
    return grad.expand(B).div(B)  # a new dense [B] tensor


def _tbl_mean_forward(*args):
    per_traj, log_pf = _tbl_forward(*args)
    return per_traj.mean(), log_pf


_TBL_ARGS = (F("logits", ("T", "A")), Bool("mask", ("T", "A"), what=("rows of logits", "columns of logits")),
             I64("actions", ("T",), what="rows of logits"), F("log_pb", ("T",), what="one row per transition, like logits"),
             OFFSETS, F("log_reward", ("B",), what=_LR), F("log_z", (), ("B",)))
_TBL_GRADS = ("logits", "log_pb", "log_reward", "log_z")
_TBL = FusedOp("trajectory_balance_from_logits", _TBL_ARGS, grads=_TBL_GRADS, out=("B",), forward=_tbl_forward,
               backward=_tbl_backward, reference=_tbl_reference, reference_backward=_tbl_reference_backward)
_TBL_MEAN = FusedOp(
    "trajectory_balance_from_logits_mean", _TBL_ARGS, grads=_TBL_GRADS, out=(), forward=_tbl_mean_forward,
    backward=lambda g, *a: _tbl_backward(_mean_grad(g, a[4]), *a),
    reference=lambda *a: _tbl_reference(*a).mean(),
    reference_backward=lambda g, *a: _tbl_reference_backward(_mean_grad(g, a[4]), *a))


def trajectory_balance_from_logits(logits: torch.Tensor, mask: torch.Tensor, actions: torch.Tensor,
                                   log_pb: torch.Tensor, offsets: torch.Tensor, log_reward: torch.Tensor,
                                   log_z: torch.Tensor, reduction: str = "none") -> torch.Tensor:
    """Per-trajectory trajectory balance, ``[B]``, straight from the P_F logits of every packed row
    (``reduction="mean"``: its batch mean, the TB loss, a scalar).

    The same as ``trajectory_balance(masked_log_softmax_gather(logits, mask, actions), log_pb,
    offsets, log_reward, log_z)``, as one fused op: the gather feeds the trajectory-balance kernel
    forward and backward, so a training step pays one autograd node for both (their dispatch
    costs as much as the kernels on a CPU). ``logits`` ``[T, A]``, ``mask`` ``[T, A]`` bool,
    ``actions`` ``[T]`` int64; the rest as in :func:`trajectory_balance` (the stop row's log_pb
    is ignored). Gradients flow to logits, log_pb, log_reward and log_z.
    """
    if reduction not in ("none", "mean"):
        raise ValueError(f"reduction must be 'none' or 'mean', got {reduction!r}")
    if isinstance(logits, torch.Tensor):
        log_z = _as_log_z(log_z, logits)
    op = _TBL if reduction == "none" else _TBL_MEAN
    return op(logits, mask, actions, log_pb, offsets, log_reward, log_z)


# --- detailed and modified detailed balance (one kernel) --------------------------------------
def _db_forward(log_pf, log_pb, log_flow, offsets, log_reward):
    out = log_pf.new_empty(log_pf.numel())
    _C.detailed_balance_forward(log_pf, log_pb, log_flow, offsets, log_reward, out, stream(log_pf))
    return out


def _db_backward(grad, log_pf, log_pb, log_flow, offsets, log_reward):
    gs = [torch.empty_like(t) for t in (log_pf, log_pb, log_flow, log_reward)]
    _C.detailed_balance_backward(log_pf, log_pb, log_flow, offsets, log_reward, grad, *gs, stream(log_pf))
    return gs


_DB = FusedOp("detailed_balance",
              (F("log_pf", ("T",)), F("log_pb", ("T",), what=_PB), F("log_flow", ("T",), what="one flow per row, like log_pf"),
               OFFSETS, F("log_reward", ("B",), what=_LR)),
              grads=("log_pf", "log_pb", "log_flow", "log_reward"), out=("T",),
              forward=_db_forward, backward=_db_backward, reference=reference.detailed_balance)


def detailed_balance(log_pf: torch.Tensor, log_pb: torch.Tensor, log_flow: torch.Tensor, offsets: torch.Tensor,
                     log_reward: torch.Tensor) -> torch.Tensor:
    """Per-transition detailed-balance residuals squared, ``[T]``.

    Move row t: ``(log_flow[t] + log_pf[t] - log_flow[t+1] - log_pb[t]) ** 2``; the stop row of
    trajectory i: ``(log_flow[t] + log_pf[t] - log_reward[i]) ** 2`` (its log_pb is 0 by
    definition: ignored, zero gradient). ``log_pf``, ``log_pb``, ``log_flow`` are ``[T]`` float,
    ``offsets`` ``[B+1]`` int64, ``log_reward`` ``[B]``. Gradients flow to log_pf, log_pb, log_flow
    and log_reward.
    """
    return _DB(log_pf, log_pb, log_flow, offsets, log_reward)


def _mdb_forward(log_pf, log_pb, log_pf_stop, log_reward_state, offsets):
    out = log_pf.new_empty(log_pf.numel())
    _C.modified_detailed_balance_forward(log_pf, log_pb, log_pf_stop, log_reward_state, offsets, out, stream(log_pf))
    return out


def _mdb_backward(grad, log_pf, log_pb, log_pf_stop, log_reward_state, offsets):
    gs = [torch.empty_like(t) for t in (log_pf, log_pb, log_pf_stop, log_reward_state)]
    _C.modified_detailed_balance_backward(log_pf, log_pb, log_pf_stop, log_reward_state, offsets, grad, *gs,
                                          stream(log_pf))
    return gs


_MDB = FusedOp("modified_detailed_balance",
               (F("log_pf", ("T",)), F("log_pb", ("T",), what=_PB),
                F("log_pf_stop", ("T",), what="log P_F(stop | s_t) per row, like log_pf"),
                F("log_reward_state", ("T",), what="log R(s_t) per row, like log_pf"), OFFSETS),
               grads=("log_pf", "log_pb", "log_pf_stop", "log_reward_state"), out=("T",),
               forward=_mdb_forward, backward=_mdb_backward, reference=reference.modified_detailed_balance)


def modified_detailed_balance(log_pf: torch.Tensor, log_pb: torch.Tensor, log_pf_stop: torch.Tensor,
                              log_reward_state: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Per-transition modified detailed-balance residuals squared, ``[T]`` (Deleu et al. 2022),
    for environments where every state may terminate.

    Move row t: ``(lr[t+1] + log_pb[t] + log_pf_stop[t] - lr[t] - log_pf[t] - log_pf_stop[t+1]) ** 2``
    with ``lr = log_reward_state`` (log R of the state each row leaves) and ``log_pf_stop[t]`` =
    log P_F(stop | s_t); stop rows give 0 with zero gradient (their log_pb, 0 by definition,
    included). All float inputs are ``[T]``.
    """
    return _MDB(log_pf, log_pb, log_pf_stop, log_reward_state, offsets)


# --- sub-trajectory balance -------------------------------------------------------------------
def _check_lam(lam) -> float:
    if isinstance(lam, torch.Tensor) and lam.numel() == 1 and lam.dtype.is_floating_point:
        lam = lam.item()
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real):
        raise TypeError(f"lam must be a real number, got {type(lam).__name__}")
    lam = float(lam)
    if not (math.isfinite(lam) and lam > 0):
        raise ValueError(f"lam must be a finite number > 0, got {lam}")
    if lam < sys.float_info.min:  # subnormal: lam**k loses its digits (1e-320 was off in the 4th digit)
        raise ValueError(f"lam must be >= {sys.float_info.min:.4g} (the smallest normal float64), got {lam}")
    return lam


def _subtb_forward(log_pf, log_pb, log_flow, offsets, log_reward, lam):
    out = log_pf.new_empty(_num_traj(offsets))
    _C.subtrajectory_balance_forward(log_pf, log_pb, log_flow, offsets, log_reward, lam, out, stream(log_pf))
    return out


def _subtb_backward(grad, log_pf, log_pb, log_flow, offsets, log_reward, lam):
    gs = [torch.empty_like(t) for t in (log_pf, log_pb, log_flow, log_reward)]
    work = _work(log_pf.numel() + log_reward.numel(), log_pf)
    _C.subtrajectory_balance_backward(log_pf, log_pb, log_flow, offsets, log_reward, lam, grad, *gs, work, stream(log_pf))
    return gs


_SUBTB = FusedOp("subtrajectory_balance",
                 (F("log_pf", ("T",)), F("log_pb", ("T",), what=_PB), F("log_flow", ("T",), what="one flow per row, like log_pf"),
                  OFFSETS, F("log_reward", ("B",), what=_LR)),
                 grads=("log_pf", "log_pb", "log_flow", "log_reward"), out=("B",), scalars=(("lam", "float"),),
                 forward=_subtb_forward, backward=_subtb_backward, reference=reference.subtrajectory_balance)


def subtrajectory_balance(log_pf: torch.Tensor, log_pb: torch.Tensor, log_flow: torch.Tensor, offsets: torch.Tensor,
                          log_reward: torch.Tensor, lam: float = 0.9) -> torch.Tensor:
    """Per-trajectory sub-trajectory balance SubTB(lambda), ``[B]`` (Madan et al. 2023).

    Trajectory i with L rows has nodes k = 0..L with log F_k = log_flow[o+k] (k < L) and
    log F_L = log_reward[i]; every sub-trajectory j -> k has residual
    ``log F_j + sum_{t=j}^{k-1} (log_pf - log_pb)[o+t] - log F_k`` and weight ``lam ** (k - j)``;
    the loss is the weighted mean of the squared residuals. The stop row's log_pb (t = L - 1) is 0
    by definition: ignored, zero gradient. O(L) time and no L x L memory per trajectory (see
    csrc/ops/subtb.h). ``lam`` must be a finite number > 0.
    """
    return _SUBTB(log_pf, log_pb, log_flow, offsets, log_reward, _check_lam(lam))


# --- flow matching ----------------------------------------------------------------------------
def _fm_forward(log_in, in_count, log_out, out_mask):
    out = log_in.new_empty(in_count.numel())
    _C.flow_matching_forward(log_in, in_count, log_out, out_mask, out, stream(log_in))
    return out


def _fm_backward(grad, log_in, in_count, log_out, out_mask):
    gi, go = torch.empty_like(log_in), torch.empty_like(log_out)
    _C.flow_matching_backward(log_in, in_count, log_out, out_mask, grad, gi, go, stream(log_in))
    return gi, go


_FM = FusedOp("flow_matching",
              (F("log_in", ("N", "P")), I64("in_count", ("N",), what="one parent count per state, rows of log_in"),
               F("log_out", ("N", "A"), what="one row per state, like log_in"),
               Bool("out_mask", ("N", "A"), what=("rows of log_out", "columns of log_out"))),
              grads=("log_in", "log_out"), out=("N",),
              forward=_fm_forward, backward=_fm_backward, reference=reference.flow_matching)


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
    return _FM(log_in, in_count, log_out, out_mask)


# --- log-partition variance (ZVar) ------------------------------------------------------------
def _zvar_forward(log_pf, log_pb, offsets, log_reward):
    B = _num_traj(offsets)
    out = log_pf.new_empty(B)
    _C.log_partition_variance_forward(log_pf, log_pb, offsets, log_reward, out, _work(B + 2, log_pf), stream(log_pf))
    return out


def _zvar_backward(grad, log_pf, log_pb, offsets, log_reward):
    gs = [torch.empty_like(t) for t in (log_pf, log_pb, log_reward)]
    _C.log_partition_variance_backward(log_pf, log_pb, offsets, log_reward, grad, *gs,
                                       _work(log_reward.numel() + 2, log_pf), stream(log_pf))
    return gs


_ZVAR = FusedOp("log_partition_variance",
                (F("log_pf", ("T",)), F("log_pb", ("T",), what=_PB), OFFSETS, F("log_reward", ("B",), what=_LR)),
                grads=("log_pf", "log_pb", "log_reward"), out=("B",),
                forward=_zvar_forward, backward=_zvar_backward, reference=reference.log_partition_variance)


def log_partition_variance(log_pf: torch.Tensor, log_pb: torch.Tensor, offsets: torch.Tensor,
                           log_reward: torch.Tensor) -> torch.Tensor:
    """Per-trajectory log-partition variance terms, ``[B]`` (ZVar, Zhang et al. 2023).

    Each trajectory implies a log Z estimate ``zeta_i = log_reward[i] + sum log_pb - sum log_pf``
    (the log_pb sum over the moves: the stop row's log_pb is 0 by definition, ignored, zero
    gradient); returns ``(zeta_i - mean_j zeta_j) ** 2`` (the batch mean of it is the variance).
    Gradients are exact, including the path through the batch mean. B = 0 gives an empty tensor.
    """
    return _ZVAR(log_pf, log_pb, offsets, log_reward)
