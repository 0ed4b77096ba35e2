"""Sizes the machine cannot hold, refused before anything is allocated.

A request that cannot fit (a batch of 10^9 trajectories, a 100,000-node graph, a grid of 10^9
values per weight, 100,000 threads) used to end in a traceback from deep inside torch, in
libgomp's own message, or in a segmentation fault. Each is now one ValueError naming the flag,
the size and what the machine has. The memory estimates are lower bounds of the main tensors
(every trajectory has at least one row), so a request refused here could not have fit.
"""
from __future__ import annotations

import os

GiB = 1024 ** 3
THREADS_PER_CORE = 8  # beyond this, OpenMP oversubscription only slows a run down


def available_memory() -> int:
    """Bytes of memory this process could still allocate: MemAvailable (Linux), else physical
    memory; a cgroup limit (containers) caps it."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return 1 << 62
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
            if text.isdigit():
                avail = min(avail, int(text))
        except OSError:
            continue
    return avail


def size_text(nbytes: float) -> str:
    if nbytes >= GiB:
        return f"{nbytes / GiB:.1f} GiB"
    return f"{nbytes / 1024 ** 2:.0f} MiB"


def check_memory(nbytes: float, what: str, fix: str | None = None) -> None:
    """Raises ValueError when a request needs more than the machine has available. `what` names
    the flag and its value ("--batch-size 1000000000"); `fix` says what to change (default: a
    smaller value of that flag)."""
    have = available_memory()
    if nbytes > have:
        raise ValueError(f"{what} needs at least {size_text(nbytes)} of memory; this machine has "
                         f"{size_text(have)} available: {fix or 'choose a smaller ' + what.split()[0]}")


def max_threads() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(64, THREADS_PER_CORE * cores)


def threads_error(n) -> str | None:
    """Why `n` threads cannot run here, or None (a `check=` function of gfncore.config)."""
    if isinstance(n, int) and not isinstance(n, bool) and n > max_threads():
        return (f"must be <= {max_threads()} ({THREADS_PER_CORE} per core of this machine), got {n}: OpenMP cannot "
                f"start that many threads")
    return None


def check_threads(n, flag: str = "--threads") -> None:
    why = threads_error(n)
    if why:
        raise ValueError(f"{flag} {why}")


def check_int64(v, flag: str) -> None:
    """A seed or count that torch stores in 64 bits."""
    if isinstance(v, int) and not isinstance(v, bool) and not -(2 ** 63) <= v < 2 ** 64:
        raise ValueError(f"{flag} must fit in 64 bits (< 2**64), got {v}")


def trainer_bytes(env, batch_size: int, hidden: int = 0) -> float:
    """Lower bound of one training step's memory: at least one row per trajectory, holding its
    state (int32), features, logits with their gradient and log-softmax (float32) and masks
    (bool), and the first layer's activations."""
    row = 4 * env.state_dim + 4 * env.feature_dim + (4 * 3 + 2) * env.n_actions + 4 * 3 * hidden
    return float(batch_size) * float(row)


WORK_LIMIT = 1e12  # element operations of one trajectory at most: beyond it, hours per batch


def check_work(env) -> None:
    """Refuses an environment whose single trajectory may take absurd work (max_length steps, each
    over state_dim + feature_dim + n_actions values): HyperGrid(ndim=2**19) would run for hours
    without a word."""
    L = getattr(env, "max_length", None)
    if not L:
        return
    work = float(L) * float(env.state_dim + env.feature_dim + env.n_actions)
    if work > WORK_LIMIT:
        raise ValueError(f"{env!r} is too large to sample: one trajectory may take {L:,} steps over "
                         f"{env.state_dim + env.feature_dim + env.n_actions:,} values each (~{work:.1e} operations, "
                         f"hours per batch; at most {WORK_LIMIT:.0e}); use a smaller environment")
