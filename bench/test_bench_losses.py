"""pytest-benchmark suite: forward + backward of each fused balance objective and of its
plain-PyTorch reference on the same inputs (float32 packed trajectories, lengths uniform in
[1, 2 * mean - 1]). `pytest bench/test_bench_losses.py --benchmark-json=out.json`, then compare
the `gfncore` and `reference` groups' medians (or run bench/losses_report.py for the table).
Each case checks the fused op against the reference before it is timed."""
from __future__ import annotations

import pytest

from . import losses_report as lr

CASES = [(B, m) for B in lr.BATCHES for m in lr.MEAN_LENGTHS]


@pytest.mark.parametrize("impl", ["gfncore", "reference"])
@pytest.mark.parametrize("B,mean", CASES, ids=[f"B{B}-L{m}" for B, m in CASES])
@pytest.mark.parametrize("name", list(lr.OBJECTIVES))
def test_loss_fwd_bwd(benchmark, name, B, mean, impl):
    obj = lr.OBJECTIVES[name]
    if impl == "reference" and obj.reference_bytes(B, mean) > lr.REF_MEMORY_LIMIT:
        pytest.skip(f"reference needs ~{obj.reference_bytes(B, mean) / 1e9:.0f} GB of [B, L, L] tensors")
    args = obj.inputs(B, mean)
    lr.check(obj, args if obj.reference_bytes(B, mean) <= lr.REF_MEMORY_LIMIT else obj.inputs(64, mean))
    fn = obj.fused if impl == "gfncore" else obj.reference
    a = lr.leaves(obj, args)
    benchmark.group = f"{name}-B{B}-L{mean}"
    benchmark.extra_info.update(objective=name, B=B, mean_len=mean, T=int(args[0].shape[0]), impl=impl)
    benchmark.pedantic(lr.step, args=(fn, a, obj.diff), rounds=5, iterations=1, warmup_rounds=1)
