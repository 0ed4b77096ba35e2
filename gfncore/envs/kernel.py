"""BatchedKernel: any environment, through its own batched methods, as the env-aware ops'
kernel (the Python route, and a device for which an environment has no compiled kernels). The
sampling rule is the compiled one (``ops.sample_actions``), so every route draws the same
actions for the same seed."""
from __future__ import annotations

import torch

from .. import ops
from ..ops import reference


class BatchedKernel:
    """The methods of ``gfncore.ops.kernel.CompiledKernel``, composed from an environment's
    batched ``forward_mask``, ``step``, ``encode``, ``backward_mask``, ``backward_step``,
    ``forward_action`` and ``is_initial``."""

    compiled = False

    def __init__(self, env):
        self.env = env

    def rollout_step(self, states, mask, logits, ids, seed, offset, temperature, epsilon):
        """The compiled sampling rule, then env.step on the rows that did not stop (a Python
        environment's step never sees stop)."""
        env = self.env
        actions, log_prob = ops.sample_actions(mask, logits, ids=ids, seed=seed, offset=offset,
                                               temperature=temperature, epsilon=epsilon)
        done = actions == env.stop_action
        move = (~done).nonzero(as_tuple=True)[0]
        next_states = states.clone()
        if move.numel():
            next_states[move] = env.step(states[move], actions[move]).to(states.dtype)
        next_mask = env.forward_mask(next_states) & ~done.unsqueeze(-1)
        features = env.encode(next_states)
        return actions, log_prob, next_states, next_mask, features, done

    def backward_rollout_step(self, states, logits, ids, seed, offset, temperature, epsilon):
        """The compiled sampling rule over the backward mask, then env.backward_step."""
        env = self.env
        mask = env.backward_mask(states)
        b, log_pb = ops.sample_actions(mask, logits, ids=ids, seed=seed, offset=offset, temperature=temperature,
                                       epsilon=epsilon)
        par = env.backward_step(states, b).to(torch.int32)
        return b, log_pb, env.forward_action(b), par, env.is_initial(par)

    def parents(self, states, max_parents: int):
        return reference.parents(self.env, states, max_parents)

    def recorder(self, capacity: int):
        raise TypeError(f"{self.env.name} has no compiled kernels: the recording sampler needs a C++ or numba "
                        f"environment")
