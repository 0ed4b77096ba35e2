"""The environment interface: a state space of fixed-width integer rows, forward/backward masks,
deterministic constructive steps (a DAG), encodings and a log-reward. Queries run in the
compiled core (or the plain-PyTorch twin on a device without kernels)."""
from __future__ import annotations

from functools import cached_property

import torch

from .. import _C
from ..ops._dispatch import compiled_for, stream, warn_fallback

# Query codes of csrc/ops/env_ops.h (EnvQuery).
_FORWARD_MASK, _BACKWARD_MASK, _ENCODE, _LOG_REWARD, _N_PARENTS, _STEP, _BACKWARD_STEP, _IS_INITIAL = range(8)


class Env:
    """Base class of compiled environments. Subclasses set ``spec = (kind, ints, floats)`` and
    implement ``reference()`` (the plain-PyTorch twin) and, where small enough, enumeration."""

    name = "env"
    spec: tuple

    def __init__(self, spec: tuple):
        self.spec = (int(spec[0]), tuple(int(v) for v in spec[1]), tuple(float(v) for v in spec[2]))
        dims = _C.env_dims(self.spec)  # validates the parameters in C++ (raises ValueError)
        self.n_actions: int = dims["n_actions"]
        self.n_backward_actions: int = dims["n_backward_actions"]
        self.state_dim: int = dims["state_dim"]
        self.feature_dim: int = dims["feature_dim"]
        self.max_parents: int = dims["max_parents"]
        self.max_length: int = dims["max_length"]

    @property
    def stop_action(self) -> int:
        return self.n_actions - 1

    def reference(self):
        raise NotImplementedError

    # -- state-space queries --------------------------------------------------------------------
    def _query(self, q: int, states: torch.Tensor, out: torch.Tensor, actions: torch.Tensor | None = None):
        _C.env_query(self.spec, q, states, actions, out, stream(states))
        return out

    def _states(self, states: torch.Tensor) -> torch.Tensor:
        if not isinstance(states, torch.Tensor):
            raise TypeError(f"states must be a torch.Tensor, got {type(states).__name__}")
        if states.device.type == "meta":
            raise TypeError("states must hold data (a CPU or CUDA tensor), got a meta tensor")
        if states.dim() != 2 or states.shape[1] != self.state_dim:
            raise ValueError(f"states must have shape [n, {self.state_dim}], got {list(states.shape)}")
        if states.dtype != torch.int32:
            if states.dtype.is_floating_point or states.dtype == torch.bool:
                raise TypeError(f"states must be an integer tensor (int32), got {states.dtype}")
            states = states.to(torch.int32)
        return states.contiguous()

    @staticmethod
    def _actions(actions: torch.Tensor) -> torch.Tensor:
        if not isinstance(actions, torch.Tensor):
            raise TypeError(f"actions must be a torch.Tensor, got {type(actions).__name__}")
        if actions.dtype.is_floating_point or actions.dtype == torch.bool:
            raise TypeError(f"actions must be an integer tensor (int64), got {actions.dtype}")
        return actions.to(torch.int64).contiguous()

    def initial_states(self, n: int, device=None) -> torch.Tensor:
        """n copies of s0, the state every trajectory starts from."""
        return self.reference().initial(n, device=device)

    def forward_mask(self, states: torch.Tensor) -> torch.Tensor:
        """Legal forward actions (the last one is stop), bool [n, n_actions]."""
        s = self._states(states)
        if not compiled_for(s):
            warn_fallback("env.forward_mask", s)
            return self.reference().forward_mask(s)
        return self._query(_FORWARD_MASK, s, torch.empty(s.shape[0], self.n_actions, dtype=torch.bool, device=s.device))

    def backward_mask(self, states: torch.Tensor) -> torch.Tensor:
        """Legal backward actions, i.e. the parents of each state, bool [n, n_backward_actions]."""
        s = self._states(states)
        if not compiled_for(s):
            return self.reference().backward_mask(s)
        return self._query(_BACKWARD_MASK, s,
                           torch.empty(s.shape[0], self.n_backward_actions, dtype=torch.bool, device=s.device))

    def n_parents(self, states: torch.Tensor) -> torch.Tensor:
        """Number of parents of each state, int64 [n] (0 for s0)."""
        s = self._states(states)
        if not compiled_for(s):
            return self.reference().n_parents(s)
        return self._query(_N_PARENTS, s, torch.empty(s.shape[0], dtype=torch.int64, device=s.device))

    def is_initial(self, states: torch.Tensor) -> torch.Tensor:
        s = self._states(states)
        if not compiled_for(s):
            return self.reference().is_initial(s)
        return self._query(_IS_INITIAL, s, torch.empty(s.shape[0], dtype=torch.bool, device=s.device))

    def encode(self, states: torch.Tensor) -> torch.Tensor:
        """Policy input features, float32 [n, feature_dim]."""
        s = self._states(states)
        if not compiled_for(s):
            return self.reference().encode(s)
        return self._query(_ENCODE, s, torch.empty(s.shape[0], self.feature_dim, dtype=torch.float32, device=s.device))

    def log_reward(self, states: torch.Tensor) -> torch.Tensor:
        """log R(x), float64 [n]."""
        s = self._states(states)
        if not compiled_for(s):
            return self.reference().log_reward(s)
        return self._query(_LOG_REWARD, s, torch.empty(s.shape[0], dtype=torch.float64, device=s.device))

    def step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The child reached by each (legal) forward action; stop leaves the state unchanged."""
        s = self._states(states)
        a = self._actions(actions)
        if not compiled_for(s):
            return self.reference().step(s, a)
        return self._query(_STEP, s, torch.empty_like(s), a)

    def backward_step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The parent reached by each (legal) backward action."""
        s = self._states(states)
        a = self._actions(actions)
        if not compiled_for(s):
            return self.reference().backward_step(s, a)
        return self._query(_BACKWARD_STEP, s, torch.empty_like(s), a)

    def backward_action(self, actions: torch.Tensor) -> torch.Tensor:
        """The backward action that undoes each forward move action."""
        return actions

    # -- enumeration (small environments) -------------------------------------------------------
    def all_states(self) -> torch.Tensor:
        """Every state reachable from s0, by breadth-first expansion (small environments only)."""
        frontier = self.initial_states(1)
        seen = [frontier]
        keys = set(map(tuple, frontier.tolist()))
        while frontier.shape[0]:
            mask = self.forward_mask(frontier)[:, : self.stop_action]
            rows, acts = mask.nonzero(as_tuple=True)
            if rows.numel() == 0:
                break
            children = torch.unique(self.step(frontier[rows], acts), dim=0)
            new = [c for c in children.tolist() if tuple(c) not in keys]
            keys.update(map(tuple, new))
            frontier = torch.tensor(new, dtype=torch.int32).reshape(-1, self.state_dim)
            seen.append(frontier)
        return torch.cat(seen)

    def all_terminal_states(self) -> torch.Tensor:
        """Every finished object x (every state from which stop is legal), in a fixed order."""
        s = self.all_states()
        can_stop = self.forward_mask(s)[:, self.stop_action]
        return s[can_stop]

    @cached_property
    def _true_log_z(self) -> float:
        return float(torch.logsumexp(self.log_reward(self.all_terminal_states()), 0))

    def true_log_z(self) -> float:
        """log Z = log sum_x R(x), exactly, by enumeration."""
        return self._true_log_z

    def true_distribution(self) -> torch.Tensor:
        """R(x)/Z over all_terminal_states(), float64."""
        return torch.softmax(self.log_reward(self.all_terminal_states()), 0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self.spec}"

    # Stopgap until the environment layer's own serialisation lands (issue 6): the constructor's
    # parameters, read back from the attributes of the same names.
    def to_config(self) -> dict:
        """{"name": ..., "params": {...}}, JSON-able; gfncore.envs.from_config rebuilds the environment."""
        import inspect

        if not type(self).__module__.startswith("gfncore.envs."):  # a user subclass may change anything
            raise NotImplementedError(f"{type(self).__name__} is not a built-in environment; pass the environment "
                                      f"itself (gfncore.load(path, env=...))")
        params = {}
        for p in list(inspect.signature(type(self).__init__).parameters)[1:]:
            if not hasattr(self, p):
                raise NotImplementedError(f"{type(self).__name__} cannot describe its parameter {p!r}; "
                                          f"pass the environment itself (gfncore.load(path, env=...))")
            params[p] = getattr(self, p)
        return {"name": self.name, "params": params}


_REGISTRY: dict[int, type] = {}


def register(cls):
    _REGISTRY[cls.kind] = cls
    return cls


def env_from_spec(kind: int, ints, floats) -> Env:
    """Rebuild an environment from its spec (used inside custom ops, whose schema holds numbers)."""
    try:
        cls = _REGISTRY[int(kind)]
    except KeyError:
        raise ValueError(f"unknown environment kind {kind}") from None
    return cls.from_spec(tuple(ints), tuple(floats))

