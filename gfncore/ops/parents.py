"""Parent enumeration as a torch custom op: every parent of each state and the forward action
that leads from it to the state (for flow matching, uniform P_B and backward sampling)."""
from __future__ import annotations

import torch

from .. import _C
from . import reference
from ._dispatch import compiled_for, stream, warn_fallback


@torch.library.custom_op("gfncore::parents", mutates_args=())
def _parents(env_kind: int, env_ints: list[int], env_floats: list[float],
             states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from ..envs import env_from_spec

    env = env_from_spec(env_kind, env_ints, env_floats)
    if not compiled_for(states):
        warn_fallback("parents", states)
        return reference.parents(env.reference(), states, env.max_parents)
    states = states.contiguous()
    n, P, D, dev = states.shape[0], env.max_parents, env.state_dim, states.device
    parent_states = torch.empty(n, P, D, dtype=torch.int32, device=dev)
    parent_actions = torch.empty(n, P, dtype=torch.int64, device=dev)
    counts = torch.empty(n, dtype=torch.int64, device=dev)
    _C.parents(env.spec, states, parent_states, parent_actions, counts, stream(states))
    return parent_states, parent_actions, counts


@_parents.register_fake
def _(env_kind, env_ints, env_floats, states):
    from ..envs import env_from_spec

    env = env_from_spec(env_kind, env_ints, env_floats)
    n = states.shape[0]
    return (states.new_empty(n, env.max_parents, env.state_dim, dtype=torch.int32),
            states.new_empty(n, env.max_parents, dtype=torch.int64),
            states.new_empty(n, dtype=torch.int64))


def parents(env, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The parents of each state s: every s' with a forward action s' -> s.

    Returns ``(parent_states [N, P, D] int32, parent_actions [N, P] int64, counts [N] int64)``
    with P = ``env.max_parents``. Row i's parents fill slots ``0 .. counts[i]-1`` in increasing
    backward-action order, and ``env.step(parent_states[i, k], parent_actions[i, k])`` is
    ``states[i]`` (a forward action, never stop). Unused slots hold all-zero states and action -1.
    s0 has no parents (count 0). A row that is not in the state space raises ValueError.
    """
    s = env._states(states)
    kind, ints, floats = env.spec
    return _parents(kind, list(ints), list(floats), s)
