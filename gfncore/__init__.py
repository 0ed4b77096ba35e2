"""gfncore: GFlowNets with a compiled core (batched rollout, parent enumeration, fused balance losses)."""
import os as _os
import sys as _sys

# OpenMP (one runtime, shared by torch and the kernels) reads its wait policy once, when importing
# torch loads it. Its default keeps idle threads spinning for ~300k iterations after every
# parallel region, which on a shared machine burns the cores other processes need: measured
# 4-6x slower than one thread at batch 1024 (bench/threads_report.py). A short spin keeps the
# back-to-back regions of one training step fast and gives the cores back between them.
# Only when torch is not loaded yet and the user set neither variable.
if "torch" not in _sys.modules and "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "10000"

import torch  # noqa: E402  (torch first: it loads the OpenMP runtime the extension shares)

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
    torch.set_num_threads(n)
    _C.set_num_threads(n)


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
        cores = len(_os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = _os.cpu_count() or 1
    try:
        load = _os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    try:
        ranks = max(1, int(_os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        ranks = 1
    return max(1, min(THREAD_CAP, cores // ranks, int(round(cores - load)) // ranks))


from . import backward, distributed, envs, metrics, nn, ops, replay  # noqa: E402
from .backward import BackwardSampler  # noqa: E402
from .losses import LOSSES, get_loss, trajectory_balance_loss  # noqa: E402
from .replay import ReplayBuffer  # noqa: E402
from .sampler import Sampler  # noqa: E402
from .checkpoint import load  # noqa: E402
from .train import NonFiniteError, TrainConfig, Trainer  # noqa: E402
from .trajectories import Trajectories  # noqa: E402

# applications (torch-only imports; plots and progress bars load when used). amortize and
# conditional load on first use: they also run as `python -m gfncore.<module>`, which warns when
# the package has imported the module already.
from . import bayes  # noqa: E402
from .bayes import AmortizedPosterior, PosteriorConfig, PosteriorSampler  # noqa: E402

_LAZY = {"amortize": ("amortize", None), "ExpectationRegressor": ("amortize", "ExpectationRegressor"),
         "RegressorConfig": ("amortize", "RegressorConfig"), "conditional": ("conditional", None),
         "ConditionalConfig": ("conditional", "ConditionalConfig"),
         "train_conditional": ("conditional", "train_conditional"), "causal": ("causal", None),
         "design": ("design", None)}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        m = importlib.import_module(f".{module}", __name__)
        return m if attr is None else getattr(m, attr)
    raise AttributeError(f"module 'gfncore' has no attribute {name!r}")


__all__ = ["build_info", "set_num_threads", "default_threads", "load", "NonFiniteError", "distributed", "envs",
           "metrics", "nn", "ops", "backward", "replay", "Sampler", "BackwardSampler",
           "ReplayBuffer", "Trainer", "TrainConfig", "Trajectories", "LOSSES", "get_loss", "trajectory_balance_loss",
           "amortize", "bayes", "conditional", "ExpectationRegressor", "RegressorConfig", "PosteriorSampler",
           "PosteriorConfig", "AmortizedPosterior", "ConditionalConfig", "train_conditional", "causal", "design"]
