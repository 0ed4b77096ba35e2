"""Trainer: on-policy (or exploratory) GFlowNet training with Adam, a separate learning rate for
log Z, progress display, metrics and checkpoints that resume bit for bit."""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass

import torch

from .. import distributed as D
from .. import metrics as M
from .. import onpolicy
from ..config import check, option, validate
from ..envs.base import Env, NonFiniteRewardError, context_rows
from ..losses import LOSSES, get_loss
from ..nn import ContextScaler, MLPPolicy
from ..replay import ReplayBuffer
from ..runtime import ensure_threads
from ..sampler import Sampler, policy_device
from ..trajectories import Trajectories


class NonFiniteError(FloatingPointError):
    """A non-finite loss, reward, log Z or gradient stopped training before its update.

    Attributes: ``quantity`` ("reward", "log Z", "loss", "gradient" or "logits"), ``step`` (the step that
    failed; nothing of it was applied), ``checkpoint`` (path of the last checkpoint this trainer
    wrote or loaded, or None), ``objects`` (for rewards: the first offending objects x, [k, D])."""

    def __init__(self, detail: str, quantity: str, step: int, checkpoint: str | None, where: str, objects=None):
        super().__init__(f"{detail}; {where}")
        self.detail, self.quantity, self.step, self.checkpoint, self.objects = detail, quantity, step, checkpoint, objects


def _device_error(v: str) -> str | None:
    try:
        d = torch.device(v)
    except (RuntimeError, TypeError, ValueError):
        return f"must be cpu, cuda or cuda:N, got {v!r}"
    if d.type == "cpu":
        return None
    if d.type != "cuda":
        return f"must be cpu, cuda or cuda:N, got {v!r}"
    if not torch.cuda.is_available():
        return f"is {v!r} but no CUDA device is available (torch.cuda.is_available() is False)"
    if d.index is not None and d.index >= torch.cuda.device_count():
        return f"is {v!r} but only {torch.cuda.device_count()} CUDA device(s) exist"
    return None


from ..limits import available_memory, check_memory, check_work, threads_error, trainer_bytes  # noqa: E402


@dataclass
class TrainConfig:
    """Training settings; the CLI's flags are generated from these fields, and their bounds are
    checked in one place (gfncore.config) for both."""

    loss: str = option("tb", "objective", choices=tuple(LOSSES))
    lam: float = option(0.9, "SubTB lambda: weight lambda^(k-j) of sub-trajectory j..k",
                        min=2.2250738585072014e-308)  # the smallest normal float64: a subnormal lambda loses digits
    importance_weights: bool = option(False, "weight exploratory samples by P_F(tau)/P_behaviour(tau) (self-normalised)")
    replay_capacity: int = option(0, "replay buffer size (0: no replay)", min=0)
    replay_fraction: float = option(0.5, "share of each batch re-expanded from the replay buffer: round(batch_size * "
                                         "fraction) objects, at most batch_size - 1; the rest are fresh", min=0, lt=1)
    prioritized: bool = option(False, "replay objects with probability proportional to R(x)")
    batch_size: int = option(64, "trajectories per step (fresh + replayed)", min=1)
    steps: int = option(1000, "training steps (with --resume: the total to reach)", min=0)
    lr: float = option(1e-3, "Adam learning rate of the networks", min=0)
    lr_log_z: float = option(0.1, "Adam learning rate of log Z", min=0)
    hidden: int = option(256, "MLP width", min=1)
    layers: int = option(2, "MLP hidden layers", min=1)
    pb: str = option("uniform", "backward policy", choices=("uniform", "learned", "shared"))
    temperature: float = option(1.0, "behaviour-policy temperature", gt=0)
    epsilon: float = option(0.0, "behaviour-policy epsilon-uniform mix", min=0, max=1)
    seed: int = option(0, "seed of the network init and of every rollout", min=0, max=2**63 - 1)
    eval_every: int = option(0, "steps between evaluations (0: 10 per run)", min=0)
    threads: int = option(0, "CPU threads of torch and the kernels (0: gfncore's default, see README)", min=0,
                          check=threads_error)
    device: str = option("cpu", "where the policy, rollouts and losses run: cpu, cuda or cuda:N", check=_device_error)

    def __post_init__(self):
        validate(self)


class Trainer:
    """Trains a policy on an environment with a GFlowNet objective.

    >>> trainer = Trainer(env, policy, loss="tb", batch_size=64)
    >>> trainer.fit(steps=1000)
    >>> x = trainer.sample(10_000)

    ``device`` moves the policy (and with it the rollouts and the losses) there; None leaves it
    where it is. Arguments are checked against the bounds of the TrainConfig fields of the same
    name (ValueError / TypeError naming the argument).
    """

    def __init__(self, env: Env, policy, loss: str = "tb", batch_size: int = 64, lr: float = 1e-3,
                 lr_log_z: float = 0.1, temperature: float = 1.0, epsilon: float = 0.0, seed: int = 0,
                 loss_options: dict | None = None, replay: ReplayBuffer | None = None, replay_fraction: float = 0.5,
                 device=None, context_sampler=None, trajectories_per_context: int = 1,
                 distributed: bool | None = None):
        opts = dict(loss_options or {})
        desc = describe_policy(policy)
        self.config = TrainConfig(
            loss=loss, lam=opts.get("lam", 0.9), importance_weights=opts.get("importance_weights", False),
            replay_capacity=replay.capacity if replay is not None else 0, replay_fraction=replay_fraction,
            prioritized=replay.prioritized if replay is not None else False, batch_size=batch_size, lr=lr,
            lr_log_z=lr_log_z, temperature=temperature, epsilon=epsilon, seed=seed,
            device=str(device) if device is not None else str(policy_device(policy)),
            **({k: desc[k] for k in ("hidden", "layers", "pb")} if desc else {}))
        if device is not None:
            policy.to(torch.device(self.config.device))
        # what `gfncore train` does, so that the same settings give the same run from Python: the
        # CLI's thread count unless the user chose one, the initial weights drawn from the seed
        ensure_threads()
        if hasattr(policy, "seed_weights"):
            policy.seed_weights(self.config.seed)
        self.env, self.policy = env, policy
        self.loss_name = loss
        self.loss_options = opts
        self.objective = get_loss(loss, **opts)
        self.objective.check_policy(policy)
        self.batch_size = self.config.batch_size
        need = trainer_bytes(env, self.batch_size, self.config.hidden if desc else 0)
        if need > available_memory():  # a lower bound: one row per trajectory
            check_memory(need, f"--batch-size {self.batch_size}")
        check_work(env)
        self.replay, self.replay_fraction = replay, self.config.replay_fraction
        self.train_seconds = 0.0
        if trajectories_per_context < 1 or self.batch_size % trajectories_per_context:
            raise ValueError(f"trajectories_per_context must be >= 1 and divide batch_size ({self.batch_size}), got "
                             f"{trajectories_per_context}")
        if env.context_dim and context_sampler is None:
            raise ValueError(f"{env.name} is conditional: give the Trainer a context_sampler(n, generator) -> "
                             f"[n, {env.context_dim}] (the training distribution of contexts)")
        self.trajectories_per_context = int(trajectories_per_context)
        self.sampler = Sampler(env, policy, temperature=temperature, epsilon=epsilon, context_sampler=context_sampler)
        self._last_context = None
        self.optimizer = make_optimizer(policy, lr, lr_log_z)
        self._params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.step_count = 0
        self._resumed_from = 0
        self.history: list[dict] = []
        self.last_checkpoint: tuple[str, int] | None = None  # (path, step) written or loaded
        self.stop_requested = False
        self.should_stop = False  # a hook's request to end fit after the current step
        self._stop_agreed = False  # data-parallel: a stop request some rank had at the last step
        self._modes: set[tuple] = set()
        self._pending_x: list[torch.Tensor] = []  # terminal states of batches not yet scanned for modes
        self._pending_rows = 0
        self._capabilities: dict | None = None
        self._guard = True  # the non-finite check; bench/guard_report.py turns it off to measure its cost
        self._found_inf: torch.Tensor | None = None
        self._setup_distributed(distributed)

    def _setup_distributed(self, distributed) -> None:
        """Data-parallel training when a torch.distributed process group is initialised (or
        distributed=True, which initialises one from torchrun's environment): see gfncore.distributed."""
        if distributed is None:
            distributed = D.active()
        self.topology = D.init() if distributed else D.Topology()
        self._reduce = None
        if self.topology.world_size == 1:
            return
        cfg = self.config
        if self.objective.importance_weights:
            raise ValueError("importance_weights normalise over the whole batch; they are not supported in "
                             "data-parallel training")
        if self.batch_size < self.topology.world_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be at least the world size "
                             f"({self.topology.world_size}): every rank needs a share of the batch")
        self._reduce = D.Reducer(self.topology)
        if "OMP_NUM_THREADS" not in os.environ:  # torchrun sets it to 1 when it starts several ranks
            from ..runtime import set_num_threads

            set_num_threads(D.default_threads(self.topology))
        # each rank draws replayed objects from its own buffer with its own generator
        self.replay_generator = torch.Generator().manual_seed(cfg.seed + 1_000_003 * (self.topology.rank + 1))
        try:
            env_desc = self.env.to_config()
        except (NotImplementedError, TypeError, ValueError):
            env_desc = repr(self.env)
        D.broadcast_parameters(self.policy, self.topology)
        D.check_same_config({
            "env": env_desc, **{k: v for k, v in asdict(cfg).items() if k not in ("device", "threads")},  # rank-local
            "loss_options": self.loss_options,
            "replay": None if self.replay is None else [self.replay.capacity, self.replay.prioritized,
                                                        self.replay.alpha, self.replay_fraction],
            "parameters": [list(p.shape) for p in self.policy.parameters()],
        }, self.topology)

    @property
    def is_main(self) -> bool:
        """Whether this process writes outputs (rank 0, or the only process)."""
        return self.topology.is_main

    @classmethod
    def from_config(cls, env: Env, policy, cfg: TrainConfig, context_sampler=None) -> "Trainer":
        opts = {"importance_weights": cfg.importance_weights}
        if cfg.loss == "subtb":
            opts["lam"] = cfg.lam
        replay = ReplayBuffer(env, cfg.replay_capacity, prioritized=cfg.prioritized) if cfg.replay_capacity > 0 else None
        t = cls(env, policy, loss=cfg.loss, batch_size=cfg.batch_size, lr=cfg.lr, lr_log_z=cfg.lr_log_z,
                temperature=cfg.temperature, epsilon=cfg.epsilon, seed=cfg.seed, loss_options=opts,
                replay=replay, replay_fraction=cfg.replay_fraction, device=cfg.device, context_sampler=context_sampler)
        t.config = cfg
        return t

    @property
    def device(self) -> torch.device:
        return policy_device(self.policy)

    @property
    def loss_fn(self):
        """The objective (its name before issue 16; use Trainer.objective)."""
        import warnings

        warnings.warn("Trainer.loss_fn is Trainer.objective; use objective", DeprecationWarning, stacklevel=2)
        return self.objective

    @property
    def log_z(self) -> float:
        """The objective's current estimate of log Z (learned log Z for TB, log F(s0) for DB/SubTB, ...);
        for a conditional GFlowNet, the mean of log Z(c) over the last batch's contexts."""
        if self.env.context_dim:
            if self._last_context is None:
                return float("nan")
            with torch.no_grad():
                return float(self.policy.log_z_of(self._last_context).mean())
        return float(self.objective.log_z(self.env, self.policy))

    def log_z_at(self, context) -> float:
        """The objective's estimate of log Z(c) at one context c."""
        return float(self.objective.log_z(self.env, self.policy, context))

    def sample_trajectories(self, n: int | None = None, keep_activations: bool = False) -> Trajectories:
        """A batch of n (default batch_size) fresh trajectories, with contexts from the context
        sampler (trajectories_per_context share each) for a conditional GFlowNet. In data-parallel
        training, this rank's share of them: the same draws as one process sampling all n."""
        n = self.batch_size if n is None else n
        first, n_local = D.shard(n, self.topology)
        if not self.env.context_dim:
            return self.sampler.sample(n_local, generator=self.generator, first_id=first,
                                       keep_activations=keep_activations)
        k = self.trajectories_per_context if n % self.trajectories_per_context == 0 else 1
        c = self.sampler.contexts(n // k, self.generator).repeat_interleave(k, 0)[first:first + n_local]
        self._last_context = c
        return self.sampler.sample(n_local, generator=self.generator, context=c, first_id=first)

    def replay_split(self) -> tuple[int, int]:
        """(fresh, replayed) trajectories per batch once the buffer holds objects: replayed =
        round(batch_size * replay_fraction), capped at batch_size - 1 so that every batch has
        a fresh trajectory (which also keeps the buffer growing); the two add up to batch_size."""
        if self.replay is None or len(self.replay) == 0:
            return self.batch_size, 0
        k = min(int(round(self.batch_size * self.replay_fraction)), self.batch_size - 1)
        return self.batch_size - k, k

    def _batch(self) -> Trajectories:
        n_fresh, k = self.replay_split()
        # a batch wholly sampled on-policy keeps the rollout's activations for the loss (the sampler
        # honours it only at temperature 1 without epsilon); replayed or weighted batches recompute
        onp = k == 0 and self.objective.rollout_forward and not self.objective.importance_weights
        fresh = self.sample_trajectories(n_fresh, keep_activations=onp)
        k_local = D.shard(k, self.topology)[1]
        if k_local == 0:
            return fresh
        gen = self.generator if self.topology.world_size == 1 else self.replay_generator
        old = self.replay.sample(k_local, self.policy, generator=gen).to(fresh.states.device)
        return Trajectories.cat([fresh, old])

    def train_step(self) -> dict:
        """One step: sample a batch (plus replayed objects, re-expanded backward), recompute
        log-probs in one forward, fused loss, Adam. A non-finite loss, reward, log Z or gradient
        raises NonFiniteError before the update, and leaves the trainer as it was before the step
        (its random stream included)."""
        t0 = time.perf_counter()
        guard = self._guard
        if guard:
            gen_state = self.generator.get_state()
            obj_state = _plain_attributes(self.objective)
        try:
            traj = self._batch()
        except NonFiniteRewardError as e:  # the environment's reward returned NaN or +inf
            self.generator.set_state(gen_state)
            shown = "; ".join(f"x={x} log R={v:.6g}" for x, v in zip(e.objects.tolist(), e.values.tolist()))
            step = self.step_count + 1
            raise NonFiniteError(f"non-finite reward at step {step}, so nothing of it was applied: {shown} ({e})",
                                 "reward", step, self.last_checkpoint[0] if self.last_checkpoint else None,
                                 self._where(), objects=e.objects) from e
        except ValueError as e:
            bad = self._non_finite_policy() if guard else None
            if bad is None:
                raise
            self.generator.set_state(gen_state)
            raise bad from e
        if self._reduce is None:
            loss = self.objective(self.env, self.policy, traj)
        else:
            loss = self.objective(self.env, self.policy, traj, reduce=self._reduce)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self._reduce is not None:
            # each rank's loss is its share of the global loss: gradients and values add up, and
            # every rank then sees the same sums, so the non-finite check below agrees across ranks.
            # A stop request (a signal reaches the ranks at different moments) rides along, so that
            # every rank stops after the same step instead of one waiting for the others' gradients.
            flag = torch.tensor([1.0 if self.stop_requested else 0.0], dtype=loss.dtype)
            out = D.sync_gradients(self._params, self.topology, extra=torch.cat([loss.detach().reshape(1), flag]))
            loss, self._stop_agreed = out[0], bool(out[1] > 0)
        loss_value = float(loss.detach())
        if guard and not (math.isfinite(loss_value) and self._grads_finite()):
            err = self._non_finite(loss_value, traj)
            self.optimizer.zero_grad(set_to_none=True)
            self.generator.set_state(gen_state)
            self.objective.__dict__.update(obj_state)
            raise err
        self.optimizer.step()
        self.step_count += 1
        if self.replay is not None:
            self.replay.add(traj.terminal_states, traj.log_reward, traj.context)
        if hasattr(self.env, "mode_mask"):
            # Scanned in bulk when modes_found is read (or every ~64k objects): a per-step mode
            # test, boolean index and .tolist() cost more than the rest of a small step's bookkeeping.
            x = traj.terminal_states
            self._pending_x.append(x)
            self._pending_rows += x.shape[0]
            if self._pending_rows >= 65536:
                self._scan_modes()
        self.train_seconds += time.perf_counter() - t0
        self.forward_path = onpolicy.path_of(traj)
        return {"step": self.step_count, "loss": loss_value, "forward": self.forward_path}

    def _grads_finite(self) -> bool:
        # One fused pass over every gradient and one host sync: AMP's non-finite check with a
        # scale of exactly 1 (so no gradient changes). On a CPU it costs ~60 us for the 75k
        # gradients of a 256x2 MLP, where per-tensor isfinite() or an inf-norm costs ~1 ms.
        # Which quantity failed is worked out only after this says something did.
        grads = [p.grad for p in self._params if p.grad is not None]
        if not grads:
            return True
        dev = grads[0].device
        if self._found_inf is None or self._found_inf.device != dev:
            self._found_inf, self._one = torch.zeros(1, device=dev), torch.ones(1, device=dev)
        found = self._found_inf.zero_()
        try:
            torch._amp_foreach_non_finite_check_and_unscale_(grads, found, self._one)
        except (RuntimeError, NotImplementedError, AttributeError):  # mixed devices, an older torch
            return all(bool(torch.isfinite(g).all()) for g in grads)
        return not bool(found)

    def _where(self) -> str:
        if self.last_checkpoint is not None:
            return f"last good checkpoint: {self.last_checkpoint[0]} (step {self.last_checkpoint[1]})"
        return "no checkpoint was written before it (Trainer.save, fit(checkpoint_every=...))"

    @torch.no_grad()
    def _non_finite_policy(self) -> NonFiniteError | None:
        """After a failed rollout: the diagnosis when the policy's logits at s0 are not finite
        (finite but huge parameters after a step with too large a learning rate overflow there)."""
        s0 = self.env.initial_states(1)
        logits = self.policy.forward_logits(self.env.encode(s0).to(self.device))
        if bool(torch.isfinite(logits).all()):
            return None
        big = max(float(p.detach().abs().max()) for p in self.policy.parameters() if p.numel())
        step = self.step_count + 1
        hint = f"; the learning rate {self.config.lr:g} may be too large" if self.config.lr > 1 else ""
        msg = (f"non-finite policy logits at step {step}, in its rollout, so nothing of it was applied: the logits at "
               f"s0 are {logits[0].tolist()[:6]} with parameters as large as {big:.3g}{hint}")
        return NonFiniteError(msg, "logits", step, self.last_checkpoint[0] if self.last_checkpoint else None,
                              self._where())

    def _non_finite(self, loss_value: float, traj: Trajectories) -> NonFiniteError:
        step = self.step_count + 1
        where = self._where()
        lr = traj.log_reward.detach()
        bad = ~torch.isfinite(lr)
        objects = None
        if bool(bad.any()):
            idx = bad.nonzero().squeeze(1)[:3]
            objects = traj.terminal_states[idx].cpu()
            shown = "; ".join(f"x={x} log R={v:.6g}" for x, v in zip(objects.tolist(), lr[idx].tolist()))
            quantity = "reward"
            what = (f"log R(x) is not finite for {int(bad.sum())} of {traj.n} objects ({shown}); check the "
                    f"environment's reward (R(x) must be > 0 and finite)")
        elif isinstance(getattr(self.policy, "log_z", None), torch.Tensor) and not bool(
                torch.isfinite(self.policy.log_z).all()):
            quantity, what = "log Z", f"log Z is {self.policy.log_z.detach().cpu().tolist()}"
        elif not math.isfinite(loss_value):
            quantity, what = "loss", f"the {self.loss_name} loss is {loss_value}"
        else:
            names = [n for n, p in self.policy.named_parameters()
                     if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
            quantity = "gradient"
            what = f"the gradient of {', '.join(names[:4]) or 'a parameter'} is not finite (the loss is {loss_value:.6g})"
            if self.config.lr > 1:
                what += f"; the learning rate {self.config.lr:g} may be too large"
        msg = f"non-finite {quantity} at step {step}, so its update was not applied: {what}"
        return NonFiniteError(msg, quantity, step, self.last_checkpoint[0] if self.last_checkpoint else None, where,
                              objects)

    def _scan_modes(self) -> None:
        if self._pending_x:
            x = torch.unique(torch.cat(self._pending_x), dim=0)
            self._pending_x, self._pending_rows = [], 0
            self._modes.update(map(tuple, x[self.env.mode_mask(x)].tolist()))

    @property
    def modes_found(self) -> int:
        """Distinct highest-reward objects seen in training batches so far."""
        self._scan_modes()
        return len(self._modes)

    def capabilities(self) -> dict:
        """What this environment allows an evaluation to compute: ``exact`` (the sampler's exact
        P_T over an enumerable state space: L1, JSD), ``true_log_z`` (a float, or None when
        log Z cannot be computed) and ``terminals`` (how many objects there are, when they can be
        enumerated: the empirical L1 of n samples is reported for at most n / 10 of them)."""
        if self._capabilities is None:
            env = self.env
            exact = _small(env.all_states)
            terminals = _count(env.all_terminal_states)
            true_log_z = None
            try:  # enumeration up to the environment's own limit, or its closed form
                true_log_z = float(env.true_log_z())
            except _NOT_ENUMERABLE:
                pass
            self._capabilities = {"exact": exact, "true_log_z": true_log_z, "terminals": terminals}
        return self._capabilities

    def evaluate(self, n_samples: int = 0, generator: torch.Generator | None = None, context=None) -> dict:
        """What the environment allows: exact L1 / JSD / |log Z error| where its state space is
        enumerable, else log Z against true_log_z() where that exists, else log Z alone; plus, with
        n_samples, the empirical L1 of that many samples where they are at least 10 per object
        (drawn with `generator`, by default one seeded from the config, so evaluating never moves
        the training stream). A conditional GFlowNet is evaluated at one context c."""
        if self.env.context_dim and context is None:
            raise ValueError("evaluate a conditional GFlowNet at a context: trainer.evaluate(context=c)")
        cap = self.capabilities()
        log_z = self.log_z if context is None else self.log_z_at(context)
        if cap["exact"]:
            out = M.evaluate(self.env, self.policy, log_z, context=context)
        else:
            out = {"log_z": log_z}
            true = cap["true_log_z"]
            if context is not None:
                try:
                    true = float(self.env.true_log_z(context))
                except _NOT_ENUMERABLE:
                    true = None
            if true is not None:
                out.update(true_log_z=true, log_z_error=abs(log_z - true))
        if n_samples:
            g = generator if generator is not None else torch.Generator().manual_seed(self.config.seed + 1)
            x = self.sample(n_samples, generator=g, context=context)
            # fewer than ~10 samples per object make an empirical L1 that measures the sample size
            if cap["terminals"] is not None and cap["terminals"] * 10 <= n_samples:
                out["empirical_l1"] = M.empirical_l1(self.env, x, context)
            if hasattr(self.env, "mode_mask"):
                out["modes_found"] = M.modes_found(self.env, x)
        if hasattr(self.env, "mode_mask"):
            out["modes_found_train"] = self.modes_found
        return out

    def request_stop(self) -> None:
        """Ask a running fit() to return after the step in progress (signal handlers call this)."""
        self.stop_requested = True

    def fit(self, steps: int, *, progress: bool = True, eval_every: int = 0, log_path: str | None = None,
            evaluate: bool = True, checkpoint_every: int = 0, checkpoint_path: str | None = None,
            hooks: tuple = (), desc: str | None = None) -> list[dict]:
        """Train for `steps` more steps with a progress bar showing loss and log Z. With
        eval_every > 0 it evaluates (see evaluate()) every eval_every steps and at the end, and
        appends to history / log_path. With checkpoint_every > 0 it saves to checkpoint_path
        (atomically) every checkpoint_every steps. `hooks` (gfncore.train.hooks: a learning-rate
        schedule, evaluations, checkpoint cadence, extra metrics) run around every step, after
        those two. Returns early, after a whole step, once request_stop() was called or a hook set
        should_stop."""
        from tqdm.auto import tqdm

        from .hooks import Checkpoints, Evaluate

        steps = check(TrainConfig, "steps", steps)
        if checkpoint_every and not checkpoint_path:
            raise ValueError("checkpoint_every needs a checkpoint_path")
        main = self.is_main  # rank 0 evaluates and writes; the other ranks only train
        own = []
        if main and evaluate and eval_every and not self.env.context_dim:
            own.append(Evaluate(eval_every, lambda t: t.evaluate(), self.history, log_path, show=("log_z", "l1"),
                                extra=lambda t, rec: {**rec, "log_z": t.log_z, "seconds": t.train_seconds},
                                global_steps=True))
        if checkpoint_every:
            own.append(Checkpoints(checkpoint_path, steps=checkpoint_every))
        hooks = own + list(hooks)
        # the bar counts the run's steps: a resumed run starts where its checkpoint left off
        label = desc or f"{self.env.name} {self.loss_name}"
        if self._resumed_from:
            label += f" (resumed from step {self._resumed_from})"
            self._resumed_from = 0
        bar = tqdm(total=self.step_count + steps, initial=self.step_count, disable=not (progress and main),
                   desc=label, dynamic_ncols=True)
        self.should_stop = False
        error = None
        try:
            for h in hooks:
                h.start(self, steps)
            for i in range(steps):
                if self.should_stop or (self._stop_agreed if self._reduce is not None else self.stop_requested):
                    break
                for h in hooks:
                    h.before_step(self)
                rec = self.train_step()
                if (i % 10 == 0 or i == steps - 1) and not bar.disable:
                    rec["log_z"] = self.log_z
                    bar.set_postfix(loss=f"{rec['loss']:.3g}", log_z=f"{rec['log_z']:.3f}", refresh=False)
                bar.update(1)
                for h in hooks:
                    post = h.after_step(self, i, steps, rec)
                    if post:
                        bar.set_postfix(loss=f"{rec['loss']:.3g}", **post)
        except BaseException as e:
            error = e
            raise
        finally:
            bar.close()
            self.should_stop = False
            for h in hooks:
                h.end(self, error)
        return self.history

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None,
               context=None) -> torch.Tensor:
        """n i.i.d. finished objects x from the learned forward policy (no exploration), drawn
        with `generator` (by default the trainer's own, which the next training step continues),
        at one context c [C] for a conditional GFlowNet."""
        g = self.generator if generator is None else generator
        ctx = None
        if context is not None:
            ctx = context_rows(context, n, torch.get_default_dtype())
        traj = self.sampler.sample(n, generator=g, temperature=temperature, epsilon=0.0, context=ctx)
        return traj.terminal_states

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything a resumed run continues from, as tensors and plain containers (loadable with
        torch.load(weights_only=True)): policy, optimizer, random stream, step count, replay
        buffer, modes found, evaluation history, the objective's running state."""
        modes = torch.tensor(self._mode_list(), dtype=torch.int32).reshape(-1, self.env.state_dim)
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "step": self.step_count, "modes": modes,
                "loss": self.loss_name, "history": [dict(h) for h in self.history],
                "train_seconds": self.train_seconds, "objective": _plain_attributes(self.objective),
                "replay": self.replay.state_dict() if self.replay is not None else None,
                "world_size": self.topology.world_size, **self._replay_per_rank()}

    def _replay_per_rank(self) -> dict:
        """Data-parallel runs with replay: every rank's buffer and replay stream, gathered on every
        rank (a collective: all ranks save together, rank 0 writes)."""
        if self.topology.world_size == 1 or self.replay is None:
            return {}
        mine = {"replay": self.replay.state_dict(), "generator": self.replay_generator.get_state()}
        return {"replay": None, "replay_per_rank": D.gather_objects(mine, self.topology, "gather of replay buffers")}

    def _mode_list(self) -> list:
        self._scan_modes()
        return sorted(self._modes)

    def load_state_dict(self, sd: dict) -> None:
        if sd.get("loss", self.loss_name) != self.loss_name:
            raise ValueError(f"the state was saved by a {sd['loss']!r} trainer, this one trains {self.loss_name!r}")
        from .compat import load_modules_state

        load_modules_state(self.policy, sd["policy"], "policy")
        try:
            self.optimizer.load_state_dict(sd["optimizer"])
        except (ValueError, KeyError, TypeError, RuntimeError) as e:
            raise ValueError(f"the saved optimizer state does not fit this trainer's ({type(e).__name__}: {e})") from None
        try:
            self.generator.set_state(sd["generator"])
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"the saved random generator state is damaged ({e})") from None
        self.step_count = int(sd["step"])
        self._resumed_from = self.step_count  # the next fit's progress bar says so
        modes = sd.get("modes", [])
        self._modes = set(map(tuple, modes.tolist() if isinstance(modes, torch.Tensor) else modes))
        self._pending_x, self._pending_rows = [], 0
        self.history = [dict(h) for h in sd.get("history", [])]
        self.train_seconds = float(sd.get("train_seconds", 0.0))
        self.objective.__dict__.update(sd.get("objective") or {})
        replay, per_rank = sd.get("replay"), sd.get("replay_per_rank")
        if (replay is None and per_rank is None) != (self.replay is None):
            raise ValueError("the state's replay buffer does not match this trainer's (replay_capacity differs)")
        W, saved_w = self.topology.world_size, int(sd.get("world_size", 1))
        if self.replay is not None and W != saved_w:
            # each rank's buffer holds the objects its own trajectories found: they cannot be re-split
            raise ValueError(f"the run was saved by {saved_w} process(es) with a replay buffer on each; resume it on "
                             f"{saved_w} (this is {W}). Without replay a run resumes on any number of processes.")
        if per_rank is not None:
            self.replay.load_state_dict(per_rank[self.topology.rank]["replay"])
            self.replay_generator.set_state(per_rank[self.topology.rank]["generator"])
        elif replay is not None:
            self.replay.load_state_dict(replay)

    def checkpoint(self) -> dict:
        """The checkpoint of this trainer: how to rebuild it (environment config, TrainConfig,
        policy hyperparameters, versions) and its state. A collective in data-parallel training
        (state_dict gathers the ranks' replay buffers)."""
        from ..checkpoint import FORMAT, VERSION
        from ..runtime import __version__

        try:
            env = self.env.to_config()
        except NotImplementedError:
            env = None  # gfncore.load(path, env=...) then takes the environment
        return {"format": FORMAT, "version": VERSION,
                "versions": {"gfncore": str(__version__), "torch": str(torch.__version__)},
                # what the run ran with: a resume at the same thread count continues it bit for bit
                "runtime": {"threads": torch.get_num_threads(), "device": str(self.device),
                            "world_size": self.topology.world_size},
                "env": env, "env_repr": repr(self.env), "policy": describe_policy(self.policy),
                "config": asdict(self.config), "state": self.state_dict()}

    def save(self, path: str) -> str:
        """Writes a self-describing checkpoint (environment config, TrainConfig, policy
        hyperparameters, versions, state_dict) atomically; gfncore.load(path) rebuilds the run.
        In data-parallel training every rank calls it and rank 0 alone writes."""
        from ..checkpoint import write

        ck = self.checkpoint()
        if self.is_main:
            write(path, ck)
        self.last_checkpoint = (str(path), self.step_count)
        return str(path)

    def resume(self, path: str) -> None:
        """Continues from a checkpoint written by save(): the next steps are bit for bit those the
        saved run would have taken (same thread count and device)."""
        from ..checkpoint import read
        from .compat import check_same_env

        ck = read(path)
        check_same_env(path, ck.get("env"), self.env)
        self.load_state_dict(ck["state"])
        self.last_checkpoint = (str(path), self.step_count)


_NOT_ENUMERABLE = (NotImplementedError, ValueError, MemoryError, OverflowError)
EXACT_LIMIT = 200_000  # states: above this an exact evaluation costs more than the training between two


def _small(enumerate_fn) -> bool:
    n = _count(enumerate_fn)
    return n is not None and n <= EXACT_LIMIT


def _count(enumerate_fn) -> int | None:
    try:
        return int(enumerate_fn().shape[0])
    except _NOT_ENUMERABLE:
        return None


def _plain_attributes(obj) -> dict:
    """The objective's settings and running state (e.g. ZVar's batch log Z) that are plain numbers."""
    return {k: v for k, v in vars(obj).items() if isinstance(v, (bool, int, float, str))}


def describe_policy(policy) -> dict | None:
    """The constructor arguments that rebuild an MLPPolicy (None for any other policy class)."""
    if type(policy) is not MLPPolicy:
        return None
    trunk = policy.trunk
    layers = sum(isinstance(m, torch.nn.Linear) for m in trunk.modules())
    enc = policy.context_encoder
    if enc is not None and type(enc) is not ContextScaler:
        return None  # a context encoder of the user's: gfncore.load(path, policy=...) takes the policy
    d = {"class": "MLPPolicy", "hidden": policy.pf_head.in_features, "layers": layers, "pb": policy.pb,
         "flow": bool(policy.has_flow), "context_dim": policy.context_dim, "conditioning": policy.conditioning}
    if policy.log_z_net is not None:
        d["log_z_hidden"] = policy.log_z_net[0].out_features
    if enc is not None:  # its centre and scale are buffers: the state dict restores them
        d["context_encoder"] = "ContextScaler"
    return d


def policy_for(env: Env, cfg: TrainConfig) -> MLPPolicy:
    """The MLP policy a config asks for (with a state-flow head when the loss needs one)."""
    return MLPPolicy(env, hidden=cfg.hidden, layers=cfg.layers, pb=cfg.pb, flow=cfg.loss in ("db", "subtb"))


def make_optimizer(policy, lr: float = 1e-3, lr_log_z: float = 0.1) -> torch.optim.Adam:
    """Adam over the networks (lr) and log Z (lr_log_z).

    The fused kernel where torch has one for the parameters' device: on a CPU it is ~4x faster
    than the default per-tensor loop for an MLP (one call instead of ~10 ops per tensor).
    """
    groups = [{"params": policy.network_parameters(), "lr": lr}, {"params": policy.log_z_parameters(), "lr": lr_log_z}]
    try:
        return torch.optim.Adam(groups, fused=True)
    except (RuntimeError, ValueError):  # a device or torch build without a fused Adam
        return torch.optim.Adam(groups)


def config_dict(*cfgs) -> dict:
    d = {}
    for c in cfgs:
        d.update(asdict(c))
    return d
