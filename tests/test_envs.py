"""HyperGrid: compiled queries against the plain-PyTorch twin, enumeration, rewards, log Z, and
bad input."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from conftest import brute_force_log_z, cpu_and_cuda, hypergrid_reward

import gfncore
from gfncore.envs import HyperGrid

GRIDS = [(1, 2), (1, 7), (2, 3), (2, 8), (3, 5), (4, 4)]


def _random_states(env, n, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, env.height, (n, env.ndim), generator=gen, dtype=torch.int32)


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("ndim,height", GRIDS)
@pytest.mark.parametrize("n", [0, 1, 77])
def test_queries_match_reference(ndim, height, n, device):
    env = HyperGrid(ndim, height, R0=0.01, R1=0.3, R2=1.7)
    ref = env.reference()
    s = _random_states(env, n, seed=ndim * 100 + height + n).to(device)
    for q in ("forward_mask", "backward_mask", "n_parents", "is_initial", "encode", "log_reward"):
        got, want = getattr(env, q)(s), getattr(ref, q)(s.cpu())
        assert got.dtype == want.dtype and got.shape == want.shape, q
        assert torch.equal(got.cpu(), want), q
    # forward steps with legal actions, backward steps with legal backward actions
    gen = torch.Generator().manual_seed(n)
    fm = ref.forward_mask(s.cpu())
    a = torch.multinomial(fm.double(), 1, generator=gen).squeeze(-1) if n else torch.zeros(0, dtype=torch.int64)
    got = env.step(s, a.to(device)).cpu()
    move = a != env.stop_action  # a Python environment's step never sees stop; the compiled one keeps x
    assert torch.equal(got[move], ref.step(s.cpu()[move], a[move]))
    assert torch.equal(got[~move], s.cpu()[~move])
    has_parent = ref.n_parents(s.cpu()) > 0
    sp = s.cpu()[has_parent]
    if sp.shape[0]:
        b = torch.multinomial(ref.backward_mask(sp).double(), 1, generator=gen).squeeze(-1)
        assert torch.equal(env.backward_step(sp.to(device), b.to(device)).cpu(), ref.backward_step(sp, b))
        # a backward step undoes the forward step of the same action
        assert torch.equal(env.step(env.backward_step(sp, b), env.backward_action(b)), sp)


def test_query_shapes_and_dtypes():
    env = HyperGrid(3, 4)
    s = _random_states(env, 5, 0)
    assert env.n_actions == 4 and env.n_backward_actions == 3 and env.state_dim == 3 and env.feature_dim == 12
    assert env.max_length == 3 * 3 + 1 and env.stop_action == 3
    assert env.forward_mask(s).shape == (5, 4) and env.forward_mask(s).dtype == torch.bool
    assert env.encode(s).shape == (5, 12) and env.encode(s).dtype == torch.float32
    assert env.log_reward(s).dtype == torch.float64
    assert env.n_parents(s).dtype == torch.int64


def test_step_semantics_by_hand():
    env = HyperGrid(2, 3)
    s = torch.tensor([[0, 0], [2, 1], [1, 2], [2, 2]], dtype=torch.int32)
    assert env.forward_mask(s).tolist() == [[True, True, True], [False, True, True], [True, False, True],
                                            [False, False, True]]
    assert env.backward_mask(s).tolist() == [[False, False], [True, True], [True, True], [True, True]]
    assert env.n_parents(s).tolist() == [0, 2, 2, 2]
    assert env.step(s[:3], torch.tensor([0, 1, 2])).tolist() == [[1, 0], [2, 2], [1, 2]]  # stop keeps x
    assert env.backward_step(s[1:], torch.tensor([0, 1, 0])).tolist() == [[1, 1], [1, 1], [1, 2]]
    assert env.is_initial(s).tolist() == [True, False, False, False]
    assert env.encode(s[1:2]).tolist() == [[0, 0, 1, 0, 1, 0]]
    assert env.initial_states(2).tolist() == [[0, 0], [0, 0]]


def test_int64_states_are_accepted():
    env = HyperGrid(2, 4)
    s = _random_states(env, 10, 1)
    assert torch.equal(env.forward_mask(s.long()), env.forward_mask(s))


@pytest.mark.parametrize("ndim,height", [(1, 5), (2, 3), (2, 8), (3, 4)])
def test_enumeration(ndim, height):
    env = HyperGrid(ndim, height)
    x = env.all_terminal_states()
    assert x.shape == (height**ndim, ndim)
    assert len({tuple(r) for r in x.tolist()}) == height**ndim
    # the generic BFS of the base class reaches the same states
    bfs = gfncore.envs.Env.all_states(env)
    assert sorted(map(tuple, bfs.tolist())) == sorted(map(tuple, x.tolist()))


@pytest.mark.parametrize("ndim,height,R", [(2, 8, (0.1, 0.5, 2.0)), (3, 4, (1e-3, 0.5, 2.0)), (1, 6, (0.2, 1.0, 3.0)),
                                           (4, 3, (0.01, 0.5, 2.0))])
def test_true_log_z_brute_force(ndim, height, R):
    env = HyperGrid(ndim, height, *R)
    assert env.true_log_z() == pytest.approx(brute_force_log_z(env), rel=1e-12, abs=1e-12)
    p = env.true_distribution()
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-12)
    x = env.all_terminal_states()
    expect = torch.tensor([hypergrid_reward(r, height, *R) for r in x.tolist()], dtype=torch.float64)
    torch.testing.assert_close(p, expect / expect.sum())


def test_reward_at_known_points_8x8():
    # H = 8: |x/7 - 0.5| is 0.5 at x in {0, 7} (outer, not ring), 0.357 at x in {1, 6} (outer and
    # ring), <= 0.214 at x in {2..5} (neither). So R = R0+R1 at corners, R0+R1+R2 at {1,6}^2, R0 inside.
    R0, R1, R2 = 0.1, 0.5, 2.0
    env = HyperGrid(2, 8, R0, R1, R2)
    pts = torch.tensor([[0, 0], [7, 7], [0, 7], [1, 1], [6, 1], [6, 6], [3, 3], [0, 3], [1, 0], [2, 5]],
                       dtype=torch.int32)
    want = [R0 + R1, R0 + R1, R0 + R1, R0 + R1 + R2, R0 + R1 + R2, R0 + R1 + R2, R0, R0, R0 + R1, R0]
    torch.testing.assert_close(env.log_reward(pts), torch.log(torch.tensor(want, dtype=torch.float64)))
    assert int(env.mode_mask(env.all_terminal_states()).sum()) == 4
    assert gfncore.metrics.n_modes(env) == 4


def test_reward_matches_plain_python_formula_everywhere():
    env = HyperGrid(3, 6, 0.05, 0.7, 1.3)
    x = env.all_terminal_states()
    want = torch.tensor([math.log(hypergrid_reward(r, 6, 0.05, 0.7, 1.3)) for r in x.tolist()], dtype=torch.float64)
    torch.testing.assert_close(env.log_reward(x), want, rtol=1e-14, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# bad input
@pytest.mark.parametrize("ndim,height,R,match", [
    (0, 8, (0.1, 0.5, 2.0), "ndim"),
    (-1, 8, (0.1, 0.5, 2.0), "ndim"),
    (2, 1, (0.1, 0.5, 2.0), "height"),
    (2, 0, (0.1, 0.5, 2.0), "height"),
    (2, 8, (0.0, 0.5, 2.0), "R0"),
    (2, 8, (0.1, -0.5, 2.0), "R1"),
])
def test_bad_parameters(ndim, height, R, match):
    with pytest.raises(ValueError, match=match):
        HyperGrid(ndim, height, *R)


def test_bad_spec_rejected_in_cpp():
    # the C++ validates the parameters itself, whatever Python let through
    with pytest.raises(ValueError, match="height"):
        gfncore._C.Env("hypergrid", {"ndim": 2, "height": 1})
    with pytest.raises(ValueError, match="unknown environment 'nope'"):
        gfncore._C.Env("nope", {})
    with pytest.raises(TypeError, match="unknown parameter 'width'"):
        gfncore._C.Env("hypergrid", {"width": 3})


@pytest.mark.parametrize("bad", [[[0, 8]], [[-1, 0]], [[3, 2**31 - 1]]])
@pytest.mark.parametrize("query", ["forward_mask", "backward_mask", "n_parents", "encode", "log_reward", "is_initial"])
def test_states_outside_the_grid(bad, query):
    env = HyperGrid(2, 8)
    s = torch.cat([torch.zeros(3, 2, dtype=torch.int32), torch.tensor(bad, dtype=torch.int32)])
    with pytest.raises(ValueError, match="row 3: states holds a row that is not in the environment's state space"):
        getattr(env, query)(s)


def test_states_bad_dtype_and_shape():
    env = HyperGrid(2, 8)
    with pytest.raises(TypeError, match="states"):
        env.forward_mask(torch.zeros(3, 2))
    with pytest.raises(TypeError, match="states"):
        env.forward_mask(torch.zeros(3, 2, dtype=torch.bool))
    with pytest.raises(TypeError, match="states"):
        env.forward_mask([[0, 0]])
    with pytest.raises(ValueError, match="states"):
        env.forward_mask(torch.zeros(3, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="states"):
        env.forward_mask(torch.zeros(6, dtype=torch.int32))


def test_states_on_meta_device():
    env = HyperGrid(2, 8)
    with pytest.raises((TypeError, ValueError), match="states"):
        env.forward_mask(torch.zeros(3, 2, dtype=torch.int32, device="meta"))


def test_illegal_steps():
    env = HyperGrid(2, 3)
    s = torch.tensor([[0, 0], [2, 1]], dtype=torch.int32)
    with pytest.raises(ValueError, match="row 1: actions holds an action that is out of range or masked out"):
        env.step(s, torch.tensor([0, 0]))  # coordinate 0 is at the top
    with pytest.raises(ValueError, match="actions"):
        env.step(s, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="actions"):
        env.step(s, torch.tensor([-1, 1]))
    with pytest.raises(ValueError, match="row 0: actions"):
        env.backward_step(s, torch.tensor([0, 0]))  # s0 has no parent
    with pytest.raises(ValueError, match="actions"):
        env.backward_step(s, torch.tensor([1, 2]))  # 2 is stop, not a backward action
    with pytest.raises(ValueError, match="actions"):
        env.step(s, torch.tensor([0]))


def test_actions_bad_type():
    env = HyperGrid(2, 3)
    s = torch.zeros(2, 2, dtype=torch.int32)
    with pytest.raises(TypeError, match="actions"):
        env.step(s, [0, 1])
    with pytest.raises(TypeError, match="actions"):
        env.step(s, torch.tensor([0.0, 1.7]))
    with pytest.raises(TypeError, match="actions"):
        env.backward_step(s + 1, torch.tensor([True, False]))
    assert torch.equal(env.step(s, torch.tensor([0, 1], dtype=torch.int32)), torch.tensor([[1, 0], [0, 1]], dtype=torch.int32))
