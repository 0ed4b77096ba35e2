"""Ising environment: compiled queries == IsingReference, energy and log Z by brute force,
parameter validation, enumeration, exact metric and on-policy TB convergence."""
import itertools
import math
import time

import pytest
import torch

import gfncore as gfn


def random_states(env, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-1, 2, (n, env.state_dim), generator=g, dtype=torch.int32)


def brute_log_reward(x, n, J, h, beta):
    """-beta E(x) from an explicit list of nearest-neighbour pairs (written independently of the env)."""
    pairs = set()
    for r in range(n):
        for c in range(n):
            for dr, dc in ((0, 1), (1, 0)):
                rr, cc = r + dr, c + dc
                if n >= 3:
                    rr, cc = rr % n, cc % n
                elif rr >= n or cc >= n:
                    continue
                pairs.add((r * n + c, rr * n + cc))
    e = -J * sum(x[i] * x[j] for i, j in pairs) - h * sum(x)
    return -beta * e


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_compiled_queries_match_reference(n):
    env = gfn.envs.Ising(n, J=0.7, h=-0.3, beta=1.3)
    ref = env.reference()
    s = random_states(env, 301, seed=n)
    s[0] = 0
    s[1] = torch.where(s[1] == 0, 1, s[1])  # a complete configuration
    assert torch.equal(env.forward_mask(s), ref.forward_mask(s))
    assert torch.equal(env.backward_mask(s), ref.backward_mask(s))
    assert torch.equal(env.n_parents(s), ref.n_parents(s))
    assert torch.equal(env.is_initial(s), ref.is_initial(s))
    assert torch.equal(env.encode(s), ref.encode(s))
    torch.testing.assert_close(env.log_reward(s), ref.log_reward(s), rtol=1e-12, atol=1e-12)
    g = torch.Generator().manual_seed(7)
    fm = env.forward_mask(s)
    a = torch.multinomial(fm.double(), 1, generator=g).squeeze(-1)
    move = a != env.stop_action  # a Python environment's step never sees stop; the compiled one keeps x
    got = env.step(s, a)
    assert torch.equal(got[move], ref.step(s[move], a[move]))
    assert torch.equal(got[~move], s[~move])
    bm = env.backward_mask(s)
    keep = bm.any(-1)
    b = torch.multinomial(bm[keep].double(), 1, generator=g).squeeze(-1)
    assert torch.equal(env.backward_step(s[keep], b), ref.backward_step(s[keep], b))


def test_dimensions_and_semantics():
    env = gfn.envs.Ising(3)
    assert (env.n_actions, env.n_backward_actions, env.state_dim, env.feature_dim, env.max_parents, env.max_length) == (
        19, 18, 9, 27, 9, 10)
    s0 = env.initial_states(1)
    assert s0.tolist() == [[0] * 9]
    m = env.forward_mask(s0)[0]
    assert bool(m[:18].all()) and not bool(m[18])  # stop only on complete configurations
    x = env.step(env.step(s0, torch.tensor([4])), torch.tensor([9 + 0]))
    assert x.tolist() == [[1, 0, 0, 0, -1, 0, 0, 0, 0]]
    assert env.backward_mask(x)[0].nonzero().flatten().tolist() == [4, 9]
    full = torch.ones(1, 9, dtype=torch.int32)
    assert env.forward_mask(full)[0].nonzero().flatten().tolist() == [18]
    with pytest.raises(ValueError, match="masked out"):
        env.step(x, torch.tensor([0 + 4]))  # site 4 is already set
    with pytest.raises(ValueError, match="masked out"):
        env.backward_step(x, torch.tensor([0]))  # site 0 is +1: only b = 9 unsets it
    with pytest.raises(ValueError, match="state space"):
        env.encode(torch.full((1, 9), 2, dtype=torch.int32))


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_log_reward_matches_explicit_pairs(n):
    J, h, beta = 0.8, 0.25, 0.6
    env = gfn.envs.Ising(n, J=J, h=h, beta=beta)
    s = random_states(env, 64, seed=11)
    want = torch.tensor([brute_log_reward(r, n, J, h, beta) for r in s.tolist()], dtype=torch.float64)
    torch.testing.assert_close(env.log_reward(s), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [2, 3])
def test_true_log_z_equals_brute_force(n):
    J, h, beta = 0.4, 0.15, 1.1
    env = gfn.envs.Ising(n, J=J, h=h, beta=beta)
    terms = [brute_log_reward(list(x), n, J, h, beta) for x in itertools.product((-1, 1), repeat=n * n)]
    want = math.log(sum(math.exp(t) for t in terms))
    assert abs(env.true_log_z() - want) < 1e-10
    assert env.all_terminal_states().shape == (2 ** (n * n), n * n)
    assert abs(float(env.true_distribution().sum()) - 1.0) < 1e-12


def test_enumeration():
    env = gfn.envs.Ising(3)
    S = env.all_states()
    assert S.shape == (3 ** 9, 9)
    assert torch.unique(S, dim=0).shape[0] == 3 ** 9
    # the base class's breadth-first expansion from s0 reaches exactly the same states
    bfs = gfn.envs.Env.all_states(gfn.envs.Ising(2))
    fast = gfn.envs.Ising(2).all_states()
    assert torch.equal(torch.unique(bfs, dim=0), torch.unique(fast, dim=0))
    X = env.all_terminal_states()
    assert bool((X != 0).all()) and torch.unique(X, dim=0).shape[0] == 512
    assert gfn.envs.Ising(4).all_terminal_states().shape == (2 ** 16, 16)
    with pytest.raises(ValueError, match="n <= 3"):
        gfn.envs.Ising(4).all_states()
    with pytest.raises(ValueError, match="n <= 4"):
        gfn.envs.Ising(5).all_terminal_states()
    with pytest.raises(ValueError, match="n <= 4"):
        gfn.envs.Ising(5).true_log_z()


@pytest.mark.parametrize("kwargs", [
    dict(n=0), dict(n=-2), dict(n=65), dict(n=3, J=math.inf), dict(n=3, h=math.nan),
    dict(n=3, beta=math.nan), dict(n=3, beta=-1.0), dict(n=3, beta=math.inf), dict(n=2**64),
])
def test_parameter_validation(kwargs):
    with pytest.raises(ValueError, match="ising"):
        gfn.envs.Ising(**kwargs)


@pytest.mark.parametrize("kwargs", [dict(n=2.5), dict(n=3.0), dict(n=True), dict(n="3"), dict(n=3, J="1"), dict(n=3, beta=None, h=[1])])
def test_parameter_types(kwargs):
    # a float where an int is declared is never truncated
    with pytest.raises(TypeError, match="ising"):
        gfn.envs.Ising(**kwargs)


def test_cpp_validates_the_spec():
    for n, (J, h, beta) in [(0, (1.0, 0.0, 1.0)), (65, (1.0, 0.0, 1.0)), (3, (math.nan, 0.0, 1.0)),
                            (3, (1.0, math.inf, 1.0)), (3, (1.0, 0.0, -0.5)), (64, (1e305, 0.0, 1e10))]:
        with pytest.raises(ValueError, match="ising"):
            gfn._C.Env("ising", {"n": n, "J": J, "h": h, "beta": beta})


def test_config_round_trip():
    env = gfn.envs.Ising(3, J=0.2, h=0.1, beta=2.0)
    again = gfn.envs.from_config(env.to_config())
    assert isinstance(again, gfn.envs.Ising) and again.params == env.params


def test_sampler_builds_complete_configurations():
    env = gfn.envs.Ising(3, J=0.2)
    policy = gfn.nn.MLPPolicy(env, hidden=16)
    traj = gfn.Sampler(env, policy).sample(50, seed=3)
    assert bool((traj.lengths == env.max_length).all())
    assert bool((traj.terminal_states != 0).all())
    torch.testing.assert_close(traj.log_reward.double(), env.log_reward(traj.terminal_states), rtol=1e-6, atol=1e-6)


def test_exact_metric_on_3x3():
    env = gfn.envs.Ising(3, J=0.2)
    torch.manual_seed(0)
    policy = gfn.nn.MLPPolicy(env, hidden=16)
    p = gfn.metrics.exact_terminal_distribution(env, policy)
    assert p.shape == (512,)
    assert abs(float(p.sum()) - 1.0) < 1e-9
    assert bool((p > 0).all())
    ev = gfn.metrics.evaluate(env, policy, 0.0)
    assert 0.0 < ev["l1"] < 2.0


@pytest.mark.slow
def test_tb_converges_on_ising_3x3():
    """On-policy TB learns the Boltzmann distribution of a 3x3 torus (J = 0.2: the most and least
    likely configurations differ by a factor of about 120) and its log-partition function."""
    torch.manual_seed(0)
    env = gfn.envs.Ising(3, J=0.2)
    policy = gfn.nn.MLPPolicy(env, hidden=128, layers=2)
    trainer = gfn.Trainer(env, policy, loss="tb", batch_size=128, lr=1e-3, lr_log_z=0.1, seed=0)
    # One thread: the matmuls are small, and on a loaded 2-core runner OpenMP workers spin
    # against each other (measured 10x slower wall time with two).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.perf_counter()
        trainer.fit(1000, progress=False)
        ev = trainer.evaluate()
    finally:
        torch.set_num_threads(threads)
    print(f"ising 3x3 TB: {time.perf_counter() - t0:.1f}s, l1={ev['l1']:.4f}, log_z_error={ev['log_z_error']:.4f}")
    assert ev["log_z_error"] < 0.05
    assert ev["l1"] < 0.05
