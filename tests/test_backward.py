"""Backward sampling: valid trajectories ending at the given objects, log P_B equal to what the
uniform / learned P_B assigns, seeded reproducibility, uniformity over parents."""
import math

import pytest
import torch

import gfncore as gfn
from gfncore.backward import BackwardSampler
from gfncore.losses import learned_log_pb, uniform_log_pb
from gfncore.ops import reference


def hypergrid():
    return gfn.envs.HyperGrid(ndim=3, height=5)


def ising():
    return gfn.envs.Ising(3, J=0.3, h=0.1)


def objects(env, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    if isinstance(env, gfn.envs.Ising):
        return (2 * torch.randint(0, 2, (n, env.state_dim), generator=g) - 1).to(torch.int32)
    return torch.randint(0, env.height, (n, env.state_dim), generator=g, dtype=torch.int32)


def check_valid(env, traj, x):
    """Starts at s0, every move is legal and leads to the next row, ends with stop at x."""
    B = x.shape[0]
    assert traj.n == B and traj.offsets[0] == 0 and traj.offsets[-1] == traj.T
    assert bool(env.is_initial(traj.states[traj.offsets[:-1]]).all())
    assert torch.equal(traj.terminal_states, x)
    assert bool((traj.actions[traj.is_stop] == env.stop_action).all())
    move = (~traj.is_stop).nonzero(as_tuple=True)[0]
    assert bool((traj.actions[move] != env.stop_action).all())
    assert torch.equal(env.step(traj.states[move], traj.actions[move]), traj.states[move + 1])  # raises if illegal
    assert torch.equal(traj.mask, env.forward_mask(traj.states))
    assert torch.equal(traj.features, env.encode(traj.states))
    torch.testing.assert_close(traj.log_reward.double(), env.log_reward(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("make_env", [hypergrid, ising])
def test_uniform_pb_trajectories(make_env):
    env = make_env()
    x = objects(env, 64)
    x[0] = env.initial_states(1)[0] if isinstance(env, gfn.envs.HyperGrid) else x[0]
    traj, log_pb = BackwardSampler(env).sample(x, seed=1)
    check_valid(env, traj, x)
    assert log_pb.shape == (traj.T,)
    assert bool((log_pb[traj.is_stop] == 0).all())
    torch.testing.assert_close(log_pb.double(), uniform_log_pb(env, traj), rtol=1e-6, atol=1e-6)
    if isinstance(env, gfn.envs.HyperGrid):
        assert int(traj.lengths[0]) == 1  # x = s0: only the stop row
    else:
        assert bool((traj.lengths == env.max_length).all())


@pytest.mark.parametrize("make_env", [hypergrid, ising])
@pytest.mark.parametrize("pb", ["learned", "shared"])
def test_learned_pb_trajectories(make_env, pb):
    env = make_env()
    torch.manual_seed(0)
    policy = gfn.nn.MLPPolicy(env, hidden=32, pb=pb)
    with torch.no_grad():  # make P_B far from uniform, so a uniform draw would not pass
        for p in policy.parameters():
            p.mul_(4.0)
    x = objects(env, 48, seed=2)
    traj, log_pb = BackwardSampler(env, policy).sample(x, seed=5)
    check_valid(env, traj, x)
    with torch.no_grad():
        want = learned_log_pb(env, traj, policy(traj.features).pb_logits)
    torch.testing.assert_close(log_pb, want, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(log_pb.double(), uniform_log_pb(env, traj), atol=1e-2)


def test_uniform_policy_is_uniform_pb():
    env = ising()
    x = objects(env, 16, seed=3)
    a = BackwardSampler(env).sample(x, seed=9)
    b = BackwardSampler(env, gfn.nn.MLPPolicy(env, hidden=8, pb="uniform")).sample(x, seed=9)
    assert torch.equal(a[0].states, b[0].states) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("make_env", [hypergrid, ising])
def test_seeded_reproducibility(make_env):
    env = make_env()
    x = objects(env, 40, seed=4)
    s = BackwardSampler(env)
    (t1, l1), (t2, l2), (t3, _) = s.sample(x, seed=7), s.sample(x, seed=7), s.sample(x, seed=8)
    assert torch.equal(t1.states, t2.states) and torch.equal(t1.actions, t2.actions) and torch.equal(l1, l2)
    assert not torch.equal(t1.states, t3.states)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(s.sample(x, generator=g1)[0].states, s.sample(x, generator=g2)[0].states)
    # a trajectory's draws depend on its own id only, not on the rest of the batch
    t4, _ = s.sample(x[:5], seed=7)
    assert torch.equal(t4.states, t1.states[: int(t1.offsets[5])])


@pytest.mark.parametrize("make_env", [hypergrid, ising])
def test_step_op_matches_reference(make_env):
    env = make_env()
    x = objects(env, 100, seed=6)
    x = x[~env.is_initial(x)]
    ids = torch.arange(x.shape[0]) * 3 + 1
    logits = torch.randn(x.shape[0], env.n_backward_actions, dtype=torch.float64)
    for lg, temp, eps in [(None, 1.0, 0.0), (logits, 1.0, 0.0), (logits, 0.7, 0.3)]:
        got = gfn.ops.backward_rollout_step(env, x, lg, seed=11, offset=2, ids=ids, temperature=temp, epsilon=eps)
        z = lg if lg is not None else torch.zeros(x.shape[0], env.n_backward_actions)
        want = reference.backward_rollout_step(env.reference(), x, z, ids, 11, 2, temp, eps)
        for a, b in zip(got, want):
            assert a.dtype == b.dtype
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_empty_batch():
    env = ising()
    traj, log_pb = BackwardSampler(env).sample(torch.zeros(0, env.state_dim, dtype=torch.int32), seed=0)
    assert traj.n == 0 and traj.T == 0 and log_pb.shape == (0,) and traj.offsets.tolist() == [0]
    out = gfn.ops.backward_rollout_step(env, torch.zeros(0, env.state_dim, dtype=torch.int32), seed=0)
    assert all(t.shape[0] == 0 for t in out)


def test_bad_input_raises():
    env = ising()
    incomplete = objects(env, 3)
    incomplete[1, 4] = 0
    with pytest.raises(ValueError, match="row 1 is not one"):
        BackwardSampler(env).sample(incomplete, seed=0)
    bad = objects(env, 3)
    bad[2, 0] = 3
    with pytest.raises(ValueError, match="state space"):
        BackwardSampler(env).sample(bad, seed=0)
    with pytest.raises(ValueError, match="shape"):
        BackwardSampler(env).sample(torch.zeros(2, 4, dtype=torch.int32), seed=0)
    with pytest.raises(ValueError, match="mask allows no action"):  # s0 has no parent to step back to
        gfn.ops.backward_rollout_step(env, env.initial_states(2), seed=0)
    with pytest.raises(ValueError, match="logits must have size 18"):
        gfn.ops.backward_rollout_step(env, objects(env, 2), torch.zeros(2, 19), seed=0)
    with pytest.raises(ValueError, match="NaN"):
        gfn.ops.backward_rollout_step(env, objects(env, 2), torch.full((2, 18), math.nan), seed=0)
    with pytest.raises(ValueError, match="epsilon"):
        gfn.ops.backward_rollout_step(env, objects(env, 2), seed=0, epsilon=1.5)


def test_opcheck():
    env = ising()
    x = objects(env, 6)
    args = (gfn.ops._env_table.env_id(env), x, torch.randn(6, env.n_backward_actions), None, 3, 0, 1.0, 0.0)
    torch.library.opcheck(torch.ops.gfncore.backward_rollout_step.default, args,
                          test_utils=("test_schema", "test_faketensor"))


def _chi2_pvalue(counts: torch.Tensor) -> float:
    n, k = float(counts.sum()), counts.numel()
    stat = float(((counts - n / k) ** 2 / (n / k)).sum())
    return float(torch.special.gammaincc(torch.tensor((k - 1) / 2.0, dtype=torch.float64),
                                         torch.tensor(stat / 2.0, dtype=torch.float64)))


@pytest.mark.parametrize("env,x,n_paths", [
    # every site order of a complete 2x2 configuration: 4! paths, each 1/4 * 1/3 * 1/2 * 1
    (gfn.envs.Ising(2), [1, -1, -1, 1], 24),
    # every order of three unit increments: 3! paths, each 1/3 * 1/2 * 1
    (gfn.envs.HyperGrid(ndim=3, height=3), [1, 1, 1], 6),
])
def test_uniform_pb_is_uniform_over_paths(env, x, n_paths):
    """Under uniform P_B every path into x here has the same probability: a chi-square test of the
    path histogram (fixed seed) must not reject uniformity, and log_pb must be -log(#paths)."""
    B = 400 * n_paths
    xs = torch.tensor([x], dtype=torch.int32).expand(B, -1).contiguous()
    traj, log_pb = BackwardSampler(env).sample(xs, seed=123)
    L = int(traj.lengths[0])
    assert bool((traj.lengths == L).all())
    paths = traj.actions.reshape(B, L)[:, :-1]
    uniq, inverse = torch.unique(paths, dim=0, return_inverse=True)
    assert uniq.shape[0] == n_paths
    counts = torch.bincount(inverse, minlength=n_paths).double()
    assert _chi2_pvalue(counts) > 1e-3
    per_traj = reference.segment_sum(log_pb.double(), traj.offsets)
    torch.testing.assert_close(per_traj, torch.full((B,), -math.log(n_paths), dtype=torch.float64))
    # and a visibly skewed histogram is rejected by the same test (the test can fail)
    skewed = counts.clone()
    skewed[0] += 0.5 * counts[0]
    assert _chi2_pvalue(skewed) < 1e-3


@pytest.mark.skipif(not (torch.cuda.is_available() and gfn.build_info()["with_cuda"]), reason="needs a CUDA build and GPU")
@pytest.mark.parametrize("make_env", [hypergrid, ising])
def test_cuda(make_env):
    env = make_env()
    x = objects(env, 64, seed=8)
    cpu = BackwardSampler(env).sample(x, seed=4)
    gpu = BackwardSampler(env).sample(x.cuda(), seed=4)
    assert gpu[0].states.is_cuda and torch.equal(gpu[0].states.cpu(), cpu[0].states)
    torch.testing.assert_close(gpu[1].cpu(), cpu[1])
    torch.manual_seed(0)
    policy = gfn.nn.MLPPolicy(env, hidden=32, pb="learned").cuda()
    traj, log_pb = BackwardSampler(env, policy).sample(x, seed=4)
    assert log_pb.is_cuda
    check_valid(env, traj.to("cpu"), x)
    with torch.no_grad():
        torch.testing.assert_close(log_pb, learned_log_pb(env, traj, policy(traj.features).pb_logits), rtol=1e-5, atol=1e-5)
