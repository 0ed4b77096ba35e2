"""masked_log_softmax_gather as a fused op: one pass per row forward, one backward."""
from __future__ import annotations

import torch

from .. import _C
from . import reference
from ._args import Bool, F, I64
from ._device import stream
from ._fused import FusedOp


def gather_forward(logits, mask, actions):
    # Sized by a dense argument's numel, not a shape the kernel has yet to check: a [2**40, 0]
    # logits tensor holds nothing but would ask for a 2**40-row output.
    out = logits.new_empty(actions.numel())
    _C.masked_log_softmax_gather_forward(logits, mask, actions, out, stream(logits))
    return out


def gather_backward(grad, logits, mask, actions):
    grad_logits = torch.empty_like(logits)
    _C.masked_log_softmax_gather_backward(logits, mask, actions, grad, grad_logits, stream(logits))
    return grad_logits


_GATHER_ARGS = (F("logits", ("N", "A")), Bool("mask", ("N", "A"), what=("rows of logits", "columns of logits")),
               I64("actions", ("N",), what="rows of logits"))

_GATHER = FusedOp(
    "masked_log_softmax_gather", _GATHER_ARGS, grads=("logits",), out=("N",),
    forward=gather_forward, backward=lambda g, *a: (gather_backward(g, *a),),
    reference=reference.masked_log_softmax_gather,
    reference_backward=lambda g, *a: (reference.masked_log_softmax_gather_backward(g, *a),))


def masked_log_softmax_gather(logits: torch.Tensor, mask: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log P(a_n | s_n) = log softmax(logits_n over the legal actions mask_n)[actions_n], for each row n.

    ``logits`` [N, A] float, ``mask`` [N, A] bool, ``actions`` [N] int64. Raises ValueError if an
    action is out of range or masked out, or a legal logit is NaN. Differentiable in ``logits``.
    """
    return _GATHER(logits, mask, actions)
