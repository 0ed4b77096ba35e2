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


def _extension():
    """The compiled core: this package's own _C, else (when this is a source tree without a built
    extension, e.g. Python started in the repository root after `pip install .`) the _C of the
    gfncore installed on sys.path, else an ImportError that says what to run."""
    import glob
    import importlib.machinery
    import importlib.util

    here = _os.path.dirname(_os.path.abspath(__file__))
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    try:
        from . import _C as ext
        return ext
    except ImportError:
        if any(glob.glob(_os.path.join(here, "_C" + s)) for s in suffixes):
            raise  # a built extension that does not load: its own error says why
    for entry in _sys.path:
        folder = _os.path.join(_os.path.abspath(entry or _os.getcwd()), "gfncore")
        if _os.path.realpath(folder) == _os.path.realpath(here):
            continue
        for s in suffixes:
            path = _os.path.join(folder, "_C" + s)
            if _os.path.isfile(path):
                spec = importlib.util.spec_from_file_location(f"{__name__}._C", path)
                ext = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(ext)
                _sys.modules[f"{__name__}._C"] = ext
                return ext
    root = _os.path.dirname(here)
    raise ImportError(
        f"gfncore: {here} is a source tree without a built extension (gfncore/_C), and no installed gfncore "
        f"was found to take it from. Run `pip install .` in {root} (this source tree then uses the installed "
        f"extension), or build it in place with `scripts/dev-build.sh`.") from None  # (not Python's "circular import" guess)


_C = _extension()
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
