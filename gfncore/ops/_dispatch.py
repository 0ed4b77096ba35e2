"""Which implementation serves a tensor: the compiled kernel where one was built for its device,
else the plain-PyTorch reference (with a one-time warning)."""
from __future__ import annotations

import warnings

import torch

from .. import _C

_INFO = _C.build_info()
_warned: set[str] = set()


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
