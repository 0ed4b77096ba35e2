"""The public interface between environments and the env-aware ops (rollout, backward rollout,
parents, the recording sampler).

An environment hands an op a kernel for a device, ``env.kernel(device)``; the op checks its
arguments, picks the eager or the custom-op path, and calls the kernel's methods. Ops never read
an environment's private fields or call its batched methods themselves. Two kinds of kernel
answer the same methods:

- :class:`CompiledKernel` (here): the environment's C++ struct or numba callbacks behind a
  ``_C.Env`` handle; its methods allocate the outputs and launch the compiled op.
- ``gfncore.envs.kernel.BatchedKernel``: any environment through its batched torch methods and
  the compiled sampling rule (the Python route, or a device without compiled kernels).
"""
from __future__ import annotations

from typing import Callable

import torch

from .. import _C
from . import _device
from ._device import stream
from ._memory import materialize

# what a failing user callback raises through the compiled core: caught by environments (numba)
CallbackError = _C.CallbackError


class CompiledKernel:
    """An environment's compiled kernels, as the env-aware ops use them.

    ``handle`` is the environment's ``_C.Env``; the sizes are its dimensions (outputs are
    allocated from them). ``diagnose(error, args) -> Exception``, where given, turns a failed
    callback (``_C.CallbackError``) into the user's own error (the numba route re-runs the
    failing method in Python)."""

    compiled = True

    def __init__(self, handle, *, state_dim: int, n_actions: int, n_backward_actions: int, feature_dim: int,
                 diagnose: Callable | None = None):
        self.handle = handle
        self.state_dim, self.n_actions, self.n_backward_actions = state_dim, n_actions, n_backward_actions
        self.feature_dim = feature_dim
        self.diagnose = diagnose

    def runs_on(self, device: torch.device, cuda: bool) -> bool:
        """Whether these kernels serve tensors on `device` (`cuda`: the struct has CUDA code)."""
        return _device.compiled_for_device(device) and (device.type == "cpu" or cuda)

    def run(self, fn, *args):
        """fn(handle, *args): one compiled op over this environment."""
        if self.diagnose is None:
            return fn(self.handle, *args)
        try:
            return fn(self.handle, *args)
        except CallbackError as e:
            raise self.diagnose(e, args) from None

    def wrap(self, fn):
        """fn with a failed callback diagnosed (fn itself where nothing needs diagnosing)."""
        if self.diagnose is None:
            return fn

        def call(*args):
            try:
                return fn(*args)
            except CallbackError as e:
                raise self.diagnose(e, args) from None
        return call

    # -- the env-aware ops' compiled halves -----------------------------------------------------
    def rollout_step(self, states, mask, logits, ids, seed, offset, temperature, epsilon):
        # a huge stride-0 view raises MemoryError here, not the allocator's RuntimeError; the
        # outputs are sized by rows that exist
        states, mask, logits = (materialize("rollout_step", k, t)
                                for k, t in (("states", states), ("mask", mask), ("logits", logits)))
        ids = materialize("rollout_step", "ids", ids) if ids is not None else None
        n = states.shape[0] if states.dim() == 2 and states.shape[1] == self.state_dim else 0
        dev = states.device
        actions = torch.empty(n, dtype=torch.int64, device=dev)
        log_prob = torch.empty(n, dtype=logits.dtype, device=dev)
        next_states = torch.empty(n, self.state_dim, dtype=torch.int32, device=dev)
        next_mask = torch.empty(n, self.n_actions, dtype=torch.bool, device=dev)
        features = torch.empty(n, self.feature_dim, dtype=torch.float32, device=dev)
        done = torch.empty(n, dtype=torch.bool, device=dev)
        self.run(_C.rollout_step, states, mask, logits, ids, seed, offset, temperature, epsilon, actions, log_prob,
                 next_states, next_mask, features, done, stream(states))
        return actions, log_prob, next_states, next_mask, features, done

    def backward_rollout_step(self, states, logits, ids, seed, offset, temperature, epsilon):
        op = "backward_rollout_step"
        states, logits = (materialize(op, k, t) for k, t in (("states", states), ("logits", logits)))
        ids = materialize(op, "ids", ids) if ids is not None else None
        n = states.shape[0] if states.dim() == 2 and states.shape[1] == self.state_dim else 0
        dev = states.device
        mask = torch.empty(n, self.n_backward_actions, dtype=torch.bool, device=dev)  # scratch
        actions = torch.empty(n, dtype=torch.int64, device=dev)
        log_pb = torch.empty(n, dtype=logits.dtype, device=dev)
        forward_actions = torch.empty(n, dtype=torch.int64, device=dev)
        parents = torch.empty(n, self.state_dim, dtype=torch.int32, device=dev)
        done = torch.empty(n, dtype=torch.bool, device=dev)
        self.run(_C.backward_rollout_step, states, logits, ids, seed, offset, temperature, epsilon, mask, actions,
                 log_pb, forward_actions, parents, done, stream(states))
        return actions, log_pb, forward_actions, parents, done

    def parents(self, states, max_parents: int):
        states = states.contiguous()
        n, P, D, dev = states.shape[0], max_parents, self.state_dim, states.device
        parent_states = torch.empty(n, P, D, dtype=torch.int32, device=dev)
        parent_actions = torch.empty(n, P, dtype=torch.int64, device=dev)
        counts = torch.empty(n, dtype=torch.int64, device=dev)
        self.run(_C.parents, states, parent_states, parent_actions, counts, stream(states))
        return parent_states, parent_actions, counts

    def recorder(self, capacity: int):
        """The recording sampler's compiled loop (CPU): start / step / pack, with room for
        `capacity` rows (it grows on demand)."""
        rec = _C.RolloutRecorder(self.handle, capacity)
        return rec if self.diagnose is None else _DiagnosedRecorder(rec, self)


class _DiagnosedRecorder:
    """A recorder whose calls turn a failed callback into the user's own error."""

    __slots__ = ("_rec", "start", "step", "pack")

    def __init__(self, rec, kernel: CompiledKernel):
        self._rec = rec
        self.start, self.step, self.pack = kernel.wrap(rec.start), kernel.wrap(rec.step), kernel.wrap(rec.pack)

    @property
    def generation(self):
        return self._rec.generation

    @property
    def features(self):
        return self._rec.features

    @property
    def ids(self):
        return self._rec.ids


def process_blas() -> bool:
    """Whether the recorder's one-call MLP rollout (``run_mlp``) found torch's BLAS in this process."""
    return bool(_C.has_process_blas())


def compiled_kernel(env, device) -> CompiledKernel | None:
    """env's compiled kernel for `device`, or None where its batched methods serve it."""
    k = env.kernel(torch.device(device))
    return k if k.compiled else None
