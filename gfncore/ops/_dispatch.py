"""Which implementation serves a tensor (the compiled kernel where one was built for its device,
else the plain-PyTorch reference, with a one-time warning), and FusedOp: the one definition of a
fused op from which its custom op, fake kernel, backward op, autograd and eager node are made."""
from __future__ import annotations

import concurrent.futures
import itertools
import os
import warnings
import weakref
from dataclasses import dataclass
from typing import Callable

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
    if t.is_cuda:  # (t.device.type costs ~0.3 us, is_cuda ~0.05: called per kernel launch)
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
    first = tensors[0]
    if first.is_cpu:  # the common case, without building a torch.device per tensor
        same = all(t.is_cpu for t in tensors)
    else:
        d = first.device
        same = compiled_for(first) and all(t.device == d for t in tensors)
    return same and not torch.compiler.is_compiling()


# ---------------------------------------------------------------------------------------------
# Memory: a stride-0 (expanded) input can describe far more elements than it stores. Making it
# contiguous, or allocating its gradient, must fail with a clear error before the allocator is
# asked for more than the device has (or for a byte count that overflows).
def _device_bytes(device: torch.device) -> int | None:
    if device.type == "cpu":
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return None


def check_alloc(op: str, what: str, shape, dtype: torch.dtype, device: torch.device) -> None:
    """MemoryError naming `what` if a dense tensor of this shape cannot fit in the device's memory."""
    n = 1
    for s in shape:
        n *= int(s)
    nbytes = n * dtype.itemsize
    limit = _device_bytes(device)
    if limit is not None and nbytes > limit:
        raise MemoryError(f"gfncore.ops.{op}: {what} would need {nbytes} bytes as a dense tensor "
                          f"({list(shape)} {dtype}), more than the {limit} bytes of {device}")


def materialize(op: str, name: str, t: torch.Tensor) -> torch.Tensor:
    """t as a dense row-major tensor (what the kernels index), copied only when it is not one."""
    if t.is_contiguous():
        return t
    check_alloc(op, name, t.shape, t.dtype, t.device)
    try:
        return t.contiguous()
    except RuntimeError as e:  # the allocator's own refusal
        if "memory" not in str(e):
            raise
        raise MemoryError(f"gfncore.ops.{op}: not enough memory to make {name} contiguous "
                          f"({list(t.shape)} {t.dtype}): {e}") from None


def empty_like_dense(t: torch.Tensor) -> torch.Tensor:
    """A gradient or output buffer shaped like t, dense row-major whatever t's strides."""
    return torch.empty_like(t, memory_format=torch.contiguous_format)


# ---------------------------------------------------------------------------------------------
# Argument declarations and the checks made from them (fake kernels, the custom op's body and
# the eager path's non-contiguous inputs run them; the C++ bindings check the same again).
_FLOATS = (torch.float32, torch.float64)


@dataclass(frozen=True)
class Arg:
    """One tensor argument of a fused op.

    kind: "float" (float32/float64, every float argument with the dtype of the first), "int64",
    "bool" or "offsets" (int64 [B + 1], the packed-trajectory boundaries; T rows need B >= 1).
    shapes: the accepted shapes in symbols (T rows, B trajectories, N states, A actions, P
    parents), several for an argument that may be a scalar or per trajectory. what: what the
    size means (one string, or one per dimension), for messages."""

    name: str
    kind: str
    shapes: tuple[tuple[str, ...], ...]
    what: str | tuple[str, ...] = ""


def F(name: str, *shapes: tuple[str, ...], what: str | tuple[str, ...] = "") -> Arg:
    return Arg(name, "float", shapes, what)


def I64(name: str, *shapes: tuple[str, ...], what: str | tuple[str, ...] = "") -> Arg:
    return Arg(name, "int64", shapes, what)


def Bool(name: str, *shapes: tuple[str, ...], what: str | tuple[str, ...] = "") -> Arg:
    return Arg(name, "bool", shapes, what)


OFFSETS = Arg("offsets", "offsets", (("B+1",),))


def _shape_str(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def check_args(op: str, args: tuple[Arg, ...], values, rows: str = "T") -> dict:
    """Validates tensors against their declarations (type, device, dtype, rank, sizes) and returns
    the bound sizes {symbol: size}. Errors name the argument and what was expected."""
    sizes: dict = {}
    first = ref = None
    for a, t in zip(args, values):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"gfncore.ops.{op}: {a.name} must be a torch.Tensor, got {type(t).__name__}")
        if first is None:
            first = (a.name, t)
        elif t.device != first[1].device:
            raise TypeError(f"gfncore.ops.{op}: {a.name} must be on the same device as {first[0]} "
                            f"({first[1].device}), got {t.device}")
        if a.kind == "float":
            if ref is None:
                if t.dtype not in _FLOATS:
                    raise TypeError(f"gfncore.ops.{op}: {a.name} must be float32 or float64, got {t.dtype}")
                ref = (a.name, t.dtype)
            elif t.dtype != ref[1]:
                raise TypeError(f"gfncore.ops.{op}: {a.name} and {ref[0]} must have the same dtype, got "
                                f"{t.dtype} and {ref[1]}")
        else:
            want = torch.bool if a.kind == "bool" else torch.int64
            if t.dtype != want:
                raise TypeError(f"gfncore.ops.{op}: {a.name} must be {str(want).replace('torch.', '')}, got {t.dtype}")
        shape = next((s for s in a.shapes if len(s) == t.dim()), None)
        if shape is None or (len(a.shapes) > 1 and any(x in sizes and t.shape[d] != sizes[x] for d, x in enumerate(shape))):
            if len(a.shapes) == 1:
                raise ValueError(f"gfncore.ops.{op}: {a.name} must have {len(a.shapes[0])} dimension(s), got shape "
                                 f"{_shape_str(t)}")
            alts = " or ".join("be a scalar" if not s else
                               f"have shape [{', '.join(s)}] = [{', '.join(str(sizes.get(x, '?')) for x in s)}]"
                               for s in a.shapes)
            raise ValueError(f"gfncore.ops.{op}: {a.name} must {alts}, got {_shape_str(t)}")
        for d, sym in enumerate(shape):
            n = t.shape[d]
            if sym == "B+1":
                if n < 1:
                    raise ValueError(f"gfncore.ops.{op}: {a.name} must have B + 1 >= 1 elements, got shape "
                                     f"{_shape_str(t)}")
                sym, n = "B", n - 1
            if sym not in sizes:
                sizes[sym] = n
            elif n != sizes[sym]:
                what = a.what[d] if isinstance(a.what, tuple) else a.what
                what = f" ({what})" if what else ""
                raise ValueError(f"gfncore.ops.{op}: {a.name} must have size {sizes[sym]}{what} in dimension {d}, "
                                 f"got shape {_shape_str(t)}")
        if a.kind == "offsets" and sizes["B"] == 0 and sizes.get(rows, 0) != 0:
            raise ValueError(f"gfncore.ops.{op}: offsets describes no trajectory but {first[0]} has "
                             f"{sizes[rows]} rows")
    return sizes


# ---------------------------------------------------------------------------------------------
# Fused ops.
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
        if eager_fast(*tensors):
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
        if not compiled_for(lead):
            warn_fallback(self.name, lead)
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
        if not compiled_for(args[self.float_slot]):
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
