"""Peak resident memory one pipeline adds while training (run by report.py, one process each).

    python -m bench.memory {gfncore,plain,floor} BATCH THREADS   -> prints MiB
"""
from __future__ import annotations

import resource
import sys

import torch

from . import workloads as W


def main() -> None:
    name, batch, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    if name == "floor":
        gf = W.GfncorePipeline(batch)
        gf.record(True)
        for _ in range(5):
            gf.step()
        schedule = gf.take_recorded()
        del gf
        p = W.FloorPipeline(batch)
        p.set_schedule(schedule)
    else:
        p = W.GfncorePipeline(batch) if name == "gfncore" else W.PlainPipeline(batch)
    # ru_maxrss is a high-water mark: measure the rise above what the process already peaked at
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(30):
        p.step()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{(after - before) / 1024:.1f}")  # Linux reports KiB


if __name__ == "__main__":
    main()
