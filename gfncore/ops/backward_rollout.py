"""The backward rollout step as a torch custom op: sample a parent of each state from a backward
policy P_B (masked softmax of backward logits; zero logits give the uniform P_B)."""
from __future__ import annotations

import torch

from .. import _C
from . import reference
from ._dispatch import check_same_device, compiled_for, require_tensors, stream, warn_fallback
from .rollout import _counter, draw_seed


@torch.library.custom_op("gfncore::backward_rollout_step", mutates_args=())
def _backward_rollout_step(
    env_kind: int,
    env_ints: list[int],
    env_floats: list[float],
    states: torch.Tensor,
    logits: torch.Tensor,
    ids: torch.Tensor | None,
    seed: int,
    offset: int,
    temperature: float,
    epsilon: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from ..envs import env_from_spec

    env = env_from_spec(env_kind, env_ints, env_floats)
    if not compiled_for(states):
        warn_fallback("backward_rollout_step", states)
        return reference.backward_rollout_step(env.reference(), states, logits, ids, seed, offset, temperature, epsilon)
    states, logits = states.contiguous(), logits.contiguous()
    ids = ids.contiguous() if ids is not None else None
    n = states.shape[0] if states.dim() == 2 else 0
    dev = states.device
    mask = torch.empty(n, env.n_backward_actions, dtype=torch.bool, device=dev)  # scratch
    actions = torch.empty(n, dtype=torch.int64, device=dev)
    log_pb = torch.empty(n, dtype=logits.dtype, device=dev)
    forward_actions = torch.empty(n, dtype=torch.int64, device=dev)
    parents = torch.empty(n, env.state_dim, dtype=torch.int32, device=dev)
    done = torch.empty(n, dtype=torch.bool, device=dev)
    _C.backward_rollout_step(env.spec, states, logits, ids, seed, offset, temperature, epsilon, mask, actions, log_pb,
                             forward_actions, parents, done, stream(states))
    return actions, log_pb, forward_actions, parents, done


@_backward_rollout_step.register_fake
def _(env_kind, env_ints, env_floats, states, logits, ids, seed, offset, temperature, epsilon):
    from ..envs import env_from_spec

    check_same_device("backward_rollout_step", states=states, logits=logits, ids=ids)  # else CPU garbage out
    env = env_from_spec(env_kind, env_ints, env_floats)
    n = states.shape[0]
    return (states.new_empty(n, dtype=torch.int64), logits.new_empty(n), states.new_empty(n, dtype=torch.int64),
            states.new_empty(n, env.state_dim, dtype=torch.int32), states.new_empty(n, dtype=torch.bool))


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
    s = env._states(states)
    require_tensors("backward_rollout_step", **{k: v for k, v in (("logits", logits), ("ids", ids)) if v is not None})
    if logits is None:
        logits = torch.zeros(s.shape[0], env.n_backward_actions, dtype=torch.get_default_dtype(), device=s.device)
    if seed is None:
        seed = draw_seed(generator)
    seed, offset = _counter("seed", seed, "backward_rollout_step"), _counter("offset", offset, "backward_rollout_step")
    kind, ints, floats = env.spec
    return _backward_rollout_step(kind, list(ints), list(floats), s, logits, ids, seed, offset,
                                  float(temperature), float(epsilon))
