"""The benchmark workloads, shared by the pytest-benchmark suites and report.py.

HyperGrid 4-D, height 8 (R0 = 0.1), MLPPolicy 256 x 2, on-policy trajectory balance, Adam. Three
training pipelines build the same network with the same seed and the same optimizer settings:

- gfncore: ``gfncore.Trainer.train_step``;
- plain: ``bench.torch_pipeline.TorchPipeline`` (Python rollout loop, torch sampling, plain-torch TB);
- floor: the bare neural-network work of a gfncore step and nothing else: the rollout's policy
  forwards (the same active batch sizes, replayed on random features, no grad), one batched
  forward + backward over the T packed rows, and the Adam step.
"""
from __future__ import annotations

import torch

import gfncore as gfn
from gfncore.losses import trajectory_balance_loss

from .torch_pipeline import TorchHyperGrid, TorchPipeline

NDIM, HEIGHT, R0 = 4, 8, 0.1
HIDDEN, LAYERS = 256, 2
LR, LR_LOG_Z = 1e-3, 0.1


ROUTES = ("cpp", "numba", "python")


def make_env(route: str = "cpp"):
    """The benchmark HyperGrid through one of the three environment routes: the C++ struct, the
    numba callbacks or the batched-torch PythonEnv (the same state space, reward and draws)."""
    if route == "cpp":
        return gfn.envs.HyperGrid(ndim=NDIM, height=HEIGHT, R0=R0)
    from gfncore.envs.twins import NumbaHyperGrid, PyHyperGrid

    if route == "numba":
        return NumbaHyperGrid(ndim=NDIM, height=HEIGHT, R0=R0)
    if route == "python":
        return PyHyperGrid(ndim=NDIM, height=HEIGHT, R0=R0)
    raise ValueError(f"unknown route {route!r}; choose one of {ROUTES}")


def make_policy(env, seed: int = 0, flow: bool = False) -> gfn.nn.MLPPolicy:
    torch.manual_seed(seed)
    return gfn.nn.MLPPolicy(env, hidden=HIDDEN, layers=LAYERS, flow=flow)


def make_optimizer(policy) -> torch.optim.Optimizer:
    # the Trainer's own optimizer construction, so every pipeline runs the same Adam
    return gfn.train.make_optimizer(policy, LR, LR_LOG_Z)


def active_sizes(traj) -> list[int]:
    """Rows the policy saw at each rollout step: #trajectories still running at step t."""
    lengths = traj.lengths
    counts = torch.bincount(lengths)  # counts[L] = trajectories of length L
    alive = counts.flip(0).cumsum(0).flip(0)  # alive[t] = #(length >= t)
    return alive[1:].tolist()  # step t (0-based) sees the trajectories with length > t


# -- gfncore --------------------------------------------------------------------------------------
class GfncorePipeline:
    """recompute=True: the path before gfncore.onpolicy (the loss recomputes the rollout's
    forwards), kept to measure the two side by side."""

    def __init__(self, batch_size: int, seed: int = 0, loss: str = "tb", route: str = "cpp", recompute: bool = False):
        self.env = make_env(route)
        self.policy = make_policy(self.env, seed, flow=loss in ("db", "subtb"))
        self.trainer = gfn.Trainer(self.env, self.policy, loss=loss, batch_size=batch_size, lr=LR,
                                   lr_log_z=LR_LOG_Z, seed=seed)
        self.recorded: list = []
        self._record = False
        sample = self.trainer.sampler.sample

        def recording_sample(*a, **k):  # keeps a reference to each batch; no work in the timed step
            if recompute:
                k["keep_activations"] = False
            traj = sample(*a, **k)
            if self._record:
                self.recorded.append(traj)
            return traj

        self.trainer.sampler.sample = recording_sample

    def step(self) -> None:
        self.trainer.train_step()

    def record(self, on: bool) -> None:
        self._record = on

    def take_recorded(self) -> list[tuple[list[int], int]]:
        out = [(active_sizes(t), t.T) for t in self.recorded]
        self.recorded = []
        return out

    def check(self) -> None:
        """Valid trajectories, finite loss, compiled path == generic op path for the same seed."""
        env, sampler = self.env, self.trainer.sampler
        a = sampler.sample(64, seed=1234)
        b = gfn.Sampler(make_env("cpp"), self.policy).sample(64, seed=1234, compiled_path=False)
        for name in ("states", "actions", "offsets", "mask", "features"):
            assert torch.equal(getattr(a, name), getattr(b, name)), f"compiled and generic samples differ in {name}"
        assert torch.allclose(a.log_prob, b.log_prob, atol=1e-6), "compiled and generic log_prob differ"
        assert torch.allclose(a.log_reward, b.log_reward), "compiled and generic log_reward differ"
        check_hypergrid_trajectories(make_env("cpp"), a)
        loss = trajectory_balance_loss(env, self.policy, a)
        assert torch.isfinite(loss), "gfncore loss is not finite"


def check_hypergrid_trajectories(env, traj) -> None:
    ref = env.reference()
    s = traj.states
    assert bool(ref.valid(s).all()), "state outside the grid"
    assert int(traj.offsets[0]) == 0 and int(traj.offsets[-1]) == traj.T and bool((traj.lengths >= 1).all())
    stop = traj.is_stop
    assert bool((traj.actions[stop] == env.stop_action).all()), "last row is not the stop row"
    assert bool((traj.actions[~stop] < env.stop_action).all()), "stop inside a trajectory"
    assert bool((s[traj.offsets[:-1]] == 0).all()), "trajectory does not start at s0"
    move = (~stop).nonzero().squeeze(1)
    assert torch.equal(ref.step(s[move], traj.actions[move]).to(s.dtype), s[move + 1]), "rows do not chain"
    assert torch.equal(traj.features, ref.encode(s)) and torch.equal(traj.mask, ref.forward_mask(s))
    assert torch.allclose(traj.log_reward.double(), ref.log_reward(traj.terminal_states).double(), atol=1e-6)


# -- plain PyTorch --------------------------------------------------------------------------------
class PlainPipeline:
    def __init__(self, batch_size: int, seed: int = 0):
        env = make_env()
        self.policy = make_policy(env, seed)
        self.pipe = TorchPipeline(TorchHyperGrid(NDIM, HEIGHT, R0), self.policy, make_optimizer(self.policy), batch_size,
                                  torch.Generator().manual_seed(seed))

    def step(self) -> None:
        self.pipe.train_step()

    def check(self) -> None:
        traj = self.pipe.rollout(64)
        self.pipe.check(traj)
        assert torch.isfinite(self.pipe.loss(traj)), "plain-PyTorch loss is not finite"


# -- neural-network floor -------------------------------------------------------------------------
class FloorPipeline:
    """Replays recorded (active batch sizes, T) of gfncore steps through the bare network work."""

    def __init__(self, batch_size: int, seed: int = 0, env=None):
        env = make_env("cpp") if env is None else env
        self.policy = make_policy(env, seed)
        self.optimizer = make_optimizer(self.policy)
        cap = batch_size * env.max_length
        g = torch.Generator().manual_seed(seed + 1)
        self.features = torch.rand(cap, env.feature_dim, generator=g)
        self.grad_weights = torch.randn(cap, env.n_actions, generator=g) / cap
        self.schedule: list[tuple[list[int], int]] = []
        self._i = 0

    def set_schedule(self, schedule: list[tuple[list[int], int]]) -> None:
        assert schedule, "the floor needs recorded gfncore rollouts to replay"
        self.schedule, self._i = schedule, 0

    def step(self) -> None:
        sizes, T = self.schedule[self._i % len(self.schedule)]
        self._i += 1
        policy, feats = self.policy, self.features
        with torch.no_grad():
            for m in sizes:
                policy.forward_logits(feats[:m])
        out = policy(feats[:T])
        loss = (out.pf_logits * self.grad_weights[:T]).sum() + policy.log_z
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def check(self) -> None:
        assert self.schedule and all(sum(s) == T for s, T in self.schedule), "replayed sizes must add up to T"


# -- env-only rollouts (uniform policy, no network) -----------------------------------------------
class UniformPolicy(torch.nn.Module):
    """logits = 0 over every action: the masked softmax is uniform over the legal actions."""

    def __init__(self, n_actions: int):
        super().__init__()
        self.n_actions = n_actions

    def forward_logits(self, features: torch.Tensor) -> torch.Tensor:
        return features.new_zeros(features.shape[0], self.n_actions)


class GfncoreRollout:
    def __init__(self, batch_size: int, seed: int = 0, route: str = "cpp"):
        self.env = make_env(route)
        self.sampler = gfn.Sampler(self.env, UniformPolicy(self.env.n_actions))
        self.n = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def step(self) -> None:
        self.sampler.sample(self.n, generator=self.generator)

    def check(self) -> None:
        a = self.sampler.sample(64, seed=99)
        b = gfn.Sampler(make_env("cpp"), self.sampler.policy).sample(64, seed=99, compiled_path=False)
        assert torch.equal(a.states, b.states) and torch.equal(a.offsets, b.offsets), "routes draw differently"
        check_hypergrid_trajectories(make_env("cpp"), a)


class PlainRollout:
    def __init__(self, batch_size: int, seed: int = 0):
        env = TorchHyperGrid(NDIM, HEIGHT, R0)
        zeros = UniformPolicy(env.n_actions).forward_logits
        self.pipe = TorchPipeline(env, None, None, batch_size, torch.Generator().manual_seed(seed))
        self._logits = zeros
        self.n = batch_size

    def step(self) -> None:
        self.pipe.rollout(self.n, forward_logits=self._logits)

    def check(self) -> None:
        self.pipe.check(self.pipe.rollout(64, forward_logits=self._logits))
