"""Parent enumeration as a torch custom op: every parent of each state and the forward action
that leads from it to the state (for flow matching, uniform P_B and backward sampling)."""
from __future__ import annotations

import torch

from ._device import skips_dispatcher
from ._env_table import env_by_id, env_id


def _parents_impl(e, states, max_parents):
    return e.kernel(states.device).parents(states, max_parents)


@torch.library.custom_op("gfncore::parents", mutates_args=())
def _parents(env: int, states: torch.Tensor, max_parents: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _parents_impl(env_by_id(env), states, max_parents)


@_parents.register_fake
def _(env, states, max_parents):
    e = env_by_id(env)
    n = states.shape[0]
    return (states.new_empty(n, max_parents, e.state_dim, dtype=torch.int32),
            states.new_empty(n, max_parents, dtype=torch.int64),
            states.new_empty(n, dtype=torch.int64))


def parents(env, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The parents of each state s: every s' with a forward action s' -> s.

    Returns ``(parent_states [N, P, D] int32, parent_actions [N, P] int64, counts [N] int64)``
    with P = ``env.max_parents``. Row i's parents fill slots ``0 .. counts[i]-1`` in increasing
    backward-action order, and ``env.step(parent_states[i, k], parent_actions[i, k])`` is
    ``states[i]`` (a forward action, never stop). Unused slots hold all-zero states and action -1.
    s0 has no parents (count 0). A row that is not in the state space raises ValueError.
    """
    s = env.check_states(states)
    if skips_dispatcher(s):
        return _parents_impl(env, s, int(env.max_parents))
    return _parents(env_id(env), s, int(env.max_parents))
