"""What the fuzz suite (tests/test_fuzz_ops.py) throws at each public op, and how it judges the outcome.

A case is plain JSON data drawn by hypothesis in the test process: a target, a seed, sizes, a
dtype and a few mutations. This module, run as a script, is the worker that turns cases into
tensors, calls the op and judges it, one JSON line per case, so that a crash ends the worker and
not the test session:

- correct: the op returned, and its values (and, for finite inputs, gradients) match
  gfncore.ops.reference on the same input made dense (meta inputs: the shapes the CPU gives);
- error: the op raised ValueError / TypeError / IndexError / MemoryError with a message, for an
  input some mutation made invalid;
- anything else is a failure: wrong values, a valid input rejected, an op that accepts what the
  reference rejects, an unclear error (RuntimeError from inside torch, a pybind11 signature dump).

Re-run one case here, with its traceback:  python tests/fuzz_targets.py --replay '<case json>'

Adding a target is one entry in TARGETS: a hypothesis strategy for its cases and a runner.
"""
from __future__ import annotations

import json
import math
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Callable

CLEAR = (ValueError, TypeError, IndexError, MemoryError)
# Messages that are TypeErrors but tell the user nothing about their argument.
UNCLEAR_MARKERS = ("incompatible function arguments", "Invoked with", "Expected a value of type", "Declaration:")

# ---------------------------------------------------------------------------------------------
# Case strategies (hypothesis is imported only where cases are drawn).
MUTATIONS_TENSOR = ("noncontig", "expand", "dtype", "rank_up", "rank_down", "grow", "shrink", "nonfinite",
                    "meta_one", "meta_all", "not_tensor", "huge")
MUTATIONS_FUSED = MUTATIONS_TENSOR + ("offsets", "actions", "all_masked", "mask_bytes", "count", "scalar")
MUTATIONS_ENV = MUTATIONS_TENSOR + ("mask_bytes", "all_masked", "states", "scalar", "illegal_mask")


def _case_strategy(target: str, mutations: tuple[str, ...], env: bool = False):
    from hypothesis import strategies as st

    mutation = st.tuples(st.sampled_from(mutations), st.integers(0, 15), st.integers(0, 2**16))
    fields = {
        "target": st.just(target),
        "seed": st.integers(0, 2**31 - 1),
        "dtype": st.sampled_from(["float32", "float64"]),
        "lengths": st.lists(st.integers(1, 8), max_size=6),
        "big": st.sampled_from([False] * 9 + [True]),  # a large batch takes the kernels' threaded path
        "width": st.integers(1, 6),
        "parents": st.integers(0, 4),
        "scale": st.sampled_from([1.0, 30.0]),
        "mutations": st.lists(mutation, max_size=3),
    }
    if env:
        fields["env"] = st.sampled_from([["hypergrid", 1, 4], ["hypergrid", 2, 3], ["hypergrid", 3, 5], ["ising", 2]])
        fields["n"] = st.integers(0, 9)
    return st.fixed_dictionaries(fields)


# ---------------------------------------------------------------------------------------------
# Judging.
class Wrong(Exception):
    """The op's outcome is a failure (wrong values, valid input rejected, ...)."""


def _call(fn, *args, **kw):
    try:
        return "ok", fn(*args, **kw)
    except CLEAR as e:
        msg = str(e)
        if not msg.strip() or any(m in msg for m in UNCLEAR_MARKERS):
            return "unclear", e
        return "clear", e
    except Exception as e:  # noqa: BLE001 - every other exception is the finding
        return "unclear", e


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e)[:300]}"


def _close(name: str, got, want, dtype, plain=None) -> None:
    """got (the op) against want (the reference, float64 for float outputs). For a float32 op the
    error may be at most about twice that of plain PyTorch float32 (`plain`: the reference run on
    the float32 inputs), STYLE.md #10, plus a few ulps of the values' scale."""
    import torch

    if not isinstance(got, torch.Tensor):
        raise Wrong(f"{name}: expected a tensor, got {type(got).__name__}")
    if tuple(got.shape) != tuple(want.shape):
        raise Wrong(f"{name}: shape {tuple(got.shape)} != reference {tuple(want.shape)}")
    if got.dtype.is_floating_point:
        g, w = got.detach().double().cpu(), want.detach().double().cpu()
        fin_g, fin_w = torch.isfinite(g), torch.isfinite(w)
        if not torch.equal(fin_g, fin_w):
            bad = (fin_g != fin_w).nonzero()[:3].tolist()
            raise Wrong(f"{name}: finite where the reference is not (or the reverse) at {bad}: "
                        f"{g[fin_g != fin_w][:3].tolist()} vs {w[fin_g != fin_w][:3].tolist()}")
        if fin_w.any():
            scale = 1.0 + float(w[fin_w].abs().max())
            if dtype == torch.float64:
                allowed = 1e-9 * scale
            else:
                plain_err = 0.0 if plain is None else float((plain.detach().double().cpu()[fin_w] - w[fin_w]).abs().max())
                allowed = 2 * plain_err + 8 * torch.finfo(torch.float32).eps * scale
            err = float((g[fin_w] - w[fin_w]).abs().max())
            if err > allowed:
                raise Wrong(f"{name}: max error {err:.3g} against the reference (allowed {allowed:.3g})")
    elif not torch.equal(got.cpu(), want.cpu()):
        raise Wrong(f"{name}: differs from the reference at {(got.cpu() != want.cpu()).nonzero()[:3].tolist()}")


@dataclass
class Built:
    """A case made into tensors: the op's arguments, and how to judge a result."""

    args: list
    kwargs: dict
    klass: str  # "valid", "nonfinite" (values may be non-finite) or "hostile"
    leaves: list  # float leaves (requires_grad) the arguments were built from, for gradients
    note: list  # the mutations that took effect


_ORDER = {"valid": 0, "nonfinite": 1, "hostile": 2}


def _worse(a: str, b: str) -> str:
    return a if _ORDER[a] >= _ORDER[b] else b


# ---------------------------------------------------------------------------------------------
# Generic tensor mutations (applied in the worker). Each returns the new value and its class.
def _dtypes():
    import torch

    return [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int32, torch.int64, torch.uint8,
            torch.bool, torch.complex64]


def _noncontig(t):
    import torch

    if t.dim() == 1:
        return torch.stack([t, t], -1)[:, 0]  # stride 2, same values
    return t.transpose(0, -1).contiguous().transpose(0, -1)


def _mutate_tensor(kind: str, t, role: str, p: int, g):
    """(new value, class) or None where the mutation does not apply to this argument."""
    import torch

    if not isinstance(t, torch.Tensor):
        return None
    if t.dim() and max(t.shape) > 2**30 and kind not in ("meta_one", "not_tensor"):
        return None  # already a huge stride-0 view: any copy would be the test's own allocation
    if kind == "noncontig":
        return (_noncontig(t), "valid") if t.dim() >= 1 and t.numel() > 1 else None
    if kind == "expand":
        if t.dim() == 0 or t.shape[0] < 2:
            return None
        return t[:1].expand(t.shape), ("valid" if role == "float" else "hostile")
    if kind == "dtype":
        d = _dtypes()[p % len(_dtypes())]
        if d == t.dtype:
            return None
        return t.detach().to(d) if not d.is_floating_point else t.to(d), "hostile"
    if kind == "rank_up":
        return t.unsqueeze(-1 if p % 2 else 0), "hostile"
    if kind == "rank_down":
        if t.dim() == 0:
            return None
        if t.dim() >= 2:
            return t.reshape(-1), "hostile"
        return (t.sum() if t.dtype.is_floating_point else t.reshape(-1)[:1].reshape(())) if t.numel() else None, "hostile"
    if kind in ("grow", "shrink"):
        if t.dim() == 0:
            return None
        d = p % t.dim()
        if kind == "shrink":
            return (t.narrow(d, 0, t.shape[d] - 1), "hostile") if t.shape[d] > 0 else None
        shape = list(t.shape)
        shape[d] = 1
        extra = t.narrow(d, 0, 1) if t.shape[d] > 0 else torch.zeros(shape, dtype=t.dtype)
        return torch.cat([t, extra], d), "hostile"
    if kind == "nonfinite":
        if not t.dtype.is_floating_point or t.numel() == 0:
            return None
        v = (math.nan, math.inf, -math.inf)[p % 3]
        flat = t.reshape(-1)
        i = (p // 3) % flat.numel()
        mask = torch.zeros(flat.numel(), dtype=torch.bool, device=t.device)
        mask[i] = True
        return torch.where(mask, torch.full_like(flat, v), flat).reshape(t.shape), "nonfinite"
    if kind == "meta_one":
        return t.detach().to("meta"), "hostile"
    if kind == "not_tensor":
        return ([None, 1.5, "x", t.tolist() if t.numel() < 50 and t.device.type != "meta" else []][p % 4]), "hostile"
    if kind == "huge":
        if t.dim() == 0:
            return None
        shape = (2**40,) + tuple(t.shape[1:]) if p % 2 == 0 else (2**31, 2**31) + (1,) * (t.dim() - 2)
        base = torch.zeros((1,) * len(shape), dtype=t.dtype, device=t.device)
        return base.expand(shape), "hostile"
    if kind == "mask_bytes":
        if role != "mask" or t.dtype != torch.bool or t.numel() == 0:
            return None
        raw = t.to(torch.uint8) * torch.randint(1, 256, t.shape, generator=g).to(torch.uint8)
        return raw.view(torch.bool), "valid"
    if kind == "all_masked":
        if role != "mask" or t.dim() != 2 or t.shape[0] == 0:
            return None
        m = t.clone()
        m[p % t.shape[0]] = False
        return m, "hostile"
    return None


def _apply_mutations(case: dict, args: list, roles: list, g, extra_mutation: Callable | None = None):
    """Applies the case's mutations to args in place; returns (class, notes, the arguments as they
    were before meta_all, which turns every tensor into a meta tensor last)."""
    import torch

    klass, notes = "valid", []
    for kind, slot, p in case["mutations"]:
        if kind == "meta_all":
            continue  # below, after the others
        if extra_mutation is not None and kind not in MUTATIONS_TENSOR:
            r = extra_mutation(kind, slot, p, args)
            if r is not None:
                klass = _worse(klass, r)
                notes.append(kind)
            continue
        candidates = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
        if not candidates:
            continue
        i = candidates[slot % len(candidates)]
        r = _mutate_tensor(kind, args[i], roles[i], p, g)
        if r is None:
            continue
        args[i], k = r
        klass = _worse(klass, k)
        notes.append(f"{kind}:{i}")
    real = list(args)
    if any(m[0] == "meta_all" for m in case["mutations"]) and any(isinstance(a, torch.Tensor) for a in args):
        for i, a in enumerate(args):
            if isinstance(a, torch.Tensor):
                args[i] = a.detach().to("meta")
        notes.append("meta_all")
        klass = _worse(klass, "hostile")
    return klass, notes, real


def _normalized(a, dtype64: bool):
    """An argument as the reference takes it: dense, masks as 0/1, floats in float64."""
    import torch

    if not isinstance(a, torch.Tensor):
        return a
    if a.dtype == torch.bool:
        return a.contiguous().view(torch.uint8) != 0
    a = a.contiguous()
    return a.double() if dtype64 and a.dtype.is_floating_point else a


# ---------------------------------------------------------------------------------------------
# Fused ops: balance objectives and the masked log-softmax gather.
@dataclass
class FusedSpec:
    op: Callable
    reference: Callable
    make: Callable  # (case, gen, dtype) -> (args, roles, scalars)


def _lengths(case, g):
    import torch

    if case["big"]:
        return torch.randint(1, 9, (3000,), generator=g).tolist()
    return list(case["lengths"])


def _offsets(lengths):
    import torch

    return torch.tensor([0] + list(lengths), dtype=torch.int64).cumsum(0)


def _rand(g, dtype, scale, *shape):
    import torch

    return (scale * torch.randn(tuple(shape), generator=g, dtype=torch.float64)).to(dtype).requires_grad_(True)


def _mask_and_actions(g, T, A):
    import torch

    mask = torch.rand(T, A, generator=g) < 0.6
    actions = torch.randint(0, A, (T,), generator=g)
    mask[torch.arange(T), actions] = True
    return mask, actions


def _make_tb(case, g, dtype):
    L = _lengths(case, g)
    T, B, s = sum(L), len(L), case["scale"]
    lz = _rand(g, dtype, s, B) if case["width"] % 2 else _rand(g, dtype, s)
    return ([_rand(g, dtype, s, T), _rand(g, dtype, s, T), _offsets(L), _rand(g, dtype, s, B), lz],
            ["float", "float", "offsets", "float", "float"], [])


def _make_tbl(case, g, dtype):
    L = _lengths(case, g)
    T, B, s, A = sum(L), len(L), case["scale"], case["width"]
    mask, actions = _mask_and_actions(g, T, A)
    lz = _rand(g, dtype, s, B) if case["parents"] % 2 else _rand(g, dtype, s)
    return ([_rand(g, dtype, s, T, A), mask, actions, _rand(g, dtype, s, T), _offsets(L), _rand(g, dtype, s, B), lz],
            ["float", "mask", "actions", "float", "offsets", "float", "float"], [("none", "mean")[case["width"] % 2]])


def _make_db(case, g, dtype):
    L = _lengths(case, g)
    T, B, s = sum(L), len(L), case["scale"]
    return ([_rand(g, dtype, s, T), _rand(g, dtype, s, T), _rand(g, dtype, s, T), _offsets(L), _rand(g, dtype, s, B)],
            ["float", "float", "float", "offsets", "float"], [])


def _make_subtb(case, g, dtype):
    args, roles, _ = _make_db(case, g, dtype)
    return args, roles, [(0.05, 0.5, 0.9, 1.0, 1.5, 3.0)[case["width"] % 6]]


def _make_mdb(case, g, dtype):
    L = _lengths(case, g)
    T, s = sum(L), case["scale"]
    return ([_rand(g, dtype, s, T) for _ in range(4)] + [_offsets(L)], ["float"] * 4 + ["offsets"], [])


def _make_zvar(case, g, dtype):
    L = _lengths(case, g)
    T, B, s = sum(L), len(L), case["scale"]
    return ([_rand(g, dtype, s, T), _rand(g, dtype, s, T), _offsets(L), _rand(g, dtype, s, B)],
            ["float", "float", "offsets", "float"], [])


def _make_fm(case, g, dtype):
    import torch

    N, P, A, s = sum(_lengths(case, g)), case["parents"], case["width"], case["scale"]
    in_count = torch.randint(0, P + 1, (N,), generator=g)
    out_mask, _ = _mask_and_actions(g, N, A)
    return ([_rand(g, dtype, s, N, P), in_count, _rand(g, dtype, s, N, A), out_mask],
            ["float", "count", "float", "mask"], [])


def _make_gather(case, g, dtype):
    T, A = sum(_lengths(case, g)), case["width"]
    mask, actions = _mask_and_actions(g, T, A)
    return [_rand(g, dtype, case["scale"], T, A), mask, actions], ["float", "mask", "actions"], []


def _fused_specs():
    import gfncore.ops as ops
    from gfncore.ops import reference as R

    def tbl(*a):
        return ops.trajectory_balance_from_logits(*a[:7], reduction=a[7])

    def tbl_ref(logits, mask, actions, *rest):
        per_traj = R.trajectory_balance(R.masked_log_softmax_gather(logits, mask, actions), *rest[:4])
        return per_traj.mean() if rest[4] == "mean" else per_traj

    return {
        "trajectory_balance": FusedSpec(ops.trajectory_balance, R.trajectory_balance, _make_tb),
        "trajectory_balance_from_logits": FusedSpec(tbl, tbl_ref, _make_tbl),
        "detailed_balance": FusedSpec(ops.detailed_balance, R.detailed_balance, _make_db),
        "modified_detailed_balance": FusedSpec(ops.modified_detailed_balance, R.modified_detailed_balance, _make_mdb),
        "subtrajectory_balance": FusedSpec(ops.subtrajectory_balance, R.subtrajectory_balance, _make_subtb),
        "flow_matching": FusedSpec(ops.flow_matching, R.flow_matching, _make_fm),
        "log_partition_variance": FusedSpec(ops.log_partition_variance, R.log_partition_variance, _make_zvar),
        "masked_log_softmax_gather": FusedSpec(ops.masked_log_softmax_gather, R.masked_log_softmax_gather,
                                               _make_gather),
    }


def _fused_extra_mutation(args, roles, scalars, case):
    import torch

    def mutate(kind, slot, p, _args):
        idx = [i for i, r in enumerate(roles) if r == {"offsets": "offsets", "actions": "actions", "count": "count",
                                                        "all_masked": "mask", "mask_bytes": "mask"}.get(kind)]
        if kind == "scalar":
            if case["target"] == "subtrajectory_balance":  # lam
                scalars[0] = [0.0, -1.0, math.nan, math.inf, -math.inf, "0.5", None, True, 1e-3, 7.5][p % 10]
                return "valid" if p % 10 >= 8 else "hostile"
            if case["target"] == "trajectory_balance_from_logits":  # reduction
                scalars[0] = ["sum", None, 1, "MEAN", ""][p % 5]
                return "hostile"
            lz = [i for i, r in enumerate(roles) if r == "float"][-1]  # TB's log_z as a Python number
            if isinstance(args[lz], torch.Tensor) and args[lz].dim() == 0:
                args[lz] = [float(args[lz].detach()), "nope", None][p % 3]
                return "valid" if p % 3 == 0 else "hostile"
            return None
        if not idx:
            return None
        i = idx[slot % len(idx)]
        t = args[i]
        if not isinstance(t, torch.Tensor) or t.dtype not in (torch.int64, torch.bool) or t.device.type == "meta":
            return None
        if t.dim() and max(t.shape) > 2**30:
            return None  # a huge stride-0 view: a copy would be the test's own allocation
        if kind in ("all_masked", "mask_bytes"):
            r = _mutate_tensor(kind, t, "mask", p, torch.Generator().manual_seed(p))
            if r is None:
                return None
            args[i] = r[0]
            return r[1]
        t = t.clone()
        if kind == "offsets":
            n = t.numel()
            how = p % 7
            if how == 0 and n >= 3:
                j = 1 + (p // 7) % (n - 2)
                t[j], t[j + 1] = t[j + 1].clone(), t[j].clone()  # non-monotone (or equal)
            elif how == 1 and n >= 1:
                t[-1] += 1 + (p // 7) % 3  # past T
            elif how == 2 and n >= 2:
                t[-1] -= 1  # short of T
            elif how == 3 and n >= 1:
                t[0] = -1 - (p // 7) % 5
            elif how == 4 and n >= 2:
                t[(p // 7) % (n - 1) + 1] = 2**62  # huge
            elif how == 5 and n >= 2:
                j = (p // 7) % (n - 1)
                t[j + 1] = t[j]  # an empty trajectory
            elif how == 6:
                t = t[:0]  # no B + 1 entries at all
            else:
                return None
            if torch.equal(t, args[i]):
                return None
        elif kind == "actions":
            if t.numel() == 0:
                return None
            A = args[roles.index("mask")].shape[-1] if "mask" in roles else 1
            j = (p // 5) % t.numel()
            t[j] = [A, -1, 2**40, -(2**62), A + 7][p % 5]
        elif kind == "count":
            if t.numel() == 0:
                return None
            P = args[0].shape[-1] if isinstance(args[0], torch.Tensor) and args[0].dim() == 2 else 0
            t[(p // 4) % t.numel()] = [P + 1, -1, 2**40, -(2**62)][p % 4]
        else:
            return None
        args[i] = t
        return "hostile"

    return mutate


def run_fused(case: dict) -> dict:
    import torch

    spec = _fused_specs()[case["target"]]
    g = torch.Generator().manual_seed(case["seed"])
    dtype = getattr(torch, case["dtype"])
    args, roles, scalars = spec.make(case, g, dtype)
    leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    klass, notes, real = _apply_mutations(case, args, roles, g, _fused_extra_mutation(args, roles, scalars, case))
    status, out = _call(spec.op, *args, *scalars)
    return _judge(case, spec.op, spec.reference, args, scalars, real, klass, notes, status, out, leaves, dtype)


def _judge(case, op, reference, args, scalars, real, klass, notes, status, out, leaves, dtype, grads=True,
           outputs=None) -> dict:
    import torch

    if status == "unclear":
        return {"kind": "unclear", "detail": _describe(out), "notes": notes}
    if status == "clear":
        if klass == "valid":
            raise Wrong(f"rejected a valid input: {_describe(out)}")
        return {"kind": "error", "detail": _describe(out), "notes": notes}
    outs = out if isinstance(out, tuple) else (out,)
    if any(isinstance(a, torch.Tensor) and a.device.type == "meta" for a in args):
        if not all(a.device.type == "meta" for a in args if isinstance(a, torch.Tensor)):
            raise Wrong("returned a result for a mix of meta and real tensors")
        st_cpu, cpu = _call(op, *real, *scalars)
        if st_cpu == "ok":
            cpus = cpu if isinstance(cpu, tuple) else (cpu,)
            for o, c in zip(outs, cpus):
                if o.device.type != "meta" or o.shape != c.shape or o.dtype != c.dtype:
                    raise Wrong(f"meta result {o.device} {tuple(o.shape)} {o.dtype} != CPU {tuple(c.shape)} {c.dtype}")
        return {"kind": "correct", "notes": notes}
    ref_args = [_normalized(a, dtype64=grads) for a in args]
    st_ref, ref = _call(reference, *ref_args, *scalars)
    if st_ref != "ok":
        raise Wrong(f"returned a result where the reference raises {_describe(ref)}")
    refs = ref if isinstance(ref, tuple) else (ref,)
    if len(refs) != len(outs):
        raise Wrong(f"{len(outs)} outputs, the reference has {len(refs)}")
    plain = None
    if grads and dtype == torch.float32:  # the reference in float32 too: the error budget of STYLE.md #10
        st_plain, plain = _call(reference, *[_normalized(a, dtype64=False) for a in args], *scalars)
        plain = plain if st_plain == "ok" else None
    names = outputs or [f"output {i}" for i in range(len(outs))]
    for name, o, r in zip(names, outs, refs):
        _close(name, o, r, dtype if o.dtype.is_floating_point else None, plain)
    if not grads:
        return {"kind": "correct", "notes": notes}
    finite_in = all(bool(torch.isfinite(a).all()) for a in args if isinstance(a, torch.Tensor) and a.dtype.is_floating_point)
    y = outs[0]
    if finite_in and leaves and y.requires_grad and y.numel() and bool(torch.isfinite(refs[0]).all()):
        w = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        keep = dict(allow_unused=True, materialize_grads=True, retain_graph=True)  # the views are shared
        g_op = torch.autograd.grad((y * w.to(y.dtype)).sum(), leaves, **keep)
        g_ref = torch.autograd.grad((refs[0] * w).sum(), leaves, **keep)
        g_plain = [None] * len(leaves)
        if plain is not None and plain.requires_grad:
            g_plain = torch.autograd.grad((plain * w.to(plain.dtype)).sum(), leaves, **keep)
        for i, (a, b, c) in enumerate(zip(g_op, g_ref, g_plain)):
            _close(f"gradient of leaf {i}", a, b, dtype, c)
    return {"kind": "correct", "notes": notes}


# ---------------------------------------------------------------------------------------------
# Environment ops: rollout_step, backward_rollout_step, parents.
def _env(case):
    import gfncore

    kind, *p = case["env"]
    return gfncore.envs.HyperGrid(p[0], p[1]) if kind == "hypergrid" else gfncore.envs.Ising(p[0])


def _random_states(env, n, g, non_initial=False):
    """n valid states of env (for backward steps: none of them s0)."""
    import torch

    ref = env.reference()
    if hasattr(ref, "height"):
        s = torch.randint(0, ref.height, (n, env.state_dim), generator=g, dtype=torch.int32)
        if non_initial and n:
            s[:, 0] = torch.randint(1, ref.height, (n,), generator=g, dtype=torch.int32)
    else:  # Ising: each site unset (0) or a spin (-1, +1)
        s = torch.randint(-1, 2, (n, env.state_dim), generator=g, dtype=torch.int32)
        if non_initial and n:
            s[:, 0] = 1
    return s


def _env_extra_mutation(env, args, roles, kw):
    import torch

    def mutate(kind, slot, p, _args):
        if kind == "states":
            i = roles.index("states")
            s = args[i]
            if not isinstance(s, torch.Tensor) or s.numel() == 0 or s.dtype != torch.int32 or s.device.type == "meta" \
                    or max(s.shape) > 2**30:
                return None
            s = s.clone(memory_format=torch.contiguous_format)
            s.view(-1)[(p // 4) % s.numel()] = [2**31 - 1, -(2**31), 99, -5][p % 4]
            args[i] = s
            return "hostile"
        if kind == "illegal_mask" and "mask" in roles:
            i = roles.index("mask")
            m = args[i]
            if not isinstance(m, torch.Tensor) or m.dtype != torch.bool or m.numel() == 0 or max(m.shape) > 2**30:
                return None
            args[i] = torch.ones_like(m)  # lets the sampler pick what the environment forbids
            return "hostile"
        if kind in ("mask_bytes", "all_masked") and "mask" in roles:
            i = roles.index("mask")
            r = _mutate_tensor(kind, args[i], "mask", p, torch.Generator().manual_seed(p))
            if r is None:
                return None
            args[i] = r[0]
            return r[1]
        if kind == "scalar":
            name = [k for k in ("seed", "offset", "temperature", "epsilon") if k in kw]
            if not name:
                return None
            k = name[slot % len(name)]
            bad = {"seed": [-1, 2**63, 2**64, 1.5, "3", 2**63 - 1, 0],
                   "offset": [-1, 2**63, 2**70, 2.0, 2**63 - 1],
                   "temperature": [0.0, -1.0, math.nan, math.inf, 1e-300, 1e300],
                   "epsilon": [-0.1, 1.1, math.nan, 1.0, 0.0]}[k]
            v = bad[p % len(bad)]
            kw[k] = v
            fine = (k == "seed" and v in (2**63 - 1, 0) and not isinstance(v, bool)) or \
                   (k == "offset" and v == 2**63 - 1) or (k == "epsilon" and v in (1.0, 0.0))
            return "valid" if fine else "hostile"
        return None

    return mutate


def run_rollout_step(case: dict) -> dict:
    import torch

    import gfncore.ops as ops
    from gfncore.ops import reference as R

    env = _env(case)
    g = torch.Generator().manual_seed(case["seed"])
    n = case["n"] if not case["big"] else 3000
    states = _random_states(env, n, g)
    mask = env.forward_mask(states)
    logits = (case["scale"] * torch.randn(n, env.n_actions, generator=g, dtype=torch.float64)).to(getattr(torch, case["dtype"]))
    ids = torch.randperm(n, generator=g) * 3 + 5 if case["width"] % 2 else None
    args = [states, mask, logits, ids]
    roles = ["states", "mask", "float", "ids"]
    kw = dict(seed=case["seed"] * 7 + 1, offset=case["parents"], temperature=(1.0, 0.7, 2.0)[case["width"] % 3],
              epsilon=(0.0, 0.3)[case["parents"] % 2])
    klass, notes, real = _apply_mutations(case, args, roles, g, _env_extra_mutation(env, args, roles, kw))

    def op(states, mask, logits, ids):
        return ops.rollout_step(env, states, mask, logits, ids=ids, **kw)

    def ref(states, mask, logits, ids):
        return R.rollout_step(env.reference(), states, mask, logits, ids, kw["seed"], kw["offset"], kw["temperature"],
                              kw["epsilon"])

    status, out = _call(op, *args)
    return _judge(case, op, ref, args, [], real, klass, notes, status, out, [], getattr(torch, case["dtype"]),
                  grads=False, outputs=["actions", "log_prob", "next_states", "next_mask", "features", "done"])


def run_backward_rollout_step(case: dict) -> dict:
    import torch

    import gfncore.ops as ops
    from gfncore.ops import reference as R

    env = _env(case)
    g = torch.Generator().manual_seed(case["seed"])
    n = case["n"] if not case["big"] else 3000
    states = _random_states(env, n, g, non_initial=True)
    dtype = getattr(torch, case["dtype"])
    logits = (case["scale"] * torch.randn(n, env.n_backward_actions, generator=g, dtype=torch.float64)).to(dtype)
    if case["width"] % 3 == 0:
        logits = None  # the uniform P_B
    args = [states, logits]
    roles = ["states", "float"]
    kw = dict(seed=case["seed"] * 5 + 3, offset=case["parents"], temperature=(1.0, 0.7, 2.0)[case["width"] % 3],
              epsilon=(0.0, 0.3)[case["parents"] % 2])
    klass, notes, real = _apply_mutations(case, args, roles, g, _env_extra_mutation(env, args, roles, kw))

    def op(states, logits):
        return ops.backward_rollout_step(env, states, logits, **kw)

    def ref(states, logits):
        if logits is None:
            logits = torch.zeros(states.shape[0], env.n_backward_actions, dtype=torch.get_default_dtype())
        return R.backward_rollout_step(env.reference(), states, logits, None, kw["seed"], kw["offset"],
                                       kw["temperature"], kw["epsilon"])

    status, out = _call(op, *args)
    return _judge(case, op, ref, args, [], real, klass, notes, status, out, [], dtype, grads=False,
                  outputs=["actions", "log_pb", "forward_actions", "parents", "done"])


def run_parents(case: dict) -> dict:
    import torch

    import gfncore.ops as ops
    from gfncore.ops import reference as R

    env = _env(case)
    g = torch.Generator().manual_seed(case["seed"])
    n = case["n"] if not case["big"] else 3000
    args, roles = [_random_states(env, n, g)], ["states"]
    klass, notes, real = _apply_mutations(case, args, roles, g, _env_extra_mutation(env, args, roles, {}))

    def op(states):
        return ops.parents(env, states)

    def ref(states):
        return R.parents(env.reference(), states, env.max_parents)

    status, out = _call(op, *args)
    return _judge(case, op, ref, args, [], real, klass, notes, status, out, [], torch.float64, grads=False,
                  outputs=["parent_states", "parent_actions", "counts"])


# ---------------------------------------------------------------------------------------------
# The public Python API: environment methods, the Sampler and the Trainer. A valid call must
# return a result that obeys the environment contract (shapes, dtypes, legal moves that the
# backward mask marks and backward_step undoes); a hostile one must raise a clear error.
API_ENVS = [["hypergrid", 2, 4], ["hypergrid", 3, 3], ["ising", 2], ["bit_sequence", 4, 2], ["set_addition", 4, 2],
            ["assignment", 3, 3]]
ENV_METHODS = ["forward_mask", "step", "backward_mask", "backward_step", "n_parents", "encode", "log_reward",
               "is_initial"]
# valid: must give a correct result; hostile: must raise a clear error
STATE_MUTATIONS = {"none": "valid", "noncontig": "valid", "expand": "valid", "int64": "valid", "empty": "valid",
                   "float": "hostile", "bool": "hostile", "rank_up": "hostile", "rank_down": "hostile",
                   "grow": "hostile", "shrink": "hostile", "meta": "hostile", "value": "hostile", "int64_wrap": "hostile",
                   "not_tensor": "hostile", "action_range": "hostile", "action_illegal": "hostile",
                   "action_dtype": "hostile", "action_len": "hostile"}


def _api_case_strategy(target: str):
    from hypothesis import strategies as st

    return st.fixed_dictionaries({
        "target": st.just(target), "seed": st.integers(0, 2**31 - 1), "env": st.sampled_from(API_ENVS),
        "method": st.sampled_from(ENV_METHODS), "n": st.integers(0, 9), "mutation": st.sampled_from(sorted(STATE_MUTATIONS)),
        "p": st.integers(0, 2**16), "scalar": st.sampled_from(range(64)), "loss": st.sampled_from(["tb", "db", "subtb", "fm",
                                                                                             "zvar", "mdb"]),
    })


def _api_env(spec):
    import gfncore

    E = gfncore.envs
    kind, *p = spec
    return {"hypergrid": lambda: E.HyperGrid(p[0], p[1]), "ising": lambda: E.Ising(p[0]),
            "bit_sequence": lambda: E.BitSequence(p[0], p[1]), "set_addition": lambda: E.SetAddition(p[0], p[1]),
            "assignment": lambda: E.Assignment(p[0], p[1])}[kind]()


def _walk(env, n, g):
    """n reachable states: random forward walks of random lengths from s0 (the environment's own
    masks and steps, so valid by construction)."""
    import torch

    s = env.initial_states(n)
    stop = env.n_actions - 1
    for _ in range(int(torch.randint(0, 8, (1,), generator=g))):
        if n == 0:
            break
        m = env.forward_mask(s)
        m[:, stop] = False
        go = m.any(1) & (torch.rand(n, generator=g) < 0.8)
        if not go.any():
            break
        a = torch.multinomial(m[go].double(), 1, generator=g).squeeze(1)
        s = s.clone()
        s[go] = env.step(s[go], a).to(s.dtype)
    return s


def _mutate_states(kind, s, p, env):
    """(states, actions-mutation or None) after one mutation; None where it does not apply."""
    import torch

    if kind in ("none", "empty") or kind.startswith("action_"):
        return s[:0] if kind == "empty" else s
    if kind == "noncontig":
        return torch.cat([s, s], 1)[:, ::2] if s.shape[1] else None
    if kind == "expand":
        return s[:1].expand(5, -1) if s.shape[0] else None
    if kind == "int64":
        return s.long()
    if kind == "float":
        return s.float()
    if kind == "bool":
        return s.bool()
    if kind == "rank_up":
        return s.unsqueeze(0)
    if kind == "rank_down":
        return s.reshape(-1)
    if kind == "grow":
        return torch.cat([s, s[:, :1]], 1)
    if kind == "shrink":
        return s[:, :-1] if s.shape[1] > 1 else s[:, :0]
    if kind == "meta":
        return s.to("meta")
    if kind in ("value", "int64_wrap"):
        if s.numel() == 0:
            return None
        s = s.long() if kind == "int64_wrap" else s.clone()
        v = [2**31 - 1, -(2**31), 99, -5][p % 4] if kind == "value" else [2**32 + 1, -(2**32), 2**40][p % 3]
        s.reshape(-1)[(p // 4) % s.numel()] = v
        return s
    if kind == "not_tensor":
        return s.tolist()
    return None


def _check_contract(env, method, s, out, a=None) -> None:
    """The result of a valid call obeys the environment contract."""
    import torch

    n, A = s.shape[0], env.n_actions
    s32 = s.to(torch.int32)
    shapes = {"forward_mask": (torch.bool, (n, A)), "backward_mask": (torch.bool, (n, A - 1)),
              "n_parents": (None, (n,)), "encode": (torch.float32, (n, env.feature_dim)), "is_initial": (torch.bool, (n,)),
              "log_reward": (None, (n,)), "step": (None, (n, env.state_dim)), "backward_step": (None, (n, env.state_dim))}
    dtype, shape = shapes[method]
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != shape or (dtype is not None and out.dtype != dtype):
        raise Wrong(f"{method}: got {type(out).__name__} {getattr(out, 'dtype', '')} {tuple(getattr(out, 'shape', ()))}, "
                    f"want {dtype} {shape}")
    if method == "forward_mask" and n and not out.any(1).all():
        raise Wrong("forward_mask: a reachable state with no legal action")
    if method == "n_parents" and not torch.equal(out.long(), env.backward_mask(s32).sum(1).long()):
        raise Wrong("n_parents differs from the sum of backward_mask")
    if method in ("encode", "log_reward") and torch.isnan(out).any():
        raise Wrong(f"{method}: NaN for valid states")
    if method == "is_initial" and not torch.equal(out, (s32 == env.initial_states(1)).all(1)):
        raise Wrong("is_initial differs from equality with s0")
    if method == "step":  # the move is marked in the child's backward mask, and undone by backward_step
        child = out.to(torch.int32)
        bm = env.backward_mask(child)
        for i in range(n):
            parents = [env.backward_step(child[i:i + 1], torch.tensor([b])).to(torch.int32)
                       for b in bm[i].nonzero().flatten().tolist()]
            if not any(torch.equal(q[0], s32[i]) for q in parents):
                raise Wrong(f"step: the child {child[i].tolist()} of {s32[i].tolist()} by {int(a[i])} does not list "
                            f"it among its parents")
    if method == "backward_step":  # the parent can step forward to the child
        par = out.to(torch.int32)
        fm = env.forward_mask(par)
        for i in range(n):
            kids = [env.step(par[i:i + 1], torch.tensor([f])).to(torch.int32)
                    for f in fm[i, :-1].nonzero().flatten().tolist()]
            if not any(torch.equal(k[0], s32[i]) for k in kids):
                raise Wrong(f"backward_step: {s32[i].tolist()} is not a child of its parent {par[i].tolist()}")


def _api_verdict(status, out, klass, what, also_clear=()):
    """The outcome of a raising API call: an error for hostile input when it is clear."""
    if klass == "valid":
        raise Wrong(f"valid input rejected ({what}): {_describe(out)}")
    if status == "unclear" and not (isinstance(out, also_clear) and str(out).strip()):
        return {"kind": "unclear", "detail": f"{what}: {_describe(out)}"}
    return {"kind": "error"}


def run_env_method(case: dict) -> dict:
    import torch

    env = _api_env(case["env"])
    g = torch.Generator().manual_seed(case["seed"])
    method, kind, p = case["method"], case["mutation"], case["p"]
    s = _walk(env, case["n"], g)
    a = None
    if method in ("step", "backward_step"):
        if method == "step":
            m = env.forward_mask(s)
            m[:, -1] = False
        else:
            m = env.backward_mask(s)
        keep = m.any(1)
        s, m = s[keep], m[keep]
        if s.shape[0] == 0 and kind not in ("empty", "none"):
            return {"kind": "correct", "notes": "no movable state drawn"}
        a = torch.multinomial(m.double(), 1, generator=g).squeeze(1) if s.shape[0] else torch.zeros(0, dtype=torch.int64)
    if method == "log_reward":  # finished objects: states that may stop
        if env.n_actions - 1 < env.forward_mask(s).shape[1]:
            s = s[env.forward_mask(s)[:, -1]]
    if kind.startswith("action_") and a is None:
        return {"kind": "correct", "notes": "no action argument"}
    ms = _mutate_states(kind, s, p, env)
    if ms is None:
        return {"kind": "correct", "notes": "mutation does not apply"}
    klass = STATE_MUTATIONS[kind]
    if kind.startswith("action_"):
        if a.numel() == 0:
            return {"kind": "correct", "notes": "no action drawn"}
        a = a.clone()
        if kind == "action_range":
            a[p % a.numel()] = [-1, m.shape[1], m.shape[1] + 7, 2**40][p % 4]
        elif kind == "action_illegal":
            bad = (~m).nonzero()
            if bad.shape[0] == 0:
                return {"kind": "correct", "notes": "every action legal"}
            i, j = bad[p % bad.shape[0]].tolist()
            a, ms = torch.tensor([j]), s[i:i + 1]
        elif kind == "action_dtype":
            a = a.float()
        elif kind == "action_len":
            a = a[:-1]
    if kind == "expand" and a is not None:
        a = a[:1].expand(5)
    if kind == "empty" and a is not None:
        a = a[:0]
    args = (ms,) if a is None else (ms, a)
    status, out = _call(getattr(env, method), *args)
    if status != "ok":
        return _api_verdict(status, out, klass, f"{method}, {kind}")
    if klass == "hostile":
        raise Wrong(f"{method} accepted a hostile input ({kind}) and returned {type(out).__name__}")
    _check_contract(env, method, ms if isinstance(ms, torch.Tensor) else torch.tensor(ms), out, a)
    return {"kind": "correct"}


class _FixedPolicy:
    """A policy whose logits are whatever a case wants (NaN, wrong width, transposed)."""

    def __init__(self, env, how):
        import torch

        self.net = __import__("gfncore").nn.MLPPolicy(env, hidden=8, layers=1)
        self.how = how
        self.torch = torch

    def __getattr__(self, k):
        return getattr(self.net, k)

    def forward_logits(self, x, *a, **kw):  # what the sampler calls
        return self._bend(self.net.forward_logits(x, *a, **kw))

    def __call__(self, x, *a, **kw):  # what the objectives call
        import dataclasses

        out = self.net(x, *a, **kw)
        logits = self._bend(out.pf_logits if dataclasses.is_dataclass(out) else out)
        return dataclasses.replace(out, pf_logits=logits) if dataclasses.is_dataclass(out) else logits

    def _bend(self, logits):
        t = self.torch
        if self.how == "nan":
            logits = logits.clone()
            logits.view(-1)[0] = float("nan")
        elif self.how == "wide":
            logits = t.cat([logits, logits[:, :1]], 1)
        elif self.how == "transposed":
            logits = logits.t().contiguous().t()
        return logits


def run_sampler(case: dict) -> dict:
    import torch

    import gfncore

    env = _api_env(case["env"])
    v = case["scalar"]
    bad = [("n", -1), ("n", 2**40), ("n", 1.5), ("n", "3"), ("seed", -1), ("seed", 2**64), ("temperature", 0.0),
           ("temperature", math.nan), ("temperature", -1.0), ("epsilon", 1.5), ("epsilon", math.nan),
           ("first_id", -1), ("first_id", 2**64), ("policy", "nan"), ("policy", "wide")]
    good = [("n", 0), ("n", 1), ("n", 7), ("seed", 2**63 - 1), ("temperature", 0.5), ("epsilon", 1.0),
            ("first_id", 2**40), ("policy", "transposed")]
    table = bad + good
    name, value = table[v % len(table)]
    klass = "hostile" if (name, value) in bad else "valid"
    torch.manual_seed(case["seed"])
    policy = gfncore.nn.MLPPolicy(env, hidden=8, layers=1) if name != "policy" else _FixedPolicy(env, value)
    kw = dict(seed=case["seed"])
    n = case["n"] + 1
    if name == "n":
        n = value
    elif name != "policy":
        kw[name] = value

    def go():
        return gfncore.Sampler(env, policy).sample(n, **kw)

    status, out = _call(go)
    if status != "ok":
        return _api_verdict(status, out, klass, f"Sampler.sample {name}={value!r}")
    if klass == "hostile":
        raise Wrong(f"Sampler.sample accepted {name}={value!r}")
    x = out.terminal_states
    if x.shape[0] != n or (n and not env.forward_mask(x.to(torch.int32))[:, -1].all()):
        raise Wrong(f"sampler returned {tuple(x.shape)} objects, or objects that may not stop")
    if n and not torch.allclose(out.log_reward.double(), env.log_reward(x).double()):
        raise Wrong("the trajectories' log R differs from env.log_reward")
    return {"kind": "correct"}


def run_trainer(case: dict) -> dict:
    import torch

    import gfncore

    env = _api_env(case["env"])
    v = case["scalar"]
    bad = [("batch_size", 0), ("batch_size", -3), ("batch_size", 2.5), ("lr", math.nan), ("lr", -1.0),
           ("loss", "nope"), ("replay_fraction", 1.0), ("replay_fraction", -0.1), ("temperature", 0.0),
           ("epsilon", 2.0), ("seed", -1), ("lr_log_z", math.inf), ("policy", "nan")]
    good = [("batch_size", 1), ("batch_size", 5), ("lr", 0.0), ("replay_fraction", 0.9), ("epsilon", 1.0), ("seed", 2**40)]
    table = bad + good
    name, value = table[v % len(table)]
    klass = "hostile" if (name, value) in bad else "valid"
    torch.manual_seed(case["seed"])
    loss = case["loss"]
    probe = torch.cat([env.initial_states(1), _walk(env, 32, torch.Generator().manual_seed(1))])
    if loss == "mdb" and not env.forward_mask(probe)[:, -1].all():
        loss = "tb"  # modified DB needs every state to be a finished object (it says so; tested elsewhere)
    flow = loss in ("db", "subtb")
    policy = gfncore.nn.MLPPolicy(env, hidden=8, layers=1, flow=flow)
    kw = dict(loss=loss, batch_size=4, seed=case["seed"] % 1000)
    if name == "policy":
        policy = _FixedPolicy(env, value)
        policy.net = gfncore.nn.MLPPolicy(env, hidden=8, layers=1, flow=flow)
    elif name == "replay_fraction":
        kw.update(replay=gfncore.ReplayBuffer(env, 50), replay_fraction=value)
    else:
        kw[name] = value

    def go():
        t = gfncore.Trainer(env, policy, **kw)
        return [t.train_step()["loss"] for _ in range(3)]

    status, out = _call(go)
    if status != "ok":  # NonFiniteError (a FloatingPointError) is the trainer's clear error for NaN
        return _api_verdict(status, out, klass, f"Trainer {name}={value!r}", also_clear=(FloatingPointError,))
    if klass == "hostile":
        raise Wrong(f"Trainer accepted {name}={value!r} and trained")
    if not all(math.isfinite(x) for x in out):
        raise Wrong(f"non-finite loss from a valid trainer: {out}")
    return {"kind": "correct"}


# ---------------------------------------------------------------------------------------------
# Files a user hands the CLIs: CSV data sets (gfncore.datafiles, causal.load_csv, bayes read_csv)
# and checkpoints (gfncore.load). Each must read correctly or be refused with a one-line error
# that names the file; nothing may be accepted silently wrong.
CSV_BENIGN = ("bom", "crlf", "blank_lines", "no_final_newline", "spaces", "quotes")
CSV_HOSTILE = ("utf16", "latin1", "no_header", "dup_name", "ragged", "nan", "text_cell", "empty", "nul",
               "empty_name", "bytes")


def _csv_case_strategy(target: str):
    from hypothesis import strategies as st

    return st.fixed_dictionaries({
        "target": st.just(target), "seed": st.integers(0, 2**31 - 1), "rows": st.integers(1, 6),
        "cols": st.integers(2, 5), "header": st.booleans(),
        "mutations": st.lists(st.sampled_from(CSV_BENIGN + CSV_HOSTILE), max_size=3),
        "p": st.integers(0, 2**16)})


def _csv_bytes(case):
    """(file bytes, expected [rows][cols] or None when a hostile mutation makes the file invalid,
    the column names it should give)."""
    import random

    r = random.Random(case["seed"])
    R, C, muts = case["rows"], case["cols"], set(case["mutations"])
    names = [f"c{j}" for j in range(C)]
    vals = [[round(r.uniform(-5, 5), 3) for _ in range(C)] for _ in range(R)]
    header = case["header"] or "no_header" not in muts
    if "dup_name" in muts:
        names[-1] = names[0]
    if "empty_name" in muts:
        names[0] = ""
    cells = [[repr(v) for v in row] for row in vals]
    if "nan" in muts:
        cells[0][0] = "nan"
    if "text_cell" in muts:
        cells[-1][-1] = "abc"
    if "ragged" in muts:
        cells[-1] = cells[-1][:-1]
    if "spaces" in muts:
        cells = [[f" {c} " for c in row] for row in cells]
    if "quotes" in muts:
        cells = [[f'"{c}"' for c in row] for row in cells]
    lines = ([",".join(names)] if "no_header" not in muts else []) + [",".join(row) for row in cells]
    if "blank_lines" in muts:
        lines.insert(1, "")
    nl = "\r\n" if "crlf" in muts else "\n"
    text = nl.join(lines) + ("" if "no_final_newline" in muts else nl)
    if "empty" in muts:
        text = ""
    data = text.encode("utf-8")
    if "bom" in muts:
        data = b"\xef\xbb\xbf" + data
    if "utf16" in muts:
        data = text.encode("utf-16")
    if "latin1" in muts:
        data = text.replace("c0", "Gr\u00f6\u00dfe", 1).encode("latin-1") if "c0" in text else b"\xe9" + data
    if "nul" in muts:
        data = data[:1] + b"\x00" + data[1:]
    if "bytes" in muts:
        data = bytes(r.getrandbits(8) for _ in range(1 + case["p"] % 64))
    hostile = muts & set(CSV_HOSTILE)
    if "no_header" in muts and not case["header"]:
        hostile -= {"no_header", "dup_name", "empty_name"}  # read as headerless, as asked: no names to judge
    if "empty" not in muts and "bytes" not in muts and "utf16" not in muts and not hostile:
        return data, vals, names
    return data, None, names


def run_data_file(case: dict) -> dict:
    import tempfile

    import torch

    from gfncore.bayes.cli import read_csv
    from gfncore.causal.data import load_csv

    data, want, names = _csv_bytes(case)
    header = case["header"] or "no_header" not in case["mutations"]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "data.csv")
        with open(path, "wb") as f:
            f.write(data)
        def bayes_read():  # the target is the last column: X then y give the file's columns back
            X, y, _ = read_csv(path, header=header)
            return torch.cat([X, y.unsqueeze(1)], 1)

        for what, read in (("causal.load_csv", lambda: load_csv(path, header=header).data),
                           ("bayes.read_csv", bayes_read)):
            status, out = _call(read)
            if status == "ok":
                if want is None:
                    if out.numel() == 0:
                        continue  # a lone row read as the header: no data accepted (the score wants rows)
                    if "bytes" in case["mutations"] or "latin1" in case["mutations"]:
                        continue  # random bytes may happen to be a valid table; latin-1 of ASCII is UTF-8
                    raise Wrong(f"{what} accepted a hostile file ({case['mutations']}): {out.tolist()}")
                got = out.tolist()
                if len(got) != len(want) or any(abs(a - b) > 1e-9 for ga, wa in zip(got, want) for a, b in zip(ga, wa)):
                    raise Wrong(f"{what} read {got}, the file holds {want}")
            elif status == "unclear" or (isinstance(out, BaseException) and (path not in str(out) and
                                                                             "--data" not in str(out))):
                return {"kind": "unclear", "detail": f"{what}: {_describe(out)}"}
            elif want is not None:
                raise Wrong(f"{what} refused a valid file ({case['mutations']}): {_describe(out)}")
            elif "\n" in str(out):
                return {"kind": "unclear", "detail": f"{what}: a message of several lines: {_describe(out)}"}
    return {"kind": "correct" if want is not None else "error"}


CKPT_MUTATIONS = ("none", "flip_byte", "truncate", "drop_key", "shape", "negative_step", "env_class", "step_type",
                  "version", "format", "junk", "config_key")
_CKPT_CACHE: dict = {}


def _ckpt_case_strategy(target: str):
    from hypothesis import strategies as st

    return st.fixed_dictionaries({"target": st.just(target), "mutation": st.sampled_from(CKPT_MUTATIONS),
                                  "p": st.integers(0, 2**30), "which": st.integers(0, 7)})


def _base_checkpoint():
    """One small checkpoint per worker: (its bytes, its contents)."""
    if "bytes" not in _CKPT_CACHE:
        import io

        import torch

        import gfncore

        env = gfncore.envs.HyperGrid(2, 3)
        torch.manual_seed(0)
        t = gfncore.Trainer(env, gfncore.nn.MLPPolicy(env, hidden=4, layers=1), batch_size=2, seed=0)
        t.fit(1, progress=False, evaluate=False)
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            path = t.save(os.path.join(d, "c.pt"))
            with open(path, "rb") as f:
                _CKPT_CACHE["bytes"] = f.read()
        _CKPT_CACHE["ck"] = torch.load(io.BytesIO(_CKPT_CACHE["bytes"]), weights_only=True)
    return _CKPT_CACHE["bytes"], _CKPT_CACHE["ck"]


def run_checkpoint(case: dict) -> dict:
    import copy
    import io
    import tempfile

    import torch

    import gfncore
    from gfncore.checkpoint import checksum

    raw, ck = _base_checkpoint()
    m, p, k = case["mutation"], case["p"], case["which"]
    hostile = m != "none"
    if m in ("flip_byte", "truncate", "junk"):
        b = bytearray(raw)
        if m == "flip_byte":
            b[p % len(b)] ^= 1 << (k % 8)
        elif m == "truncate":
            b = b[: p % len(b)]
        else:
            b += bytes([p % 256]) * (1 + k)
        data = bytes(b)
    else:
        c = copy.deepcopy(ck)
        st = c["state"]
        if m == "drop_key":
            key = ["policy", "optimizer", "generator", "step"][k % 4]
            (st if k < 4 else c).pop(key if k < 4 else ["state", "config", "env", "policy"][k % 4], None)
        elif m == "shape":
            name = sorted(st["policy"])[k % len(st["policy"])]
            st["policy"][name] = torch.zeros([s + 1 for s in st["policy"][name].shape] or [2])
        elif m == "negative_step":
            st["step"] = -1 - p % 100
        elif m == "env_class":
            c["env"]["class"] = ["this:Zen", "os:system", "helpers:Env", "gfncore.__main__:Env", "gfncore.envs:nope",
                                 "builtins:dict", "gfncore.envs.hypergrid:HyperGrid.__init__", ""][k % 8]
        elif m == "step_type":
            st["step"] = ["3", 3.5, None, True, [3]][k % 5]
        elif m == "version":
            c["version"] = [99, "2", -1, None][k % 4]
        elif m == "format":
            c["format"] = "something-else"
        elif m == "config_key":
            c["config"]["batch_size"] = ["x", -5, 0, None][k % 4]
        c["checksum"] = checksum(c)  # sealed: the loader must judge the contents themselves
        buf = io.BytesIO()
        torch.save(c, buf)
        data = buf.getvalue()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "c.pt")
        with open(path, "wb") as f:
            f.write(data)
        status, out = _call(lambda: gfncore.load(path))
    if status == "ok":
        env, policy, trainer = out
        same = (trainer.step_count == ck["state"]["step"] and all(
            torch.equal(v, ck["state"]["policy"][name]) for name, v in policy.state_dict().items()))
        if not same:
            raise Wrong(f"gfncore.load accepted a changed checkpoint ({m}) and loaded something else")
        if m in ("drop_key", "shape", "negative_step", "env_class", "step_type", "format"):
            raise Wrong(f"gfncore.load accepted a checkpoint with {m} ({case})")
        return {"kind": "correct"}
    if not hostile:
        raise Wrong(f"gfncore.load refused an intact checkpoint: {_describe(out)}")
    if status == "unclear" or "\n" in str(out).strip():
        return {"kind": "unclear", "detail": f"gfncore.load ({m}): {_describe(out)}"}
    return {"kind": "error"}


# ---------------------------------------------------------------------------------------------
# The table: target -> (case strategy, runner). One entry per public op.
@dataclass(frozen=True)
class Target:
    strategy: Callable  # () -> hypothesis strategy of cases
    run: Callable       # case -> outcome dict (in the worker)


def _fused_target(name):
    return Target(lambda: _case_strategy(name, MUTATIONS_FUSED), run_fused)


def _env_target(name, run, mutations=MUTATIONS_ENV):
    return Target(lambda: _case_strategy(name, mutations, env=True), run)


TARGETS = {
    "masked_log_softmax_gather": _fused_target("masked_log_softmax_gather"),
    "trajectory_balance": _fused_target("trajectory_balance"),
    "trajectory_balance_from_logits": _fused_target("trajectory_balance_from_logits"),
    "detailed_balance": _fused_target("detailed_balance"),
    "modified_detailed_balance": _fused_target("modified_detailed_balance"),
    "subtrajectory_balance": _fused_target("subtrajectory_balance"),
    "flow_matching": _fused_target("flow_matching"),
    "log_partition_variance": _fused_target("log_partition_variance"),
    "rollout_step": _env_target("rollout_step", run_rollout_step),
    "backward_rollout_step": _env_target("backward_rollout_step", run_backward_rollout_step),
    "parents": _env_target("parents", run_parents),
    "env_methods": Target(lambda: _api_case_strategy("env_methods"), run_env_method),
    "sampler": Target(lambda: _api_case_strategy("sampler"), run_sampler),
    "trainer": Target(lambda: _api_case_strategy("trainer"), run_trainer),
    "data_files": Target(lambda: _csv_case_strategy("data_files"), run_data_file),
    "checkpoint_loader": Target(lambda: _ckpt_case_strategy("checkpoint_loader"), run_checkpoint),
}


def run_case(case: dict) -> dict:
    try:
        return TARGETS[case["target"]].run(case)
    except Wrong as e:
        return {"kind": "wrong", "detail": str(e)}


# ---------------------------------------------------------------------------------------------
# The worker: JSON cases on stdin, JSON outcomes on the original stdout (the library's own
# output, if any, goes to stderr so it cannot corrupt the protocol).
def serve() -> None:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    import warnings

    import torch  # noqa: F401 - import before gfncore._C

    warnings.simplefilter("ignore")  # fallback notices and the like; outcomes are what counts
    proto.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        case = json.loads(line)
        try:
            out = run_case(case)
        except Exception as e:  # noqa: BLE001 - a bug in the judge itself is a failure too
            out = {"kind": "judge", "detail": traceback.format_exc(limit=8) + _describe(e)}
        proto.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    root = os.environ.get("GFN_FUZZ_ROOT")
    if root:
        sys.path.insert(0, root)  # the very gfncore the test session imported
    else:  # a replay by hand: an installed gfncore, else this checkout's
        sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if len(sys.argv) > 2 and sys.argv[1] == "--replay":
        c = json.loads(sys.argv[2])
        print(json.dumps(run_case(c), indent=1))
    else:
        serve()
