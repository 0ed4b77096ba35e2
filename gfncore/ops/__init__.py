"""gfncore ops: each a torch custom op (schema, fake kernel, autograd) over the compiled core,
with a plain-PyTorch twin in gfncore.ops.reference."""
from . import reference
from .backward_rollout import backward_rollout_step
from .balance import (detailed_balance, flow_matching, log_partition_variance, modified_detailed_balance,
                      subtrajectory_balance, trajectory_balance, trajectory_balance_from_logits)
from ._device import check_cuda_errors, set_cuda_async_errors
from .kernel import CompiledKernel, compiled_kernel
from .parents import parents
from .rollout import draw_seed, rollout_step, sample_actions
from .softmax_gather import masked_log_softmax_gather

__all__ = ["reference", "rollout_step", "sample_actions", "draw_seed", "masked_log_softmax_gather",
           "trajectory_balance", "trajectory_balance_from_logits",
           "parents", "backward_rollout_step", "detailed_balance", "modified_detailed_balance",
           "subtrajectory_balance", "flow_matching", "log_partition_variance", "CompiledKernel", "compiled_kernel",
           "set_cuda_async_errors", "check_cuda_errors"]
