"""Cost of the non-finite guard in Trainer.train_step, measured side by side in one process.

    python -m bench.guard_report            # batch 64 and 1024, 1 thread
    python -m bench.guard_report --batches 16 64 --rounds 31

The guard snapshots the random stream before the step and, after the backward, checks the loss
value (already read for the progress bar) and every gradient with one fused max-|g| pass
(AMP's fused non-finite check at scale 1) and one host sync, before Adam. Two trainers with the same seed
run the same steps, one with the guard and one without (Trainer._guard = False), interleaved
round by round; the table gives medians and the median of per-round ratios, plus the guard's own
pieces timed alone on the same parameters.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

import gfncore as gfn

from . import workloads as W


def _round(step, iters: int) -> float:
    t = time.perf_counter()
    for _ in range(iters):
        step()
    return (time.perf_counter() - t) / iters


def _micro(fn, n: int = 2000) -> float:
    for _ in range(50):
        fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[64, 1024])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--round-seconds", type=float, default=0.3)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args(argv)
    gfn.set_num_threads(args.threads)
    rows = []
    for B in args.batches:
        on, off = W.GfncorePipeline(B), W.GfncorePipeline(B)
        off.trainer._guard = False
        for _ in range(args.warmup):
            on.step()
            off.step()
        # the same seed and the same steps: the guard changes no number
        for a, b in zip(on.policy.parameters(), off.policy.parameters()):
            assert torch.equal(a, b), "guarded and unguarded runs diverged"
        t0 = time.perf_counter()
        on.step()
        iters = max(1, int(args.round_seconds / max(time.perf_counter() - t0, 1e-6)))
        res = {"on": [], "off": []}
        for r in range(args.rounds):
            order = (("on", on), ("off", off)) if r % 2 == 0 else (("off", off), ("on", on))
            for name, p in order:
                res[name].append(_round(p.step, iters))
        t = on.trainer
        micro = {"grads": _micro(t._grads_finite), "snapshot": _micro(t.generator.get_state)}
        rows.append({"batch": B, "on": statistics.median(res["on"]), "off": statistics.median(res["off"]),
                     "ratio": statistics.median(a / b for a, b in zip(res["on"], res["off"])), **micro})
        print(f"  batch {B}: guarded {rows[-1]['on'] * 1e3:.3f} ms, unguarded {rows[-1]['off'] * 1e3:.3f} ms",
              file=sys.stderr)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.rounds} interleaved rounds\n")
    print("| batch | guarded ms/step | unguarded ms/step | guarded / unguarded | gradient check alone | "
          "RNG snapshot alone |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['batch']} | {r['on'] * 1e3:.3f} | {r['off'] * 1e3:.3f} | {r['ratio']:.3f}x | "
              f"{r['grads'] * 1e6:.1f} us | {r['snapshot'] * 1e6:.1f} us |")


if __name__ == "__main__":
    main()
