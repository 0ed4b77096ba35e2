"""Environments written as single-state numba functions, compiled to C callbacks that the
compiled rollout, parent-enumeration, backward-sampling and query kernels call through function
pointers (in parallel, with the GIL released): native speed without a C++ compiler. The model is
scipy's LowLevelCallable over a numba cfunc."""
from __future__ import annotations

import ctypes
import inspect

import torch

from .. import _C
from ..ops.kernel import CallbackError
from . import contract
from .compiled import HandleEnv

# Masks are uint8 arrays (write True/False or 1/0), states int32 arrays, features float32;
# log_reward and valid return values. The names, parameters and C signatures are the contract's.
_METHODS = {m.name: m for m in contract.METHODS}


def _encode_as_float(p, s, f):
    """The default encoding: the state as float32 (feature_dim = state_dim), as PythonEnv's."""
    for i in range(s.shape[0]):
        f[i] = s[i]

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

    def __init__(self, state_dim: int, n_actions: int, feature_dim: int | None = None, max_length: int | None = None,
                 *, max_parents: int | None = None, context_dim: int = 0, name: str | None = None, params=(),
                 log_reward=None, boundscheck: bool = True):
        self.name = name or type(self).__name__
        contract.check_dimensions(self.name, state_dim=state_dim, n_actions=n_actions, feature_dim=feature_dim,
                                  max_length=max_length, max_parents=max_parents, context_dim=context_dim)
        if log_reward is not None and not callable(log_reward):
            raise TypeError(f"{self.name}: log_reward must be callable (x) -> float [n], got {type(log_reward).__name__}")
        missing = [m.name for m in contract.METHODS
                   if m.required and m.name != "log_reward" and m.name not in self._numba_fns]
        if missing:
            raise TypeError(f"{type(self).__name__} must define the single-state method(s) {', '.join(missing)} "
                            f"(see help(gfncore.envs.NumbaEnv))")
        if log_reward is None and "log_reward" not in self._numba_fns:
            raise TypeError(f"{type(self).__name__} needs a reward: define a single-state log_reward(p, x) or pass "
                            f"log_reward=fn (batched)")
        fns = dict(self._numba_fns)
        if "encode" not in fns:
            if feature_dim not in (None, state_dim):
                raise ValueError(f"{self.name}: feature_dim = {feature_dim} but no encode is written (the default "
                                 f"encoding has state_dim = {state_dim} features)")
            fns["encode"], feature_dim = _encode_as_float, state_dim
        elif feature_dim is None:
            raise TypeError(f"{self.name}: pass feature_dim, the width of what encode writes (compiled code cannot be "
                            f"run to infer it, as PythonEnv does)")
        self.state_dim, self.n_actions, self.feature_dim, self.max_length = state_dim, n_actions, feature_dim, max_length
        self.context_dim = context_dim
        self.max_parents = self.n_backward_actions if max_parents is None else max_parents
        self.numba_params = params
        self._log_reward_fn = log_reward
        self._cfuncs = _compile(type(self).__name__, fns, params, state_dim, n_actions, feature_dim,
                                boundscheck, with_reward=log_reward is None)
        caps, names = {}, []
        for method, cf in self._cfuncs.items():
            sig = _METHODS[method].c_signature.encode()
            names.append(sig)
            caps[method] = _capsule_new(cf.address, sig, None)
        # the cfuncs own the machine code; the names must outlive the capsules
        # no max_length: the core's widest bound, so only a runaway rollout ever meets it
        length = _C.CALLBACK_MAX_WIDTH if max_length is None else max_length
        self._attach(_C.callback_env(state_dim, n_actions, feature_dim, self.max_parents, length, caps,
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
        except CallbackError as e:
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
        m = _METHODS[method]
        lengths = contract.single_lengths(m, D, A, self.feature_dim)
        for i, row in enumerate(states.cpu().numpy()):
            s = np.array(row, dtype=np.int32)
            a = int(actions[i]) if actions is not None else 0
            # the method's own parameters, as the compiled kernel passes them (from the contract)
            probe = {"p": p, "s": s, "x": s, "a": a, "b": a}
            call = [probe[n] if n in probe else np.zeros(lengths[n], np.float32 if n == "f" else
                                                         np.int32 if n == "out" else np.uint8)
                    for n in contract.single_names(m)]
            if method == "initial_state":
                call[1] = np.zeros(D, np.int32)
            try:
                fn(*call)
            except Exception as exc:  # noqa: BLE001 - the user's own error, shown as it is
                what = f" with action {int(actions[i])}" if actions is not None and method.endswith("step") else ""
                return ValueError(f"{type(self).__name__}.{method} raised {type(exc).__name__}: {exc} at state "
                                  f"{row.tolist()} (row {i}){what}")
        return ValueError(hint + " (not reproducible in Python on these states; run gfncore.envs.check_env(env))")


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
    spell = {"int32": types.int32, "int64": types.int64, "int32p": types.CPointer(types.int32),
             "uint8p": types.CPointer(types.uint8), "float32p": types.CPointer(types.float32),
             "float64p": types.CPointer(types.float64)}
    sigs = {}
    for m in contract.METHODS:
        ret, params_ = contract.numba_types(m)
        sigs[m.name] = spell[ret](*(spell[t] for t in params_))
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
            cause = _captured_container(fn)
            if cause:  # the usual reason, said first: numba's own message is long and points elsewhere
                raise TypeError(f"{cls_name}.{method}: numba could not compile it: it captures {cause}; numba methods "
                                f"may read only numbers, tuples and numpy arrays from outside (pass the data in the "
                                f"environment's params array)\n{e}") from None
            raise TypeError(f"{cls_name}.{method}: numba could not compile it:\n{e}") from None
    return out


def _captured_container(fn) -> str | None:
    """The first global or closure variable of fn that numba cannot type as a constant (a dict,
    list or set), as "the global 'name', a dict", or None."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    seen = []
    glb = getattr(fn, "__globals__", {})
    seen += [("global", n, glb[n]) for n in code.co_names if n in glb]
    for name, cell in zip(code.co_freevars, getattr(fn, "__closure__", None) or ()):
        try:
            seen.append(("closure variable", name, cell.cell_contents))
        except ValueError:
            continue
    for kind, name, value in seen:
        if isinstance(value, (dict, list, set)):
            return f"the {kind} {name!r}, a {type(value).__name__}"
    return None


def _check_arity(cls_name: str, method: str, fn) -> None:
    names = contract.single_names(_METHODS[method])
    try:
        n = len(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return
    if n != len(names):
        raise TypeError(f"{cls_name}.{method} must take ({', '.join(names)}), got {n} parameter(s)")


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
