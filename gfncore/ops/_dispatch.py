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
