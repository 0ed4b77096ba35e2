"""The compiled core's op bindings: forward and backward are separate entry points, each taking
only its own buffers, and CUDA launches can return before their kernels report errors."""
from __future__ import annotations

import pytest
import torch

import gfncore

FUSED = ["trajectory_balance", "detailed_balance", "modified_detailed_balance", "subtrajectory_balance",
         "flow_matching", "log_partition_variance", "masked_log_softmax_gather"]


@pytest.mark.parametrize("name", FUSED)
def test_forward_and_backward_are_separate_entry_points(name):
    C = gfncore._C
    assert hasattr(C, f"{name}_forward") and hasattr(C, f"{name}_backward") and not hasattr(C, name)
    fwd, bwd = getattr(C, f"{name}_forward").__doc__, getattr(C, f"{name}_backward").__doc__
    assert "grad_out" not in fwd and "grad_out" in bwd  # the forward takes no gradient buffers


def test_backward_entry_point_needs_a_gradient():
    lg, m, a = torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool), torch.zeros(2, dtype=torch.int64)
    with pytest.raises(TypeError, match="grad_out must be a torch.Tensor"):
        gfncore._C.masked_log_softmax_gather_backward(lg, m, a, None, torch.empty(2, 3), 0)
    out = torch.empty(2)
    gfncore._C.masked_log_softmax_gather_forward(lg, m, a, out, 0)
    torch.testing.assert_close(out, torch.full((2,), -torch.log(torch.tensor(3.0))))


def test_cuda_error_mode_round_trips():
    assert gfncore._C.cuda_async_errors() is False  # the default: errors raise at the op
    try:
        gfncore.ops.set_cuda_async_errors(True)
        assert gfncore._C.cuda_async_errors() is True
        gfncore.ops.check_cuda_errors()  # nothing pending
    finally:
        gfncore.ops.set_cuda_async_errors(False)


@pytest.mark.skipif(not (torch.cuda.is_available() and gfncore.build_info()["with_cuda"]),
                    reason="needs a CUDA device and a CUDA build")
def test_async_cuda_errors_raise_at_the_check():
    lg = torch.zeros(4, 3, device="cuda")
    m = torch.ones(4, 3, dtype=torch.bool, device="cuda")
    bad = torch.tensor([0, 1, 7, 2], device="cuda")  # action 7 is out of range at row 2
    with pytest.raises(ValueError, match="row 2"):  # synchronous: at the op
        gfncore.ops.masked_log_softmax_gather(lg, m, bad)
    try:
        gfncore.ops.set_cuda_async_errors(True)
        gfncore.ops.masked_log_softmax_gather(lg, m, bad)  # returns before the kernel reports
        with pytest.raises(ValueError, match="row 2"):
            gfncore.ops.check_cuda_errors()
        gfncore.ops.check_cuda_errors()  # reported once
    finally:
        gfncore.ops.set_cuda_async_errors(False)


@pytest.mark.skipif(not (torch.cuda.device_count() >= 2 and gfncore.build_info()["with_cuda"]),
                    reason="needs two CUDA devices and a CUDA build")
def test_launch_runs_on_the_tensors_device():
    lg = torch.randn(5, 3, device="cuda:1")
    m = torch.ones(5, 3, dtype=torch.bool, device="cuda:1")
    a = torch.zeros(5, dtype=torch.int64, device="cuda:1")
    with torch.cuda.device(0):
        got = gfncore.ops.masked_log_softmax_gather(lg, m, a)
    torch.testing.assert_close(got.cpu(), gfncore.ops.reference.masked_log_softmax_gather(lg.cpu(), m.cpu(), a.cpu()))
