"""Environments by integer id: a custom op's schema carries numbers and tensors, not Python
objects, so the env-aware custom ops take an id and look the environment up here. The table
writes nothing on the environment: ids are keyed by object identity and dropped when it dies."""
from __future__ import annotations

import itertools
import weakref

# Weak values: the table never keeps an environment (and its data tensors) alive.
_ENVS: "weakref.WeakValueDictionary[int, object]" = weakref.WeakValueDictionary()
_IDS: dict[int, int] = {}  # id(env) -> op id, removed by a finalizer before id(env) can be reused
_NEXT_ENV_ID = itertools.count(1)


def env_id(env) -> int:
    """The id under which env-aware custom ops find `env` (assigned on first use)."""
    i = _IDS.get(id(env))
    if i is None:
        i = next(_NEXT_ENV_ID)
        _IDS[id(env)] = i
        _ENVS[i] = env
        weakref.finalize(env, _IDS.pop, id(env), None)
    return i


def env_by_id(i: int):
    try:
        return _ENVS[int(i)]
    except KeyError:
        raise ValueError(f"gfncore: no live environment with id {i} (it was garbage-collected)") from None
