"""Fused balance objectives (TB with per-trajectory log Z, DB, modified DB, SubTB(lambda), flow
matching, ZVar) against their plain-PyTorch twins: values, gradients, opcheck, bad input."""
from __future__ import annotations

import math
import warnings
import zlib

import pytest
import torch

import gfncore.ops as ops
from gfncore.ops import reference as ref
from conftest import cpu_and_cuda

LENGTHS = {
    "stop_only": [1, 1, 1],
    "mixed": [1, 3, 7, 2, 12, 1, 5],
    "batch_of_one": [9],
    "odd": [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5],
    "empty": [],
}


def _offsets(lengths, device="cpu"):
    return torch.tensor([0] + list(lengths), dtype=torch.int64).cumsum(0).to(device)


def _vec(n, dtype, gen, noncontig=False, device="cpu"):
    if noncontig:  # every other element of a longer buffer
        return torch.randn(2 * n, dtype=dtype, generator=gen).to(device)[::2]
    return torch.randn(n, dtype=dtype, generator=gen).to(device)


def _fm_inputs(n, dtype, gen, noncontig=False, P=4, A=5, device="cpu"):
    if noncontig:
        log_in = torch.randn(P + 3, n, dtype=dtype, generator=gen).to(device).t()[:, :P]
        log_out = torch.randn(A, n, dtype=dtype, generator=gen).to(device).t()
    else:
        log_in = torch.randn(n, P, dtype=dtype, generator=gen).to(device)
        log_out = torch.randn(n, A, dtype=dtype, generator=gen).to(device)
    in_count = torch.randint(0, P + 1, (n,), generator=gen)
    if n:
        in_count[0] = 0  # the initial state: no parents
    out_mask = torch.rand(n, A, generator=gen) < 0.5
    out_mask[:, -1] = True  # every state has its stop (or some) out-edge
    return log_in, in_count.to(device), log_out, out_mask.to(device)


# Each objective: (fused, reference, inputs(lengths, dtype, gen, noncontig, device), differentiable positions)
def _packed(lengths, dtype, gen, noncontig, n_rows, n_traj, device="cpu"):
    off = _offsets(lengths, device)
    T, B = sum(lengths), len(lengths)
    return ([_vec(T, dtype, gen, noncontig, device) for _ in range(n_rows)], off,
            [_vec(B, dtype, gen, noncontig, device) for _ in range(n_traj)])


def _tb_in(lengths, dtype, gen, nc=False, device="cpu"):
    (pf, pb), off, (lr, lz) = _packed(lengths, dtype, gen, nc, 2, 2, device)
    return [pf, pb, off, lr, lz]


def _tbl_in(lengths, dtype, gen, nc=False, device="cpu", A=4):
    T = sum(lengths)
    logits = (torch.randn(A, T, dtype=dtype, generator=gen).to(device).t() if nc else
              torch.randn(T, A, dtype=dtype, generator=gen).to(device))
    mask = torch.rand(T, A, generator=gen) < 0.6
    actions = torch.randint(0, A, (T,), generator=gen)
    mask[torch.arange(T), actions] = True
    (pb,), off, (lr, lz) = _packed(lengths, dtype, gen, nc, 1, 2, device)
    return [logits, mask.to(device), actions.to(device), pb, off, lr, lz]


def _db_in(lengths, dtype, gen, nc=False, device="cpu"):
    (pf, pb, lf), off, (lr,) = _packed(lengths, dtype, gen, nc, 3, 1, device)
    return [pf, pb, lf, off, lr]


def _mdb_in(lengths, dtype, gen, nc=False, device="cpu"):
    (pf, pb, ps, lrs), off, _ = _packed(lengths, dtype, gen, nc, 4, 0, device)
    return [pf, pb, ps, lrs, off]


def _zvar_in(lengths, dtype, gen, nc=False, device="cpu"):
    (pf, pb), off, (lr,) = _packed(lengths, dtype, gen, nc, 2, 1, device)
    return [pf, pb, off, lr]


def _fm_in(lengths, dtype, gen, nc=False, device="cpu"):
    return list(_fm_inputs(sum(lengths) + len(lengths), dtype, gen, nc, device=device))


def _subtb(lam):
    return (lambda *a: ops.subtrajectory_balance(*a, lam), lambda *a: ref.subtrajectory_balance(*a, lam), _db_in,
            (0, 1, 2, 4))


def _tbl_ref(logits, mask, actions, *rest):
    return ref.trajectory_balance(ref.masked_log_softmax_gather(logits, mask, actions), *rest)


OBJECTIVES = {
    "tb_per_traj_log_z": (ops.trajectory_balance, ref.trajectory_balance, _tb_in, (0, 1, 3, 4)),
    "tb_from_logits": (ops.trajectory_balance_from_logits, _tbl_ref, _tbl_in, (0, 3, 5, 6)),
    "tb_from_logits_mean": (lambda *a: ops.trajectory_balance_from_logits(*a, reduction="mean"),
                            lambda *a: _tbl_ref(*a).mean(), _tbl_in, (0, 3, 5, 6)),
    "db": (ops.detailed_balance, ref.detailed_balance, _db_in, (0, 1, 2, 4)),
    "mdb": (ops.modified_detailed_balance, ref.modified_detailed_balance, _mdb_in, (0, 1, 2, 3)),
    "subtb_0.9": _subtb(0.9),
    "subtb_1": _subtb(1.0),
    "subtb_0.01": _subtb(0.01),
    "subtb_2.5": _subtb(2.5),
    "fm": (ops.flow_matching, ref.flow_matching, _fm_in, (0, 2)),
    "zvar": (ops.log_partition_variance, ref.log_partition_variance, _zvar_in, (0, 1, 3)),
}


def _grads(fn, args, diff, w):
    xs = [a.detach().requires_grad_(i in diff) if a.is_floating_point() else a for i, a in enumerate(args)]
    y = fn(*xs)
    if not y.requires_grad:  # the reference's empty batch has no graph
        return y.detach(), [torch.zeros_like(xs[i]) for i in diff]
    gs = torch.autograd.grad((y * w).sum(), [xs[i] for i in diff], allow_unused=True, materialize_grads=True)
    return y.detach(), list(gs)


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("shape", list(LENGTHS))
@pytest.mark.parametrize("noncontig", [False, True])
@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_matches_reference_float64(name, shape, noncontig, device):
    fused, refn, make, diff = OBJECTIVES[name]
    gen = torch.Generator().manual_seed(zlib.crc32(f"{name}/{shape}".encode()))
    args = make(LENGTHS[shape], torch.float64, gen, noncontig, device)
    if noncontig and LENGTHS[shape]:
        assert any(a.is_floating_point() and not a.is_contiguous() for a in args)
    y_ref = refn(*args)
    w = torch.randn(y_ref.shape, dtype=torch.float64, generator=gen).to(device)
    y, g = _grads(fused, args, diff, w)
    y_r, g_r = _grads(refn, args, diff, w)
    assert y.shape == y_r.shape and y.dtype == torch.float64
    torch.testing.assert_close(y, y_r, rtol=1e-10, atol=1e-10, equal_nan=True)  # NaN: the mean of no trajectory
    for a, b in zip(g, g_r):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_float32_within_twice_torch_error(name, device):
    # STYLE.md #10: the kernel's float32 error against the float64 reference is at most about
    # twice that of the reference run in float32 (plus one float32 ulp of the output's scale,
    # for the final rounding of a value that plain PyTorch may happen to get exact).
    fused, refn, make, diff = OBJECTIVES[name]
    gen = torch.Generator().manual_seed(7)
    args64 = make([int(n) for n in torch.randint(1, 40, (64,), generator=gen)], torch.float64, gen, device=device)
    args32 = [a.float() if a.is_floating_point() else a for a in args64]
    w = torch.randn(refn(*args64).shape, dtype=torch.float64, generator=gen).to(device)
    y64, g64 = _grads(refn, args64, diff, w)
    y32, g32 = _grads(fused, args32, diff, w.float())
    yt, gt = _grads(refn, args32, diff, w.float())
    ulp = torch.finfo(torch.float32).eps
    for k, t, r in [(y32, yt, y64)] + list(zip(g32, gt, g64)):
        err_k = (k.double() - r).abs().max().item()
        err_t = (t.double() - r).abs().max().item()
        assert k.dtype == torch.float32
        assert err_k <= 2 * err_t + ulp * r.abs().max().item(), (err_k, err_t)


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("name", ["tb_per_traj_log_z", "tb_from_logits", "db", "mdb", "subtb_0.9", "subtb_2.5", "fm",
                                  "zvar"])
def test_gradcheck(name, device):
    fused, _, make, diff = OBJECTIVES[name]
    gen = torch.Generator().manual_seed(3)
    args = make([1, 4, 2, 6], torch.float64, gen, device=device)
    args = [a.requires_grad_(True) if i in diff else a for i, a in enumerate(args)]
    assert torch.autograd.gradcheck(lambda *a: fused(*a), args)


OPCHECK = {
    "detailed_balance": (_db_in, ()),
    "modified_detailed_balance": (_mdb_in, ()),
    "subtrajectory_balance": (_db_in, (0.9,)),
    "flow_matching": (_fm_in, ()),
    "log_partition_variance": (_zvar_in, ()),
    "trajectory_balance": (_tb_in, ()),
    "trajectory_balance_from_logits": (_tbl_in, ()),
}


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("shape", ["mixed", "empty"])
@pytest.mark.parametrize("op", list(OPCHECK))
def test_opcheck(op, shape, device):
    make, extra = OPCHECK[op]
    gen = torch.Generator().manual_seed(11)
    args = [a.requires_grad_(True) if a.is_floating_point() else a
            for a in make(LENGTHS[shape], torch.float64, gen, device=device)]
    torch.library.opcheck(getattr(torch.ops.gfncore, op).default, (*args, *extra))
    y = getattr(torch.ops.gfncore, op)(*args, *extra)
    grad = torch.randn(y.shape, dtype=torch.float64, generator=gen).to(device)
    torch.library.opcheck(getattr(torch.ops.gfncore, op + "_backward").default,
                          (grad, *(a.detach() for a in args), *extra))


def test_subtb_long_trajectory_lam_above_one_stays_finite():
    # lam^L overflows float64 for L * ln(lam) > 709; the kernel's rescaled weights do not.
    gen = torch.Generator().manual_seed(5)
    L = 1200
    pf, pb, lf, off, lr = _db_in([L, 3], torch.float64, gen)
    pf.requires_grad_(True)
    y = ops.subtrajectory_balance(pf, pb, lf, off, lr, 2.0)
    (g,) = torch.autograd.grad(y.sum(), pf)
    assert torch.isfinite(y).all() and torch.isfinite(g).all()
    # Weight lam^(k-j) / lam^L concentrates on the longest sub-trajectories: for lam = 2 the full
    # trajectory, then the two that drop one end node, ... Compare with a direct float64 sum over
    # the sub-trajectories whose relative weight is above 1e-30.
    x = (pf - ref.move_log_pb(pb, off)).detach()  # the stop row's log_pb counts as 0
    flows = torch.cat([lf[:L], lr[:1]])
    P = torch.cat([torch.zeros(1, dtype=torch.float64), x[:L].cumsum(0)])
    num = den = 0.0
    for drop in range(100):  # drop = L - (k - j): weight 2^-drop
        for j in range(drop + 1):
            k = j + L - drop
            r = (flows[j] + P[k] - P[j] - flows[k]).item()
            num += 2.0 ** -drop * r * r
            den += 2.0 ** -drop
    assert math.isclose(y[0].item(), num / den, rel_tol=1e-9)


def test_tb_per_trajectory_log_z_gets_its_own_gradient():
    gen = torch.Generator().manual_seed(2)
    pf, pb, off, lr, lz = _tb_in([2, 5, 1], torch.float64, gen)
    lz.requires_grad_(True)
    y = ops.trajectory_balance(pf, pb, off, lr, lz)
    (g,) = torch.autograd.grad(y.sum(), lz)
    r = lz.detach() + ref.segment_sum(pf - ref.move_log_pb(pb, off), off) - lr
    torch.testing.assert_close(g, 2 * r)


def test_zvar_gradient_includes_the_mean():
    # Shifting every log-reward by the same constant leaves ZVar unchanged: its gradient sums to 0.
    gen = torch.Generator().manual_seed(4)
    pf, pb, off, lr = _zvar_in([3, 1, 4, 2], torch.float64, gen)
    lr.requires_grad_(True)
    (g,) = torch.autograd.grad(ops.log_partition_variance(pf, pb, off, lr).sum(), lr)
    assert abs(g.sum().item()) < 1e-12 and g.abs().max().item() > 1e-3


def test_fm_parentless_state_gives_zero_and_no_gradient():
    log_in = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    log_out = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    y = ops.flow_matching(log_in, torch.tensor([0, 2]), log_out, torch.ones(2, 2, dtype=torch.bool))
    gi, go = torch.autograd.grad(y.sum(), [log_in, log_out])
    assert y[0].item() == 0.0 and y[1].item() > 0.0
    assert (gi[0] == 0).all() and (go[0] == 0).all() and (gi[1, 2] == 0) and (gi[1, :2] != 0).all()


@pytest.mark.parametrize("name", ["db", "mdb", "subtb_0.9", "zvar", "fm"])
def test_nan_propagates_without_error(name):
    # A NaN spoils the residuals it enters (for ZVar, through the batch mean, all of them) and no other.
    fused, refn, make, _ = OBJECTIVES[name]
    gen = torch.Generator().manual_seed(1)
    args = make([2, 3, 4], torch.float64, gen)
    args[0][3] = float("nan")  # a row of the second trajectory
    y = fused(*args)
    assert torch.isnan(y).any()
    torch.testing.assert_close(y, refn(*args), equal_nan=True)


# --- bad input ------------------------------------------------------------------------------
def _db_args():
    return _db_in([2, 3], torch.float64, torch.Generator().manual_seed(0))


def _with(args, i, value):
    args = list(args)
    args[i] = value
    return args


PACKED_OPS = {
    "db": (ops.detailed_balance, _db_in, 2, 3),  # (fn, inputs, index of a [T] float, index of offsets)
    "mdb": (ops.modified_detailed_balance, _mdb_in, 2, 4),
    "subtb": (lambda *a: ops.subtrajectory_balance(*a, 0.9), _db_in, 2, 3),
    "zvar": (ops.log_partition_variance, _zvar_in, 1, 2),
}
ROW_NAMES = {"db": "log_flow", "mdb": "log_pf_stop", "subtb": "log_flow", "zvar": "log_pb"}


@pytest.mark.parametrize("name", list(PACKED_OPS))
def test_bad_packed_inputs_raise(name):
    fn, make, row_i, off_i = PACKED_OPS[name]
    args = make([2, 3], torch.float64, torch.Generator().manual_seed(0))
    row = ROW_NAMES[name]
    with pytest.raises(ValueError, match=f"{row} must have size 5"):
        fn(*_with(args, row_i, args[row_i][:4]))
    with pytest.raises(TypeError, match=f"{row} and log_pf must have the same dtype|log_pf and {row}"):
        fn(*_with(args, row_i, args[row_i].float()))
    with pytest.raises(TypeError, match="log_pf must be float32 or float64"):
        fn(*_with(args, 0, args[0].long()))
    with pytest.raises(ValueError, match="log_pf must have 1 dimension"):
        fn(*_with(args, 0, args[0][:, None]))
    with pytest.raises(TypeError, match="offsets must be int64"):
        fn(*_with(args, off_i, args[off_i].int()))
    for bad in ([1, 2, 5], [0, 2, 4], [0, 3, 3, 5][:3], [0, 4, 2]):
        with pytest.raises(ValueError, match="offsets must start at 0, increase strictly"):
            fn(*_with(args, off_i, torch.tensor(bad)))


@pytest.mark.parametrize("name", ["db", "subtb", "zvar"])
def test_bad_log_reward_raises(name):
    fn, make, _, _ = PACKED_OPS[name]
    args = make([2, 3], torch.float64, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="log_reward must have size 2"):
        fn(*_with(args, len(args) - 1, args[-1][:1]))


def test_mdb_bad_log_reward_state_raises():
    args = _mdb_in([2, 3], torch.float64, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="log_reward_state must have size 5"):
        ops.modified_detailed_balance(*_with(args, 3, args[3][:2]))


@pytest.mark.parametrize("lam", [0.0, -0.5, float("nan"), float("inf")])
def test_subtb_bad_lam_raises(lam):
    with pytest.raises(ValueError, match="lam must be a finite number > 0"):
        ops.subtrajectory_balance(*_db_args(), lam)


def test_fm_bad_inputs_raise():
    log_in, in_count, log_out, out_mask = _fm_inputs(6, torch.float64, torch.Generator().manual_seed(0))
    for bad in (5, -1):
        c = in_count.clone()
        c[2] = bad
        with pytest.raises(ValueError, match=r"state 2: in_count must be in \[0, P\] = \[0, 4\]"):
            ops.flow_matching(log_in, c, log_out, out_mask)
    m = out_mask.clone()
    m[3] = False
    with pytest.raises(ValueError, match="state 3: out_mask allows no out-edge"):
        ops.flow_matching(log_in, in_count, log_out, m)
    with pytest.raises(TypeError, match="out_mask must be bool"):
        ops.flow_matching(log_in, in_count, log_out, out_mask.to(torch.uint8))
    with pytest.raises(TypeError, match="in_count must be int64"):
        ops.flow_matching(log_in, in_count.int(), log_out, out_mask)
    with pytest.raises(ValueError, match="log_out must have size 6"):
        ops.flow_matching(log_in, in_count, log_out[:5], out_mask[:5])
    with pytest.raises(ValueError, match="out_mask must have size 5"):
        ops.flow_matching(log_in, in_count, log_out, out_mask[:, :4])
    with pytest.raises(TypeError, match="log_out and log_in must have the same dtype|log_in and log_out"):
        ops.flow_matching(log_in, in_count, log_out.float(), out_mask)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU for a second device")
def test_mixed_devices_raise():
    pf, pb, lf, off, lr = _db_args()
    with pytest.raises((TypeError, ValueError), match="same device"):
        ops.detailed_balance(pf.cuda(), pb.cuda(), lf.cuda(), off, lr.cuda())


@pytest.mark.parametrize("shape", ["mixed", "empty"])
@pytest.mark.parametrize("name", ["tb_per_traj_log_z", "tb_from_logits", "tb_from_logits_mean", "db", "mdb", "subtb_0.9",
                                  "fm", "zvar"])
def test_reference_fallback_matches_kernel(name, shape, monkeypatch):
    # On a device without a compiled kernel both the forward and the backward op use the reference.
    import gfncore.ops._device as device

    fused, _, make, diff = OBJECTIVES[name]
    args = make(LENGTHS[shape], torch.float64, torch.Generator().manual_seed(8))
    w = torch.randn(fused(*args).shape, dtype=torch.float64)
    y, g = _grads(fused, args, diff, w)
    monkeypatch.setattr(device, "compiled_for", lambda t: False)
    monkeypatch.setattr(device, "compiled_for_device", lambda d: False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the one-time fallback notice
        y_fb, g_fb = _grads(fused, args, diff, w)
    torch.testing.assert_close(y_fb, y, equal_nan=True)
    for a, b in zip(g_fb, g):
        torch.testing.assert_close(a, b)


# --- conventions and hardening --------------------------------------------------------------
# Objectives with a log_pb argument, and its position.
WITH_LOG_PB = {"tb_per_traj_log_z": 1, "tb_from_logits": 3, "tb_from_logits_mean": 3, "db": 1, "mdb": 1, "subtb_0.9": 1, "subtb_2.5": 1,
               "zvar": 1}


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("name", list(WITH_LOG_PB))
def test_stop_row_log_pb_is_ignored_with_zero_gradient(name, device):
    # The stop row's log P_B is 0 by definition: any value stored there changes neither the loss
    # nor any gradient, and gets gradient 0 itself, in the kernels and in the references alike.
    fused, refn, make, diff = OBJECTIVES[name]
    gen = torch.Generator().manual_seed(21)
    lengths = [1, 4, 2, 1, 6]
    args = make(lengths, torch.float64, gen, device=device)
    i = WITH_LOG_PB[name]
    stop = _offsets(lengths, device)[1:] - 1
    zero, junk = list(args), list(args)
    zero[i] = args[i].index_fill(0, stop, 0.0)
    junk[i] = args[i].index_fill(0, stop, 0.0).index_put((stop,), torch.randn(len(lengths), dtype=torch.float64,
                                                                            generator=gen).to(device) * 5)
    assert not torch.equal(zero[i], junk[i])
    w = torch.randn(refn(*zero).shape, dtype=torch.float64, generator=gen).to(device)
    for fn in (fused, refn):
        y0, g0 = _grads(fn, zero, diff, w)
        y1, g1 = _grads(fn, junk, diff, w)
        torch.testing.assert_close(y1, y0, rtol=1e-12, atol=1e-12)
        for a, b in zip(g1, g0):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        g_pb = g1[diff.index(i)]
        assert bool((g_pb[stop] == 0).all())
        assert bool((g_pb.index_fill(0, stop, 0.0) != 0).any())  # the moves' log_pb do get gradients


# Every fused op with arguments for it: name -> (public fn, inputs maker, extra scalars)
FUSED = {
    "trajectory_balance": (ops.trajectory_balance, _tb_in, ()),
    "trajectory_balance_from_logits": (ops.trajectory_balance_from_logits, _tbl_in, ()),
    "detailed_balance": (ops.detailed_balance, _db_in, ()),
    "modified_detailed_balance": (ops.modified_detailed_balance, _mdb_in, ()),
    "subtrajectory_balance": (ops.subtrajectory_balance, _db_in, (0.9,)),
    "flow_matching": (ops.flow_matching, _fm_in, ()),
    "log_partition_variance": (ops.log_partition_variance, _zvar_in, ()),
    "masked_log_softmax_gather": (ops.masked_log_softmax_gather, lambda *a, **k: _tbl_in(*a, **k)[:3], ()),
}
FUSED_SLOTS = [(name, i) for name, (_, make, _) in FUSED.items()
               for i in range(len(make([2, 1], torch.float64, torch.Generator())))]


@pytest.mark.parametrize("name,slot", FUSED_SLOTS)
def test_one_meta_argument_raises_not_garbage(name, slot):
    # A meta tensor among CPU tensors sends the call to the fake kernel, which must refuse
    # (it used to return uninitialised CPU memory as the loss for db, mdb, subtb, fm and zvar).
    fn, make, extra = FUSED[name]
    args = make([2, 3], torch.float64, torch.Generator().manual_seed(0))
    args[slot] = torch.empty_like(args[slot], device="meta")
    with pytest.raises(TypeError, match="must be on the same device as"):
        fn(*args, *extra)


@pytest.mark.parametrize("name", list(FUSED))
def test_all_meta_arguments_give_meta_outputs_of_the_right_shape(name):
    fn, make, extra = FUSED[name]
    args = make([2, 3, 1], torch.float64, torch.Generator().manual_seed(0))
    want = fn(*args, *extra)
    y = fn(*[torch.empty_like(a, device="meta") for a in args], *extra)
    assert y.device.type == "meta" and y.shape == want.shape and y.dtype == want.dtype


@pytest.mark.parametrize("name,slot", FUSED_SLOTS)
def test_meta_arguments_with_a_wrong_size_raise_like_the_kernel(name, slot):
    # The fake kernel checks what the compiled kernel checks, so shape errors surface under
    # torch.compile / meta tracing too, with the kernel's message.
    fn, make, extra = FUSED[name]
    args = make([2, 3], torch.float64, torch.Generator().manual_seed(0))
    bad = list(args)
    bad[slot] = torch.cat([args[slot], args[slot][:1]]) if args[slot].dim() else args[slot].expand(7)
    with pytest.raises(ValueError) as cpu_err:
        fn(*bad, *extra)
    if "offsets must start at 0" in str(cpu_err.value):
        return  # offsets' values (not their size) were wrong: nothing a meta tensor can show
    with pytest.raises(ValueError) as meta_err:
        fn(*[torch.empty_like(a, device="meta") for a in bad], *extra)
    # Same argument, same complaint (the fused gather + TB kernel names TB's own log_pf).
    name_cpu, name_meta = str(cpu_err.value).split(" ")[0], str(meta_err.value).split(": ", 1)[1].split(" ")[0]
    assert name_meta == name_cpu and "must" in str(meta_err.value)
    if name != "trajectory_balance_from_logits":
        assert str(meta_err.value).endswith(str(cpu_err.value))


def _expanded(t: torch.Tensor) -> torch.Tensor:
    """t with its first dimension as a stride-0 view (every row a copy of row 0)."""
    if t.dim() == 0 or t.shape[0] == 0:
        return t
    return t[:1].expand(t.shape)


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_stride_zero_inputs_are_handled(name, device):
    # Expanded (stride-0) and transposed inputs are made dense, not rejected; gradients reach
    # the expanded leaves summed over their copies, as autograd does for the reference.
    fused, refn, make, diff = OBJECTIVES[name]
    gen = torch.Generator().manual_seed(9)
    args = make([3, 1, 4, 2], torch.float64, gen, device=device)
    args = [_expanded(a) if a.is_floating_point() else a for a in args]
    if name == "tb_from_logits":  # the mask and actions too (every row the first row's)
        args[1], args[2] = _expanded(args[1]), _expanded(args[2])
    assert any(a.dim() and a.stride(0) == 0 for a in args)
    w = torch.randn(refn(*[a.contiguous() for a in args]).shape, dtype=torch.float64, generator=gen).to(device)
    y, g = _grads(fused, args, diff, w)
    y_r, g_r = _grads(refn, [a.contiguous() for a in args], diff, w)
    torch.testing.assert_close(y, y_r, rtol=1e-10, atol=1e-10)
    for a, b in zip(g, g_r):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name,slot", [(n, s) for n, s in FUSED_SLOTS if n != "masked_log_softmax_gather"])
def test_huge_stride_zero_input_is_a_clear_error(name, slot):
    # A stride-0 view can describe more elements than any memory holds: the op must say so
    # (MemoryError, or the ValueError of a size that does not match) before asking the allocator.
    fn, make, extra = FUSED[name]
    args = make([2, 3], torch.float64, torch.Generator().manual_seed(0))
    a = args[slot]
    if a.dim() == 0:
        return
    huge = (2**40,) + tuple(a.shape[1:])
    args[slot] = a.reshape(-1)[:1].reshape((1,) * a.dim()).expand(huge)
    with pytest.raises((MemoryError, ValueError), match="bytes|must have size|must be a scalar or have shape"):
        fn(*args, *extra)


def test_huge_stride_zero_inputs_that_agree_raise_memory_error():
    # All [T] arrays agree on a T that no machine can hold: the sizes are valid, the memory is not.
    T = 2**40
    x = torch.zeros(1, dtype=torch.float64).expand(T)
    off = torch.tensor([0, T])
    with pytest.raises(MemoryError, match="log_pf would need 8796093022208 bytes"):
        ops.detailed_balance(x, x, x, off, torch.zeros(1, dtype=torch.float64))


def test_fm_mask_bytes_other_than_0_and_1_read_as_true():
    # A bool tensor reinterpreted from uint8 may hold any byte; the kernel reads bytes and tests
    # != 0 (reading 2 as a C++ bool is undefined behaviour, which UBSan reports).
    log_in, in_count, log_out, out_mask = _fm_inputs(40, torch.float64, torch.Generator().manual_seed(2))
    raw = out_mask.to(torch.uint8) * torch.randint(1, 256, out_mask.shape, generator=torch.Generator().manual_seed(3),
                                                     dtype=torch.int64).to(torch.uint8)
    odd = raw.view(torch.bool)
    assert bool(((raw > 1) & out_mask).any())
    li, lo = log_in.clone().requires_grad_(True), log_out.clone().requires_grad_(True)
    y = ops.flow_matching(li, in_count, lo, odd)
    y.sum().backward()
    li_r, lo_r = log_in.clone().requires_grad_(True), log_out.clone().requires_grad_(True)
    y_r = ref.flow_matching(li_r, in_count, lo_r, out_mask)
    y_r.sum().backward()
    torch.testing.assert_close(y, y_r)
    torch.testing.assert_close(li.grad, li_r.grad)
    torch.testing.assert_close(lo.grad, lo_r.grad)


@pytest.mark.parametrize("name", ["db", "mdb", "subtb", "zvar"])
def test_offsets_of_an_empty_batch_must_be_zero(name):
    # No trajectory row runs to look at offsets[0] when B = 0: the binding checks it itself.
    fn, make, _, off_i = PACKED_OPS[name]
    args = make([], torch.float64, torch.Generator().manual_seed(0))
    assert fn(*args).numel() == 0
    with pytest.raises(ValueError, match=r"offsets must start at 0.*got \[3\]"):
        fn(*_with(args, off_i, torch.tensor([3])))


def test_tb_offsets_of_an_empty_batch_must_be_zero():
    e = torch.zeros(0, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"offsets must start at 0.*got \[-1\]"):
        ops.trajectory_balance(e, e, torch.tensor([-1]), e, torch.tensor(0.0, dtype=torch.float64))


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_tb_from_logits_mean_is_the_mean_of_the_per_trajectory_op(device):
    # reduction="mean" (what the tb loss calls) folds the batch mean into the op: same value and
    # gradients as .mean() of the per-trajectory output, and the op checks like any other.
    gen = torch.Generator().manual_seed(31)
    args = _tbl_in([3, 1, 5, 2], torch.float64, gen, device=device)
    diff = (0, 3, 5, 6)
    w = torch.ones((), dtype=torch.float64, device=device)
    y, g = _grads(lambda *a: ops.trajectory_balance_from_logits(*a, reduction="mean"), args, diff, w)
    y_r, g_r = _grads(lambda *a: ops.trajectory_balance_from_logits(*a).mean(), args, diff, w)
    assert y.shape == ()
    torch.testing.assert_close(y, y_r, rtol=1e-12, atol=1e-12)
    for a, b in zip(g, g_r):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    xs = [a.requires_grad_(True) if i in diff else a for i, a in enumerate(args)]
    assert torch.autograd.gradcheck(lambda *a: ops.trajectory_balance_from_logits(*a, reduction="mean"), xs)
    torch.library.opcheck(torch.ops.gfncore.trajectory_balance_from_logits_mean.default, tuple(xs))
    with pytest.raises(ValueError, match="reduction must be 'none' or 'mean'"):
        ops.trajectory_balance_from_logits(*args, reduction="sum")
