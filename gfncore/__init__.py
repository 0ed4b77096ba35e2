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

from . import _C  # noqa: E402,F401
from .runtime import THREAD_CAP, __version__, build_info, default_threads, set_num_threads  # noqa: E402,F401
from . import backward, distributed, envs, metrics, nn, ops, replay  # noqa: E402
from .backward import BackwardSampler  # noqa: E402
from .losses import LOSSES, get_loss, trajectory_balance_loss  # noqa: E402
from .replay import ReplayBuffer  # noqa: E402
from .sampler import Sampler  # noqa: E402
from .train import NonFiniteError, TrainConfig, Trainer, load  # noqa: E402
from .trajectories import Trajectories  # noqa: E402

# applications (torch-only imports; plots and progress bars load when used). The others load on
# first use, which keeps `import gfncore` light.
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
