"""gfncore: GFlowNets with a compiled core (batched rollout, parent enumeration, fused balance losses)."""
import torch  # noqa: F401  (torch first: it loads the OpenMP runtime the extension shares)

from . import _C

__version__ = _C.build_info()["version"]


def build_info() -> dict:
    """What was compiled: version, with_cuda, with_openmp, cuda_version."""
    return dict(_C.build_info())


def set_num_threads(n: int) -> None:
    """CPU threads of torch's intra-op pool and of the compiled kernels (one OpenMP runtime)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be an integer >= 1, got {n!r}")
    torch.set_num_threads(n)
    _C.set_num_threads(n)


from . import backward, envs, metrics, nn, ops, replay  # noqa: E402
from .backward import BackwardSampler  # noqa: E402
from .losses import LOSSES, get_loss, trajectory_balance_loss  # noqa: E402
from .replay import ReplayBuffer  # noqa: E402
from .sampler import Sampler  # noqa: E402
from .checkpoint import load  # noqa: E402
from .train import NonFiniteError, TrainConfig, Trainer  # noqa: E402
from .trajectories import Trajectories  # noqa: E402

__all__ = ["build_info", "set_num_threads", "load", "NonFiniteError", "envs", "metrics", "nn", "ops", "backward", "replay", "Sampler", "BackwardSampler",
           "ReplayBuffer", "Trainer", "TrainConfig", "Trajectories", "LOSSES", "get_loss", "trajectory_balance_loss"]
