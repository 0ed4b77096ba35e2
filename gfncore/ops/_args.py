"""Tensor-argument declarations of the fused ops and the checks made from them (fake kernels, the
custom op's body and the eager path's non-contiguous inputs run them; the C++ bindings check the
same again). Errors name the argument and what was expected."""
from __future__ import annotations

from dataclasses import dataclass

import torch


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


