"""masked_log_softmax_gather as a torch custom op with a fused forward and a fused backward."""
from __future__ import annotations

import torch

from .. import _C
from . import reference
from ._dispatch import (EagerFused, FusedKernels, check_same_device, compiled_for, eager_fast, register_fused_autograd,
                        require_tensors, stream, warn_fallback)


@torch.library.custom_op("gfncore::masked_log_softmax_gather", mutates_args=())
def _gather(logits: torch.Tensor, mask: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    if not compiled_for(logits):
        warn_fallback("masked_log_softmax_gather", logits)
        return reference.masked_log_softmax_gather(logits, mask, actions)
    return _forward_kernel(logits, mask, actions)


def _forward_kernel(logits, mask, actions):
    logits, mask, actions = logits.contiguous(), mask.contiguous(), actions.contiguous()
    out = logits.new_empty(logits.shape[:1])
    _C.masked_log_softmax_gather(logits, mask, actions, out, None, None, stream(logits))
    return out


@_gather.register_fake
def _(logits, mask, actions):
    check_same_device("masked_log_softmax_gather", logits=logits, mask=mask, actions=actions)
    return logits.new_empty(logits.shape[:1])


@torch.library.custom_op("gfncore::masked_log_softmax_gather_backward", mutates_args=())
def _gather_backward(grad: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    if not compiled_for(logits):
        return reference.masked_log_softmax_gather_backward(grad, logits, mask, actions)
    return _backward_kernel(grad, logits, mask, actions)


def _backward_kernel(grad, logits, mask, actions):
    logits, mask, actions, grad = logits.contiguous(), mask.contiguous(), actions.contiguous(), grad.contiguous()
    grad_logits = torch.empty_like(logits)
    _C.masked_log_softmax_gather(logits, mask, actions, None, grad, grad_logits, stream(logits))
    return grad_logits


@_gather_backward.register_fake
def _(grad, logits, mask, actions):
    check_same_device("masked_log_softmax_gather_backward", logits=logits, grad=grad, mask=mask, actions=actions)
    return torch.empty_like(logits)


_KERNELS = FusedKernels(_forward_kernel, lambda g, *a: (_backward_kernel(g, *a),), (0,))
register_fused_autograd(_gather, lambda g, *a: (_gather_backward(g, *a),), _KERNELS.grad_slots)


def masked_log_softmax_gather(logits: torch.Tensor, mask: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log P(a_n | s_n) = log softmax(logits_n over the legal actions mask_n)[actions_n], for each row n.

    ``logits`` [N, A] float, ``mask`` [N, A] bool, ``actions`` [N] int64. Raises ValueError if an
    action is out of range or masked out, or a legal logit is NaN. Differentiable in ``logits``.
    """
    require_tensors("masked_log_softmax_gather", logits=logits, mask=mask, actions=actions)
    if eager_fast(logits, mask, actions):
        return EagerFused.apply(_KERNELS, logits, mask, actions)
    return _gather(logits, mask, actions)
