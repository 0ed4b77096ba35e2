"""The backward rollout step as a torch custom op: sample a parent of each state from a backward
policy P_B (masked softmax of backward logits; zero logits give the uniform P_B)."""
from __future__ import annotations

import torch

from ._args import check_same_device, require_tensors
from ._device import skips_dispatcher
from ._env_table import env_by_id, env_id
from .rollout import _sampling, no_alias, seed_and_offset


def _backward_step_impl(e, states, logits, ids, seed, offset, temperature, epsilon):
    k = e.kernel(states.device)
    out = k.backward_rollout_step(states, logits, ids, seed, offset, temperature, epsilon)
    return out if k.compiled else no_alias(out, (states, logits, ids))


@torch.library.custom_op("gfncore::backward_rollout_step", mutates_args=())
def _backward_rollout_step(env: int, states: torch.Tensor, logits: torch.Tensor, ids: torch.Tensor | None, seed: int,
                           offset: int, temperature: float, epsilon: float
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _backward_step_impl(env_by_id(env), states, logits, ids, seed, offset, temperature, epsilon)


@_backward_rollout_step.register_fake
def _(env, states, logits, ids, seed, offset, temperature, epsilon):
    check_same_device("backward_rollout_step", states=states, logits=logits, ids=ids)  # else garbage out
    e = env_by_id(env)
    n = states.shape[0]
    return (states.new_empty(n, dtype=torch.int64), logits.new_empty(n), states.new_empty(n, dtype=torch.int64),
            states.new_empty(n, e.state_dim, dtype=torch.int32), states.new_empty(n, dtype=torch.bool))


def backward_rollout_step(
    env,
    states: torch.Tensor,
    logits: torch.Tensor | None = None,
    *,
    seed: int | None = None,
    offset: int = 0,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    epsilon: float = 0.0,
    ids: torch.Tensor | None = None,
):
    """One backward step of every state in the batch (none may be s0, which has no parent).

    Samples a backward action b_i from softmax(logits_i / temperature) over the parents of
    states[i] (``env.backward_mask``; or, with probability epsilon, uniformly among them) and
    returns ``(actions, log_pb, forward_actions, parents, done)``: the backward actions, their
    log-probabilities under that distribution, the forward actions parent -> state, the parent
    states and whether each parent is s0. ``logits=None`` is the uniform P_B (zero logits).
    Randomness as in :func:`gfncore.ops.rollout_step`: Philox keyed by seed, ``ids`` and ``offset``.
    """
    require_tensors("backward_rollout_step", states=states)
    if logits is not None:
        require_tensors("backward_rollout_step", logits=logits)
    if ids is not None:
        require_tensors("backward_rollout_step", ids=ids)
    s = env.check_states(states)
    if logits is None:
        logits = torch.zeros(s.shape[0], env.n_backward_actions, dtype=torch.get_default_dtype(), device=s.device)
    seed, offset = seed_and_offset("backward_rollout_step", seed, offset, generator)
    temperature, epsilon = _sampling("backward_rollout_step", temperature, epsilon)
    if skips_dispatcher(s, logits, ids):
        return _backward_step_impl(env, s, logits, ids, seed, offset, temperature, epsilon)
    return _backward_rollout_step(env_id(env), s, logits, ids, seed, offset, temperature, epsilon)
