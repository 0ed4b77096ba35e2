"""What was compiled: build_info, no libtorch link, thread control, CPU-only builds failing loudly,
and bad input never taking the interpreter down."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import gfncore


def test_build_info():
    info = gfncore.build_info()
    assert set(info) >= {"version", "with_cuda", "with_openmp", "cuda_version"}
    assert isinstance(info["with_cuda"], bool) and isinstance(info["with_openmp"], bool)
    assert info["version"] == gfncore.__version__
    if info["with_cuda"]:
        assert isinstance(info["cuda_version"], str) and info["cuda_version"]
    else:
        assert info["cuda_version"] is None
    # a copy: callers cannot alter the module's answer
    info["version"] = "x"
    assert gfncore.build_info()["version"] == gfncore.__version__


def test_extension_does_not_link_libtorch():
    ldd = shutil.which("ldd")
    if ldd is None:
        pytest.skip("ldd not available")
    r = subprocess.run([ldd, gfncore._C.__file__], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    libs = r.stdout.lower()
    for name in ("libtorch", "libc10", "libtorch_python", "libcudart.so"):
        assert name not in libs, f"{gfncore._C.__file__} links {name}:\n{r.stdout}"


@pytest.mark.usefixtures("kernel_threads")
def test_thread_control():
    gfncore._C.set_num_threads(1)
    assert gfncore._C.num_threads() == 1
    gfncore._C.set_num_threads(2)
    assert gfncore._C.num_threads() == (2 if gfncore.build_info()["with_openmp"] else 1)
    gfncore._C.set_num_threads(0)
    assert gfncore._C.num_threads() >= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensor_in_cpu_build_fails_loudly():
    if gfncore.build_info()["with_cuda"]:
        pytest.skip("this build has CUDA kernels")
    x = torch.zeros(3, 4, device="cuda")
    m = torch.ones(3, 4, dtype=torch.bool, device="cuda")
    a = torch.zeros(3, dtype=torch.int64, device="cuda")
    with pytest.raises(TypeError, match="built without CUDA"):
        gfncore._C.masked_log_softmax_gather_forward(x, m, a, torch.empty(3, device="cuda"), 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mixed_cpu_cuda_inputs_raise():
    logits = torch.zeros(3, 4, device="cuda")
    mask = torch.ones(3, 4, dtype=torch.bool)
    with pytest.raises((TypeError, ValueError), match="device"):
        gfncore.ops.masked_log_softmax_gather(logits, mask, torch.zeros(3, dtype=torch.int64, device="cuda"))


def test_bad_input_never_kills_the_interpreter(tmp_path):
    # Every call below must raise ValueError or TypeError; a crash (segfault, abort) would end the
    # subprocess with a signal and no "survived" line.
    script = textwrap.dedent("""
        import math, torch, gfncore
        from gfncore.envs import HyperGrid
        env = HyperGrid(2, 4)
        s = torch.zeros(5, 2, dtype=torch.int32)
        m = env.forward_mask(s)
        lg = torch.zeros(5, 3)
        big = torch.full((5, 2), 2**30, dtype=torch.int32)
        neg = torch.full((5, 2), -2**30, dtype=torch.int32)
        calls = [
            lambda: env.forward_mask(big), lambda: env.encode(neg), lambda: env.log_reward(big),
            lambda: env.step(s, torch.full((5,), 2**40)), lambda: env.step(s, torch.full((5,), -2**40)),
            lambda: env.backward_step(s, torch.zeros(5, dtype=torch.int64)),
            lambda: gfncore.ops.rollout_step(env, big, m, lg, seed=0),
            lambda: gfncore.ops.rollout_step(env, s, m[:, :2], lg, seed=0),
            lambda: gfncore.ops.rollout_step(env, s, m, lg[:2], seed=0),
            lambda: gfncore.ops.rollout_step(env, s, m, lg, seed=0, ids=torch.arange(2)),
            lambda: gfncore.ops.rollout_step(env, s, torch.zeros_like(m), lg, seed=0),
            lambda: gfncore.ops.masked_log_softmax_gather(lg, m, torch.full((5,), 2**40)),
            lambda: gfncore.ops.masked_log_softmax_gather(lg, m, torch.full((5,), -2**40)),
            lambda: gfncore.ops.masked_log_softmax_gather(lg, m, torch.zeros(7, dtype=torch.int64)),
            lambda: gfncore.ops.masked_log_softmax_gather(lg, m[:3], torch.zeros(5, dtype=torch.int64)),
            lambda: gfncore.ops.trajectory_balance(torch.zeros(5), torch.zeros(5), torch.tensor([0, 2**40]),
                                                   torch.zeros(1), torch.tensor(0.0)),
            lambda: gfncore.ops.trajectory_balance(torch.zeros(5), torch.zeros(5), torch.tensor([0, -3, 5]),
                                                   torch.zeros(2), torch.tensor(0.0)),
            lambda: gfncore.ops.trajectory_balance(torch.zeros(5), torch.zeros(5), torch.tensor([0, 9, 5]),
                                                   torch.zeros(2), torch.tensor(0.0)),
            lambda: gfncore.ops.trajectory_balance(torch.zeros(5), torch.zeros(2), torch.tensor([0, 5]),
                                                   torch.zeros(1), torch.tensor(0.0)),
            # the sampler's recorder: bad capacity, a step before start, logits of the wrong shape
            lambda: gfncore._C.RolloutRecorder(env._handle, -1),
            lambda: gfncore._C.RolloutRecorder(env._handle, 2**62),
            lambda: gfncore._C.RolloutRecorder(env._handle, 4).start(-1, 0, 1.0, 0.0),
            lambda: gfncore._C.RolloutRecorder(env._handle, 4).start(2**41, 0, 1.0, 0.0),
            lambda: gfncore._C.RolloutRecorder(env._handle, 100).step(torch.zeros(2, 3)),
            lambda: (lambda r: (r.start(2, 0, 1.0, 0.0), r.step(torch.zeros(3, 3))))(
                gfncore._C.RolloutRecorder(env._handle, 100)),
            lambda: gfncore._C.RolloutRecorder((1, (2, 4), (0.1, 0.5, 2.0)), 100),
            lambda: gfncore._C.env_query(env._handle, 99, s, None, torch.zeros(5, dtype=torch.bool)),
            lambda: gfncore._C.env_query(env._handle, 0, s, None, torch.zeros(2, dtype=torch.bool)),
            lambda: gfncore._C.env_query((1, (2,), ()), 0, s, None, torch.zeros(15, dtype=torch.bool)),
            # parameters: overflowing products, huge ints, floats where ints are declared, tensors
            lambda: gfncore._C.Env("hypergrid", {"ndim": 2**47 + 2**16, "height": 2**16}),
            lambda: gfncore._C.Env("hypergrid", {"ndim": 2**62 + 1, "height": 4}),
            lambda: gfncore._C.Env("hypergrid", {"ndim": 2**64, "height": 4}),
            lambda: gfncore._C.Env("hypergrid", {"ndim": 2.7}),
            lambda: gfncore._C.Env("hypergrid", {"R0": float("inf")}),
            lambda: gfncore._C.Env("hypergrid", {"R0": torch.zeros(3)}),
            lambda: gfncore._C.Env("hypergrid", "ndim=2"),
            lambda: gfncore._C.callback_env(2, 3, 4, 2, 5, {"initial_state": 12345}, None),
            lambda: gfncore._C.callback_env(2**40, 3, 4, 2, 5, {}, None),
            lambda: gfncore._C.masked_log_softmax_gather_forward(lg, m, torch.zeros(5, dtype=torch.int64),
                                                                 torch.empty(2), 0),
            lambda: gfncore._C.masked_log_softmax_gather_backward(lg, m, torch.zeros(2, dtype=torch.int64), None,
                                                                  torch.empty(2, 3), 0),
            lambda: HyperGrid(2, 10**6),
        ]
        for i, f in enumerate(calls):
            try:
                f()
            except (ValueError, TypeError):
                continue
            raise SystemExit(f"call {i} did not raise ValueError/TypeError")
        print("survived", len(calls))
    """)
    env = dict(os.environ)
    pkg_parent = str(Path(gfncore.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300,
                       cwd=str(tmp_path))
    assert r.returncode == 0, f"rc={r.returncode}\n{r.stdout}\n{r.stderr[-3000:]}"
    assert r.stdout.strip().startswith("survived")
