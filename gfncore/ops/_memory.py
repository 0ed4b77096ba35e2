"""Memory: a stride-0 (expanded) input can describe far more elements than it stores. Making it
contiguous, or allocating its gradient, must fail with a clear error before the allocator is
asked for more than the device has (or for a byte count that overflows)."""
from __future__ import annotations

import os

import torch


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


