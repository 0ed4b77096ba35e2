"""User environments that break the contract never train silently (issue 15): check_env finds
cycles anywhere and wrong all_terminal_states; the Trainer and Sampler check the first batches of
every Python or numba environment; errors name the real cause."""
from __future__ import annotations

import pytest
import torch

import gfncore
from gfncore import sampler as sampler_module
from gfncore.envs import EnvCheckError, PythonEnv, check_env
from gfncore.envs.twins import NumbaHyperGrid, PyHyperGrid
from gfncore.nn import MLPPolicy


class Line(PythonEnv):
    """x in 0..N: action 0 adds one, action 1 stops (from x >= 1). A correct environment that
    each test below breaks in one way."""

    def __init__(self, N: int = 4, max_length: int | None = 5):
        super().__init__(state_dim=1, n_actions=2, feature_dim=N + 1, max_length=max_length)
        self.N = N

    def initial_state(self):
        return torch.zeros(1, dtype=torch.int32)

    def forward_mask(self, s):
        x = s[:, 0]
        return torch.stack([x < self.N, x >= 1], -1)

    def step(self, s, a):
        return s + 1

    def backward_mask(self, s):
        return s >= 1

    def backward_step(self, s, a):
        return s - 1

    def encode(self, s):
        return torch.nn.functional.one_hot(s[:, 0].long(), self.N + 1).float()

    def log_reward(self, x):
        return x[:, 0].double()


class TwoCycle(PythonEnv):
    """0 -> 1 <-> 2 with consistent masks: a cycle away from s0."""

    def __init__(self):
        super().__init__(state_dim=1, n_actions=3, feature_dim=3, max_length=8)

    def initial_state(self):
        return torch.zeros(1, dtype=torch.int32)

    def forward_mask(self, s):
        x = s[:, 0]
        return torch.stack([x < 2, x == 2, x >= 1], -1)

    def step(self, s, a):
        return torch.where((a == 0).unsqueeze(1), s + 1, s - 1)

    def backward_mask(self, s):
        x = s[:, 0]
        return torch.stack([x >= 1, x == 1], -1)

    def backward_step(self, s, a):
        return torch.where((a == 0).unsqueeze(1), s - 1, s + 1)

    def encode(self, s):
        return torch.nn.functional.one_hot(s[:, 0].long(), 3).float()

    def log_reward(self, x):
        return torch.zeros(x.shape[0], dtype=torch.float64)


def _fit(env, steps=2, **kw):
    torch.manual_seed(0)
    t = gfncore.Trainer(env, MLPPolicy(env, hidden=8, layers=1), loss="tb", batch_size=8, seed=0, **kw)
    t.fit(steps, progress=False, evaluate=False)
    return t


def test_the_correct_environment_trains():
    check_env(Line())
    _fit(Line())


def test_a_backward_step_that_does_not_invert_step_never_trains():
    class Bad(Line):
        def backward_step(self, s, a):
            return s.clone()

    with pytest.raises(EnvCheckError, match="backward_step"):
        check_env(Bad())
    with pytest.raises(EnvCheckError, match="backward_step: does not invert step"):
        _fit(Bad())


def test_a_numba_backward_step_that_never_writes_out_never_trains():
    class Bad(NumbaHyperGrid):
        @staticmethod
        def backward_step(p, s, a, out):
            pass

    env = Bad(2, 4)
    with pytest.raises(EnvCheckError, match="backward_step"):
        _fit(env)


def test_a_two_cycle_away_from_s0_is_found():
    with pytest.raises(EnvCheckError, match="cycle"):
        check_env(TwoCycle())
    with pytest.raises(EnvCheckError, match="cycle|twice"):
        _fit(TwoCycle(), steps=5)


def test_check_env_compares_all_terminal_states():
    class Missing(Line):
        def all_terminal_states(self):
            return torch.tensor([[1], [2], [3]], dtype=torch.int32)

    class Extra(Line):
        def all_terminal_states(self):
            return torch.tensor([[1], [2], [3], [4], [7]], dtype=torch.int32)

    with pytest.raises(EnvCheckError, match=r"all_terminal_states: misses \[4\]"):
        check_env(Missing())
    with pytest.raises(EnvCheckError, match=r"all_terminal_states: lists \[7\]"):
        check_env(Extra())


def test_a_step_that_mutates_its_input_is_named():
    class Mutating(Line):
        def step(self, s, a):
            s += 1
            return s

    with pytest.raises((EnvCheckError, ValueError), match="step: modifies its input in place"):
        check_env(Mutating())
    with pytest.raises((EnvCheckError, ValueError), match="modifies its input in place"):
        _fit(Mutating())


def test_a_trajectory_without_end_raises_naming_the_environment(monkeypatch):
    class Endless(Line):
        def __init__(self):
            PythonEnv.__init__(self, state_dim=1, n_actions=2, feature_dim=1, max_length=None)
            self.N = 10**6

        def forward_mask(self, s):
            return torch.stack([torch.ones_like(s[:, 0], dtype=torch.bool),
                                torch.zeros_like(s[:, 0], dtype=torch.bool)], -1)

        def encode(self, s):
            return s.float()

    monkeypatch.setattr(sampler_module, "DEFAULT_MAX_LENGTH", 50)
    env = Endless()
    with pytest.raises(ValueError, match="Endless.*longer than 50 steps"):
        _fit(env)


@pytest.mark.parametrize("make", [
    lambda env: (lambda f: [[0.0] * env.n_actions] * f.shape[0]),
    lambda env: (lambda f: torch.zeros(f.shape[0], env.n_actions, dtype=torch.int64)),
])
def test_a_policy_returning_a_list_or_integers_is_named(make):
    class Policy(torch.nn.Module):  # a user's own policy: only forward_logits
        def __init__(self, logits):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.logits = logits

        def forward_logits(self, f, *context):
            return self.logits(f)

    for env in (PyHyperGrid(2, 4), gfncore.envs.HyperGrid(2, 4)):  # the generic and the compiled route
        with pytest.raises(TypeError, match="forward_logits returned"):
            gfncore.Sampler(env, Policy(make(env))).sample(4, seed=0)


def test_nan_features_are_blamed_on_encode():
    class NaNEncode(Line):
        def encode(self, s):
            f = super().encode(s)
            f[s[:, 0] == 2] = float("nan")
            return f

    with pytest.raises((ValueError, EnvCheckError), match="encode"):
        _fit(NaNEncode())


def test_a_numba_method_capturing_a_dict_is_named():
    TABLE = {0: 1}

    class Captures(NumbaHyperGrid):
        @staticmethod
        def step(p, s, a, out):
            for i in range(p[0]):
                out[i] = s[i]
            out[a] += TABLE[0]

    with pytest.raises(TypeError, match="captures the closure variable 'TABLE', a dict"):
        Captures(2, 4)


def test_exact_metrics_without_max_length_or_with_a_bad_enumeration():
    env = Line(max_length=None)
    policy = MLPPolicy(env, hidden=8, layers=1)
    ev = gfncore.metrics.evaluate(env, policy, 0.0)
    assert 0 <= ev["l1"] <= 2

    class NoList(Line):
        def all_terminal_states(self):
            return None

    with pytest.raises(TypeError, match="all_terminal_states"):
        gfncore.metrics.evaluate(NoList(), policy, 0.0)


def test_the_contract_check_stops_after_the_first_batches(monkeypatch):
    calls = []
    real = sampler_module.check_trajectories
    monkeypatch.setattr(sampler_module, "check_trajectories", lambda *a: calls.append(1) or real(*a))
    _fit(Line(), steps=6)
    assert len(calls) == sampler_module.CONTRACT_BATCHES
    calls.clear()
    _fit(gfncore.envs.HyperGrid(2, 4), steps=3)  # compiled environments are checked by their tests
    assert calls == []


def test_subtrajectory_balance_refuses_a_subnormal_lambda():
    with pytest.raises(ValueError, match="smallest normal"):
        gfncore.get_loss("subtb", lam=1e-320)
    _fit(Line(), loss_options={"lam": 1e-300}) if False else None  # a normal tiny lambda trains (below)
    env = PyHyperGrid(2, 4)
    torch.manual_seed(0)
    t = gfncore.Trainer(env, MLPPolicy(env, hidden=8, layers=1, flow=True), loss="subtb", batch_size=8, seed=0,
                        loss_options={"lam": 1e-300})
    t.fit(1, progress=False, evaluate=False)


def test_int64_states_are_converted_or_refused():
    env = gfncore.envs.HyperGrid(2, 4)
    s32 = env.initial_states(3)
    mask = env.forward_mask(s32)
    logits = torch.zeros(3, env.n_actions)
    a = gfncore.ops.rollout_step(env, s32, mask, logits, seed=1)
    b = gfncore.ops.rollout_step(env, s32.to(torch.int64), mask, logits, seed=1)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    big = s32.to(torch.int64)
    big[0, 0] = 2**40
    with pytest.raises(ValueError, match="outside int32"):
        gfncore.ops.rollout_step(env, big, mask, logits, seed=1)
