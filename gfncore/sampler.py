"""Sampler: no-grad batched rollout of a forward policy into packed trajectories."""
from __future__ import annotations

import operator
import threading

import torch

from . import onpolicy, ops
from .ops.kernel import process_blas
from .envs.base import Env
from .envs.compiled import HandleEnv
from .envs.check import check_trajectories
from .envs.numba_env import NumbaEnv
from .envs.python_env import PythonEnv
from .limits import available_memory, check_work
from .trajectories import Trajectories

MAX_BATCH = 2**40
_FLOATS = (torch.float32, torch.float64)
CONTRACT_BATCHES = 2  # first batches of a Python or numba environment checked against the contract
DEFAULT_MAX_LENGTH = 100_000  # steps of a trajectory when the environment declares no max_length


def _checked_logits(policy, logits, n: int):
    """The policy's P_F logits, or a TypeError naming what it returned instead (a list, integers):
    they would otherwise fail later with a message about something else."""
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{type(policy).__name__}.forward_logits returned a {type(logits).__name__}; it must return a "
                        f"float tensor [n, n_actions] of logits")
    if not logits.is_floating_point():
        raise TypeError(f"{type(policy).__name__}.forward_logits returned {logits.dtype} logits; they must be floating "
                        f"point (float32 or float64)")
    return logits


def _nan_features_first(env, features: torch.Tensor, e: Exception):
    """A kernel's complaint about NaN logits, re-raised as the real cause when the environment's
    encode produced the NaN."""
    bad = ~torch.isfinite(features)
    if bool(bad.any()):
        raise ValueError(f"{type(env).__name__}.encode returned non-finite features (NaN or inf) for "
                         f"{int(bad.any(-1).sum())} state(s); the policy's logits are NaN because of them") from e


def policy_device(policy) -> torch.device:
    """Where a policy's parameters live (the CPU for one without parameters)."""
    for p in policy.parameters():
        return p.device
    return torch.device("cpu")


def policy_logits(policy, features: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
    """P_F logits of a policy, conditioned on the rows' contexts where there are any."""
    if context is None:
        return policy.forward_logits(features)
    return policy.forward_logits(features, context)


class Sampler:
    """Draws trajectories s0 -> ... -> x from P_F(.|s) (optionally tempered / epsilon-uniform).

    For an environment that runs in the compiled core (C++ or numba) on the CPU, every step is one
    call that samples the actions, steps the environment, writes next masks and features, and
    compacts the trajectories that continue, so the policy only ever sees the active rows and
    Python does nothing per row. Otherwise (a Python environment, another device) each step runs
    the same compiled sampling rule (``ops.sample_actions`` / ``ops.rollout_step``) and the
    environment's batched methods. Every path draws the same Philox numbers (keyed by seed,
    trajectory id and step), so they return the same samples.

    Rewards are apart from the dynamics: the log-reward of the finished objects comes from one
    batched ``env.log_reward(x, context)`` call per batch, on every path.

    Conditional GFlowNets: ``sample(n, context=c)`` takes the contexts [n, C] as given;
    otherwise ``context_sampler(n, generator) -> [n, C]`` draws them. The policy sees each row's
    context, and the trajectories carry ``context``.
    """

    # an MLPPolicy on a C++ environment runs its whole rollout in one compiled call (False: the
    # per-step loop, which draws the same samples)
    fused_rollout = True

    def __init__(self, env: Env, policy, temperature: float = 1.0, epsilon: float = 0.0, context_sampler=None):
        self.env, self.policy = env, policy
        self.temperature, self.epsilon = float(temperature), float(epsilon)
        self.context_sampler = context_sampler
        self._cached = None
        self._lock = threading.Lock()
        self._work_checked = None  # the environment whose trajectory work check_work passed
        # a user's environment (Python or numba route) meets the contract check on its first
        # batches (envs.check.check_trajectories); afterwards it costs nothing
        self._contract_batches = CONTRACT_BATCHES if isinstance(env, (PythonEnv, NumbaEnv)) else 0

    def contexts(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """n contexts from the context sampler (None for an unconditional environment)."""
        if self.env.context_dim == 0:
            return None
        if self.context_sampler is None:
            raise ValueError(f"{self.env.name} is conditional (context_dim = {self.env.context_dim}): pass context= or "
                             f"give the sampler a context_sampler(n, generator) -> [n, {self.env.context_dim}]")
        c = self.context_sampler(n, generator)
        return self.env._context(c, n)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        temperature: float | None = None,
        epsilon: float | None = None,
        device=None,
        context: torch.Tensor | None = None,
        first_id: int = 0,
        compiled_path: bool = True,
        keep_activations: bool = False,
    ) -> Trajectories:
        """n trajectories (seed drawn from `generator` if not given). Trajectory i draws Philox
        subsequence first_id + i: a process sampling its share [first_id, first_id + n) of a larger
        batch draws exactly what one process sampling the whole batch would.

        keep_activations: on-policy training asks the rollout to keep the policy's hidden
        activations so that the loss differentiates through them instead of recomputing the
        forward (gfncore.onpolicy); honoured where it applies (an unconditional MLPPolicy on the
        compiled CPU path at temperature 1 without epsilon), ignored elsewhere."""
        try:
            n = operator.index(n)
        except TypeError:
            raise TypeError(f"n must be an int, got {type(n).__name__}") from None
        if not 0 <= n <= MAX_BATCH:
            raise ValueError(f"n must be in [0, 2**40], got {n}")
        if seed is None:
            seed = ops.draw_seed(generator)
        seed, first_id = ops.rollout.seed_and_offset("Sampler.sample", seed, first_id, None)
        if first_id > 2**62:
            raise ValueError(f"Sampler.sample: first_id must be in [0, 2**62], got {first_id}")
        temp, eps = ops.rollout._sampling("Sampler.sample", self.temperature if temperature is None else temperature,
                                          self.epsilon if epsilon is None else epsilon)
        dev = torch.device(device) if device is not None else policy_device(self.policy)
        env = self.env
        first_step = n * (4 * env.state_dim + 4 * env.feature_dim + env.n_actions)
        if first_step > 2**40 or first_step > available_memory():
            raise ValueError(f"n = {n} trajectories need {first_step / 2**30:,.1f} GiB for their first step alone "
                             f"(this machine has {available_memory() / 2**30:,.1f} GiB available); sample in smaller "
                             f"batches")
        if self._work_checked is not env:
            check_work(env)
            self._work_checked = env
        ctx = self.env._context(context, n) if context is not None else self.contexts(n, generator)
        if ctx is not None:
            ctx = ctx.to(dev, torch.get_default_dtype())
        kernel = ops.compiled_kernel(env, dev) if dev.type == "cpu" and compiled_path else None
        if kernel is not None:
            keep = keep_activations and temp == 1.0 and eps == 0.0 and ctx is None
            traj = self._sample_cpu(kernel, n, seed, temp, eps, ctx, first_id, keep)
        else:
            traj = self._sample_generic(n, seed, temp, eps, dev, ctx, first_id)
        traj.context = ctx
        if self._contract_batches and n:
            check_trajectories(env, traj)
            self._contract_batches -= 1
        if n:
            x = traj.__dict__.pop("_terminal", None)
            x = traj.terminal_states if x is None else x
            lr = self.env.reward(x, None if ctx is None else ctx.to(x.device))
            want = traj.log_reward
            traj.log_reward = lr if (lr.dtype == want.dtype and lr.device == want.device) else lr.to(want.device, want.dtype)
        return traj

    # -- the compiled recording path ------------------------------------------------------------
    def _recorder(self, kernel, n: int):
        """A recorder with room for a batch of n. The last one is kept and reused (its buffers
        are scratch: pack copies every row out); it grows on demand."""
        cached = self._cached
        if cached is None or cached[0] is not kernel:
            cached = self._cached = (kernel, kernel.recorder(max(n, 1) * min(self.env.max_length or 1, 16)))
        return cached[1]

    def _sample_cpu(self, kernel, n: int, seed: int, temp: float, eps: float, ctx, first_id: int = 0,
                    keep: bool = False) -> Trajectories:
        # One Python iteration per step: the policy forward on the active rows' features and one
        # call that samples, steps and compacts. A concurrent or re-entrant call gets its own buffers.
        if not self._lock.acquire(blocking=False):
            rec = kernel.recorder(max(n, 1) * min(self.env.max_length or 1, 16))
            return self._rollout(rec, n, seed, temp, eps, ctx, first_id, keep)
        try:
            return self._rollout(self._recorder(kernel, n), n, seed, temp, eps, ctx, first_id, keep, cached=True)
        finally:
            self._lock.release()

    def _rollout(self, rec, n: int, seed: int, temp: float, eps: float, ctx, first_id: int = 0,
                 keep: bool = False, cached: bool = False) -> Trajectories:
        env, forward = self.env, self.policy.forward_logits
        acts = None
        if keep:
            layers = onpolicy.trunk_layers(self.policy)
            if layers is not None:
                # rows of the last batch of this size, with some room: a rollout that outgrows it copies once
                hint = self.__dict__.get("_rows_per_traj", min(env.max_length or 1, 16))
                acts = forward = onpolicy.ActivationRecorder(self.policy, layers, int(n * hint * 1.25) + 16,
                                                             self.__dict__.get("_acts") if cached else None)
                if cached:
                    self.__dict__["_acts"] = acts
        step = rec.step  # (the numba route's recorder diagnoses a failing callback itself)
        m = rec.start(n, seed, temp, eps, first_id)
        dtype = torch.float32
        views = self.__dict__.get("_views")
        if views is None or views[0] is not rec:
            views = (rec, -1, None, None)
        _, gen, feats, ids = views
        pos = 0
        # (the numba route's recorder, which diagnoses callbacks, keeps the per-step loop)
        mlp = self._one_call_layers() if m and ctx is None and hasattr(rec, "run_mlp") else None
        if mlp is not None:
            # the whole rollout in one compiled call: MLP forward, sampling, steps, compaction
            bufs = acts.buffers if acts is not None else None
            while m:
                m = rec.run_mlp(mlp, bufs)
                if m:  # the activation rows are full: grow them and go on
                    acts.pos = rec.position
                    acts._grow(rec.position + 2 * m)
                    bufs = acts.buffers
            pos = rec.position
            if acts is not None:
                acts.pos = pos
                for b in acts.buffers:  # written by the kernel: retire records of earlier rollouts
                    torch.autograd.graph.increment_version(b)
        steps, limit = 0, env.max_length or DEFAULT_MAX_LENGTH
        while m:
            steps += 1
            if steps > limit:
                raise ValueError(f"{env!r}: trajectories are longer than {limit} steps ("
                                 + ("its max_length" if env.max_length else "the default cap: the environment has no "
                                    "max_length") + "): its steps never reach a state where only stop is legal")
            if rec.generation != gen:  # the recorder grew: its arrays are new
                gen, feats, ids = rec.generation, torch.from_numpy(rec.features), torch.from_numpy(rec.ids)
                self.__dict__["_views"] = (rec, gen, feats, ids)
            f = feats[pos:pos + m]
            logits = _checked_logits(self.policy, forward(f) if ctx is None else forward(f, ctx[ids[pos:pos + m]]), m)
            dtype = logits.dtype
            # a policy may hand back transposed or expanded logits: the kernel reads rows
            try:
                m_next = step((logits if dtype in _FLOATS else logits.float()).contiguous())
            except ValueError as e:
                _nan_features_first(env, f, e)
                raise
            pos, m = pos + m, m_next
        T = pos
        empty = torch.empty
        traj = Trajectories(states=empty(T, env.state_dim, dtype=torch.int32), actions=empty(T, dtype=torch.int64),
                            offsets=empty(n + 1, dtype=torch.int64), log_reward=empty(n, dtype=dtype),
                            mask=empty(T, env.n_actions, dtype=torch.bool), features=empty(T, env.feature_dim),
                            log_prob=empty(T, dtype=dtype))
        log_pb = empty(T, dtype=dtype)  # the dtype the loss uses it in
        x = empty(n, env.state_dim, dtype=torch.int32)
        rec.pack(traj.states, traj.actions, traj.offsets, traj.mask, traj.features, traj.log_prob, log_pb, x)
        traj.remember_uniform_log_pb(env, log_pb)
        traj.__dict__["_terminal"] = x
        if acts is not None and T:
            self.__dict__["_rows_per_traj"] = T / max(n, 1)
            # packed row j is rollout row perm[j]: rows sorted by trajectory id, stably (in step order)
            rid = torch.from_numpy(rec.ids)[:T]
            traj.__dict__["_activations"] = acts.finish(torch.argsort(rid, stable=True))
        return traj

    def _one_call_layers(self):
        """[(weight, bias), ...] of the trunk and P_F head where the whole rollout can run in one
        compiled call (an unconditional float32 MLPPolicy on the CPU, torch's BLAS found), else None
        (the per-step loop runs: the same draws, one Python iteration per step)."""
        if not self.fused_rollout:
            return None
        layers = onpolicy.trunk_layers(self.policy)
        if layers is None or not process_blas():
            return None
        mods = [*layers, self.policy.pf_head]
        out = []
        for lin in mods:
            w, b = lin.weight, lin.bias
            if b is None or w.dtype != torch.float32 or b.dtype != torch.float32 or w.device.type != "cpu" or \
                    not (w.is_contiguous() and b.is_contiguous()):
                return None
            out.append((w.detach(), b.detach()))
        return out

    # -- the generic path -----------------------------------------------------------------------
    def _sample_generic(self, n: int, seed: int, temp: float, eps: float, dev, ctx, first_id: int = 0) -> Trajectories:
        env, policy = self.env, self.policy
        # a Python environment's tensors stay where its methods put them; the policy's go to dev
        states = env.initial_states(n, device=dev if _runs_on_device(env, dev) else None)
        mask, feats = env.forward_mask(states), env.encode(states)
        ids = torch.arange(n, device=states.device)
        rec = []
        t, limit = 0, env.max_length or DEFAULT_MAX_LENGTH
        while ids.numel() > 0:
            if t >= limit:
                raise ValueError(f"{env!r}: trajectories are longer than "
                                 + (f"max_length = {limit}" if env.max_length else f"{limit} steps (the default cap: "
                                    f"the environment has no max_length)")
                                 + ": its steps never reach a state where only stop is legal")
            logits = _checked_logits(policy, policy_logits(policy, feats.to(dev), None if ctx is None else
                                                           ctx[ids.to(dev)]), ids.numel())
            try:
                a, lp, ns, nm, nf, done = ops.rollout_step(env, states, mask.to(states.device), logits.to(states.device),
                                                           seed=seed, offset=t, ids=ids + first_id if first_id else ids,
                                                           temperature=temp, epsilon=eps)
            except ValueError as e:
                _nan_features_first(env, feats, e)
                raise
            rec.append((states, a, ids, mask, feats, lp))
            keep = ~done
            states, mask, feats, ids = ns[keep], nm[keep], nf[keep], ids[keep]
            t += 1
        if not rec:
            z = torch.zeros
            return Trajectories(z(0, env.state_dim, dtype=torch.int32, device=dev), z(0, dtype=torch.int64, device=dev),
                                z(1, dtype=torch.int64, device=dev), z(0, device=dev),
                                z(0, env.n_actions, dtype=torch.bool, device=dev), z(0, env.feature_dim, device=dev),
                                z(0, device=dev))
        s, a, i, mk, f, lp = (torch.cat(c) for c in zip(*rec))
        order = torch.argsort(i, stable=True)
        lengths = torch.bincount(i, minlength=n)
        offsets = torch.zeros(n + 1, dtype=torch.int64, device=i.device)
        torch.cumsum(lengths, 0, out=offsets[1:])
        traj = Trajectories(states=s[order], actions=a[order], offsets=offsets, log_reward=lp.new_zeros(n),
                            mask=mk[order], features=f[order], log_prob=lp[order]).to(dev)
        if not isinstance(env, HandleEnv):
            traj.remember_uniform_log_pb(env, _checked_uniform_log_pb(env, traj))
        return traj


def _runs_on_device(env: Env, dev: torch.device) -> bool:
    """Whether env's batched methods take tensors on dev (Python environments live on the CPU
    unless they say otherwise through a `device` attribute)."""
    if dev.type == "cpu":
        return True
    if isinstance(env, HandleEnv):
        return env._runs_on(torch.empty(0, device=dev))
    return torch.device(getattr(env, "device", "cpu")).type == dev.type


def _checked_uniform_log_pb(env: Env, traj: Trajectories) -> torch.Tensor:
    """Uniform log P_B of every row of a Python environment's trajectories, checking on the way
    that each move is marked in the child's backward_mask (else P_B, and training, would be
    silently wrong)."""
    T = traj.T
    move = (~traj.is_stop).nonzero(as_tuple=True)[0]
    log_pb = torch.zeros(T, dtype=torch.float64, device=traj.states.device)
    if move.numel():
        child = traj.states[move + 1]
        bm = env.backward_mask(child)
        b = env.backward_action(traj.actions[move]).to(bm.device)
        marked = bm.gather(1, b.unsqueeze(1)).squeeze(1)
        if not bool(marked.all()):
            k = int((~marked).nonzero()[0, 0])
            t = int(move[k])
            raise ValueError(f"{type(env).__name__}.backward_mask: the move {traj.states[t].tolist()} "
                             f"--{int(traj.actions[t])}--> {child[k].tolist()} is not marked in the child's backward "
                             f"mask (backward action {int(b[k])}); run gfncore.envs.check_env(env)")
        log_pb[move] = -torch.log(bm.sum(-1).to(torch.float64)).to(log_pb.device)
    return log_pb
