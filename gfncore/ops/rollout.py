"""Forward sampling as torch custom ops: `sample_actions` (the masked, tempered, epsilon-mixed
categorical draw with counter-based Philox randomness, environment-free) and `rollout_step`
(that draw, then the environment's step, next forward mask and encoded features)."""
from __future__ import annotations

import operator

import torch

from .. import _C
from . import reference
from . import _device
from ._args import check_same_device, require_tensors
from ._device import skips_dispatcher, stream
from ._env_table import env_by_id, env_id
from ._memory import materialize


def _counter(op: str, name: str, v) -> int:
    # The op schemas carry int64 and the kernels read uint64: accept exactly [0, 2^63).
    try:
        v = operator.index(v)
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int, got {type(v).__name__}") from None
    if not 0 <= v < 2**63:
        raise ValueError(f"{op}: {name} must be in [0, 2**63), got {v}")
    return v


def _sampling(op: str, temperature, epsilon) -> tuple[float, float]:
    try:
        t, e = float(temperature), float(epsilon)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: temperature and epsilon must be numbers, got {temperature!r} and {epsilon!r}") from None
    if not 0.0 < t < float("inf"):
        raise ValueError(f"{op}: temperature must be a finite number > 0, got {temperature}")
    if not 0.0 <= e <= 1.0:
        raise ValueError(f"{op}: epsilon must be in [0, 1], got {epsilon}")
    return t, e


def draw_seed(generator: torch.Generator | None = None) -> int:
    """A 63-bit Philox key drawn from a torch.Generator (the global one by default)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator).item())


def seed_and_offset(op: str, seed, offset, generator) -> tuple[int, int]:
    if seed is None:
        seed = draw_seed(generator)
    return _counter(op, "seed", seed), _counter(op, "offset", offset)


# --- sample_actions ---------------------------------------------------------------------------
def _sample_actions_impl(mask, logits, ids, seed, offset, temperature, epsilon):
    if not _device.compiled_for(logits):
        _device.warn_fallback("sample_actions", logits)
        return reference.sample_actions(mask, logits, ids, seed, offset, temperature, epsilon)
    # a huge stride-0 view raises MemoryError here, not the allocator's RuntimeError
    mask, logits = materialize("sample_actions", "mask", mask), materialize("sample_actions", "logits", logits)
    ids = materialize("sample_actions", "ids", ids) if ids is not None else None
    n = logits.shape[0] if logits.dim() == 2 else 0
    actions = torch.empty(n, dtype=torch.int64, device=logits.device)
    log_prob = torch.empty(n, dtype=logits.dtype, device=logits.device)
    _C.sample_actions(mask, logits, ids, seed, offset, temperature, epsilon, actions, log_prob, stream(logits))
    return actions, log_prob


@torch.library.custom_op("gfncore::sample_actions", mutates_args=())
def _sample_actions_op(mask: torch.Tensor, logits: torch.Tensor, ids: torch.Tensor | None, seed: int, offset: int,
                       temperature: float, epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    return _sample_actions_impl(mask, logits, ids, seed, offset, temperature, epsilon)


def _sample_actions(mask, logits, ids, seed, offset, temperature, epsilon):
    # Eager calls skip the custom-op dispatcher (tens of microseconds a call, more than the kernel
    # at rollout sizes); torch.compile and fake tensors go through the op.
    if skips_dispatcher(mask, logits, ids):
        return _sample_actions_impl(mask, logits, ids, seed, offset, temperature, epsilon)
    return _sample_actions_op(mask, logits, ids, seed, offset, temperature, epsilon)


@_sample_actions_op.register_fake
def _(mask, logits, ids, seed, offset, temperature, epsilon):
    check_same_device("sample_actions", logits=logits, mask=mask, ids=ids)
    n = logits.shape[0]
    return logits.new_empty(n, dtype=torch.int64), logits.new_empty(n)


def sample_actions(mask: torch.Tensor, logits: torch.Tensor, *, seed: int | None = None, offset: int = 0,
                   generator: torch.Generator | None = None, temperature: float = 1.0, epsilon: float = 0.0,
                   ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One action per row from softmax(logits / temperature) over the legal actions of ``mask``
    (or, with probability epsilon, uniformly among them): ``(actions [n] int64, log_prob [n])``,
    log_prob under that sampling distribution.

    The environment-free half of :func:`rollout_step`, with the same Philox draws (keyed by
    ``seed``, subsequence ``ids[i]`` (default: the row index) and counter ``offset``), so a Python
    environment stepped by the caller samples exactly what a compiled one does.
    """
    require_tensors("sample_actions", mask=mask, logits=logits)
    if ids is not None:
        require_tensors("sample_actions", ids=ids)
    seed, offset = seed_and_offset("sample_actions", seed, offset, generator)
    temperature, epsilon = _sampling("sample_actions", temperature, epsilon)
    return _sample_actions(mask, logits, ids, seed, offset, temperature, epsilon)


# --- rollout_step -------------------------------------------------------------------------------
def no_alias(outputs: tuple, inputs: tuple) -> tuple:
    """Outputs of a custom op may not alias its inputs or each other (a user environment's method
    may return a view or the same tensor twice): clone the ones that do."""
    seen = {t.untyped_storage().data_ptr() for t in inputs if isinstance(t, torch.Tensor) and t.numel()}
    out = []
    for t in outputs:
        if isinstance(t, torch.Tensor) and t.numel():
            ptr = t.untyped_storage().data_ptr()
            if ptr in seen:
                t = t.clone()
                ptr = t.untyped_storage().data_ptr()
            seen.add(ptr)
        out.append(t)
    return tuple(out)


def _rollout_step_impl(e, states, mask, logits, ids, seed, offset, temperature, epsilon):
    k = e.kernel(states.device)
    out = k.rollout_step(states, mask, logits, ids, seed, offset, temperature, epsilon)
    return out if k.compiled else no_alias(out, (states, mask, logits, ids))


@torch.library.custom_op("gfncore::rollout_step", mutates_args=())
def _rollout_step(env: int, states: torch.Tensor, mask: torch.Tensor, logits: torch.Tensor, ids: torch.Tensor | None,
                  seed: int, offset: int, temperature: float,
                  epsilon: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _rollout_step_impl(env_by_id(env), states, mask, logits, ids, seed, offset, temperature, epsilon)


@_rollout_step.register_fake
def _(env, states, mask, logits, ids, seed, offset, temperature, epsilon):
    check_same_device("rollout_step", states=states, mask=mask, logits=logits, ids=ids)
    e = env_by_id(env)
    n = states.shape[0]
    return (
        states.new_empty(n, dtype=torch.int64),
        logits.new_empty(n),
        states.new_empty(n, e.state_dim, dtype=torch.int32),
        states.new_empty(n, e.n_actions, dtype=torch.bool),
        states.new_empty(n, e.feature_dim, dtype=torch.float32),
        states.new_empty(n, dtype=torch.bool),
    )


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
    so a draw does not depend on thread count, batch order, device, or on whether the environment
    is compiled, numba or Python.
    """
    require_tensors("rollout_step", states=states, mask=mask, logits=logits)
    if ids is not None:
        require_tensors("rollout_step", ids=ids)
    seed, offset = seed_and_offset("rollout_step", seed, offset, generator)
    temperature, epsilon = _sampling("rollout_step", temperature, epsilon)
    states = env.check_states(states)
    if skips_dispatcher(states, mask, logits, ids):
        return _rollout_step_impl(env, states, mask, logits, ids, seed, offset, temperature, epsilon)
    return _rollout_step(env_id(env), states, mask, logits, ids, seed, offset, temperature, epsilon)
