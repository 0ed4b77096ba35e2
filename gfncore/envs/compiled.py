"""Compiled environments: a C++ struct in csrc/envs/ behind a _C.Env handle. Parameters are
declared once, in C++ (names, types, defaults, bounds, help); the Python class only names its
kind, so limits are never restated here and the CLI is generated from the same declaration."""
from __future__ import annotations

import inspect
import warnings

import torch

from .. import _C
from ..ops import _device
from ..ops._device import stream
from ..ops.kernel import CompiledKernel
from .base import Env

KINDS: dict = dict(_C.env_kinds())  # {name: {"cuda": bool, "params": [declarations]}}
_Q: dict = dict(_C.ENV_QUERIES)


def _param_signature(decls: list[dict]) -> inspect.Signature:
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(d["name"], inspect.Parameter.POSITIONAL_OR_KEYWORD, default=d["default"])
               for d in decls]
    params.append(inspect.Parameter("log_reward", inspect.Parameter.KEYWORD_ONLY, default=None))
    return inspect.Signature(params)


class HandleEnv(Env):
    """An environment whose methods run in the compiled core through a _C.Env handle (the C++
    route and the numba route): batched queries, rollout, parents and backward steps all call
    the same struct, with the GIL released."""

    _handle = None
    _compiled_kernel = None
    _log_reward_fn = None

    def _attach(self, handle, diagnose=None) -> None:
        """Holds the compiled struct's handle and the kernel the env-aware ops get from it."""
        self._handle = handle
        self._compiled_kernel = CompiledKernel(handle, state_dim=self.state_dim, n_actions=self.n_actions,
                                               n_backward_actions=self.n_backward_actions,
                                               feature_dim=self.feature_dim, diagnose=diagnose)

    def kernel(self, device):
        """The compiled kernels where they serve `device` (any CPU; CUDA where the struct has
        CUDA code and gfncore was built with it), else the batched methods (a round trip
        through the CPU)."""
        k = self._compiled_kernel
        if k is not None and k.runs_on(device, self.cuda):
            return k
        return super().kernel(device)

    # -- queries through the compiled core ------------------------------------------------------
    def _runs_on(self, t: torch.Tensor) -> bool:
        return _device.compiled_for(t) and (t.device.type == "cpu" or self.cuda)

    def _query(self, q: str, states: torch.Tensor, shape: tuple, dtype, actions: torch.Tensor | None = None):
        dev = states.device
        if dev.type != "cpu" and not self._runs_on(states):
            _warn_cpu_round_trip(self, q, dev)
            out = self._query(q, states.cpu(), shape, dtype, None if actions is None else actions.cpu())
            return out.to(dev)
        out = torch.empty(shape, dtype=dtype, device=dev)
        self._call(_C.env_query, self._handle, _Q[q], states, actions, out, stream(states))
        return out

    def initial_states(self, n: int, device=None) -> torch.Tensor:
        n = int(n)
        if n < 0:
            raise ValueError(f"{self.name}: n must be >= 0, got {n}")
        out = torch.empty(n, self.state_dim, dtype=torch.int32)
        self._call(_C.env_query, self._handle, _Q["initial"], out, None, out, 0)
        return out if device is None else out.to(device)

    def forward_mask(self, states):
        s = self._states(states)
        return self._query("forward_mask", s, (s.shape[0], self.n_actions), torch.bool)

    def backward_mask(self, states):
        s = self._states(states)
        return self._query("backward_mask", s, (s.shape[0], self.n_backward_actions), torch.bool)

    def n_parents(self, states):
        s = self._states(states)
        return self._query("n_parents", s, (s.shape[0],), torch.int64)

    def is_initial(self, states):
        s = self._states(states)
        return self._query("is_initial", s, (s.shape[0],), torch.bool)

    def encode(self, states):
        s = self._states(states)
        return self._query("encode", s, (s.shape[0], self.feature_dim), torch.float32)

    def step(self, states, actions):
        s = self._states(states)
        return self._query("step", s, tuple(s.shape), torch.int32, self._actions(actions, s.shape[0]).to(s.device))

    def backward_step(self, states, actions):
        s = self._states(states)
        return self._query("backward_step", s, tuple(s.shape), torch.int32,
                           self._actions(actions, s.shape[0]).to(s.device))

    def builtin_log_reward(self, x: torch.Tensor) -> torch.Tensor:
        """The reward compiled into the environment, float64 [n]."""
        s = self._states(x, "x")
        return self._query("log_reward", s, (s.shape[0],), torch.float64)

    def log_reward_delta(self, states, actions, context=None):
        """The compiled reward's difference along each move, where the struct defines
        log_reward_delta and that reward is the one in use (no log_reward=fn, no override of
        log_reward or log_reward_state in a subclass); else None."""
        cls = type(self)
        if (context is not None or self._log_reward_fn is not None or not self._handle.dims.get("reward_delta")
                or cls.log_reward is not HandleEnv.log_reward or cls.log_reward_state is not Env.log_reward_state):
            return None
        s = self._states(states)
        return self._query("log_reward_delta", s, (s.shape[0],), torch.float64,
                           self._actions(actions, s.shape[0]).to(s.device))

    def log_reward(self, x, context=None):
        s = self._states(x, "x")
        c = None if context is None and not self.context_dim else self._context(context, s.shape[0])
        if self._log_reward_fn is None:
            if c is not None:
                raise TypeError(f"{self.name} is conditional but has no log_reward(x, context): pass log_reward=fn")
            return self._query("log_reward", s, (s.shape[0],), torch.float64)
        fn = self._log_reward_fn
        out = fn(s) if c is None else fn(s, c)
        return self._check_log_reward(out, s, f"{self.name}: log_reward callable {getattr(fn, '__name__', fn)!r}")


class CompiledEnv(HandleEnv):
    """An environment compiled into the core. Subclasses name their C++ kind:

    >>> class HyperGrid(CompiledEnv, kind="hypergrid"):
    ...     '''docs, enumeration shortcuts, mode tests'''

    The constructor takes the parameters the C++ struct declares (positionally in declared order,
    or by name) and validates them there. ``log_reward=fn`` replaces the built-in reward by
    ``fn(x) -> float [n]`` (or ``fn(x, context)`` for a conditional subclass); a subclass may also
    override ``log_reward``. Either way every sampler calls ``env.log_reward(x)`` once per batch.
    """

    kind: str = ""
    _decls: list = []

    def __init_subclass__(cls, kind: str | None = None, **kw):
        super().__init_subclass__(**kw)
        if kind is None:
            return
        if kind not in KINDS:
            raise ValueError(f"no compiled environment named {kind!r}; compiled: {sorted(KINDS)}")
        cls.kind, cls.name = kind, kind
        cls._decls = KINDS[kind]["params"]
        cls.cuda = bool(KINDS[kind]["cuda"])
        if "__init__" not in cls.__dict__:
            def __init__(self, *args, log_reward=None, **params):
                CompiledEnv.__init__(self, *args, log_reward=log_reward, **params)

            __init__.__signature__ = _param_signature(cls._decls)  # what help() and inspect show
            __init__.__qualname__ = f"{cls.__qualname__}.__init__"
            cls.__init__ = __init__
        lines = [f"    {d['name']} ({d['type']}, default {d['default']}): {d['help']}" for d in cls._decls]
        cls.__doc__ = (cls.__doc__ or "") + "\n\n    Parameters (declared in C++):\n" + "\n".join(lines) + "\n"

    def __init__(self, *args, log_reward=None, **params):
        if not self.kind:
            raise TypeError("CompiledEnv is abstract: use a compiled environment class such as gfncore.envs.HyperGrid")
        decls = self._decls
        if len(args) > len(decls):
            raise TypeError(f"{type(self).__name__} takes at most {len(decls)} positional parameters, got {len(args)}")
        for d, a in zip(decls, args):
            if d["name"] in params:
                raise TypeError(f"{type(self).__name__} got multiple values for {d['name']!r}")
            params[d["name"]] = a
        if log_reward is not None and not callable(log_reward):
            raise TypeError(f"{type(self).__name__}: log_reward must be callable (x[, context]) -> float [n], "
                            f"got {type(log_reward).__name__}")
        handle = _C.Env(self.kind, params)
        self.params = dict(handle.params)
        for k, v in self.params.items():
            setattr(self, k, v)
        dims = handle.dims
        self.n_actions, self.state_dim, self.feature_dim = dims["n_actions"], dims["state_dim"], dims["feature_dim"]
        self.max_parents, self.max_length = dims["max_parents"], dims["max_length"]
        self._log_reward_fn = log_reward
        self._attach(handle)

    # -- serialisation --------------------------------------------------------------------------
    def config(self) -> dict:
        return dict(self.params)

    def to_config(self) -> dict:
        cfg = super().to_config()
        if self._log_reward_fn is not None:
            cfg["needs"] = ["log_reward"]  # a callable is not saved: from_config(cfg, log_reward=fn)
        return cfg

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items()
                           if v is not None and not isinstance(v, torch.Tensor))
        custom = ", log_reward=<custom>" if self._log_reward_fn is not None else ""
        return f"{type(self).__name__}({params}{custom})"


_warned: set = set()


def _warn_cpu_round_trip(env: HandleEnv, q: str, dev) -> None:
    key = (env.name, dev.type)
    if key in _warned:
        return
    _warned.add(key)
    why = ("gfncore was built without CUDA" if dev.type == "cuda" and env.cuda
           else f"{env.name} has no kernels for {dev.type}")
    warnings.warn(f"{env.name}.{q}: {why}; running it on the CPU and copying back (slower)", RuntimeWarning,
                  stacklevel=4)
