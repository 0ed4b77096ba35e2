"""Environments: state spaces with masks, steps, parents, encodings and rewards."""
from .base import Env, env_from_spec
from .hypergrid import HyperGrid

__all__ = ["Env", "HyperGrid", "env_from_spec"]
