"""gfncore: GFlowNets with a compiled core (batched rollout, parent enumeration, fused balance losses)."""
import torch  # noqa: F401  (torch first: it loads the OpenMP runtime the extension shares)

from . import _C

__version__ = _C.build_info()["version"]


def build_info() -> dict:
    """What was compiled: version, with_cuda, with_openmp, cuda_version."""
    return dict(_C.build_info())


from . import backward, distributed, envs, metrics, nn, ops, replay  # noqa: E402
from .backward import BackwardSampler  # noqa: E402
from .losses import LOSSES, get_loss, trajectory_balance_loss  # noqa: E402
from .replay import ReplayBuffer  # noqa: E402
from .sampler import Sampler  # noqa: E402
from .train import TrainConfig, Trainer  # noqa: E402
from .trajectories import Trajectories  # noqa: E402

__all__ = ["build_info", "distributed", "envs", "metrics", "nn", "ops", "backward", "replay", "Sampler", "BackwardSampler",
           "ReplayBuffer", "Trainer", "TrainConfig", "Trajectories", "LOSSES", "get_loss", "trajectory_balance_loss"]
