"""Environments written in Python as batched torch methods: the natural first form of a new state
space, and the reference semantics of the numba and C++ routes."""
from __future__ import annotations

import functools

import torch

from . import contract
from .base import Env

# The methods a PythonEnv subclass implements (the contract's); each is wrapped so that a wrong
# shape, dtype or value fails at once with the method's name and the first bad state.
_CONTRACT = tuple(m.name for m in contract.METHODS)


class PythonEnv(Env):
    """Base class of environments written as batched torch methods.

    >>> class MyEnv(gfn.envs.PythonEnv):
    ...     def __init__(self):
    ...         super().__init__(state_dim=D, n_actions=A)   # action A-1 is "stop"
    ...     def initial_state(self): ...             # int [D]
    ...     def forward_mask(self, states): ...      # bool [N, A]
    ...     def step(self, states, actions): ...     # int [N, D]; actions never stop
    ...     def backward_mask(self, states): ...     # bool [N, A-1]: actions that lead INTO each state
    ...     def backward_step(self, states, actions): ...  # the parent reached by undoing that action
    ...     def log_reward(self, x): ...             # float [N] (log_reward(self, x, context) if conditional)
    ...     def encode(self, states): ...            # optional; float [N, F]; default: states as float
    ...     def all_terminal_states(self): ...       # optional; enables exact metrics

    States are int32 or int64 tensors (handed to the methods as int32). Backward action b undoes
    forward action b. Any state may stop where forward_mask allows it. The constructor takes the
    same arguments as NumbaEnv's (gfncore.envs.contract.DIMENSIONS): ``feature_dim`` (default:
    inferred from ``encode``), ``max_length`` (a bound on trajectory rows, used to stop a
    runaway rollout with a clear error), ``max_parents`` (default: ``n_backward_actions``, one
    parent per backward action, the bound every environment meets), ``context_dim`` and
    ``name``. ``config()`` is derived from the constructor's parameters where they are kept as
    attributes of the same name. Run ``gfncore.envs.check_env(env)`` on a new environment.
    """

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        for name in _CONTRACT:
            fn = cls.__dict__.get(name)
            if fn is not None and not getattr(fn, "_gfn_checked", False):
                wrapped = _WRAPPERS[name](fn)
                wrapped._gfn_checked = True
                setattr(cls, name, wrapped)

    def __init__(self, state_dim: int, n_actions: int, feature_dim: int | None = None, max_length: int | None = None,
                 *, max_parents: int | None = None, context_dim: int = 0, name: str | None = None):
        contract.check_dimensions(type(self).__name__, state_dim=state_dim, n_actions=n_actions,
                                  feature_dim=feature_dim, max_length=max_length, max_parents=max_parents,
                                  context_dim=context_dim)
        self.state_dim, self.n_actions, self.context_dim = state_dim, n_actions, context_dim
        self.max_length = max_length
        self.max_parents = self.n_backward_actions if max_parents is None else max_parents
        self._feature_dim = feature_dim
        self.name = name or type(self).__name__

    @property
    def feature_dim(self) -> int:
        if self._feature_dim is None:
            self._feature_dim = int(self.encode(self.initial_states(1)).shape[1])
        return self._feature_dim

    # -- defaults ---------------------------------------------------------------------------------
    def initial_states(self, n: int, device=None) -> torch.Tensor:
        n = int(n)
        if n < 0:
            raise ValueError(f"{self.name}: n must be >= 0, got {n}")
        s0 = self.initial_state()
        s0 = s0 if device is None else s0.to(device)
        return s0.unsqueeze(0).expand(n, -1).contiguous()

    def initial_state(self) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define initial_state() -> int tensor [state_dim]")

    def encode(self, states: torch.Tensor) -> torch.Tensor:
        return self._states(states).to(torch.float32)

    def valid(self, states: torch.Tensor) -> torch.Tensor:
        """Whether each row is a state of this environment (default: every row)."""
        return torch.ones(states.shape[0], dtype=torch.bool, device=states.device)


# -- the checks around each contract method -------------------------------------------------------
def _fail(env, method: str, msg: str):
    raise ValueError(f"{type(env).__name__}.{method}: {msg}")


def _first(bad: torch.Tensor) -> int:
    return int(bad.nonzero()[0, 0]) if bad.dim() == 1 else int(bad.any(-1).nonzero()[0, 0])


def _tensor(env, method: str, out, shape: tuple, kinds: str) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        _fail(env, method, f"must return a torch.Tensor, got {type(out).__name__}")
    if tuple(out.shape) != shape:
        _fail(env, method, f"returned shape {list(out.shape)}, expected {list(shape)}")
    ok = {"bool": out.dtype == torch.bool,
          "int": not (out.dtype.is_floating_point or out.dtype.is_complex or out.dtype == torch.bool),
          "float": out.dtype.is_floating_point}[kinds]
    if not ok:
        _fail(env, method, f"returned dtype {out.dtype}, expected a {kinds} tensor")
    return out


def _int_states(env, method: str, out, shape: tuple) -> torch.Tensor:
    out = _tensor(env, method, out, shape, "int")
    if out.dtype != torch.int32 and out.numel():
        bad = (out < -(2**31)) | (out > 2**31 - 1)
        if bool(bad.any()):
            _fail(env, method, f"returned a value outside int32 in row {_first(bad)}: {out[_first(bad)].tolist()}")
    return out.to(torch.int32)


def _wrap_initial_state(fn):
    @functools.wraps(fn)
    def initial_state(self):
        return _int_states(self, "initial_state", fn(self), (self.state_dim,))
    return initial_state


def _wrap_forward_mask(fn):
    @functools.wraps(fn)
    def forward_mask(self, states):
        s = self._states(states)
        m = _tensor(self, "forward_mask", fn(self, s), (s.shape[0], self.n_actions), "bool")
        none = ~m.any(-1)
        if bool(none.any()):
            i = _first(none)
            _fail(self, "forward_mask", f"state {s[i].tolist()} (row {i}) has no legal action; a state either has "
                                        f"children or may stop")
        return m
    return forward_mask


def _wrap_backward_mask(fn):
    @functools.wraps(fn)
    def backward_mask(self, states):
        s = self._states(states)
        return _tensor(self, "backward_mask", fn(self, s), (s.shape[0], self.n_backward_actions), "bool")
    return backward_mask


def _wrap_step(fn):
    @functools.wraps(fn)
    def step(self, states, actions):
        s = self._states(states)
        a = self._actions(actions, s.shape[0]).to(s.device)
        if a.numel():
            bad = (a < 0) | (a >= self.stop_action)
            if bool(bad.any()):
                i = _first(bad)
                _fail(self, "step", f"action {int(a[i])} at row {i} is not a move (moves are 0..{self.stop_action - 1}; "
                                    f"{self.stop_action} stops and is never stepped)")
        before = s.clone()  # a step that writes into its input corrupts the sampler's parent rows
        out = _int_states(self, "step", fn(self, s, a), tuple(s.shape))
        if not torch.equal(s, before):
            i = _first((s != before).any(-1))
            _fail(self, "step", f"modifies its input in place: state {before[i].tolist()} (row {i}) became "
                                f"{s[i].tolist()}; return a new tensor (e.g. s = s.clone() first)")
        same = (out == s).all(-1)
        if bool(same.any()):
            i = _first(same)
            _fail(self, "step", f"action {int(a[i])} returned the same state {s[i].tolist()} (row {i}): a cycle; "
                                f"every move must build something")
        return out
    return step


def _wrap_backward_step(fn):
    @functools.wraps(fn)
    def backward_step(self, states, actions):
        s = self._states(states)
        a = self._actions(actions, s.shape[0]).to(s.device)
        if a.numel():
            bad = (a < 0) | (a >= self.n_backward_actions)
            if bool(bad.any()):
                i = _first(bad)
                _fail(self, "backward_step", f"backward action {int(a[i])} at row {i} is out of range "
                                             f"[0, {self.n_backward_actions})")
        return _int_states(self, "backward_step", fn(self, s, a), tuple(s.shape))
    return backward_step


def _wrap_encode(fn):
    @functools.wraps(fn)
    def encode(self, states):
        s = self._states(states)
        out = fn(self, s)
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != s.shape[0]:
            shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            _fail(self, "encode", f"must return a float tensor [{s.shape[0]}, feature_dim], got {shape}")
        if self._feature_dim is not None and out.shape[1] != self._feature_dim:
            _fail(self, "encode", f"returned {out.shape[1]} features, expected feature_dim = {self._feature_dim}")
        if not out.dtype.is_floating_point:
            _fail(self, "encode", f"returned dtype {out.dtype}, expected a float tensor")
        return out.to(torch.float32)
    return encode


def _wrap_log_reward(fn):
    @functools.wraps(fn)
    def log_reward(self, x, context=None):
        s = self._states(x, "x")
        c = self._context(context, s.shape[0])
        out = fn(self, s) if c is None else fn(self, s, c)
        return self._check_log_reward(out, s, f"{type(self).__name__}.log_reward")
    return log_reward


def _wrap_valid(fn):
    @functools.wraps(fn)
    def valid(self, states):
        s = self._states(states)
        return _tensor(self, "valid", fn(self, s), (s.shape[0],), "bool")
    return valid


_WRAPPERS = {"initial_state": _wrap_initial_state, "forward_mask": _wrap_forward_mask, "step": _wrap_step,
             "backward_mask": _wrap_backward_mask, "backward_step": _wrap_backward_step, "encode": _wrap_encode,
             "log_reward": _wrap_log_reward, "valid": _wrap_valid}
