"""Environments written as single-state numba functions, compiled to C callbacks that the
compiled rollout, parent-enumeration, backward-sampling and query kernels call through function
pointers (in parallel, with the GIL released): native speed without a C++ compiler. The model is
scipy's LowLevelCallable over a numba cfunc."""
from __future__ import annotations

import ctypes
import inspect

import torch

from .. import _C
from .compiled import HandleEnv

# (name, required, how the wrapper calls the user's function). Masks are uint8 arrays (write
# True/False or 1/0), states int32 arrays, features float32; log_reward and valid return values.
_METHODS = {
    "initial_state": True,
    "forward_mask": True,
    "step": True,
    "backward_mask": True,
    "backward_step": True,
    "encode": True,
    "log_reward": False,
    "valid": False,
}

_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.restype = ctypes.py_object
_capsule_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]


class NumbaEnv(HandleEnv):
    """Base class of environments written as single-state functions that numba compiles.

    Write the environment's methods as ``@staticmethod``s on one state, taking the frozen
    parameter tuple ``p`` first:

    >>> class Grid(gfn.envs.NumbaEnv):
    ...     def __init__(self, ndim=2, height=8):
    ...         super().__init__(state_dim=ndim, n_actions=ndim + 1, feature_dim=ndim * height,
    ...                          max_length=ndim * (height - 1) + 1, params=(ndim, height))
    ...     @staticmethod
    ...     def initial_state(p, s): ...          # write s0 into s (int32 [D])
    ...     @staticmethod
    ...     def forward_mask(p, s, mask): ...     # write legality into mask (uint8 [A])
    ...     @staticmethod
    ...     def step(p, s, a, out): ...           # write the child into out (a is never stop)
    ...     @staticmethod
    ...     def backward_mask(p, s, mask): ...    # uint8 [A-1]: actions that lead INTO s
    ...     @staticmethod
    ...     def backward_step(p, s, b, out): ...  # write the parent reached by undoing b
    ...     @staticmethod
    ...     def encode(p, s, f): ...              # write features (float32 [F])
    ...     @staticmethod
    ...     def log_reward(p, x): ...             # return log R(x) (optional: or log_reward=fn)
    ...     @staticmethod
    ...     def valid(p, s): ...                  # optional: return whether s is a state

    ``p`` may hold ints, floats, tuples and numpy arrays; numba freezes it into the compiled code.
    Each function is compiled with ``numba.njit`` (boundscheck on by default, so an index out of
    range is caught and reported rather than reading memory it must not) and wrapped in a
    ``numba.cfunc`` with a C signature. The batched methods (``env.step(states, actions)`` ...)
    are inherited: they and every sampler run the callbacks in the compiled core. A reward that
    is not per-state numba code (a proxy network, a likelihood in torch) is passed as
    ``log_reward=fn`` (batched: ``fn(x) -> float [n]``). The single-state functions stay available,
    uncompiled, as ``env.python_functions``.
    """

    _numba_fns: dict = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        fns = dict(getattr(cls, "_numba_fns", {}))
        for name in _METHODS:
            obj = cls.__dict__.get(name)
            if obj is None:
                continue
            fn = obj.__func__ if isinstance(obj, (staticmethod, classmethod)) else obj
            if not callable(fn):
                raise TypeError(f"{cls.__name__}.{name} must be a function")
            fns[name] = fn
            delattr(cls, name)  # the batched method of the same name is inherited
        cls._numba_fns = fns

    def __init__(self, state_dim: int, n_actions: int, feature_dim: int, max_length: int, *,
                 max_parents: int | None = None, params=(), log_reward=None, boundscheck: bool = True,
                 name: str | None = None):
        self.name = name or type(self).__name__
        for arg, v, lo in (("state_dim", state_dim, 1), ("n_actions", n_actions, 2), ("feature_dim", feature_dim, 0),
                           ("max_length", max_length, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{self.name}: {arg} must be an int >= {lo}, got {v!r}")
        if log_reward is not None and not callable(log_reward):
            raise TypeError(f"{self.name}: log_reward must be callable (x) -> float [n], got {type(log_reward).__name__}")
        missing = [m for m, required in _METHODS.items() if required and m not in self._numba_fns]
        if missing:
            raise TypeError(f"{type(self).__name__} must define the single-state method(s) {', '.join(missing)} "
                            f"(see help(gfncore.envs.NumbaEnv))")
        if log_reward is None and "log_reward" not in self._numba_fns:
            raise TypeError(f"{type(self).__name__} needs a reward: define a single-state log_reward(p, x) or pass "
                            f"log_reward=fn (batched)")
        self.state_dim, self.n_actions, self.feature_dim, self.max_length = state_dim, n_actions, feature_dim, max_length
        self.max_parents = n_actions - 1 if max_parents is None else int(max_parents)
        self.numba_params = params
        self._log_reward_fn = log_reward
        self._cfuncs = _compile(type(self).__name__, self._numba_fns, params, state_dim, n_actions, feature_dim,
                                boundscheck, with_reward=log_reward is None)
        caps, names = {}, []
        for method, cf in self._cfuncs.items():
            sig = _C.CALLBACK_SIGNATURES[method].encode()
            names.append(sig)
            caps[method] = _capsule_new(cf.address, sig, None)
        # the cfuncs own the machine code; the names must outlive the capsules
        self._attach(_C.callback_env(state_dim, n_actions, feature_dim, self.max_parents, max_length, caps,
                                     (list(self._cfuncs.values()), names)), diagnose=self._diagnosed)

    @property
    def python_functions(self) -> dict:
        """The single-state functions as written (plain Python, for debugging)."""
        return dict(self._numba_fns)

    def builtin_log_reward(self, x: torch.Tensor) -> torch.Tensor:
        if "log_reward" not in self._cfuncs:
            raise TypeError(f"{self.name} has no single-state log_reward; it was given log_reward=fn")
        return super().builtin_log_reward(x)

    # -- diagnostics: a failing callback is re-run in Python to show the user's own exception ----
    def _call(self, fn, *args):
        try:
            return fn(*args)
        except _C.CallbackError as e:
            raise self._diagnosed(e, args) from None

    def _diagnosed(self, error, args) -> Exception:
        """The user's own exception behind a failed callback, found by re-running the method in
        Python on the states among a kernel call's arguments."""
        states = next((a for a in args if isinstance(a, torch.Tensor) and a.dim() == 2
                       and a.dtype == torch.int32 and a.shape[1] == self.state_dim), None)
        return self._diagnose(error.method, states, args)

    def _diagnose(self, method: str, states, args) -> Exception:
        import numpy as np

        fn = self._numba_fns.get(method)
        hint = (f"{type(self).__name__}.{method} raised an exception inside numba (an index out of range, a "
                f"division by zero, ...)")
        if fn is None or states is None or states.numel() == 0:
            return ValueError(hint + "; run gfncore.envs.check_env(env) to find the state")
        p = self.numba_params
        A, D = self.n_actions, self.state_dim
        actions = next((a for a in args if isinstance(a, torch.Tensor) and a.dim() == 1 and a.dtype == torch.int64
                        and a.shape[0] == states.shape[0]), None)
        for i, row in enumerate(states.cpu().numpy()):
            s = np.array(row, dtype=np.int32)
            try:
                if method in ("forward_mask",):
                    fn(p, s, np.zeros(A, np.uint8))
                elif method == "backward_mask":
                    fn(p, s, np.zeros(A - 1, np.uint8))
                elif method in ("step", "backward_step"):
                    fn(p, s, int(actions[i]) if actions is not None else 0, np.zeros(D, np.int32))
                elif method == "encode":
                    fn(p, s, np.zeros(self.feature_dim, np.float32))
                elif method in ("log_reward", "valid"):
                    fn(p, s)
                elif method == "initial_state":
                    fn(p, np.zeros(D, np.int32))
            except Exception as exc:  # noqa: BLE001 - the user's own error, shown as it is
                what = f" with action {int(actions[i])}" if actions is not None and method.endswith("step") else ""
                return ValueError(f"{type(self).__name__}.{method} raised {type(exc).__name__}: {exc} at state "
                                  f"{row.tolist()} (row {i}){what}")
        return ValueError(hint + " (not reproducible in Python on these states; run gfncore.envs.check_env(env))")

    def config(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__} does not describe itself: define config() returning its "
                                  f"constructor arguments")


_CACHE: dict = {}


def _frozen(v):
    """A hashable image of a parameter value (numpy arrays by dtype, shape and bytes)."""
    if isinstance(v, (tuple, list)):
        return (type(v).__name__, tuple(_frozen(x) for x in v))
    if hasattr(v, "tobytes") and hasattr(v, "dtype"):
        return ("array", str(v.dtype), tuple(getattr(v, "shape", ())), v.tobytes())
    hash(v)
    return v


def _compile(cls_name: str, fns: dict, params, D: int, A: int, F: int, boundscheck: bool, with_reward: bool) -> dict:
    """The compiled callbacks of an environment, compiled once per process for the same functions,
    parameters and dimensions (numba compilation takes seconds; environments are rebuilt often)."""
    try:
        key = (tuple(sorted((m, f.__code__, f.__module__) for m, f in fns.items())), _frozen(params), D, A, F,
               boundscheck, with_reward)
    except (TypeError, AttributeError):
        key = None
    if key is not None and key in _CACHE:
        return _CACHE[key]
    out = _compile_now(cls_name, fns, params, D, A, F, boundscheck, with_reward)
    if key is not None:
        _CACHE[key] = out
    return out


def _compile_now(cls_name: str, fns: dict, params, D: int, A: int, F: int, boundscheck: bool, with_reward: bool) -> dict:
    """numba.cfunc wrappers with the C signatures of csrc/envs/callback.h around each function."""
    try:
        import numba
        from numba import carray, types
    except ImportError as e:  # numba is a declared dependency; this only guards a broken install
        raise ImportError("NumbaEnv needs numba: pip install numba") from e

    P = params
    i32p, u8p = types.CPointer(types.int32), types.CPointer(types.uint8)
    sigs = {
        "initial_state": types.int32(i32p),
        "forward_mask": types.int32(i32p, u8p),
        "backward_mask": types.int32(i32p, u8p),
        "step": types.int32(i32p, types.int64, i32p),
        "backward_step": types.int32(i32p, types.int64, i32p),
        "encode": types.int32(i32p, types.CPointer(types.float32)),
        "log_reward": types.int32(i32p, types.CPointer(types.float64)),
        "valid": types.int32(i32p, u8p),
    }
    out = {}
    for method, fn in fns.items():
        if method == "log_reward" and not with_reward:
            continue
        _check_arity(cls_name, method, fn)
        try:
            jf = numba.njit(boundscheck=boundscheck)(fn)
            w = _wrapper(method, jf, P, D, A, F, carray)
            out[method] = numba.cfunc(sigs[method])(w)
        except Exception as e:  # numba's typing/lowering errors: shown whole, with the method's name
            raise TypeError(f"{cls_name}.{method}: numba could not compile it:\n{e}") from None
    return out


def _check_arity(cls_name: str, method: str, fn) -> None:
    expect = {"initial_state": 2, "forward_mask": 3, "backward_mask": 3, "step": 4, "backward_step": 4, "encode": 3,
              "log_reward": 2, "valid": 2}[method]
    try:
        n = len(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return
    if n != expect:
        args = {"initial_state": "p, s", "forward_mask": "p, s, mask", "backward_mask": "p, s, mask",
                "step": "p, s, a, out", "backward_step": "p, s, b, out", "encode": "p, s, f", "log_reward": "p, x",
                "valid": "p, s"}[method]
        raise TypeError(f"{cls_name}.{method} must take ({args}), got {n} parameter(s)")


def _wrapper(method: str, jf, P, D: int, A: int, F: int, carray):
    """The C-ABI function around one user function: arrays over the pointers, status 1 if the
    user's code raised (numba catches it without touching Python)."""
    B = A - 1
    if method == "initial_state":
        def w(sp):
            s = carray(sp, (D,))
            try:
                jf(P, s)
            except Exception:  # noqa: BLE001
                return 1
            return 0
    elif method == "forward_mask":
        def w(sp, mp):
            try:
                jf(P, carray(sp, (D,)), carray(mp, (A,)))
            except Exception:  # noqa: BLE001
                return 1
            return 0
    elif method == "backward_mask":
        def w(sp, mp):
            try:
                jf(P, carray(sp, (D,)), carray(mp, (B,)))
            except Exception:  # noqa: BLE001
                return 1
            return 0
    elif method in ("step", "backward_step"):
        def w(sp, a, op):
            try:
                jf(P, carray(sp, (D,)), a, carray(op, (D,)))
            except Exception:  # noqa: BLE001
                return 1
            return 0
    elif method == "encode":
        def w(sp, fp):
            try:
                jf(P, carray(sp, (D,)), carray(fp, (F,)))
            except Exception:  # noqa: BLE001
                return 1
            return 0
    elif method == "log_reward":
        def w(sp, op):
            try:
                o = carray(op, (1,))
                o[0] = jf(P, carray(sp, (D,)))
            except Exception:  # noqa: BLE001
                return 1
            return 0
    else:  # valid
        def w(sp, op):
            try:
                o = carray(op, (1,))
                o[0] = 1 if jf(P, carray(sp, (D,))) else 0
            except Exception:  # noqa: BLE001
                return 1
            return 0
    return w
