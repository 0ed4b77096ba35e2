"""Environments: state spaces with masks, steps, parents, encodings and rewards, written in C++
(CompiledEnv), numba (NumbaEnv) or Python (PythonEnv), all behind one interface (Env)."""
from .base import Env, from_config
from .check import EnvCheckError, check_env
from .compiled import KINDS, CompiledEnv, HandleEnv
from .hypergrid import HyperGrid
from .ising import Ising
from .numba_env import NumbaEnv
from .python_env import PythonEnv

__all__ = ["Env", "CompiledEnv", "HandleEnv", "PythonEnv", "NumbaEnv", "HyperGrid", "Ising", "check_env",
           "EnvCheckError", "from_config", "KINDS"]
