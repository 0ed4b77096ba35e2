"""Which implementation serves a tensor: the compiled kernel where one was built for its device,
else the plain-PyTorch reference (with a one-time warning)."""
from __future__ import annotations

import itertools
import warnings
import weakref

import torch

from .. import _C

_INFO = _C.build_info()
_warned: set[str] = set()


# Environments by integer id: a custom op's schema carries numbers and tensors, not Python
# objects, so env-aware ops take the id and look the environment up here. Weak values: the table
# never keeps an environment (and its data tensors) alive.
_ENVS: "weakref.WeakValueDictionary[int, object]" = weakref.WeakValueDictionary()
_NEXT_ENV_ID = itertools.count(1)


def env_id(env) -> int:
    """The id under which env-aware custom ops find `env` (assigned on first use)."""
    i = env.__dict__.get("_op_id")
    if i is None:
        i = next(_NEXT_ENV_ID)
        env.__dict__["_op_id"] = i
        _ENVS[i] = env
    return i


def env_by_id(i: int):
    try:
        return _ENVS[int(i)]
    except KeyError:
        raise ValueError(f"gfncore: no live environment with id {i} (it was garbage-collected)") from None


def compiled_for(t: torch.Tensor) -> bool:
    if t.device.type == "cpu":
        return True
    if t.device.type == "cuda":
        return bool(_INFO["with_cuda"])
    return False


def warn_fallback(op: str, t: torch.Tensor) -> None:
    key = f"{op}:{t.device.type}"
    if key not in _warned:
        _warned.add(key)
        why = "gfncore was built without CUDA" if t.device.type == "cuda" else f"no compiled kernel for {t.device.type}"
        warnings.warn(f"gfncore.ops.{op}: {why}; using the plain-PyTorch reference (slower)", RuntimeWarning, stacklevel=3)


def stream(t: torch.Tensor) -> int:
    if t.device.type == "cuda":
        return torch.cuda.current_stream(t.device).cuda_stream
    return 0


def require_tensors(op: str, **args) -> None:
    """TypeError naming the argument that is not a tensor (torch's own schema check raises a
    RuntimeError)."""
    for name, t in args.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"gfncore.ops.{op}: {name} must be a torch.Tensor, got {type(t).__name__}")


def check_same_device(op: str, **tensors) -> None:
    """Raises TypeError naming the argument whose device differs from the first one's. Fake
    (meta) kernels call it: the dispatcher routes a mix of real and meta tensors to them, which
    would otherwise return meta outputs for real inputs without a word."""
    first_name, first = None, None
    for name, t in tensors.items():
        if t is None:
            continue
        if first is None:
            first_name, first = name, t
        elif t.device != first.device:
            raise TypeError(f"gfncore.ops.{op}: {name} must be on the same device as {first_name} "
                            f"({first.device}), got {t.device}")


def eager_fast(*tensors: torch.Tensor) -> bool:
    """Whether a public op may skip the custom-op dispatcher: eager mode, every tensor on one
    device that has compiled kernels. torch.compile, meta/fake or mixed-device inputs and
    fallback devices go through the custom op (whose checks name the odd argument)."""
    d = tensors[0].device
    return compiled_for(tensors[0]) and all(t.device == d for t in tensors) and not torch.compiler.is_compiling()


class FusedKernels:
    """A fused op's forward and backward kernel calls, shared by its custom op and its eager node.

    forward(*args) -> out; backward(grad, *args) -> grads of the arguments at `grad_slots`."""

    def __init__(self, forward, backward, grad_slots: tuple[int, ...]):
        self.forward, self.backward, self.grad_slots = forward, backward, grad_slots


def _save_args(ctx, args) -> None:
    """Saves a call's arguments on an autograd ctx: tensors through save_for_backward, the rest as is."""
    ctx.is_tensor = [isinstance(a, torch.Tensor) for a in args]
    ctx.others = [None if t else a for t, a in zip(ctx.is_tensor, args)]
    ctx.save_for_backward(*[a for a in args if isinstance(a, torch.Tensor)])


def _saved_args(ctx) -> list:
    saved = iter(ctx.saved_tensors)
    return [next(saved) if t else o for t, o in zip(ctx.is_tensor, ctx.others)]


def _place(grads, slots, n: int) -> tuple:
    out = [None] * n
    for slot, g in zip(slots, grads):
        out[slot] = g
    return tuple(out)


def register_fused_autograd(op, backward_op, grad_slots: tuple[int, ...]) -> None:
    """Autograd of a fused custom op whose backward is the custom op backward_op(grad, *inputs),
    returning the gradients of the inputs at grad_slots (so the backward survives torch.compile)."""

    def setup(ctx, inputs, output):
        _save_args(ctx, inputs)

    def backward(ctx, grad):
        args = _saved_args(ctx)
        return _place(backward_op(grad, *args), grad_slots, len(args))

    op.register_autograd(backward, setup_context=setup)


class EagerFused(torch.autograd.Function):
    """One autograd node over the same kernels as the custom op. In eager mode the custom-op
    dispatcher costs about as much as a small fused kernel (tens of microseconds per call on a
    CPU); this keeps a loss of a few thousand rows kernel-bound. Values and gradients are the
    custom op's (tests compare both paths)."""

    @staticmethod
    def forward(ctx, kernels: FusedKernels, *args):
        ctx.kernels = kernels
        _save_args(ctx, args)
        return kernels.forward(*args)

    @staticmethod
    def backward(ctx, grad):
        args = _saved_args(ctx)
        return (None, *_place(ctx.kernels.backward(grad, *args), ctx.kernels.grad_slots, len(args)))
