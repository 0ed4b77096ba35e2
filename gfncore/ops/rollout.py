"""The rollout step as a torch custom op: masked sampling from policy logits (temperature,
epsilon-uniform), environment step, next forward mask and encoded features."""
from __future__ import annotations

import operator

import torch

from .. import _C
from . import reference
from ._dispatch import check_same_device, compiled_for, materialize, require_tensors, stream, warn_fallback


@torch.library.custom_op("gfncore::rollout_step", mutates_args=())
def _rollout_step(
    env_kind: int,
    env_ints: list[int],
    env_floats: list[float],
    states: torch.Tensor,
    mask: torch.Tensor,
    logits: torch.Tensor,
    ids: torch.Tensor | None,
    seed: int,
    offset: int,
    temperature: float,
    epsilon: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from ..envs import env_from_spec

    env = env_from_spec(env_kind, env_ints, env_floats)
    if not compiled_for(states):
        warn_fallback("rollout_step", states)
        return reference.rollout_step(env.reference(), states, mask, logits, ids, seed, offset, temperature, epsilon)
    # A huge stride-0 view raises MemoryError here, not the allocator's RuntimeError; the outputs
    # are sized by rows that exist (a [2**40, 0] states tensor holds none).
    states, mask, logits = (materialize("rollout_step", k, t)
                            for k, t in (("states", states), ("mask", mask), ("logits", logits)))
    ids = materialize("rollout_step", "ids", ids) if ids is not None else None
    n = states.shape[0] if states.dim() == 2 and states.shape[1] == env.state_dim else 0
    dev = states.device
    actions = torch.empty(n, dtype=torch.int64, device=dev)
    log_prob = torch.empty(n, dtype=logits.dtype, device=dev)
    next_states = torch.empty(n, env.state_dim, dtype=torch.int32, device=dev)
    next_mask = torch.empty(n, env.n_actions, dtype=torch.bool, device=dev)
    features = torch.empty(n, env.feature_dim, dtype=torch.float32, device=dev)
    done = torch.empty(n, dtype=torch.bool, device=dev)
    _C.rollout_step(env.spec, states, mask, logits, ids, seed, offset, temperature, epsilon, actions, log_prob,
                    next_states, next_mask, features, done, stream(states))
    return actions, log_prob, next_states, next_mask, features, done


@_rollout_step.register_fake
def _(env_kind, env_ints, env_floats, states, mask, logits, ids, seed, offset, temperature, epsilon):
    from ..envs import env_from_spec

    check_same_device("rollout_step", states=states, mask=mask, logits=logits, ids=ids)
    env = env_from_spec(env_kind, env_ints, env_floats)
    n = states.shape[0]
    return (
        states.new_empty(n, dtype=torch.int64),
        logits.new_empty(n),
        states.new_empty(n, env.state_dim, dtype=torch.int32),
        states.new_empty(n, env.n_actions, dtype=torch.bool),
        states.new_empty(n, env.feature_dim, dtype=torch.float32),
        states.new_empty(n, dtype=torch.bool),
    )


def _counter(name: str, v, op: str = "rollout_step") -> int:
    """A Philox seed or offset for `op`: the op schema carries int64 and the kernel reads uint64,
    so exactly the ints in [0, 2^63) are accepted (TypeError / ValueError otherwise)."""
    try:
        v = operator.index(v)
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int, got {type(v).__name__}") from None
    if not 0 <= v < 2**63:
        raise ValueError(f"{op}: {name} must be in [0, 2**63), got {v}")
    return v


def draw_seed(generator: torch.Generator | None = None) -> int:
    """A 63-bit Philox key drawn from a torch.Generator (the global one by default)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator).item())


def rollout_step(
    env,
    states: torch.Tensor,
    mask: torch.Tensor,
    logits: torch.Tensor,
    *,
    seed: int | None = None,
    offset: int = 0,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    epsilon: float = 0.0,
    ids: torch.Tensor | None = None,
):
    """One step of every trajectory in the batch.

    Samples a_i from softmax(logits_i / temperature) over the legal actions of mask_i (or, with
    probability epsilon, uniformly among them), applies it, and returns
    ``(actions, log_prob, next_states, next_mask, features, done)``. ``log_prob`` is the
    log-probability of a_i under that sampling distribution; ``done`` marks the stop action, after
    which the state is a finished object x with an all-false mask.

    Randomness is Philox keyed by ``seed`` (drawn from ``generator`` if not given), with
    subsequence ``ids[i]`` (default: the row index) and counter ``offset`` (use the step index),
    so a draw does not depend on thread count, batch order or device.
    """
    require_tensors("rollout_step", states=states, mask=mask, logits=logits)
    if ids is not None:
        require_tensors("rollout_step", ids=ids)
    if seed is None:
        seed = draw_seed(generator)
    seed, offset = _counter("seed", seed), _counter("offset", offset)
    kind, ints, floats = env.spec
    return _rollout_step(kind, list(ints), list(floats), states, mask, logits, ids, seed, offset,
                         float(temperature), float(epsilon))
