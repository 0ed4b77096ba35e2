"""The public ops run one autograd node over the kernels in eager mode and the torch custom op
elsewhere (torch.compile, fallback devices): both must give the same values and gradients.
Trajectory balance from P_F logits is reached only through ops (losses.py never touches _C)."""
from __future__ import annotations

import pytest
import torch

import gfncore.ops as ops
from gfncore.ops._fused import EagerFused


def _packed(lengths, gen, dtype=torch.float64):
    T, B = sum(lengths), len(lengths)
    off = torch.zeros(B + 1, dtype=torch.int64)
    off[1:] = torch.cumsum(torch.tensor(lengths), 0)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)  # noqa: E731
    return T, B, off, r


def _cases(gen):
    T, B, off, r = _packed([3, 1, 5, 2], gen)
    P, A = 3, 4
    in_count = torch.tensor([0, 1, 3, 2, 1, 3, 2, 1, 1, 2, 3], dtype=torch.int64)
    out_mask = torch.rand(T, A, generator=gen) < 0.6
    out_mask[:, -1] = True
    logits, mask = r(T, A), out_mask.clone()
    actions = torch.multinomial(mask.double(), 1, generator=gen).squeeze(1)
    return {
        "trajectory_balance": (ops.trajectory_balance, torch.ops.gfncore.trajectory_balance,
                               [r(T), r(T), off, r(B), r(())], [0, 1, 3, 4]),
        "detailed_balance": (ops.detailed_balance, torch.ops.gfncore.detailed_balance,
                             [r(T), r(T), r(T), off, r(B)], [0, 1, 2, 4]),
        "modified_detailed_balance": (ops.modified_detailed_balance, torch.ops.gfncore.modified_detailed_balance,
                                      [r(T), r(T), r(T), r(T), off], [0, 1, 2, 3]),
        "subtrajectory_balance": (ops.subtrajectory_balance, torch.ops.gfncore.subtrajectory_balance,
                                  [r(T), r(T), r(T), off, r(B), 0.9], [0, 1, 2, 4]),
        "flow_matching": (ops.flow_matching, torch.ops.gfncore.flow_matching,
                          [r(T, P), in_count, r(T, A), out_mask], [0, 2]),
        "log_partition_variance": (ops.log_partition_variance, torch.ops.gfncore.log_partition_variance,
                                   [r(T), r(T), off, r(B)], [0, 1, 3]),
        "masked_log_softmax_gather": (ops.masked_log_softmax_gather, torch.ops.gfncore.masked_log_softmax_gather,
                                      [logits, mask, actions], [0]),
        "trajectory_balance_from_logits": (ops.trajectory_balance_from_logits,
                                           torch.ops.gfncore.trajectory_balance_from_logits,
                                           [logits, mask, actions, r(T), off, r(B), r(())], [0, 3, 5, 6]),
        "trajectory_balance_from_logits_mean": (
            lambda *a: ops.trajectory_balance_from_logits(*a, reduction="mean"),
            torch.ops.gfncore.trajectory_balance_from_logits_mean, [logits, mask, actions, r(T), off, r(B), r(())],
            [0, 3, 5, 6]),
    }


@pytest.mark.parametrize("name", sorted(_cases(torch.Generator().manual_seed(0))))
def test_eager_node_equals_custom_op(name):
    public, custom, args, diff = _cases(torch.Generator().manual_seed(1))[name]

    def run(fn):
        xs = [a.detach().clone().requires_grad_(i in diff) if isinstance(a, torch.Tensor) else a
              for i, a in enumerate(args)]
        y = fn(*xs)
        w = torch.linspace(0.5, 1.5, y.numel(), dtype=y.dtype).reshape(y.shape)
        (y * w).sum().backward()
        return y.grad_fn, y.detach(), [xs[i].grad for i in diff]

    node_e, ye, ge = run(public)
    node_c, yc, gc = run(custom)
    assert type(node_e).__name__ == EagerFused.__name__ + "Backward"  # the eager path really ran
    assert type(node_c).__name__ != type(node_e).__name__
    torch.testing.assert_close(ye, yc, rtol=0, atol=0)
    for a, b in zip(ge, gc):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["trajectory_balance", "subtrajectory_balance", "masked_log_softmax_gather",
                                  "trajectory_balance_from_logits", "trajectory_balance_from_logits_mean"])
def test_ops_trace_under_torch_compile(name):
    # aot_eager traces the graph through the custom ops' fake kernels and autograd registrations
    # (the part torch.compile needs from us) without paying for inductor's C++ compilation.
    public, _, args, diff = _cases(torch.Generator().manual_seed(2))[name]

    def loss(*xs):
        return public(*xs).sum()

    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    outs = []
    for fn in (loss, compiled):
        xs = [a.detach().clone().requires_grad_(i in diff) if isinstance(a, torch.Tensor) else a
              for i, a in enumerate(args)]
        y = fn(*xs)
        y.backward()
        outs.append((y.detach(), [xs[i].grad for i in diff]))
    torch.testing.assert_close(outs[0][0], outs[1][0])
    for a, b in zip(outs[0][1], outs[1][1]):
        torch.testing.assert_close(a, b)


def test_tb_from_logits_equals_gather_then_tb():
    # The fused node is the composition of the two public ops, value and gradients.
    public, _, args, diff = _cases(torch.Generator().manual_seed(3))["trajectory_balance_from_logits"]

    def run(fn):
        xs = [a.detach().clone().requires_grad_(i in diff) if isinstance(a, torch.Tensor) else a
              for i, a in enumerate(args)]
        y = fn(*xs)
        y.mean().backward()
        return y.detach(), [xs[i].grad for i in diff]

    def composed(logits, mask, actions, *rest):
        return ops.trajectory_balance(ops.masked_log_softmax_gather(logits, mask, actions), *rest)

    (y, g), (y2, g2) = run(public), run(composed)
    torch.testing.assert_close(y, y2, rtol=1e-12, atol=1e-12)
    for a, b in zip(g, g2):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_losses_reach_the_kernels_only_through_ops():
    import ast
    import inspect

    import gfncore.losses

    tree = ast.parse(inspect.getsource(gfncore.losses))
    names = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "_C" not in names and not any(m.endswith("_dispatch") or m == "_C" for m in modules)
