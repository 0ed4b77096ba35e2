"""Environments: state spaces with masks, steps, parents, encodings and rewards."""
from .base import Env, env_from_spec
from .hypergrid import HyperGrid
from .ising import Ising

__all__ = ["Env", "HyperGrid", "Ising", "env_from_spec"]
