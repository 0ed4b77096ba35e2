"""Peak resident memory one pipeline adds while training (run by report.py, one process each).

    python -m bench.memory {gfncore,plain,floor} BATCH THREADS [ITERS]   -> prints MiB

After 3 warm-up iterations (optimizer state, cached buffers) the kernel's peak-RSS mark is reset
to the current RSS (Linux: `echo 5 > /proc/self/clear_refs`); the figure is VmHWM after 30 more
iterations minus the RSS before them: the transient memory one iteration needs.
"""
from __future__ import annotations

import sys

import torch

from . import workloads as W


def main() -> None:
    name, batch, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    iters = int(sys.argv[4]) if len(sys.argv) > 4 else 30
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
    for _ in range(3):
        p.step()
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    for _ in range(iters):
        p.step()
    print(f"{(_status_kib('VmHWM') - before) / 1024:.1f}")


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


if __name__ == "__main__":
    main()
