"""Every compiled op against its plain-PyTorch twin (gfncore.ops.reference): values, gradients,
gradcheck, opcheck, empty / single / odd / non-contiguous inputs, float32 and float64."""
from __future__ import annotations

import math

import pytest
import torch
from conftest import cpu_and_cuda, float32_error_ok, packed_offsets, random_legal_actions, random_mask

import gfncore
from gfncore.ops import reference as R

DTYPES = [torch.float32, torch.float64]


# ---------------------------------------------------------------------------------------------
# masked_log_softmax_gather
def _gather_inputs(N, A, dtype, seed=0, scale=3.0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(N, A, generator=gen, dtype=torch.float64)).to(dtype)
    mask = random_mask(N, A, gen)
    actions = random_legal_actions(mask, gen)
    return logits.to(device), mask.to(device), actions.to(device)


def _gather_value_and_grad(fn, logits, mask, actions, seed=1):
    x = logits.detach().clone().requires_grad_(True)
    y = fn(x, mask, actions)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(y)
    (gx,) = torch.autograd.grad(y, x, g) if y.numel() else (torch.zeros_like(x),)
    return y.detach(), gx


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,A", [(0, 3), (1, 1), (1, 4), (7, 3), (33, 5), (257, 9)])
def test_gather_matches_reference(N, A, dtype, device):
    logits, mask, actions = _gather_inputs(N, A, dtype, seed=N * 31 + A, device=device)
    y, g = _gather_value_and_grad(gfncore.ops.masked_log_softmax_gather, logits, mask, actions)
    assert y.shape == (N,) and y.dtype == dtype and g.dtype == dtype
    y64, g64 = _gather_value_and_grad(R.masked_log_softmax_gather, logits.double(), mask, actions)
    if dtype == torch.float64:
        torch.testing.assert_close(y, y64, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(g, g64, rtol=1e-12, atol=1e-12)
    else:
        y32, g32 = _gather_value_and_grad(R.masked_log_softmax_gather, logits, mask, actions)
        for kern, plain, ref in ((y, y32, y64), (g, g32, g64)):
            ok, k_err, t_err = float32_error_ok(kern.cpu(), plain.cpu(), ref.cpu())
            assert ok, f"float32 kernel error {k_err:.3g} > 2 x plain-PyTorch float32 error {t_err:.3g}"
    # masked-out logits get exactly zero gradient
    assert bool((g[~mask] == 0).all())


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_large_logits_are_stable(dtype, device):
    # a log-sum-exp without max-subtraction overflows at these magnitudes
    logits, mask, actions = _gather_inputs(64, 6, dtype, seed=3, scale=300.0, device=device)
    y, g = _gather_value_and_grad(gfncore.ops.masked_log_softmax_gather, logits, mask, actions)
    y64, g64 = _gather_value_and_grad(R.masked_log_softmax_gather, logits.double(), mask, actions)
    assert bool(torch.isfinite(y).all()) and bool(torch.isfinite(g).all())
    torch.testing.assert_close(y.double(), y64, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(g.double(), g64, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_gather_minus_inf_at_masked_entries(device):
    logits, mask, actions = _gather_inputs(20, 5, torch.float64, seed=4, device=device)
    logits = logits.masked_fill(~mask, -math.inf)
    y, g = _gather_value_and_grad(gfncore.ops.masked_log_softmax_gather, logits, mask, actions)
    y64, g64 = _gather_value_and_grad(R.masked_log_softmax_gather, logits, mask, actions)
    torch.testing.assert_close(y, y64)
    torch.testing.assert_close(g, g64)


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_gather_single_legal_action_has_log_prob_zero(device):
    logits = torch.randn(5, 4, dtype=torch.float64)
    mask = torch.zeros(5, 4, dtype=torch.bool)
    actions = torch.tensor([0, 1, 2, 3, 3])
    mask[torch.arange(5), actions] = True
    y = gfncore.ops.masked_log_softmax_gather(logits.to(device), mask.to(device), actions.to(device))
    assert bool((y == 0).all())


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_non_contiguous(dtype, device):
    gen = torch.Generator().manual_seed(5)
    N, A = 11, 6
    logits_t = torch.randn(A, N, generator=gen, dtype=torch.float64).to(dtype)  # transposed view below
    mask_t = random_mask(N, A, gen).t().contiguous()
    actions_wide = torch.zeros(2 * N, dtype=torch.int64)
    logits, mask = logits_t.t(), mask_t.t()
    actions_wide[::2] = random_legal_actions(mask, gen)
    logits, mask, actions_wide = logits_t.to(device).t(), mask_t.to(device).t(), actions_wide.to(device)
    actions = actions_wide[::2]
    assert not logits.is_contiguous() and not mask.is_contiguous() and not actions.is_contiguous()
    x = logits.detach().clone().requires_grad_(True)  # clone keeps the transposed strides
    y = gfncore.ops.masked_log_softmax_gather(x, mask, actions)
    y.backward(torch.arange(N, dtype=dtype, device=device))
    xr = logits.contiguous().double().requires_grad_(True)
    yr = R.masked_log_softmax_gather(xr, mask.contiguous(), actions.contiguous())
    yr.backward(torch.arange(N, dtype=torch.float64, device=device))
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y.double(), yr.detach(), **tol)
    torch.testing.assert_close(x.grad.double(), xr.grad, **tol)


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_gather_gradcheck(device):
    logits, mask, actions = _gather_inputs(9, 5, torch.float64, seed=6, device=device)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: gfncore.ops.masked_log_softmax_gather(z, mask, actions), (logits,))


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_gather_opcheck(device):
    logits, mask, actions = _gather_inputs(9, 5, torch.float64, seed=7, device=device)
    torch.library.opcheck(torch.ops.gfncore.masked_log_softmax_gather.default,
                          (logits.requires_grad_(True), mask, actions))
    torch.library.opcheck(torch.ops.gfncore.masked_log_softmax_gather.default, (logits.detach().float(), mask, actions))
    grad = torch.randn(9, dtype=torch.float64).to(device)
    torch.library.opcheck(torch.ops.gfncore.masked_log_softmax_gather_backward.default,
                          (grad, logits.detach(), mask, actions))


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_gather_empty_opcheck(device):
    logits, mask, actions = _gather_inputs(0, 4, torch.float32, device=device)
    torch.library.opcheck(torch.ops.gfncore.masked_log_softmax_gather.default, (logits, mask, actions))


# ---------------------------------------------------------------------------------------------
# trajectory_balance
def _tb_inputs(lengths, dtype, per_traj_z: bool, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    offsets = packed_offsets(lengths)
    T, B = int(offsets[-1]), len(lengths)

    def r(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype).to(device)

    log_pf, log_pb, log_reward = -r(T).abs(), -r(T).abs(), r(B)
    log_z = r(B) if per_traj_z else r(())
    return log_pf, log_pb, offsets.to(device), log_reward, log_z


def _tb_value_and_grads(fn, log_pf, log_pb, offsets, log_reward, log_z):
    xs = [t.detach().clone().requires_grad_(True) for t in (log_pf, log_pb, log_reward, log_z)]
    y = fn(xs[0], xs[1], offsets, xs[2], xs[3])
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64).to(y)
    grads = torch.autograd.grad(y, xs, g, allow_unused=True)
    grads = [gi if gi is not None else torch.zeros_like(x) for gi, x in zip(grads, xs)]
    return [y.detach(), *grads]


LENGTHS = {
    "empty": [],
    "single": [4],
    "single_stop_only": [1],
    "odd_mixed": [1, 3, 1, 7, 2, 1, 5],
    "many": [((i * 7) % 11) + 1 for i in range(130)],
}


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("per_traj_z", [False, True], ids=["logz_scalar", "logz_per_traj"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(LENGTHS))
def test_tb_matches_reference(case, dtype, per_traj_z, device):
    inputs = _tb_inputs(LENGTHS[case], dtype, per_traj_z, seed=len(LENGTHS[case]), device=device)
    out = _tb_value_and_grads(gfncore.ops.trajectory_balance, *inputs)
    B, T = len(LENGTHS[case]), sum(LENGTHS[case])
    assert out[0].shape == (B,) and out[1].shape == (T,) and out[4].shape == inputs[4].shape
    assert all(o.dtype == dtype for o in out)
    ref64 = _tb_value_and_grads(R.trajectory_balance, *[t.double() if t.is_floating_point() else t for t in inputs])
    if dtype == torch.float64:
        for o, r in zip(out, ref64):
            torch.testing.assert_close(o, r, rtol=1e-12, atol=1e-12)
    else:
        ref32 = _tb_value_and_grads(R.trajectory_balance, *inputs)
        for name, o, p, r in zip(["loss", "log_pf", "log_pb", "log_reward", "log_z"], out, ref32, ref64):
            ok, k_err, t_err = float32_error_ok(o.cpu(), p.cpu(), r.cpu(), floor=1e-5)
            assert ok, f"{name}: float32 kernel error {k_err:.3g} > 2 x plain-PyTorch float32 error {t_err:.3g}"


def test_tb_python_float_log_z():
    log_pf, log_pb, offsets, log_reward, _ = _tb_inputs([2, 3], torch.float64, False)
    y = gfncore.ops.trajectory_balance(log_pf, log_pb, offsets, log_reward, 1.5)
    torch.testing.assert_close(y, R.trajectory_balance(log_pf, log_pb, offsets, log_reward, torch.tensor(1.5, dtype=torch.float64)))


def test_tb_matches_hand_computation():
    # one trajectory of three rows: (log Z + sum pf - log R - sum pb)^2 written out
    pf = torch.tensor([-1.0, -0.5, -0.25], dtype=torch.float64)
    pb = torch.tensor([-0.7, -0.1, 0.0], dtype=torch.float64)
    y = gfncore.ops.trajectory_balance(pf, pb, torch.tensor([0, 3]), torch.tensor([0.3], dtype=torch.float64),
                                       torch.tensor(2.0, dtype=torch.float64))
    r = 2.0 + (-1.0 - 0.5 - 0.25) - 0.3 - (-0.7 - 0.1)
    assert float(y[0]) == pytest.approx(r * r, rel=1e-14)


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("dtype", DTYPES)
def test_tb_non_contiguous(dtype, device):
    lengths = [1, 3, 1, 7, 2]
    B, T = len(lengths), sum(lengths)
    gen = torch.Generator().manual_seed(8)
    pf_wide = torch.randn(2 * T, generator=gen, dtype=torch.float64).to(dtype)
    both = torch.randn(T, 2, generator=gen, dtype=torch.float64).to(dtype)  # pb is a column of this
    lr_wide = torch.randn(3 * B, generator=gen, dtype=torch.float64).to(dtype)
    z_wide = torch.randn(2 * B, generator=gen, dtype=torch.float64).to(dtype)
    off_wide = torch.zeros(2 * (B + 1), dtype=torch.int64)
    off_wide[::2] = packed_offsets(lengths)
    pf_wide, both, lr_wide, z_wide, off_wide = (t.to(device) for t in (pf_wide, both, lr_wide, z_wide, off_wide))
    pf, pb, lr, lz, off = pf_wide[::2], both[:, 1], lr_wide[1::3], z_wide[::2], off_wide[::2]
    assert not any(t.is_contiguous() for t in (pf, pb, lr, lz, off))
    kern = _tb_value_and_grads(gfncore.ops.trajectory_balance, pf, pb, off, lr, lz)
    ref = _tb_value_and_grads(R.trajectory_balance, *(t.contiguous().double() if t.is_floating_point() else t.contiguous()
                                                     for t in (pf, pb, off, lr, lz)))
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    for k, r in zip(kern, ref):
        torch.testing.assert_close(k.double(), r, **tol)


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("per_traj_z", [False, True], ids=["logz_scalar", "logz_per_traj"])
def test_tb_gradcheck(per_traj_z, device):
    log_pf, log_pb, offsets, log_reward, log_z = _tb_inputs([1, 3, 2, 1, 4], torch.float64, per_traj_z, seed=9,
                                                            device=device)
    xs = tuple(t.requires_grad_(True) for t in (log_pf, log_pb, log_reward, log_z))
    assert torch.autograd.gradcheck(lambda a, b, c, d: gfncore.ops.trajectory_balance(a, b, offsets, c, d), xs)


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("per_traj_z", [False, True], ids=["logz_scalar", "logz_per_traj"])
def test_tb_opcheck(per_traj_z, device):
    log_pf, log_pb, offsets, log_reward, log_z = _tb_inputs([1, 3, 2, 1, 4], torch.float64, per_traj_z, seed=10,
                                                            device=device)
    args = (log_pf.requires_grad_(True), log_pb.requires_grad_(True), offsets, log_reward.requires_grad_(True),
            log_z.requires_grad_(True))
    torch.library.opcheck(torch.ops.gfncore.trajectory_balance.default, args)
    grad = torch.randn(5, dtype=torch.float64).to(device)
    torch.library.opcheck(torch.ops.gfncore.trajectory_balance_backward.default,
                          (grad, *(a.detach() for a in args)))


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_tb_empty_opcheck(device):
    args = _tb_inputs([], torch.float32, False, device=device)
    torch.library.opcheck(torch.ops.gfncore.trajectory_balance.default, args)


# ---------------------------------------------------------------------------------------------
# rollout_step (and through it the compiled Philox generator)
def _random_states(env, n, gen, allow_top=True):
    hi = env.height if allow_top else env.height - 1
    return torch.randint(0, hi, (n, env.ndim), generator=gen, dtype=torch.int32)


def _rollout_inputs(env, n, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    states = _random_states(env, n, gen)
    mask = env.forward_mask(states)
    logits = (2 * torch.randn(n, env.n_actions, generator=gen, dtype=torch.float64)).to(dtype)
    return states, mask, logits


def _assert_rollout_equal(out, ref, dtype):
    names = ["actions", "log_prob", "next_states", "next_mask", "features", "done"]
    for name, o, r in zip(names, out, ref):
        assert o.shape == r.shape and o.dtype == r.dtype, name
        if name == "log_prob":
            tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-6, atol=2e-6)
            torch.testing.assert_close(o.cpu(), r.cpu(), **tol)
        else:
            assert torch.equal(o.cpu(), r.cpu()), name


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperature,epsilon", [(1.0, 0.0), (0.5, 0.0), (2.5, 0.3), (1.0, 1.0), (0.8, 0.05)])
@pytest.mark.parametrize("ndim,height,n", [(1, 5, 7), (2, 4, 1), (2, 4, 0), (3, 6, 301)])
def test_rollout_step_matches_reference(ndim, height, n, temperature, epsilon, dtype, device):
    env = gfncore.envs.HyperGrid(ndim, height)
    states, mask, logits = _rollout_inputs(env, n, dtype, seed=n + ndim)
    states, mask, logits = states.to(device), mask.to(device), logits.to(device)
    kw = dict(seed=1234567 + n, offset=17, temperature=temperature, epsilon=epsilon)
    out = gfncore.ops.rollout_step(env, states, mask, logits, **kw)
    ref = R.rollout_step(env.reference(), states.cpu(), mask.cpu(), logits.cpu(), None, kw["seed"], kw["offset"],
                         temperature, epsilon)
    _assert_rollout_equal(out, ref, dtype)


def test_rollout_step_with_ids_and_64bit_counters():
    # large seeds, offsets and ids exercise the high words of Philox's key and counter
    env = gfncore.envs.HyperGrid(3, 5)
    states, mask, logits = _rollout_inputs(env, 200, torch.float64, seed=11)
    ids = torch.randperm(200, generator=torch.Generator().manual_seed(1)).to(torch.int64) * (2**40 + 3) + 2**33
    for seed, offset in [(0, 0), (2**62 + 12345, 2**40 + 7), (2**32 + 1, 2**32 - 1)]:
        out = gfncore.ops.rollout_step(env, states, mask, logits, seed=seed, offset=offset, ids=ids,
                                       temperature=1.3, epsilon=0.2)
        ref = R.rollout_step(env.reference(), states, mask, logits, ids, seed, offset, 1.3, 0.2)
        _assert_rollout_equal(out, ref, torch.float64)


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_rollout_step_non_contiguous(device):
    env = gfncore.envs.HyperGrid(2, 6)
    states, mask, logits = _rollout_inputs(env, 40, torch.float32, seed=12)
    s_nc, m_nc, l_nc = (t.t().contiguous().t().to(device) for t in (states, mask, logits))
    ids_wide = torch.arange(80, dtype=torch.int64, device=device)
    ids = ids_wide[::2]
    assert not (s_nc.is_contiguous() or m_nc.is_contiguous() or l_nc.is_contiguous() or ids.is_contiguous())
    out = gfncore.ops.rollout_step(env, s_nc, m_nc, l_nc, seed=3, offset=2, ids=ids, temperature=0.9, epsilon=0.1)
    ref = R.rollout_step(env.reference(), states, mask, logits, ids.cpu(), 3, 2, 0.9, 0.1)
    _assert_rollout_equal(out, ref, torch.float32)


def test_rollout_step_ids_make_draws_independent_of_batch_order():
    env = gfncore.envs.HyperGrid(2, 8)
    states, mask, logits = _rollout_inputs(env, 64, torch.float64, seed=13)
    ids = torch.arange(64) + 1000
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(2))
    a = gfncore.ops.rollout_step(env, states, mask, logits, seed=9, offset=4, ids=ids)
    b = gfncore.ops.rollout_step(env, states[perm], mask[perm], logits[perm], seed=9, offset=4, ids=ids[perm])
    for x, y in zip(a, b):
        assert torch.equal(x[perm], y)


def test_rollout_step_log_prob_is_the_sampling_distribution():
    # log_prob equals log((1 - eps) softmax(z / T)[a] + eps / k) computed here directly
    env = gfncore.envs.HyperGrid(3, 4)
    states, mask, logits = _rollout_inputs(env, 50, torch.float64, seed=14)
    T, eps = 1.7, 0.35
    a, lp, *_ = gfncore.ops.rollout_step(env, states, mask, logits, seed=5, temperature=T, epsilon=eps)
    p = torch.softmax((logits / T).masked_fill(~mask, -math.inf), -1)
    k = mask.sum(-1).double()
    expect = torch.log((1 - eps) * p.gather(1, a[:, None]).squeeze(1) + eps / k)
    torch.testing.assert_close(lp, expect, rtol=1e-12, atol=1e-12)


def test_philox_known_answers():
    # Random123's published Philox4x32-10 known-answer vectors (kat_vectors), in our counter layout
    # (offset_lo, offset_hi, subsequence_lo, subsequence_hi) and key (seed_lo, seed_hi).
    cases = [
        (0, 0, 0, [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
        (2**64 - 1, -1, 2**64 - 1, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
        (0x299F31D0A4093822, 0x0370734413198A2E, 0x85A308D3243F6A88, [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
    ]
    for seed, sub, offset, words in cases:
        assert R.philox(seed, torch.tensor([sub]), offset)[0].tolist() == words


def test_philox_compiled_matches_reference_bits():
    # With epsilon = 1 the action is the floor(u1 * k)-th legal action; with 64 legal actions each
    # draw exposes the top 6 bits of u1, and whether it explored at all exposes u0 < epsilon.
    env = gfncore.envs.HyperGrid(63, 2)
    n = 500
    states = torch.zeros(n, 63, dtype=torch.int32)
    mask = env.forward_mask(states)
    logits = torch.zeros(n, 64)
    for seed, offset in [(7, 0), (2**61 + 5, 3), (12345, 2**35)]:
        a = gfncore.ops.rollout_step(env, states, mask, logits, seed=seed, offset=offset, epsilon=1.0)[0]
        r = R.philox(seed, torch.arange(n), offset)
        u1 = R.uniform53(r[:, 1], r[:, 2])
        assert torch.equal(a, (u1 * 64).floor().long())
        assert len(torch.unique(a)) > 50  # the draws really vary
    # u0 decides exploration: a stop-only softmax (logit +inf-like gap) versus uniform exploration
    logits = torch.full((n, 64), -50.0)
    logits[:, -1] = 50.0
    eps = 0.5
    a = gfncore.ops.rollout_step(env, states, mask, logits, seed=99, offset=1, epsilon=eps)[0]
    r = R.philox(99, torch.arange(n), 1)
    explore = R.uniform53(r[:, 0], r[:, 3]) < eps
    u1 = R.uniform53(r[:, 1], r[:, 2])
    expect = torch.where(explore, (u1 * 64).floor().long(), torch.full_like(a, 63))
    assert torch.equal(a, expect)


def test_rollout_step_opcheck():
    env = gfncore.envs.HyperGrid(2, 4)
    states, mask, logits = _rollout_inputs(env, 9, torch.float32, seed=15)
    eid = gfncore.ops._env_table.env_id(env)
    ids = torch.arange(9, dtype=torch.int64) * 3
    for ids_arg in (None, ids):
        args = (eid, states, mask, logits, ids_arg, 5, 2, 0.7, 0.1)
        torch.library.opcheck(torch.ops.gfncore.rollout_step.default, args)
        torch.library.opcheck(torch.ops.gfncore.sample_actions.default, (mask, logits, ids_arg, 5, 2, 0.7, 0.1))


# ---------------------------------------------------------------------------------------------
# bad input: a clear ValueError / TypeError naming the argument, never a crash
def _ok_gather(N=4, A=3):
    logits = torch.randn(N, A)
    mask = torch.ones(N, A, dtype=torch.bool)
    actions = torch.zeros(N, dtype=torch.int64)
    return logits, mask, actions


def _nan_logits():
    logits, mask, actions = _ok_gather()
    logits[2, 1] = math.nan
    return logits, mask, actions


def _nan_at_masked_entry_is_fine():
    logits, mask, actions = _ok_gather()
    logits[2, 1] = math.nan
    mask[2, 1] = False
    return logits, mask, actions


GATHER_BAD = {
    "logits_int": (lambda: (torch.zeros(4, 3, dtype=torch.int32), *_ok_gather()[1:]), TypeError, "logits must be float32 or float64"),
    "logits_half": (lambda: (torch.zeros(4, 3, dtype=torch.float16), *_ok_gather()[1:]), TypeError, "logits must be float32 or float64"),
    "logits_rank3": (lambda: (torch.zeros(4, 3, 1), *_ok_gather()[1:]), ValueError, "logits must have 2 dimension"),
    "logits_rank1": (lambda: (torch.zeros(4), *_ok_gather()[1:]), ValueError, "logits must have 2 dimension"),
    "mask_uint8": (lambda: (_ok_gather()[0], torch.ones(4, 3, dtype=torch.uint8), _ok_gather()[2]), TypeError, "mask must be bool"),
    "mask_shape": (lambda: (_ok_gather()[0], torch.ones(4, 2, dtype=torch.bool), _ok_gather()[2]), ValueError, "mask must have size 3"),
    "mask_rows": (lambda: (_ok_gather()[0], torch.ones(5, 3, dtype=torch.bool), _ok_gather()[2]), ValueError, "mask must have size 4"),
    "actions_int32": (lambda: (*_ok_gather()[:2], torch.zeros(4, dtype=torch.int32)), TypeError, "actions must be int64"),
    "actions_float": (lambda: (*_ok_gather()[:2], torch.zeros(4)), TypeError, "actions must be int64"),
    "actions_rank2": (lambda: (*_ok_gather()[:2], torch.zeros(4, 1, dtype=torch.int64)), ValueError, "actions must have 1 dimension"),
    "actions_len": (lambda: (*_ok_gather()[:2], torch.zeros(3, dtype=torch.int64)), ValueError, "actions must have size 4"),
    "action_too_big": (lambda: (*_ok_gather()[:2], torch.tensor([0, 3, 0, 0])), ValueError, "row 1: actions holds an action that is out of range"),
    "action_negative": (lambda: (*_ok_gather()[:2], torch.tensor([0, 0, -1, 0])), ValueError, "row 2: actions holds an action that is out of range"),
    "action_masked": (lambda: (_ok_gather()[0], torch.tensor([[1, 1, 1]] * 3 + [[0, 1, 1]], dtype=torch.bool),
                               _ok_gather()[2]), ValueError, "row 3: actions holds an action that is out of range or masked out"),
    "nan_logit": (_nan_logits, ValueError, "row 2: logits contain NaN"),
    "no_legal_action": (lambda: (_ok_gather()[0], torch.zeros(4, 3, dtype=torch.bool), _ok_gather()[2]), ValueError, "actions holds an action that is out of range or masked out"),
    "all_minus_inf": (lambda: (torch.full((4, 3), -math.inf), *_ok_gather()[1:]), ValueError, "row 0: logits of every legal action are -inf"),
    "mask_meta": (lambda: (_ok_gather()[0], torch.ones(4, 3, dtype=torch.bool, device="meta"), _ok_gather()[2]), TypeError, "mask must be on the same device"),
    "actions_meta": (lambda: (*_ok_gather()[:2], torch.zeros(4, dtype=torch.int64, device="meta")), TypeError, "actions must be on the same device"),
    "logits_list": (lambda: ([[0.0] * 3] * 4, *_ok_gather()[1:]), (TypeError, ValueError), "logits|Tensor"),
}


@pytest.mark.parametrize("case", list(GATHER_BAD))
def test_gather_bad_input(case):
    make, exc, match = GATHER_BAD[case]
    with pytest.raises(exc, match=match):
        gfncore.ops.masked_log_softmax_gather(*make())


def test_gather_nan_at_masked_entry_is_ignored():
    logits, mask, actions = _nan_at_masked_entry_is_fine()
    y = gfncore.ops.masked_log_softmax_gather(logits.requires_grad_(True), mask, actions)
    y.sum().backward()
    assert bool(torch.isfinite(y).all()) and bool(torch.isfinite(logits.grad).all())


def test_gather_bad_input_raises_in_backward_kernel_too():
    # called directly, the backward op validates like the forward
    logits, mask, actions = _ok_gather()
    with pytest.raises(ValueError, match="actions holds an action"):
        torch.ops.gfncore.masked_log_softmax_gather_backward(torch.ones(4), logits, mask, torch.tensor([0, 5, 0, 0]))
    with pytest.raises(TypeError, match="grad_out and logits must have the same dtype|must have the same dtype"):
        torch.ops.gfncore.masked_log_softmax_gather_backward(torch.ones(4, dtype=torch.float64), logits, mask, actions)


def _ok_tb(B=3):
    lengths = [2, 1, 3][:B]
    T = sum(lengths)
    return dict(log_pf=torch.randn(T), log_pb=torch.randn(T), offsets=packed_offsets(lengths), log_reward=torch.randn(B),
                log_z=torch.tensor(0.5))


def _tb_with(**kw):
    d = _ok_tb()
    d.update(kw)
    return d


TB_BAD = {
    "offsets_not_increasing": (lambda: _tb_with(offsets=torch.tensor([0, 2, 2, 6])), ValueError, "offsets must start at 0, increase strictly"),
    "offsets_decreasing": (lambda: _tb_with(offsets=torch.tensor([0, 4, 2, 6])), ValueError, "offsets must start at 0, increase strictly"),
    "offsets_not_ending_at_T": (lambda: _tb_with(offsets=torch.tensor([0, 2, 3, 5])), ValueError, "offsets .*end at T"),
    "offsets_past_T": (lambda: _tb_with(offsets=torch.tensor([0, 2, 3, 7])), ValueError, "offsets .*end at T"),
    "offsets_not_starting_at_0": (lambda: _tb_with(offsets=torch.tensor([1, 2, 3, 6])), ValueError, "offsets must start at 0"),
    "offsets_negative": (lambda: _tb_with(offsets=torch.tensor([-1, 2, 3, 6])), ValueError, "offsets must start at 0"),
    "offsets_empty": (lambda: _tb_with(offsets=torch.zeros(0, dtype=torch.int64)), ValueError, "offsets must have B \\+ 1 >= 1"),
    "offsets_int32": (lambda: _tb_with(offsets=torch.tensor([0, 2, 3, 6], dtype=torch.int32)), TypeError, "offsets must be int64"),
    "offsets_rank2": (lambda: _tb_with(offsets=torch.tensor([[0, 2, 3, 6]])), ValueError, "offsets must have 1 dimension"),
    "no_trajectories_but_rows": (lambda: _tb_with(offsets=torch.zeros(1, dtype=torch.int64), log_reward=torch.zeros(0)),
                                 ValueError, "offsets describes no trajectory"),
    "log_pf_int": (lambda: _tb_with(log_pf=torch.zeros(6, dtype=torch.int64)), TypeError, "log_pf must be float32 or float64"),
    "log_pf_rank2": (lambda: _tb_with(log_pf=torch.zeros(6, 1)), ValueError, "log_pf must have 1 dimension"),
    "log_pb_dtype": (lambda: _tb_with(log_pb=torch.zeros(6, dtype=torch.float64)), TypeError, "log_pb and log_pf must have the same dtype"),
    "log_pb_len": (lambda: _tb_with(log_pb=torch.zeros(5)), ValueError, "log_pb must have size 6"),
    "log_reward_len": (lambda: _tb_with(log_reward=torch.zeros(4)), ValueError, "log_reward must have size 3"),
    "log_reward_dtype": (lambda: _tb_with(log_reward=torch.zeros(3, dtype=torch.float64)), TypeError, "log_reward and log_pf must have the same dtype"),
    "log_z_shape": (lambda: _tb_with(log_z=torch.zeros(2)), ValueError, "log_z must be a scalar or have shape \\[B\\]"),
    "log_z_rank2": (lambda: _tb_with(log_z=torch.zeros(3, 1)), ValueError, "log_z must be a scalar or have shape \\[B\\]"),
    "log_z_dtype": (lambda: _tb_with(log_z=torch.tensor(0.5, dtype=torch.float64)), TypeError, "log_z and log_pf must have the same dtype"),
    "log_z_meta": (lambda: _tb_with(log_z=torch.tensor(0.5, device="meta")), TypeError, "log_z must be on the same device"),
    "offsets_meta": (lambda: _tb_with(offsets=torch.tensor([0, 2, 3, 6], device="meta")), TypeError, "offsets must be on the same device"),
}


@pytest.mark.parametrize("case", list(TB_BAD))
def test_tb_bad_input(case):
    make, exc, match = TB_BAD[case]
    with pytest.raises(exc, match=match):
        gfncore.ops.trajectory_balance(**make())


def _ok_rollout(n=5):
    env = gfncore.envs.HyperGrid(2, 4)
    states = torch.zeros(n, 2, dtype=torch.int32)
    return env, dict(states=states, mask=env.forward_mask(states), logits=torch.zeros(n, 3))


def _rollout_with(**kw):
    env, d = _ok_rollout()
    d.update(kw)
    return env, d


def _state_outside():
    s = torch.zeros(5, 2, dtype=torch.int32)
    s[3, 1] = 4
    return _rollout_with(states=s)


def _nan_rollout_logits():
    lg = torch.zeros(5, 3)
    lg[4, 0] = math.nan
    return _rollout_with(logits=lg)


ROLLOUT_BAD = {
    "states_int64_wraps": (lambda: _rollout_with(states=torch.tensor([[0, 0]] * 4 + [[2**32 + 1, 0]])), {}, ValueError,
                           "states row 4 holds a value outside int32"),
    "states_float": (lambda: _rollout_with(states=torch.zeros(5, 2)), {}, TypeError, "states must be an integer tensor"),
    "states_rank1": (lambda: _rollout_with(states=torch.zeros(10, dtype=torch.int32)), {}, ValueError,
                     "states must have shape \\[n, 2\\]"),
    "states_width": (lambda: _rollout_with(states=torch.zeros(5, 3, dtype=torch.int32)), {}, ValueError,
                     "states must have shape \\[n, 2\\]"),
    "states_outside_grid": (_state_outside, {}, ValueError, "row 3: states holds a row that is not in the environment's state space"),
    "mask_int": (lambda: _rollout_with(mask=torch.ones(5, 3, dtype=torch.int32)), {}, TypeError, "mask must be bool"),
    "mask_width": (lambda: _rollout_with(mask=torch.ones(5, 4, dtype=torch.bool)), {}, ValueError, "mask must have size 3"),
    "mask_no_legal_action": (lambda: _rollout_with(mask=torch.zeros(5, 3, dtype=torch.bool)), {}, ValueError, "row 0: mask allows no action"),
    "logits_int": (lambda: _rollout_with(logits=torch.zeros(5, 3, dtype=torch.int64)), {}, TypeError, "logits must be float32 or float64"),
    "logits_rows": (lambda: _rollout_with(logits=torch.zeros(4, 3)), {}, ValueError, "logits must have size 5"),
    "logits_nan": (_nan_rollout_logits, {}, ValueError, "row 4: logits contain NaN"),
    "logits_all_minus_inf": (lambda: _rollout_with(logits=torch.full((5, 3), -math.inf)), {}, ValueError, "logits of every legal action are -inf"),
    "logits_plus_inf": (lambda: _rollout_with(logits=torch.full((5, 3), math.inf)), {}, ValueError, "logits of every legal action are -inf/inf"),
    "logits_meta": (lambda: _rollout_with(logits=torch.zeros(5, 3, device="meta")), {}, TypeError, "logits must be on the same device"),
    "ids_int32": (lambda: _rollout_with(), {"ids": torch.arange(5, dtype=torch.int32)}, TypeError, "ids must be int64"),
    "ids_len": (lambda: _rollout_with(), {"ids": torch.arange(4)}, ValueError, "ids must have size 5"),
    "temperature_zero": (lambda: _rollout_with(), {"temperature": 0.0}, ValueError, "temperature must be a finite number > 0"),
    "temperature_negative": (lambda: _rollout_with(), {"temperature": -1.0}, ValueError, "temperature must be a finite number > 0"),
    "temperature_inf": (lambda: _rollout_with(), {"temperature": math.inf}, ValueError, "temperature must be a finite number > 0"),
    "temperature_nan": (lambda: _rollout_with(), {"temperature": math.nan}, ValueError, "temperature must be a finite number > 0"),
    "epsilon_negative": (lambda: _rollout_with(), {"epsilon": -0.01}, ValueError, "epsilon must be in \\[0, 1\\]"),
    "epsilon_above_one": (lambda: _rollout_with(), {"epsilon": 1.01}, ValueError, "epsilon must be in \\[0, 1\\]"),
    "epsilon_nan": (lambda: _rollout_with(), {"epsilon": math.nan}, ValueError, "epsilon must be in \\[0, 1\\]"),
}


@pytest.mark.parametrize("case", list(ROLLOUT_BAD))
def test_rollout_step_bad_input(case):
    make, kw, exc, match = ROLLOUT_BAD[case]
    env, d = make()
    with pytest.raises(exc, match=match):
        gfncore.ops.rollout_step(env, d["states"], d["mask"], d["logits"], seed=1, **kw)


def test_rollout_step_bad_sampling_args_in_reference_too():
    env, d = _ok_rollout()
    for kw, match in (({"temperature": 0.0}, "temperature"), ({"epsilon": 2.0}, "epsilon")):
        args = dict(temperature=1.0, epsilon=0.0)
        args.update(kw)
        with pytest.raises(ValueError, match=match):
            R.rollout_step(env.reference(), d["states"], d["mask"], d["logits"], None, 1, 0, **args)


def test_rollout_step_mask_allowing_an_illegal_action_is_caught():
    # a mask that is not the environment's: sampling an action the env cannot take must raise
    env = gfncore.envs.HyperGrid(2, 4)
    states = torch.full((6, 2), 3, dtype=torch.int32)  # at the top corner only stop is legal
    mask = torch.ones(6, 3, dtype=torch.bool)
    logits = torch.tensor([[10.0, 0.0, -10.0]]).repeat(6, 1)
    with pytest.raises(ValueError, match="actions holds an action that is out of range or masked out"):
        gfncore.ops.rollout_step(env, states, mask, logits, seed=0)


@pytest.mark.parametrize("kw,exc,match", [
    ({"seed": -1}, ValueError, "seed must be in \\[0, 2\\*\\*63\\)"),
    ({"seed": 2**63}, ValueError, "seed must be in"),
    ({"seed": 1.5}, TypeError, "seed must be an int"),
    ({"seed": 0, "offset": -1}, ValueError, "offset must be in"),
    ({"seed": 0, "offset": "3"}, TypeError, "offset must be an int"),
])
def test_rollout_step_bad_seed_or_offset(kw, exc, match):
    env, d = _ok_rollout()
    with pytest.raises(exc, match=match):
        gfncore.ops.rollout_step(env, d["states"], d["mask"], d["logits"], **kw)


def test_rollout_step_largest_seed_and_offset_match_reference():
    env, d = _ok_rollout(n=50)
    d["logits"] = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    top = 2**63 - 1
    out = gfncore.ops.rollout_step(env, d["states"], d["mask"], d["logits"], seed=top, offset=top, epsilon=0.5)
    ref = R.rollout_step(env.reference(), d["states"], d["mask"], d["logits"], None, top, top, 1.0, 0.5)
    _assert_rollout_equal(out, ref, torch.float32)


def test_backward_with_expanded_grad():
    # loss.sum() / loss.mean() hand the backward a stride-0 gradient
    logits, mask, actions = _gather_inputs(13, 4, torch.float64, seed=21)
    x = logits.clone().requires_grad_(True)
    gfncore.ops.masked_log_softmax_gather(x, mask, actions).mean().backward()
    xr = logits.clone().requires_grad_(True)
    R.masked_log_softmax_gather(xr, mask, actions).mean().backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-12, atol=1e-12)
    inputs = _tb_inputs([1, 3, 2], torch.float64, False, seed=3)
    xs = [t.clone().requires_grad_(True) for t in (inputs[0], inputs[1], inputs[3], inputs[4])]
    gfncore.ops.trajectory_balance(xs[0], xs[1], inputs[2], xs[2], xs[3]).mean().backward()
    rs = [t.clone().requires_grad_(True) for t in (inputs[0], inputs[1], inputs[3], inputs[4])]
    R.trajectory_balance(rs[0], rs[1], inputs[2], rs[2], rs[3]).mean().backward()
    for a, b in zip(xs, rs):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-12)


def test_reference_fallback_path(monkeypatch):
    # On a device without compiled kernels the ops run their reference twins (forward and
    # backward); force that path on the CPU and compare with the kernels.
    import gfncore.ops._device as device

    logits, mask, actions = _gather_inputs(17, 5, torch.float64, seed=30)
    tb_in = _tb_inputs([1, 4, 2, 1], torch.float64, True, seed=31)
    env = gfncore.envs.HyperGrid(3, 4)
    r_in = _rollout_inputs(env, 40, torch.float64, seed=32)

    def run_all():
        g = _gather_value_and_grad(gfncore.ops.masked_log_softmax_gather, logits, mask, actions)
        t = _tb_value_and_grads(gfncore.ops.trajectory_balance, *tb_in)
        r = gfncore.ops.rollout_step(env, *r_in, seed=3, offset=1, temperature=0.8, epsilon=0.2)
        return g, t, r

    compiled = run_all()
    monkeypatch.setattr(device, "_warned", set())
    monkeypatch.setattr(device, "compiled_for", lambda t: False)  # the fused ops' and the rollout op's
    monkeypatch.setattr(device, "compiled_for_device", lambda d: False)  # and the environment's kernel
    with pytest.warns(RuntimeWarning, match="plain-PyTorch reference"):
        fallback = run_all()
    for a, b in zip([*compiled[0], *compiled[1]], [*fallback[0], *fallback[1]]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    _assert_rollout_equal(compiled[2], fallback[2], torch.float64)


def test_reference_backwards_match_autograd_of_reference_forwards():
    logits, mask, actions = _gather_inputs(23, 6, torch.float64, seed=40)
    grad = torch.randn(23, dtype=torch.float64)
    x = logits.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(R.masked_log_softmax_gather(x, mask, actions), x, grad)
    torch.testing.assert_close(R.masked_log_softmax_gather_backward(grad, logits, mask, actions), want)
    for per_traj_z in (False, True):
        pf, pb, off, lr, lz = _tb_inputs([1, 4, 2, 1, 3], torch.float64, per_traj_z, seed=41)
        grad = torch.randn(5, dtype=torch.float64)
        xs = [t.clone().requires_grad_(True) for t in (pf, pb, lr, lz)]
        want = torch.autograd.grad(R.trajectory_balance(xs[0], xs[1], off, xs[2], xs[3]), xs, grad)
        got = R.trajectory_balance_backward(grad, pf, pb, off, lr, lz)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            torch.testing.assert_close(g, w)


# ---------------------------------------------------------------------------------------------
# hardening regressions
@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_mask_bytes_other_than_0_and_1_read_as_true(dtype, device):
    # A bool tensor viewed from uint8 may hold any byte (2, 255...). The kernel reads the bytes and
    # tests != 0; reading such a byte as a C++ bool is undefined behaviour (UBSan reports it).
    logits, mask, actions = _gather_inputs(50, 7, dtype, seed=50)
    raw = mask.to(torch.uint8) * torch.randint(1, 256, mask.shape, generator=torch.Generator().manual_seed(51)).to(torch.uint8)
    odd = raw.view(torch.bool)
    assert bool((raw > 1).any()) and torch.equal(odd.view(torch.uint8) != 0, mask)
    y, g = _gather_value_and_grad(gfncore.ops.masked_log_softmax_gather, logits.to(device), odd.to(device),
                                  actions.to(device))
    y_r, g_r = _gather_value_and_grad(R.masked_log_softmax_gather, logits, mask, actions)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y.cpu(), y_r, **tol)
    torch.testing.assert_close(g.cpu(), g_r, **tol)


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_gather_expanded_and_transposed_logits_are_handled(device):
    # A policy may return logits that are a broadcast (stride 0) or a transpose: the op makes them
    # dense instead of rejecting them, and the gradient reaches the original leaf.
    gen = torch.Generator().manual_seed(52)
    N, A = 9, 4
    row = torch.randn(1, A, dtype=torch.float64, generator=gen).to(device).requires_grad_(True)
    mask = torch.ones(N, A, dtype=torch.bool, device=device)[:1].expand(N, A)
    actions = torch.randint(0, A, (N,), generator=gen).to(device)
    y = gfncore.ops.masked_log_softmax_gather(row.expand(N, A), mask, actions)
    w = torch.linspace(0.5, 1.5, N, dtype=torch.float64, device=device)
    (y * w).sum().backward()
    row_r = row.detach().clone().requires_grad_(True)
    y_r = R.masked_log_softmax_gather(row_r.expand(N, A).contiguous(), mask.contiguous(), actions)
    (y_r * w).sum().backward()
    torch.testing.assert_close(y.detach(), y_r.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(row.grad, row_r.grad, rtol=1e-12, atol=1e-12)
    t = torch.randn(A, N, dtype=torch.float64, generator=gen).to(device)
    torch.testing.assert_close(gfncore.ops.masked_log_softmax_gather(t.t(), mask, actions),
                               R.masked_log_softmax_gather(t.t().contiguous(), mask.contiguous(), actions))


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_rollout_and_backward_steps_take_stride_zero_inputs(device):
    env = gfncore.envs.HyperGrid(2, 5)
    n = 6
    states = torch.ones(1, 2, dtype=torch.int32, device=device).expand(n, 2)
    mask = env.forward_mask(states.contiguous())[:1].expand(n, 3)
    logits = torch.tensor([[0.3, -0.2, 0.1]], device=device).expand(n, 3)
    out = gfncore.ops.rollout_step(env, states, mask, logits, seed=4, offset=1)
    ref = R.rollout_step(env.reference(), states.contiguous().cpu(), mask.contiguous().cpu(), logits.contiguous().cpu(),
                         None, 4, 1, 1.0, 0.0)
    _assert_rollout_equal(out, ref, torch.float32)
    blogits = torch.tensor([[0.5, -0.5]], device=device).expand(n, 2)
    b = gfncore.ops.backward_rollout_step(env, states, blogits, seed=4, offset=1)
    b_ref = R.backward_rollout_step(env.reference(), states.contiguous().cpu(), blogits.contiguous().cpu(), None, 4, 1,
                                    1.0, 0.0)
    for x, y in zip(b, b_ref):
        torch.testing.assert_close(x.cpu(), y)


@pytest.mark.parametrize("seed,exc,match", [
    (-1, ValueError, r"backward_rollout_step: seed must be in \[0, 2\*\*63\)"),
    (2**63, ValueError, r"backward_rollout_step: seed must be in \[0, 2\*\*63\)"),
    (2**64, ValueError, r"backward_rollout_step: seed must be in \[0, 2\*\*63\)"),
    (1.5, TypeError, "backward_rollout_step: seed must be an int"),
])
def test_backward_rollout_step_bad_seed_is_a_clear_error(seed, exc, match):
    # used to reach pybind11 / the torch schema and print their signature dumps
    env = gfncore.envs.HyperGrid(2, 4)
    states = torch.ones(3, 2, dtype=torch.int32)
    with pytest.raises(exc, match=match):
        gfncore.ops.backward_rollout_step(env, states, seed=seed)
    with pytest.raises(ValueError, match=r"backward_rollout_step: offset must be in"):
        gfncore.ops.backward_rollout_step(env, states, seed=0, offset=-1)


def test_backward_rollout_step_largest_seed_matches_reference():
    env = gfncore.envs.HyperGrid(3, 4)
    states = torch.randint(1, 4, (40, 3), generator=torch.Generator().manual_seed(0), dtype=torch.int32)
    top = 2**63 - 1
    out = gfncore.ops.backward_rollout_step(env, states, seed=top, offset=top)
    ref = R.backward_rollout_step(env.reference(), states, torch.zeros(40, 3), None, top, top, 1.0, 0.0)
    for x, y in zip(out, ref):
        torch.testing.assert_close(x, y)
