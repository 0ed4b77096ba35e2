"""The compiled core's run-time settings: its build, and the CPU threads that torch and the kernels
share (one OpenMP runtime). Every other module sets threads through set_num_threads here."""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch

from . import _C

__version__ = _C.build_info()["version"]


def build_info() -> dict:
    """What was compiled: version, with_cuda, with_openmp, cuda_version."""
    return dict(_C.build_info())


def set_num_threads(n: int) -> None:
    """CPU threads of torch's intra-op pool and of the compiled kernels (one OpenMP runtime)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be an integer >= 1, got {n!r}")
    from .limits import check_threads

    check_threads(n, "threads")  # libgomp cannot start 100,000 threads: one line, not a crash
    global _chosen
    torch.set_num_threads(n)
    _C.set_num_threads(n)
    _chosen = n


# torch's own count at import (its default, or OMP_NUM_THREADS): a different count later means the
# user called torch.set_num_threads
_TORCH_DEFAULT = torch.get_num_threads()
_chosen: int | None = None  # the count set_num_threads applied last


def ensure_threads() -> int:
    """Apply default_threads() unless the user chose a count (gfncore.set_num_threads,
    torch.set_num_threads or OMP_NUM_THREADS); return the count in use. The Trainer calls it, so
    a Python run gets the thread count `gfncore train` would pick."""
    if _chosen is None and "OMP_NUM_THREADS" not in os.environ and torch.get_num_threads() == _TORCH_DEFAULT:
        set_num_threads(default_threads())
    return torch.get_num_threads()


THREAD_CAP = 4  # beyond a few threads the small matmuls of a GFlowNet step gain little (not measured above 2 cores)


def default_threads() -> int:
    """The thread count `gfncore train --threads 0` uses: the cores this process may run on, less
    the machine's load (1-minute average, rounded), at least 1 and at most THREAD_CAP.

    Fork-join threads on cores that other processes also want wait for each other at every
    parallel region: on a busy machine one thread is several times faster than two
    (bench/threads_report.py), so a busy machine gets one. The count is chosen once per run,
    because torch's results depend on it in the last bits and a run must stay reproducible.

    Data-parallel ranks on one machine (torchrun sets LOCAL_WORLD_SIZE) share it: each gets its
    part of the cores, so N ranks never oversubscribe them."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    try:
        ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        ranks = 1
    return max(1, min(THREAD_CAP, cores // ranks, int(round(cores - load)) // ranks))


@contextmanager
def pinned_threads(n: int):
    """The block runs with n CPU threads for torch and the kernels (n = 0: as they are); after it,
    torch's count is what it was and the kernels follow it again (their OpenMP default)."""
    if not n:
        yield
        return
    global _chosen
    old, chosen = torch.get_num_threads(), _chosen
    set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
        _C.set_num_threads(0)
        _chosen = chosen  # a pinned block is not the user's choice for what follows
