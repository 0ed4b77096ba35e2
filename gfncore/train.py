"""Trainer: on-policy (or exploratory) GFlowNet training with Adam, a separate learning rate for
log Z, progress display, metrics and checkpoints."""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field

import torch

from . import distributed as D
from . import metrics as M
from .envs.base import Env
from .losses import get_loss
from .nn import MLPPolicy
from .replay import ReplayBuffer
from .sampler import Sampler
from .trajectories import Trajectories


@dataclass
class TrainConfig:
    """Training settings; the CLI's flags are generated from these fields."""

    loss: str = field(default="tb", metadata={"help": "objective: tb, db, subtb, fm, zvar or mdb"})
    lam: float = field(default=0.9, metadata={"help": "SubTB lambda: weight lambda^(k-j) of sub-trajectory j..k"})
    importance_weights: bool = field(default=False, metadata={
        "help": "weight exploratory samples by P_F(tau)/P_behaviour(tau) (self-normalised)"})
    replay_capacity: int = field(default=0, metadata={"help": "replay buffer size (0: no replay)"})
    replay_fraction: float = field(default=0.5, metadata={"help": "share of each batch drawn from the replay buffer"})
    prioritized: bool = field(default=False, metadata={"help": "replay objects with probability proportional to R(x)"})
    batch_size: int = field(default=64, metadata={"help": "trajectories per step"})
    steps: int = field(default=1000, metadata={"help": "training steps"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate of the networks"})
    lr_log_z: float = field(default=0.1, metadata={"help": "Adam learning rate of log Z"})
    hidden: int = field(default=256, metadata={"help": "MLP width"})
    layers: int = field(default=2, metadata={"help": "MLP hidden layers"})
    pb: str = field(default="uniform", metadata={"help": "backward policy: uniform, learned or shared"})
    temperature: float = field(default=1.0, metadata={"help": "behaviour-policy temperature"})
    epsilon: float = field(default=0.0, metadata={"help": "behaviour-policy epsilon-uniform mix"})
    seed: int = field(default=0, metadata={"help": "seed of the network init and of every rollout"})
    eval_every: int = field(default=0, metadata={"help": "steps between exact evaluations (0: 10 per run)"})
    threads: int = field(default=0, metadata={"help": "torch and kernel threads (0: default)"})


class Trainer:
    """Trains a policy on an environment with a GFlowNet objective.

    >>> trainer = Trainer(env, policy, loss="tb", batch_size=64)
    >>> trainer.fit(steps=1000)
    >>> x = trainer.sample(10_000)
    """

    def __init__(self, env: Env, policy, loss: str = "tb", batch_size: int = 64, lr: float = 1e-3,
                 lr_log_z: float = 0.1, temperature: float = 1.0, epsilon: float = 0.0, seed: int = 0,
                 loss_options: dict | None = None, replay: ReplayBuffer | None = None, replay_fraction: float = 0.5,
                 context_sampler=None, trajectories_per_context: int = 1, distributed: bool | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0.0 <= replay_fraction < 1.0:
            raise ValueError(f"replay_fraction must be in [0, 1), got {replay_fraction}")
        self.env, self.policy = env, policy
        self.loss_name = loss
        self.objective = self.loss_fn = get_loss(loss, **(loss_options or {}))
        self.objective.check_policy(policy)
        self.batch_size = int(batch_size)
        self.replay, self.replay_fraction = replay, float(replay_fraction)
        self.train_seconds = 0.0
        if trajectories_per_context < 1 or batch_size % trajectories_per_context:
            raise ValueError(f"trajectories_per_context must be >= 1 and divide batch_size ({batch_size}), got "
                             f"{trajectories_per_context}")
        if env.context_dim and context_sampler is None:
            raise ValueError(f"{env.name} is conditional: give the Trainer a context_sampler(n, generator) -> "
                             f"[n, {env.context_dim}] (the training distribution of contexts)")
        self.trajectories_per_context = int(trajectories_per_context)
        self.sampler = Sampler(env, policy, temperature=temperature, epsilon=epsilon, context_sampler=context_sampler)
        self._last_context = None
        self.optimizer = make_optimizer(policy, lr, lr_log_z)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.step_count = 0
        self.history: list[dict] = []
        self._modes: set[tuple] = set()
        self._pending_x: list[torch.Tensor] = []  # terminal states of batches not yet scanned for modes
        self._pending_rows = 0
        self._setup_distributed(distributed, lr, lr_log_z, temperature, epsilon, seed, loss_options)

    def _setup_distributed(self, distributed, lr, lr_log_z, temperature, epsilon, seed, loss_options) -> None:
        """Data-parallel training when a torch.distributed process group is initialised (or
        distributed=True, which initialises one from torchrun's environment): see gfncore.distributed."""
        if distributed is None:
            distributed = D.active()
        self.topology = D.init() if distributed else D.Topology()
        self._reduce = None
        if self.topology.world_size == 1:
            return
        if self.objective.importance_weights:
            raise ValueError("importance_weights normalise over the whole batch; they are not supported in "
                             "data-parallel training")
        if self.batch_size < self.topology.world_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be at least the world size "
                             f"({self.topology.world_size}): every rank needs a share of the batch")
        self._reduce = D.Reducer(self.topology)
        if "OMP_NUM_THREADS" not in os.environ:  # torchrun sets it to 1 when it starts several ranks
            from . import _C

            threads = D.default_threads(self.topology)
            torch.set_num_threads(threads)
            _C.set_num_threads(threads)
        # each rank draws replayed objects from its own buffer with its own generator
        self.replay_generator = torch.Generator().manual_seed(int(seed) + 1_000_003 * (self.topology.rank + 1))
        try:
            env_desc = self.env.to_config()
        except NotImplementedError:
            env_desc = repr(self.env)
        D.broadcast_parameters(self.policy, self.topology)
        D.check_same_config({
            "env": env_desc, "loss": self.loss_name, "loss_options": loss_options or {}, "batch_size": self.batch_size,
            "lr": lr, "lr_log_z": lr_log_z, "temperature": temperature, "epsilon": epsilon, "seed": seed,
            "replay": None if self.replay is None else [self.replay.capacity, self.replay.prioritized,
                                                        self.replay.alpha, self.replay_fraction],
            "parameters": [list(p.shape) for p in self.policy.parameters()],
        }, self.topology)

    @property
    def is_main(self) -> bool:
        """Whether this process writes outputs (rank 0, or the only process)."""
        return self.topology.is_main

    @classmethod
    def from_config(cls, env: Env, policy, cfg: TrainConfig) -> "Trainer":
        opts = {"importance_weights": cfg.importance_weights}
        if cfg.loss == "subtb":
            opts["lam"] = cfg.lam
        replay = ReplayBuffer(env, cfg.replay_capacity, prioritized=cfg.prioritized) if cfg.replay_capacity > 0 else None
        return cls(env, policy, loss=cfg.loss, batch_size=cfg.batch_size, lr=cfg.lr, lr_log_z=cfg.lr_log_z,
                   temperature=cfg.temperature, epsilon=cfg.epsilon, seed=cfg.seed, loss_options=opts,
                   replay=replay, replay_fraction=cfg.replay_fraction)

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

    def sample_trajectories(self, n: int | None = None) -> Trajectories:
        """A batch of n (default batch_size) fresh trajectories; in data-parallel training, this
        rank's share of them (the same draws as one process sampling all n)."""
        n = n or self.batch_size
        first, n_local = D.shard(n, self.topology)
        if not self.env.context_dim:
            return self.sampler.sample(n_local, generator=self.generator, first_id=first)
        k = self.trajectories_per_context if n % self.trajectories_per_context == 0 else 1
        c = self.sampler.contexts(n // k, self.generator).repeat_interleave(k, 0)[first:first + n_local]
        self._last_context = c
        return self.sampler.sample(n_local, generator=self.generator, context=c, first_id=first)

    def _batch(self) -> Trajectories:
        if self.replay is None or len(self.replay) == 0:
            return self.sample_trajectories()
        k = int(round(self.batch_size * self.replay_fraction))
        fresh = self.sample_trajectories(self.batch_size - k)
        k_local = D.shard(k, self.topology)[1]
        if k_local == 0:
            return fresh
        gen = self.generator if self.topology.world_size == 1 else self.replay_generator
        old = self.replay.sample(k_local, self.policy, generator=gen).to(fresh.states.device)
        return Trajectories.cat([fresh, old])

    def train_step(self) -> dict:
        """One step: sample a batch (plus replayed objects, re-expanded backward), recompute
        log-probs in one forward, fused loss, Adam."""
        t0 = time.perf_counter()
        traj = self._batch()
        if self._reduce is None:
            loss = self.loss_fn(self.env, self.policy, traj)
        else:
            loss = self.loss_fn(self.env, self.policy, traj, reduce=self._reduce)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self._reduce is not None:
            # each rank's loss is its share of the global loss: gradients and values add up
            loss = D.sync_gradients(list(self.policy.parameters()), self.topology, extra=loss.detach())[0]
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
        return {"step": self.step_count, "loss": float(loss.detach())}

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

    def evaluate(self, n_samples: int = 0, context=None) -> dict:
        """Exact L1 / JSD / log Z error on enumerable environments (+ empirical L1 from samples),
        at one context for a conditional GFlowNet."""
        if self.env.context_dim and context is None:
            raise ValueError("evaluate a conditional GFlowNet at a context: trainer.evaluate(context=c)")
        x = self.sample(n_samples, context=context) if n_samples else None
        log_z = self.log_z if context is None else self.log_z_at(context)
        out = M.evaluate(self.env, self.policy, log_z, x, context=context)
        out["modes_found_train"] = self.modes_found
        return out

    def fit(self, steps: int, *, progress: bool = True, eval_every: int = 0, log_path: str | None = None,
            evaluate: bool | None = None) -> list[dict]:
        """Train for `steps` steps with a progress bar showing loss and log Z. With eval_every > 0
        (and an enumerable environment) it evaluates exactly and appends to history / log_path."""
        from tqdm.auto import tqdm

        can_eval = evaluate if evaluate is not None else (_enumerable(self.env) and not self.env.context_dim)
        can_eval = can_eval and self.is_main  # rank 0 evaluates and writes; the others only train
        bar = tqdm(total=steps, disable=not (progress and self.is_main), desc=f"{self.env.name} {self.loss_name}",
                   dynamic_ncols=True)
        log = open(log_path, "a") if log_path and self.is_main else None
        t0 = time.perf_counter()
        try:
            for i in range(steps):
                rec = self.train_step()
                if i % 10 == 0 or i == steps - 1:
                    rec["log_z"] = self.log_z
                    bar.set_postfix(loss=f"{rec['loss']:.3g}", log_z=f"{rec['log_z']:.3f}", refresh=False)
                bar.update(1)
                if can_eval and eval_every and (self.step_count % eval_every == 0 or i == steps - 1):
                    ev = self.evaluate()
                    ev.update(rec, log_z=self.log_z, seconds=time.perf_counter() - t0)
                    self.history.append(ev)
                    if log:
                        log.write(json.dumps(ev) + "\n")
                        log.flush()
                    bar.set_postfix(loss=f"{rec['loss']:.3g}", log_z=f"{ev['log_z']:.3f}", l1=f"{ev['l1']:.3f}")
        finally:
            bar.close()
            if log:
                log.close()
        return self.history

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, context=None) -> torch.Tensor:
        """n i.i.d. finished objects x from the learned forward policy (no exploration), at one
        context c [C] for a conditional GFlowNet."""
        ctx = None
        if context is not None:
            ctx = torch.as_tensor(context, dtype=torch.get_default_dtype()).reshape(1, -1).expand(n, -1)
        traj = self.sampler.sample(n, generator=self.generator, temperature=temperature, epsilon=0.0, context=ctx)
        return traj.terminal_states

    def state_dict(self) -> dict:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "step": self.step_count, "modes": self._mode_list(),
                "loss": self.loss_name}

    def _mode_list(self) -> list:
        self._scan_modes()
        return sorted(self._modes)

    def load_state_dict(self, sd: dict) -> None:
        self.policy.load_state_dict(sd["policy"])
        self.optimizer.load_state_dict(sd["optimizer"])
        self.generator.set_state(sd["generator"])
        self.step_count = int(sd["step"])
        self._modes = set(map(tuple, sd.get("modes", [])))
        self._pending_x, self._pending_rows = [], 0

    def save(self, path: str) -> None:
        """Checkpoint policy, optimizer, RNG and step count; `resume` continues bit-for-bit."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        torch.save(self.state_dict(), path)

    def resume(self, path: str) -> None:
        self.load_state_dict(torch.load(path, weights_only=False))


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


def _enumerable(env: Env) -> bool:
    try:
        return env.all_terminal_states().shape[0] <= 200_000
    except (NotImplementedError, ValueError):
        return False


def config_dict(*cfgs) -> dict:
    d = {}
    for c in cfgs:
        d.update(asdict(c))
    return d
