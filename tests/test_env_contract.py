"""User environments that break the contract: every way a Python or numba environment can go
wrong ends in a clear error naming the method and the first bad state, never a crash or silent
wrong training."""
from __future__ import annotations

import math

import pytest
import torch

import gfncore as gfn


class Chain(gfn.envs.PythonEnv):
    """A counter 0..N: action 0 increments, action 1 stops (legal anywhere); R(k) = exp(k)."""

    def __init__(self, N: int = 4):
        super().__init__(state_dim=1, n_actions=2, max_length=N + 1, name="chain")
        self.N = N

    def initial_state(self):
        return torch.zeros(1, dtype=torch.int32)

    def forward_mask(self, s):
        return torch.cat([s < self.N, torch.ones_like(s, dtype=torch.bool)], 1)

    def step(self, s, a):
        return s + 1

    def backward_mask(self, s):
        return s > 0

    def backward_step(self, s, a):
        return s - 1

    def log_reward(self, x):
        return x[:, 0].to(torch.float64)


def _policy(env):
    torch.manual_seed(0)
    return gfn.nn.MLPPolicy(env, hidden=8, layers=1)


def _sample(env, n=16):
    return gfn.Sampler(env, _policy(env)).sample(n, seed=0)


def test_the_correct_chain_passes():
    env = Chain()
    assert gfn.envs.check_env(env)["states"] == 5
    traj = _sample(env)
    torch.testing.assert_close(traj.log_reward.double(), traj.terminal_states[:, 0].double())
    assert env.feature_dim == 1  # default encoding: the state as floats


BROKEN = {
    "mask_shape": ("forward_mask", lambda self, s: torch.ones(s.shape[0], 3, dtype=torch.bool),
                   "forward_mask: returned shape \\[\\d+, 3\\], expected \\[\\d+, 2\\]"),
    "mask_dtype": ("forward_mask", lambda self, s: torch.ones(s.shape[0], 2, dtype=torch.int64),
                   "forward_mask: returned dtype torch.int64, expected a bool tensor"),
    "no_legal_action": ("forward_mask", lambda self, s: torch.cat([s < self.N, s < 2], 1),
                        "forward_mask: state \\[4\\] \\(row \\d+\\) has no legal action"),
    "step_dtype": ("step", lambda self, s, a: (s + 1).float(), "step: returned dtype torch.float32"),
    "step_shape": ("step", lambda self, s, a: (s + 1)[:, 0], "step: returned shape"),
    "cycle": ("step", lambda self, s, a: s.clone(), "step: action 0 returned the same state \\[0\\].*a cycle"),
    "reward_nan": ("log_reward", lambda self, x: torch.where(x[:, 0] >= 1, math.nan, 0.0).double(),
                   "log_reward returned nan for object \\d+ \\(\\[[1-4]\\]\\)"),
    "reward_inf": ("log_reward", lambda self, x: torch.where(x[:, 0] >= 1, math.inf, 0.0).double(),
                   "log_reward returned inf for object"),
    "reward_shape": ("log_reward", lambda self, x: torch.zeros(x.shape[0], 1, dtype=torch.float64),
                     "log_reward must return shape"),
    "unmarked_move": ("backward_mask", lambda self, s: torch.zeros_like(s, dtype=torch.bool),
                      "backward_mask: the move \\[\\d\\] --0--> \\[\\d\\] is not marked"),
    "encode_rows": ("encode", lambda self, s: torch.zeros(1, 1), "encode: must return a float tensor"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_python_env_fails_clearly_when_sampling(case):
    method, fn, match = BROKEN[case]
    cls = type(f"Broken_{case}", (Chain,), {method: fn})
    env = cls()
    if case == "no_legal_action":
        # reached only at the top of the chain: a policy that never stops walks there
        policy = _policy(env)
        with torch.no_grad():
            policy.pf_head.bias.copy_(torch.tensor([0.0, -50.0]))
        with pytest.raises(ValueError, match=match):
            gfn.Sampler(env, policy).sample(8, seed=0)
        return
    with pytest.raises((ValueError, TypeError), match=match):
        _sample(env)


@pytest.mark.parametrize("case", ["cycle", "reward_nan", "unmarked_move", "no_legal_action", "mask_shape"])
def test_check_env_names_the_method(case):
    method, fn, _ = BROKEN[case]
    env = type(f"Broken_{case}", (Chain,), {method: fn})()
    with pytest.raises((gfn.envs.EnvCheckError, ValueError, TypeError), match=method):
        gfn.envs.check_env(env)


def test_backward_step_that_does_not_invert_step():
    env = type("BadBack", (Chain,), {"backward_step": lambda self, s, a: s * 0})()
    with pytest.raises(gfn.envs.EnvCheckError, match="backward_step: does not invert step"):
        gfn.envs.check_env(env)
    # backward sampling (replay) refuses it rather than training on impossible trajectories
    with pytest.raises(ValueError, match="backward_step does not invert step"):
        gfn.BackwardSampler(env).sample(torch.tensor([[3]], dtype=torch.int32), seed=0)


def test_a_longer_cycle_hits_max_length():
    class Loop(Chain):
        def forward_mask(self, s):
            return torch.cat([torch.ones_like(s, dtype=torch.bool), torch.zeros_like(s, dtype=torch.bool)], 1)

        def step(self, s, a):
            return (s + 1) % 3  # 0 -> 1 -> 2 -> 0: a cycle of length 3

    with pytest.raises(ValueError, match="longer than max_length"):
        _sample(Loop())


def test_context_of_the_wrong_width():
    class CondChain(Chain):
        def __init__(self):
            super().__init__()
            self.context_dim = 2

        def log_reward(self, x, c):
            return x[:, 0].double() * c[:, 0]

    env = CondChain()
    with pytest.raises(ValueError, match="context must have shape \\[3, 2\\]"):
        env.log_reward(torch.zeros(3, 1, dtype=torch.int32), torch.zeros(3, 1))
    policy = _policy(env)
    with pytest.raises(ValueError, match="context must have shape"):
        gfn.Sampler(env, policy).sample(3, seed=0, context=torch.zeros(3, 5))


def test_python_env_constructor_checks():
    with pytest.raises(ValueError, match="n_actions must be an int >= 2"):
        gfn.envs.PythonEnv(state_dim=1, n_actions=1)
    with pytest.raises(ValueError, match="state_dim"):
        gfn.envs.PythonEnv(state_dim=0, n_actions=2)
    with pytest.raises(ValueError, match="max_length"):
        gfn.envs.PythonEnv(state_dim=1, n_actions=2, max_length=2.5)


# ---------------------------------------------------------------------------------------------
# numba
class NumbaChain(gfn.envs.NumbaEnv):
    def __init__(self, N: int = 4):
        super().__init__(state_dim=1, n_actions=2, feature_dim=1, max_length=N + 1, params=(N,))

    @staticmethod
    def initial_state(p, s):
        s[0] = 0

    @staticmethod
    def forward_mask(p, s, mask):
        mask[0] = s[0] < p[0]
        mask[1] = True

    @staticmethod
    def step(p, s, a, out):
        out[0] = s[0] + 1

    @staticmethod
    def backward_mask(p, s, mask):
        mask[0] = s[0] > 0

    @staticmethod
    def backward_step(p, s, b, out):
        out[0] = s[0] - 1

    @staticmethod
    def encode(p, s, f):
        f[0] = s[0]

    @staticmethod
    def log_reward(p, x):
        return float(x[0])


def test_numba_chain_agrees_with_the_python_chain():
    env, py = NumbaChain(), Chain()
    gfn.envs.check_env(env)
    a, b = _sample(env, 64), _sample(py, 64)
    assert torch.equal(a.states, b.states) and torch.equal(a.actions, b.actions)


def test_numba_function_that_does_not_compile_names_the_method():
    class Bad(NumbaChain):
        @staticmethod
        def encode(p, s, f):
            f[0] = s.no_such_attribute

    with pytest.raises(TypeError, match="(?s)Bad.encode: numba could not compile it:.*no_such_attribute"):
        Bad()


def test_numba_function_with_wrong_arguments():
    class Bad(NumbaChain):
        @staticmethod
        def step(p, s, out):
            out[0] = s[0] + 1

    with pytest.raises(TypeError, match="Bad.step must take \\(p, s, a, out\\)"):
        Bad()


def test_numba_runtime_error_is_reported_with_the_state():
    class Bad(NumbaChain):
        @staticmethod
        def step(p, s, a, out):
            out[s[0] + 1] = 7  # out of bounds once s[0] >= 0: boundscheck catches it

    env = Bad()
    with pytest.raises(ValueError, match="Bad.step raised IndexError.*at state \\[0\\]"):
        env.step(torch.zeros(2, 1, dtype=torch.int32), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="step"):
        _sample(env)


def test_numba_unmarked_move_is_caught_while_sampling():
    class Bad(NumbaChain):
        @staticmethod
        def backward_mask(p, s, mask):
            mask[0] = False

    with pytest.raises(ValueError, match="backward_mask does not mark the move"):
        _sample(Bad())


def test_numba_needs_every_method_and_a_reward():
    class Missing(gfn.envs.NumbaEnv):
        def __init__(self):
            super().__init__(state_dim=1, n_actions=2, feature_dim=1, max_length=3)

    with pytest.raises(TypeError, match="must define the single-state method"):
        Missing()
