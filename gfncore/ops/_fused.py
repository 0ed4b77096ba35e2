"""FusedOp: the one definition of a fused op (a balance objective, the masked log-softmax
gather) from which its custom op, fake kernel, backward op, autograd registration and eager node
are made."""
from __future__ import annotations

import concurrent.futures
from typing import Callable

import torch

from . import _device
from ._args import Arg, _shape_str, check_args
from ._device import skips_dispatcher
from ._memory import empty_like_dense, materialize


def _save_args(ctx, args) -> None:
    """Saves a call's arguments on an autograd ctx: tensors through save_for_backward, the rest as is."""
    ctx.is_tensor = [isinstance(a, torch.Tensor) for a in args]
    if all(ctx.is_tensor):
        ctx.is_tensor = None  # the common case: nothing but tensors
        ctx.save_for_backward(*args)
        return
    ctx.others = [None if t else a for t, a in zip(ctx.is_tensor, args)]
    ctx.save_for_backward(*[a for a in args if isinstance(a, torch.Tensor)])


def _saved_args(ctx) -> list:
    if ctx.is_tensor is None:
        return ctx.saved_tensors
    saved = iter(ctx.saved_tensors)
    return [next(saved) if t else o for t, o in zip(ctx.is_tensor, ctx.others)]


def _place(grads, slots, n: int) -> tuple:
    out = [None] * n
    for slot, g in zip(slots, grads):
        out[slot] = g
    return tuple(out)


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


class FusedOp:
    """A fused op (a balance objective, the masked log-softmax gather) declared once.

    From the declaration (name, tensor arguments with their shapes, scalar arguments, the
    arguments that get gradients, the output's shape, the compiled forward and backward, the
    reference forward and, optionally, a written-out reference backward) it makes:

    - the custom op ``gfncore::<name>`` (compiled kernel, or the reference on a device without
      one) and its fake kernel, which checks every argument (devices included) as the kernel does;
    - the custom op ``gfncore::<name>_backward`` (so the backward survives torch.compile) and its
      fake kernel, and the autograd registration joining the two;
    - the eager fast path: calling the FusedOp runs one autograd node (EagerFused) over the same
      compiled forward and backward, skipping the dispatcher.

    forward(*args) -> out and backward(grad, *args) -> gradients of the `grads` arguments, in
    order; both receive dense (contiguous) tensors and the scalars as given. A forward may also
    return (out, *saved): the eager node keeps `saved` (intermediates its backward would otherwise
    recompute) and calls backward(grad, *args, *saved); the custom op, whose schema has one
    output, drops them and calls backward(grad, *args), which must then recompute them."""

    def __init__(self, name: str, args: tuple[Arg, ...], grads: tuple[str, ...], out: tuple[str, ...],
                 forward: Callable, backward: Callable, reference: Callable,
                 reference_backward: Callable | None = None, scalars: tuple[tuple[str, str], ...] = ()):
        self.name, self.args, self.scalars, self.out = name, args, scalars, out
        self.n_tensors = len(args)
        names = [a.name for a in args] + [s for s, _ in scalars]
        self.grad_slots = tuple(names.index(g) for g in grads)
        self.forward, self.backward = forward, backward
        self.reference, self.reference_backward = reference, reference_backward
        self.float_slot = next(i for i, a in enumerate(args) if a.kind == "float")
        self.rows = "T" if any(s == ("T",) for a in args for s in a.shapes) else "N"

        params = ", ".join([f"Tensor {a.name}" for a in args] + [f"{t} {n}" for n, t in scalars])
        returns = "Tensor" if len(grads) == 1 else "(" + ", ".join(["Tensor"] * len(grads)) + ")"
        self.op = torch.library.custom_op(f"gfncore::{name}", self._op_impl, mutates_args=(),
                                          schema=f"({params}) -> Tensor")
        self.op.register_fake(self._op_fake)
        self.backward_op = torch.library.custom_op(f"gfncore::{name}_backward", self._backward_impl, mutates_args=(),
                                                   schema=f"(Tensor grad, {params}) -> {returns}")
        self.backward_op.register_fake(self._backward_fake)
        self.op.register_autograd(self._autograd_backward, setup_context=self._setup_context)

    # -- the public call -----------------------------------------------------------------------
    def __call__(self, *args):
        tensors = args[:self.n_tensors]
        if not all(isinstance(t, torch.Tensor) for t in tensors):
            a, t = next((a, t) for a, t in zip(self.args, tensors) if not isinstance(t, torch.Tensor))
            raise TypeError(f"gfncore.ops.{self.name}: {a.name} must be a torch.Tensor, got {type(t).__name__}")
        if skips_dispatcher(*tensors) and _device.compiled_for(tensors[0]):
            if not all(t.is_contiguous() for t in tensors):
                # Checked before anything is copied: a wrong or huge stride-0 input raises here.
                check_args(self.name, self.args, tensors, self.rows)
                args = self._dense(args)  # copies stay in the graph, so gradients reach the originals
            return EagerFused.apply(self, *args)
        return self.op(*args)

    def _dense(self, args) -> tuple:
        return tuple(materialize(self.name, a.name, t) for a, t in zip(self.args, args)) + tuple(args[self.n_tensors:])

    # -- gfncore::<name> -------------------------------------------------------------------------
    def _op_impl(self, *args):
        check_args(self.name, self.args, args[:self.n_tensors], self.rows)
        lead = args[self.float_slot]
        if not _device.compiled_for(lead):
            _device.warn_fallback(self.name, lead)
            return self.reference(*args)
        out = self.forward(*self._dense(args))
        return out[0] if isinstance(out, tuple) else out

    def _op_fake(self, *args):
        sizes = check_args(self.name, self.args, args[:self.n_tensors], self.rows)
        return args[self.float_slot].new_empty([sizes[s] for s in self.out])

    # -- gfncore::<name>_backward ----------------------------------------------------------------
    def _check_grad(self, grad, args) -> None:
        """The backward op's checks: its inputs as the forward's, and grad shaped like the output."""
        op = self.name + "_backward"
        sizes = check_args(op, self.args, args[:self.n_tensors], self.rows)
        lead_name, lead = self.args[self.float_slot].name, args[self.float_slot]
        if not isinstance(grad, torch.Tensor):
            raise TypeError(f"gfncore.ops.{op}: grad must be a torch.Tensor, got {type(grad).__name__}")
        if grad.device != lead.device:
            raise TypeError(f"gfncore.ops.{op}: grad must be on the same device as {lead_name} ({lead.device}), "
                            f"got {grad.device}")
        if grad.dtype != lead.dtype:
            raise TypeError(f"gfncore.ops.{op}: grad and {lead_name} must have the same dtype, got {grad.dtype} "
                            f"and {lead.dtype}")
        shape = [sizes[s] for s in self.out]
        if list(grad.shape) != shape:
            raise ValueError(f"gfncore.ops.{op}: grad must have the output's shape "
                             f"[{', '.join(self.out)}] = {shape}, got {_shape_str(grad)}")

    def _backward_impl(self, grad, *args):
        self._check_grad(grad, args)
        if not _device.compiled_for(args[self.float_slot]):
            if self.reference_backward is not None:
                gs = tuple(self.reference_backward(grad, *args))
            else:
                gs = tuple(_reference_grads(self.reference, grad, args, self.grad_slots))
        else:
            gs = tuple(self.backward(materialize(self.name, "grad", grad), *self._dense(args)))
        return gs[0] if len(gs) == 1 else gs

    def _backward_fake(self, grad, *args):
        self._check_grad(grad, args)
        gs = tuple(empty_like_dense(args[i]) for i in self.grad_slots)
        return gs[0] if len(gs) == 1 else gs

    def _setup_context(self, ctx, inputs, output):
        _save_args(ctx, inputs)

    def _autograd_backward(self, ctx, grad):
        args = _saved_args(ctx)
        gs = self.backward_op(grad, *args)
        return _place((gs,) if len(self.grad_slots) == 1 else gs, self.grad_slots, len(args))


class EagerFused(torch.autograd.Function):
    """One autograd node over a FusedOp's compiled kernels. In eager mode the custom-op
    dispatcher costs about as much as a small fused kernel (tens of microseconds per call on a
    CPU); this keeps a loss of a few thousand rows kernel-bound. Values and gradients are the
    custom op's (tests compare both paths)."""

    @staticmethod
    def forward(ctx, op: FusedOp, *args):
        ctx.op, ctx.n_args = op, len(args)
        out = op.forward(*args)
        saved = ()
        if isinstance(out, tuple):
            out, *saved = out
        _save_args(ctx, (*args, *saved))
        return out

    @staticmethod
    def backward(ctx, grad):
        args = _saved_args(ctx)
        op = ctx.op
        return (None, *_place(op.backward(grad.contiguous(), *args), op.grad_slots, ctx.n_args))
