"""Training iterations: gfncore vs the plain-PyTorch pipeline vs the neural-network floor.

Each benchmark checks its pipeline first (valid trajectories, finite loss, compiled == generic
sampler), warms up, then times one training iteration per call. The ratio table that the README
quotes comes from bench/report.py, which runs the same workloads interleaved in one process.
"""
from __future__ import annotations

import pytest

from bench import workloads as W

BATCHES = [16, 64, 256, 1024]
WARMUP = 10


def _run(benchmark, pipe, batch):
    pipe.check()
    for _ in range(WARMUP):
        pipe.step()
    benchmark.extra_info["batch"] = batch
    benchmark.pedantic(pipe.step, rounds=max(10, 2048 // batch), iterations=1, warmup_rounds=2)


@pytest.mark.parametrize("batch", BATCHES)
def test_train_gfncore(benchmark, batch):
    benchmark.group = f"train batch {batch}"
    _run(benchmark, W.GfncorePipeline(batch), batch)


@pytest.mark.parametrize("batch", BATCHES)
def test_train_floor(benchmark, batch):
    benchmark.group = f"train batch {batch}"
    gf = W.GfncorePipeline(batch)
    for _ in range(WARMUP):
        gf.step()
    gf.record(True)
    for _ in range(20):  # the floor replays the active batch sizes of these gfncore rollouts
        gf.step()
    floor = W.FloorPipeline(batch)
    floor.set_schedule(gf.take_recorded())
    _run(benchmark, floor, batch)


@pytest.mark.parametrize("batch", [16, 64])
def test_train_plain_pytorch(benchmark, batch):
    benchmark.group = f"train batch {batch}"
    _run(benchmark, W.PlainPipeline(batch), batch)
