"""Rollout: reproducibility (seed, thread counts, compiled vs generic path), legality of every
sampled transition, and the empirical action / terminal frequencies (chi-square at fixed seeds)."""
from __future__ import annotations

import math

import pytest
import torch

import gfncore
from gfncore.envs import HyperGrid
from gfncore.nn import MLPPolicy

scipy_stats = pytest.importorskip("scipy.stats")

FIELDS = ["states", "actions", "offsets", "log_reward", "mask", "features", "log_prob"]


class _Float64Policy(torch.nn.Module):
    """An MLPPolicy computing in float64 (features arrive as float32), so rollouts carry float64 logits."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner.double()

    def forward_logits(self, features):
        return self.inner.forward_logits(features.double())


def _policy(env, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    p = MLPPolicy(env, hidden=32, layers=2)
    with torch.no_grad():  # larger weights than the init: a far-from-uniform policy
        for prm in p.parameters():
            prm.mul_(3.0)
    return _Float64Policy(p) if dtype == torch.float64 else p


def _assert_same(a, b, exact_log_prob=True):
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert x.shape == y.shape and x.dtype == y.dtype, f
        if f == "log_prob" and not exact_log_prob:
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)
        else:
            assert torch.equal(x, y), f


@pytest.mark.parametrize("temperature,epsilon", [(1.0, 0.0), (0.7, 0.2)])
def test_same_seed_same_trajectories(temperature, epsilon):
    env = HyperGrid(2, 6)
    s = gfncore.Sampler(env, _policy(env), temperature=temperature, epsilon=epsilon)
    a, b = s.sample(200, seed=42), s.sample(200, seed=42)
    _assert_same(a, b)
    c = s.sample(200, seed=43)
    assert not (c.offsets.shape == a.offsets.shape and torch.equal(c.offsets, a.offsets)
                and torch.equal(c.actions, a.actions))


def test_generator_seeding_is_reproducible():
    env = HyperGrid(3, 4)
    s = gfncore.Sampler(env, _policy(env))
    a = s.sample(64, generator=torch.Generator().manual_seed(7))
    b = s.sample(64, generator=torch.Generator().manual_seed(7))
    _assert_same(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [0, 1, 7, 300])
@pytest.mark.parametrize("temperature,epsilon", [(1.0, 0.0), (1.6, 0.1), (0.5, 1.0)])
def test_compiled_path_equals_generic_path(n, temperature, epsilon, dtype):
    env = HyperGrid(3, 5)
    s = gfncore.Sampler(env, _policy(env, dtype=dtype), temperature=temperature, epsilon=epsilon)
    a = s.sample(n, seed=5, compiled_path=True)
    b = s.sample(n, seed=5, compiled_path=False)
    assert a.n == n and b.n == n
    # The two paths hand the policy the same rows from differently aligned buffers; on some CPUs
    # (AVX-512) the matmul then sums in another order, so log_prob may differ in the last bits.
    # The samples themselves are the same draws and must be identical.
    _assert_same(a, b, exact_log_prob=False)


@pytest.mark.usefixtures("kernel_threads")
def test_identical_at_one_and_two_threads():
    env = HyperGrid(2, 8)
    s = gfncore.Sampler(env, _policy(env), epsilon=0.05)
    runs = []
    for kernel_t, torch_t in [(1, 1), (2, 1), (1, 2), (2, 2)]:
        gfncore._C.set_num_threads(kernel_t)
        torch.set_num_threads(torch_t)
        assert gfncore._C.num_threads() == kernel_t
        # 700 rows > the kernels' grain, so two threads really split the work
        runs.append((s.sample(700, seed=11, compiled_path=True), s.sample(700, seed=11, compiled_path=False)))
    base = runs[0][0]
    for a, b in runs:
        # torch's thread count may change the matmul's last bits, never the samples
        _assert_same(base, a, exact_log_prob=False)
        _assert_same(base, b, exact_log_prob=False)


@pytest.mark.usefixtures("kernel_threads")
def test_rollout_step_identical_at_one_and_two_threads():
    env = HyperGrid(4, 5)
    gen = torch.Generator().manual_seed(3)
    states = torch.randint(0, 5, (5000, 4), generator=gen, dtype=torch.int32)
    mask = env.forward_mask(states)
    logits = torch.randn(5000, 5, generator=gen)
    outs = []
    for t in (1, 2):
        gfncore._C.set_num_threads(t)
        outs.append(gfncore.ops.rollout_step(env, states, mask, logits, seed=8, offset=1, epsilon=0.3))
    for x, y in zip(*outs):
        assert torch.equal(x, y)


def _check_trajectories(env, traj, policy=None, temperature=1.0, epsilon=0.0):
    T, B = traj.T, traj.n
    off = traj.offsets
    assert off[0] == 0 and off[-1] == T and bool((off[1:] > off[:-1]).all())
    stop = env.stop_action
    is_stop = traj.actions == stop
    # exactly one stop per trajectory, and it is the last row
    assert torch.equal(is_stop, traj.is_stop)
    assert int(is_stop.sum()) == B
    # every trajectory starts at s0
    assert bool(env.is_initial(traj.states[off[:-1]]).all())
    # every action is legal at the state it leaves, and the recorded mask is the env's
    fm = env.forward_mask(traj.states)
    assert torch.equal(traj.mask, fm)
    assert bool(fm.gather(1, traj.actions[:, None]).all())
    # consecutive rows follow env.step
    moves = (~is_stop).nonzero(as_tuple=True)[0]
    assert torch.equal(env.step(traj.states[moves], traj.actions[moves]), traj.states[moves + 1])
    # features are the encodings; the reward is that of the terminal object
    assert torch.equal(traj.features, env.encode(traj.states))
    torch.testing.assert_close(traj.log_reward.double(), env.log_reward(traj.terminal_states), rtol=1e-6, atol=1e-6)
    assert bool((traj.lengths <= env.max_length).all())
    if policy is not None:
        # log_prob is the behaviour policy's: tempered softmax mixed with epsilon-uniform
        with torch.no_grad():
            logits = policy.forward_logits(traj.features).double()
        p = torch.softmax((logits / temperature).masked_fill(~fm, -math.inf), -1)
        k = fm.sum(-1).double()
        expect = torch.log((1 - epsilon) * p.gather(1, traj.actions[:, None]).squeeze(1) + epsilon / k)
        torch.testing.assert_close(traj.log_prob.double(), expect, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("compiled_path", [True, False])
@pytest.mark.parametrize("ndim,height,temperature,epsilon", [(1, 6, 1.0, 0.0), (2, 8, 0.5, 0.3), (4, 3, 2.0, 1.0)])
def test_every_transition_is_legal(ndim, height, temperature, epsilon, compiled_path):
    env = HyperGrid(ndim, height)
    policy = _policy(env)
    traj = gfncore.Sampler(env, policy).sample(400, seed=21, temperature=temperature, epsilon=epsilon,
                                                compiled_path=compiled_path)
    assert traj.n == 400
    _check_trajectories(env, traj, policy, temperature, epsilon)


def test_reaches_the_far_corner():
    # a policy that never stops early walks to the top corner: lengths hit max_length exactly
    env = HyperGrid(3, 4)
    policy = _policy(env)
    with torch.no_grad():
        policy.pf_head.weight.zero_()
        policy.pf_head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, -60.0]))
    traj = gfncore.Sampler(env, policy).sample(50, seed=1)
    _check_trajectories(env, traj)
    assert bool((traj.lengths == env.max_length).all())
    assert bool((traj.terminal_states == 3).all())


def test_sampler_bad_arguments():
    env = HyperGrid(2, 4)
    s = gfncore.Sampler(env, _policy(env))
    with pytest.raises(ValueError, match="n must be in \\[0, 2\\*\\*40\\]"):
        s.sample(-1, seed=0)
    with pytest.raises(ValueError, match="temperature"):
        s.sample(5, seed=0, temperature=0.0)
    with pytest.raises(ValueError, match="epsilon"):
        s.sample(5, seed=0, epsilon=1.5)
    with pytest.raises(ValueError, match="temperature"):
        s.sample(5, seed=0, temperature=-1.0, compiled_path=False)


# ---------------------------------------------------------------------------------------------
# frequencies
def _chisquare(counts: torch.Tensor, probs: torch.Tensor) -> float:
    n = int(counts.sum())
    return float(scipy_stats.chisquare(counts.double().numpy(), (probs * n).double().numpy()).pvalue)


def _action_counts(env, state, logits, n, temperature, epsilon, seed, offset=0):
    states = torch.tensor([state], dtype=torch.int32).repeat(n, 1)
    mask = env.forward_mask(states)
    a = gfncore.ops.rollout_step(env, states, mask, logits.repeat(n, 1), seed=seed, offset=offset,
                                 temperature=temperature, epsilon=epsilon)[0]
    return torch.bincount(a, minlength=env.n_actions), mask[0]


@pytest.mark.parametrize("temperature,epsilon", [(1.0, 0.0), (0.6, 0.0), (2.5, 0.0), (1.0, 0.25), (0.4, 0.6), (1.0, 1.0)])
def test_action_frequencies_chisquare(temperature, epsilon):
    env = HyperGrid(4, 5)
    state = [1, 4, 0, 2]  # coordinate 1 is at the top: 4 legal actions of 5
    logits = torch.tensor([[0.3, 5.0, -1.2, 1.1, -0.4]])
    n = 60_000
    counts, legal = _action_counts(env, state, logits, n, temperature, epsilon, seed=2024)
    assert int(counts[~legal].sum()) == 0
    p = torch.softmax((logits[0].double() / temperature).masked_fill(~legal, -math.inf), -1)
    p = (1 - epsilon) * p + epsilon * legal.double() / legal.sum()
    assert _chisquare(counts[legal], p[legal]) > 1e-3
    if 0 < epsilon < 1 or temperature != 1.0:
        # the test has power: the distribution without the temperature / epsilon is rejected
        wrong = torch.softmax(logits[0].double().masked_fill(~legal, -math.inf), -1)
        assert _chisquare(counts[legal], wrong[legal]) < 1e-6


def test_action_frequencies_across_offsets_and_ids():
    # one row, many (offset, id) pairs: the counter-based draws are uniform across both
    env = HyperGrid(2, 4)
    logits = torch.tensor([[0.0, 1.0, -0.5]])
    states = torch.zeros(2000, 2, dtype=torch.int32)
    mask = env.forward_mask(states)
    counts = torch.zeros(3, dtype=torch.int64)
    for t in range(20):
        ids = torch.arange(2000) * 1_000_003 + t
        a = gfncore.ops.rollout_step(env, states, mask, logits.repeat(2000, 1), seed=77, offset=t, ids=ids)[0]
        counts += torch.bincount(a, minlength=3)
    assert _chisquare(counts, torch.softmax(logits[0].double(), -1)) > 1e-3


@pytest.mark.parametrize("compiled_path", [True, False])
def test_terminal_frequencies_match_exact_distribution(compiled_path):
    env = HyperGrid(2, 4)
    policy = _policy(env)
    p = gfncore.metrics.exact_terminal_distribution(env, policy)
    traj = gfncore.Sampler(env, policy).sample(20_000, seed=3, compiled_path=compiled_path)
    emp = gfncore.metrics.empirical_distribution(env, traj.terminal_states)
    counts = (emp * traj.n).round().long()
    keep = p > 0
    assert int(counts[~keep].sum()) == 0
    assert _chisquare(counts[keep], p[keep] / p[keep].sum()) > 1e-3


# ---------------------------------------------------------------------------------------------
# metrics: the exact terminal distribution against brute-force enumeration of trajectories
def _brute_force_terminal_distribution(env, policy):
    """P_T(x) = sum over every trajectory s0 -> ... -> x -> stop of the product of P_F, by
    depth-first enumeration of all trajectories (tiny grids only)."""
    out: dict[tuple, float] = {}

    def visit(state: tuple, prob: float):
        s = torch.tensor([state], dtype=torch.int32)
        with torch.no_grad():
            logits = policy.forward_logits(env.encode(s))[0].double()
        legal = [a for a in range(env.n_actions) if env.reference().forward_mask(s)[0, a]]
        z = torch.logsumexp(logits[legal], 0)
        for a in legal:
            pa = prob * math.exp(float(logits[a] - z))
            if a == env.stop_action:
                out[state] = out.get(state, 0.0) + pa
            else:
                nxt = list(state)
                nxt[a] += 1
                visit(tuple(nxt), pa)

    visit(tuple([0] * env.ndim), 1.0)
    return torch.tensor([out.get(tuple(x), 0.0) for x in env.all_terminal_states().tolist()], dtype=torch.float64)


@pytest.mark.parametrize("ndim,height", [(2, 3), (1, 4), (3, 2)])
def test_exact_terminal_distribution_brute_force(ndim, height):
    env = HyperGrid(ndim, height)
    policy = _policy(env, seed=ndim + height, dtype=torch.float64)  # float64: batch-size-independent logits
    p = gfncore.metrics.exact_terminal_distribution(env, policy)
    assert p.dtype == torch.float64 and p.shape == (height**ndim,)
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(p, _brute_force_terminal_distribution(env, policy), rtol=1e-10, atol=1e-12)


def test_exact_terminal_distribution_uniform_policy_by_hand():
    # 1-D, height 3, all logits equal: stop w.p. 1/2 at 0 and at 1, always at 2 -> (1/2, 1/4, 1/4)
    env = HyperGrid(1, 3)
    policy = _policy(env)
    with torch.no_grad():
        policy.pf_head.weight.zero_()
        policy.pf_head.bias.zero_()
    p = gfncore.metrics.exact_terminal_distribution(env, policy)
    torch.testing.assert_close(p, torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64))


def test_l1_and_jsd_sanity():
    M = gfncore.metrics
    p = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    q = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64)
    assert M.l1(p, p) == 0.0 and M.jsd(p, p) == pytest.approx(0.0, abs=1e-15)
    assert M.l1(p, q) == pytest.approx(1.0)
    disjoint = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    assert M.l1(p, disjoint) == pytest.approx(2.0)
    assert M.jsd(p, disjoint) == pytest.approx(math.log(2))
    # JSD of p, q by its definition, written out
    m = 0.5 * (p + q)
    kl = lambda a, b: sum(float(ai) * math.log(float(ai) / float(bi)) for ai, bi in zip(a, b) if ai > 0)  # noqa: E731
    assert M.jsd(p, q) == pytest.approx(0.5 * kl(p, m) + 0.5 * kl(q, m), rel=1e-12)
    assert M.jsd(p, q) == pytest.approx(M.jsd(q, p), rel=1e-12)


def test_evaluate_and_empirical_metrics():
    env = HyperGrid(2, 4)
    policy = _policy(env)
    ev = gfncore.metrics.evaluate(env, policy, log_z=0.0, samples=gfncore.Sampler(env, policy).sample(2000, seed=1).terminal_states)
    p = gfncore.metrics.exact_terminal_distribution(env, policy)
    assert ev["l1"] == pytest.approx(gfncore.metrics.l1(p, env.true_distribution()))
    assert ev["log_z_error"] == pytest.approx(abs(env.true_log_z()))
    # at height 4 no coordinate lies in the ring band (|x/3 - 1/2| is 1/6 or 1/2): no mode
    assert 0.0 <= ev["empirical_l1"] <= 2.0 and ev["n_modes"] == 0 and ev["modes_found"] == 0
    assert ev["empirical_l1_samples"] == 2000
    # fewer than 10 samples per object: an empirical L1 would measure the sample size, so none
    few = gfncore.metrics.evaluate(env, policy, 0.0, gfncore.Sampler(env, policy).sample(150, seed=1).terminal_states)
    assert "empirical_l1" not in few and "modes_found" in few
    # samples drawn from R/Z itself are close to it empirically
    q = env.true_distribution()
    x = env.all_terminal_states()[torch.multinomial(q, 50_000, replacement=True, generator=torch.Generator().manual_seed(0))]
    assert gfncore.metrics.empirical_l1(env, x) < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_sampler_matches_cpu():
    # Same Philox draws on both devices: identical trajectories (float64 logits, so the two
    # devices' matmuls agree far below any sampling boundary).
    env = HyperGrid(3, 5)
    policy = _policy(env, dtype=torch.float64)
    cpu = gfncore.Sampler(env, policy).sample(300, seed=9, epsilon=0.1)
    gpu = gfncore.Sampler(env, policy.to("cuda")).sample(300, seed=9, epsilon=0.1)
    for f in ("states", "actions", "offsets", "mask", "features"):
        assert torch.equal(getattr(cpu, f), getattr(gpu, f).cpu()), f
    torch.testing.assert_close(cpu.log_prob, gpu.log_prob.cpu(), rtol=1e-10, atol=1e-10)


class _OddLogits(torch.nn.Module):
    """A policy whose logits come back transposed (layout [A, n] viewed as [n, A]) or expanded."""

    def __init__(self, n_actions, kind):
        super().__init__()
        self.n_actions, self.kind = n_actions, kind
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward_logits(self, features):
        n = features.shape[0]
        if self.kind == "transposed":
            return torch.zeros(self.n_actions, n).t()
        if self.kind == "expanded":
            return torch.zeros(1, self.n_actions).expand(n, -1)
        return torch.zeros(n, self.n_actions)


@pytest.mark.parametrize("kind", ["transposed", "expanded"])
def test_odd_logit_layouts_are_handled(kind):
    env = HyperGrid(2, 4)
    ref = gfncore.Sampler(env, _OddLogits(env.n_actions, "plain")).sample(50, seed=3)
    for compiled_path in (True, False):
        got = gfncore.Sampler(env, _OddLogits(env.n_actions, kind)).sample(50, seed=3, compiled_path=compiled_path)
        assert torch.equal(got.states, ref.states) and torch.equal(got.actions, ref.actions)


def test_huge_batches_fail_clearly():
    env = HyperGrid(2, 4)
    s = gfncore.Sampler(env, _policy(env))
    with pytest.raises(ValueError, match="n must be in"):
        s.sample(2**41, seed=0)
    with pytest.raises(ValueError, match="GiB for their first step"):
        s.sample(2**40, seed=0)
    with pytest.raises(ValueError, match="GiB for their first step"):
        s.sample(2**40, seed=0, compiled_path=False)
    with pytest.raises(TypeError, match="n must be an int"):
        s.sample(3.5, seed=0)
    for seed in (-1, 2**63, 2**64):
        with pytest.raises(ValueError, match="seed must be in"):
            s.sample(3, seed=seed)
        with pytest.raises(ValueError, match="seed must be in"):
            gfncore.ops.backward_rollout_step(env, torch.ones(2, 2, dtype=torch.int32), seed=seed)


@pytest.mark.parametrize("compiled_path", [True, False])
def test_shares_of_a_batch_draw_the_whole_batch(compiled_path):
    # what data-parallel ranks do: each samples its share with its first trajectory id
    env = HyperGrid(3, 5)
    s = gfncore.Sampler(env, _policy(env), epsilon=0.1)
    whole = s.sample(90, seed=11, compiled_path=compiled_path)
    parts = [s.sample(k, seed=11, first_id=f, compiled_path=compiled_path) for f, k in ((0, 40), (40, 30), (70, 20))]
    both = gfncore.Trajectories.cat(parts)
    for f in ("states", "actions", "offsets", "mask"):
        assert torch.equal(getattr(both, f), getattr(whole, f)), f
    torch.testing.assert_close(both.log_prob, whole.log_prob, rtol=1e-5, atol=1e-6)
