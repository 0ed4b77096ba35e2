"""Environments: state spaces with masks, steps, parents, encodings and rewards, written in C++
(CompiledEnv), numba (NumbaEnv) or Python (PythonEnv), all behind one interface (Env)."""
from .assignment import Assignment
from .base import Env, NonFiniteRewardError
from .bit_sequence import BitSequence
from .check import EnvCheckError, check_env
from .compiled import KINDS, CompiledEnv, HandleEnv
from .dag import DAG
from .contextual import HyperGridR0, IsingBeta, uniform_contexts
from .hypergrid import HyperGrid
from .ising import Ising
from .numba_env import NumbaEnv
from .python_env import PythonEnv
from .resolve import from_config
from .set_addition import SetAddition

__all__ = ["Env", "CompiledEnv", "HandleEnv", "PythonEnv", "NumbaEnv", "HyperGrid", "Ising", "BitSequence",
           "SetAddition", "Assignment", "DAG", "IsingBeta", "HyperGridR0", "uniform_contexts", "check_env",
           "EnvCheckError", "NonFiniteRewardError", "from_config", "KINDS"]
