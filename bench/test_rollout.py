"""Environment-only rollouts with a uniform policy (logits = 0, no network): the compiled
sampler vs the plain-PyTorch environment loop. One call = one batch of trajectories."""
from __future__ import annotations

import pytest

from bench import workloads as W


@pytest.mark.parametrize("batch", [64, 1024, 16384])
@pytest.mark.parametrize("impl", ["gfncore", "plain"])
def test_rollout(benchmark, impl, batch):
    pipe = (W.GfncoreRollout if impl == "gfncore" else W.PlainRollout)(batch)
    pipe.check()
    pipe.step()
    benchmark.group = f"rollout batch {batch}"
    benchmark.extra_info.update(batch=batch, unit="one batch of trajectories")
    benchmark.pedantic(pipe.step, rounds=max(5, 4096 // batch), iterations=1, warmup_rounds=1)
