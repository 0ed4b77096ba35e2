"""The environment interface, one for every route (compiled C++, numba, Python): a state space of
fixed-width integer rows, forward/backward masks, deterministic constructive steps (a DAG),
encodings, and a log-reward on finished objects kept apart from the dynamics."""
from __future__ import annotations

import inspect
import math
from functools import cached_property

import torch

from ..ops._memory import materialize
from .kernel import BatchedKernel

_INT32 = (-(2**31), 2**31 - 1)


class NonFiniteRewardError(ValueError):
    """A reward function returned NaN or +inf; ``objects`` [k, D] and ``values`` [k] are the first
    offending finished objects and their log-rewards."""

    def __init__(self, msg: str, objects: torch.Tensor, values: torch.Tensor):
        super().__init__(msg)
        self.objects, self.values = objects, values


class Env:
    """A GFlowNet environment.

    A state is a row of ``state_dim`` small integers; a batch of states is an int32 tensor
    ``[N, state_dim]`` (int64 is accepted when every value fits in int32). Action ``a`` is in
    ``[0, n_actions)``, the last one is *stop* (declare the current state a finished object x).
    ``forward_mask`` says which actions are legal, ``backward_mask`` which backward actions lead
    *into* a state (its parents; backward action b undoes forward action b). Rewards are apart
    from the dynamics: ``log_reward(x, context)`` scores finished objects, in one batched call.

    Subclass :class:`PythonEnv` (batched torch), :class:`NumbaEnv` (single-state numba) or use a
    compiled environment (:class:`CompiledEnv`); ``gfncore.envs.check_env`` checks any of them.
    """

    name = "env"
    state_dim: int
    n_actions: int
    feature_dim: int
    context_dim: int = 0
    max_length: int | None = None   # most rows of a trajectory (moves + the stop row), if known
    max_parents: int | None = None  # most parents of a state (slots of ops.parents)
    cuda: bool = False              # whether compiled kernels exist for CUDA tensors

    @property
    def n_backward_actions(self) -> int:
        return self.n_actions - 1

    @property
    def stop_action(self) -> int:
        return self.n_actions - 1

    # -- the public kernel interface (what the env-aware ops use) -------------------------------
    def kernel(self, device):
        """The kernel that runs this environment's rollout, backward-rollout and parent steps for
        tensors on `device` (see gfncore.ops.kernel): here its batched methods; an environment
        with compiled kernels returns those where they serve the device."""
        k = self.__dict__.get("_batched_kernel")
        if k is None:
            k = self.__dict__["_batched_kernel"] = BatchedKernel(self)
        return k

    # -- argument checks shared by every route ---------------------------------------------------
    def check_states(self, states, what: str = "states") -> torch.Tensor:
        """states as a contiguous int32 [N, state_dim] tensor, or a clear error naming `what`."""
        if type(states) is torch.Tensor and states.dtype is torch.int32 and states.dim() == 2 \
                and states.shape[1] == self.state_dim and states.is_contiguous() and not states.is_meta:
            return states  # the common case, checked in one line
        if not isinstance(states, torch.Tensor):
            raise TypeError(f"{self.name}: {what} must be a torch.Tensor, got {type(states).__name__}")
        if states.device.type == "meta":
            raise TypeError(f"{self.name}: {what} must hold data (a CPU or CUDA tensor), got a meta tensor")
        if states.dim() != 2 or states.shape[1] != self.state_dim:
            raise ValueError(f"{self.name}: {what} must have shape [n, {self.state_dim}], got {list(states.shape)}")
        if states.dtype != torch.int32:
            if states.dtype.is_floating_point or states.dtype.is_complex or states.dtype == torch.bool:
                raise TypeError(f"{self.name}: {what} must be an integer tensor (int32), got {states.dtype}")
            if states.numel():
                lo, hi = int(states.min()), int(states.max())
                if lo < _INT32[0] or hi > _INT32[1]:
                    bad = int(((states < _INT32[0]) | (states > _INT32[1])).any(-1).nonzero()[0, 0])
                    raise ValueError(f"{self.name}: {what} row {bad} holds a value outside int32 "
                                     f"({states[bad].tolist()}); no state of this environment does")
            states = states.to(torch.int32)
        return materialize(f"{self.name}", what, states)  # a huge stride-0 view: MemoryError, not an abort

    def _actions(self, actions, n: int, what: str = "actions") -> torch.Tensor:
        if not isinstance(actions, torch.Tensor):
            raise TypeError(f"{self.name}: {what} must be a torch.Tensor, got {type(actions).__name__}")
        if actions.dtype.is_floating_point or actions.dtype.is_complex or actions.dtype == torch.bool:
            raise TypeError(f"{self.name}: {what} must be an integer tensor (int64), got {actions.dtype}")
        if actions.dim() != 1 or actions.shape[0] != n:
            raise ValueError(f"{self.name}: {what} must have shape [{n}] (one per state), got {list(actions.shape)}")
        return actions.to(torch.int64).contiguous()

    _states = check_states  # the name the routes' methods have always used

    def check_context(self, context, n: int) -> torch.Tensor | None:
        """A per-object context [n, context_dim] (float) for a conditional environment, else None
        (or a clear error)."""
        if self.context_dim == 0:
            if context is not None:
                raise ValueError(f"{self.name} takes no context (context_dim = 0), got one")
            return None
        if context is None:
            raise ValueError(f"{self.name} is conditional: pass a context of shape [n, {self.context_dim}]")
        if not isinstance(context, torch.Tensor):
            raise TypeError(f"{self.name}: context must be a torch.Tensor, got {type(context).__name__}")
        if context.dim() != 2 or context.shape != (n, self.context_dim):
            raise ValueError(f"{self.name}: context must have shape [{n}, {self.context_dim}], got {list(context.shape)}")
        if not context.dtype.is_floating_point:
            raise TypeError(f"{self.name}: context must be a float tensor, got {context.dtype}")
        if not bool(torch.isfinite(context).all()):
            bad = int((~torch.isfinite(context)).any(-1).nonzero()[0, 0])
            raise ValueError(f"{self.name}: context row {bad} is not finite: {context[bad].tolist()}")
        return context

    _context = check_context

    def _check_log_reward(self, lr, x: torch.Tensor, source: str) -> torch.Tensor:
        """A log-reward [n] as float64, or an error naming the source and the first bad object.
        NaN and +inf are errors; -inf (R(x) = 0) is a legal reward."""
        n = x.shape[0]
        if not isinstance(lr, torch.Tensor):
            raise TypeError(f"{source} must return a torch.Tensor, got {type(lr).__name__}")
        if lr.shape != (n,):
            raise ValueError(f"{source} must return shape [{n}] (one log-reward per object), got {list(lr.shape)}")
        if not (lr.dtype.is_floating_point):
            raise TypeError(f"{source} must return a float tensor, got {lr.dtype}")
        bad = torch.isnan(lr) | (lr == math.inf)
        if bool(bad.any()):
            idx = bad.nonzero().squeeze(1)
            i = int(idx[0])
            raise NonFiniteRewardError(f"{source} returned {float(lr[i])} for object {i} ({x[i].tolist()}); "
                                       f"log-rewards must be finite or -inf (R = 0)", x[idx[:3]].cpu(),
                                       lr[idx[:3]].detach().cpu())
        return lr.to(torch.float64)

    # -- the interface ---------------------------------------------------------------------------
    def initial_states(self, n: int, device=None) -> torch.Tensor:
        """n copies of s0, the state every trajectory starts from, int32 [n, state_dim]."""
        raise NotImplementedError

    def forward_mask(self, states: torch.Tensor) -> torch.Tensor:
        """Legal forward actions (the last one is stop), bool [n, n_actions]."""
        raise NotImplementedError

    def step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The child reached by each legal forward action (never stop), int32 [n, state_dim]."""
        raise NotImplementedError

    def backward_mask(self, states: torch.Tensor) -> torch.Tensor:
        """Backward actions that lead into each state (its parents), bool [n, n_actions - 1]."""
        raise NotImplementedError

    def backward_step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The parent reached by undoing each legal backward action, int32 [n, state_dim]."""
        raise NotImplementedError

    def n_parents(self, states: torch.Tensor) -> torch.Tensor:
        """Number of parents of each state, int64 [n] (0 for s0)."""
        return self.backward_mask(states).sum(-1).to(torch.int64)

    def is_initial(self, states: torch.Tensor) -> torch.Tensor:
        """Whether each state is s0, bool [n]."""
        s = self._states(states)
        return (s == self.initial_states(1, device=s.device)).all(-1)

    def encode(self, states: torch.Tensor) -> torch.Tensor:
        """Policy input features, float32 [n, feature_dim]."""
        raise NotImplementedError

    def log_reward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """log R(x) of finished objects (given the context of each, for a conditional environment),
        float64 [n]."""
        raise NotImplementedError

    def log_reward_state(self, states: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """log R(s) of every state, for environments where every state may stop (modified DB)."""
        return self.reward(states, context)

    def reward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """log_reward(x), or log_reward(x, context) for a conditional environment: how samplers
        call it, so that an unconditional override may be written log_reward(self, x)."""
        return self.log_reward(x) if context is None else self.log_reward(x, context)

    def log_reward_delta(self, states: torch.Tensor, actions: torch.Tensor,
                         context: torch.Tensor | None = None) -> torch.Tensor | None:
        """log R(s') - log R(s) along each transition s --a--> s' (0 for stop), float64 [n], where
        the environment has a cheaper way than two per-state rewards (a modular reward: one
        family of a DAG changes per edge); None where it has not. Modified DB uses it when given."""
        return None

    def forward_action(self, backward_actions: torch.Tensor) -> torch.Tensor:
        """The forward action that each backward action undoes (backward action b undoes b)."""
        return backward_actions

    def backward_action(self, actions: torch.Tensor) -> torch.Tensor:
        """The backward action that undoes each forward move action."""
        return actions

    def _call(self, fn, *args):
        """Calls a compiled kernel over this environment (the numba route adds diagnostics)."""
        return fn(*args)

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
            if len(keys) > 5_000_000:
                raise ValueError(f"{self!r} has more than 5,000,000 states: too many to enumerate")
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

    def true_log_z(self, context: torch.Tensor | None = None) -> float:
        """log Z = log sum_x R(x), exactly, by enumeration (given a context [1, C] if conditional)."""
        if context is None and self.context_dim == 0:
            return self._true_log_z
        if context is None:
            raise ValueError(f"{self.name} is conditional: true_log_z(context) needs a context [C]")
        x = self.all_terminal_states()
        c = self._context(context_rows(context), 1)
        return float(torch.logsumexp(self.log_reward(x, c.expand(x.shape[0], -1)), 0))

    def true_distribution(self, context: torch.Tensor | None = None) -> torch.Tensor:
        """R(x)/Z over all_terminal_states(), float64."""
        x = self.all_terminal_states()
        if context is None and self.context_dim == 0:
            return torch.softmax(self.log_reward(x), 0)
        if context is None:
            raise ValueError(f"{self.name} is conditional: true_distribution(context) needs a context [C]")
        c = self._context(context_rows(context), 1)
        return torch.softmax(self.log_reward(x, c.expand(x.shape[0], -1)), 0)

    # -- serialisation --------------------------------------------------------------------------
    def config(self) -> dict:
        """The constructor arguments that rebuild this environment (see to_config).

        By default they are derived: each parameter of the class's ``__init__`` read back from the
        attribute of the same name (``def __init__(self, N=6): ...; self.N = N`` gives
        ``{"N": 6}``). An environment whose constructor keeps its arguments under other names
        defines config() itself; without one a checkpoint cannot rebuild it."""
        init = type(self).__init__
        if init is object.__init__:
            return {}
        params = [p for p in inspect.signature(init).parameters.values()
                  if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        # (a bound method of the same name, log_reward say, is the class's, not the argument)
        missing = [p.name for p in params if not hasattr(self, p.name)
                   or (inspect.ismethod(getattr(self, p.name)) and getattr(self, p.name).__self__ is self)]
        if missing:
            raise NotImplementedError(f"{type(self).__name__} does not describe itself: keep the constructor "
                                      f"argument(s) {', '.join(missing)} as attributes of the same name or define "
                                      f"config() returning them (or pass env= when loading a checkpoint)")
        return {p.name: getattr(self, p.name) for p in params}

    def to_config(self) -> dict:
        """{"class": "module:QualName", "params": {...}}: enough to rebuild the environment with
        gfncore.envs.from_config (tensors stay tensors, so checkpoints load with weights_only)."""
        cls = type(self)
        if "<locals>" in cls.__qualname__:
            raise NotImplementedError(f"{cls.__qualname__} is defined inside a function and cannot be imported back; "
                                      f"pass the environment itself when loading (gfncore.load(path, env=...))")
        return {"class": f"{cls.__module__}:{cls.__qualname__}", "name": self.name, "params": self.config()}

    def __repr__(self) -> str:
        try:
            params = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if not isinstance(v, torch.Tensor))
        except NotImplementedError:
            params = ""
        return f"{type(self).__name__}({params})"


def context_rows(context, n: int = 1, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """One context c ([C], or [1, C]) as n rows [n, C] (an expanded view): how a single context
    meets the batched calls of environments, policies and objectives."""
    return torch.as_tensor(context, dtype=dtype, device=device).reshape(1, -1).expand(n, -1)
