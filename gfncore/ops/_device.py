"""Which implementation serves a tensor: the compiled kernel where one was built for its device,
else the plain-PyTorch reference (with a one-time warning); the stream a launch goes on; and the
one check that lets a public op skip the custom-op dispatcher."""
from __future__ import annotations

import warnings

import torch
from torch._subclasses import FakeTensor

from .. import _C

_INFO = _C.build_info()
_warned: set[str] = set()


def compiled_for(t: torch.Tensor) -> bool:
    return compiled_for_device(t.device)


def compiled_for_device(device: torch.device) -> bool:
    if device.type == "cpu":
        return True
    if device.type == "cuda":
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


def skips_dispatcher(*tensors) -> bool:
    """Whether a public op may skip the custom-op dispatcher (tens of microseconds a call on a
    CPU, as much as a small fused kernel): eager mode, real tensors (None entries are absent
    optional arguments), all on one device. torch.compile, meta or fake tensors, mixed devices
    and anything that is not a tensor go through the custom op, whose checks name the odd
    argument. Every op, env-aware or fused, asks this one question."""
    if torch.compiler.is_compiling():
        return False
    first = tensors[0]
    if isinstance(first, torch.Tensor) and first.is_cpu:  # the common case, without building a torch.device per tensor
        return all(t is None or (isinstance(t, torch.Tensor) and t.is_cpu and not isinstance(t, FakeTensor))
                   for t in tensors)
    ts = [t for t in tensors if t is not None]
    if not ts or not all(isinstance(t, torch.Tensor) for t in ts):
        return False
    d = ts[0].device
    return d.type != "meta" and all(t.device == d and not isinstance(t, FakeTensor) for t in ts)


def set_cuda_async_errors(on: bool) -> None:
    """CUDA kernels check their input as they run. By default a launch waits for its kernel and
    bad input raises at the op that met it, as on the CPU. ``set_cuda_async_errors(True)``: launches
    return at once (no synchronisation; what CUDA graphs capture anyway), and an error raises at a
    later launch or at :func:`check_cuda_errors`. Launches being captured never wait."""
    _C.set_cuda_async_errors(bool(on))


def check_cuda_errors() -> None:
    """Waits for gfncore's CUDA launches and raises an error one of them reported (see
    :func:`set_cuda_async_errors`); nothing to do without CUDA."""
    _C.check_cuda_errors()
