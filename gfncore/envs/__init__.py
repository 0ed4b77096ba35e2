"""Environments: state spaces with masks, steps, parents, encodings and rewards."""
from .base import Env, env_from_spec
from .hypergrid import HyperGrid
from .ising import Ising

__all__ = ["Env", "HyperGrid", "Ising", "env_from_spec", "from_config"]


def from_config(d: dict) -> Env:
    """The environment an Env.to_config() dict describes (stopgap for the built-ins)."""
    builtins = {"hypergrid": HyperGrid, "ising": Ising}
    if not isinstance(d, dict) or "name" not in d:
        raise ValueError(f"an environment config is a dict with 'name' and 'params', got {d!r}")
    if d["name"] not in builtins:
        raise ValueError(f"unknown environment {d['name']!r}; built-ins: {', '.join(builtins)}")
    return builtins[d["name"]](**d.get("params", {}))
