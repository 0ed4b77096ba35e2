"""The training step's paths side by side, in one process, rounds interleaved: what the rollout's
kept activations (gfncore.onpolicy) and the one-call MLP rollout (Sampler.fused_rollout) each
save, against the network floor of the recomputing step (bench.workloads.FloorPipeline).

    python -m bench.onpolicy_report [--batches 16 64 256 1024 4096] [--threads 1] [--rounds 9]

Pipelines (the benchmark workload of bench.workloads: HyperGrid 4-D 8x8, MLP 256x2, TB, Adam):
- before: per-step rollout loop, the loss recomputes the forward (the path before these changes);
- onpolicy: per-step loop, the loss differentiates through the rollout's kept activations;
- fused: the whole rollout in one compiled call, the loss recomputes;
- both: one-call rollout keeping the activations (the default now);
- floor: the recomputing step's bare network work (rollout forwards, one batched forward and
  backward, Adam), replaying the rollouts the "before" pipeline just drew.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

import gfncore as gfn

from . import workloads as W

PATHS = {"before": (False, True), "onpolicy": (False, False), "fused": (True, True), "both": (True, False)}


def _pipeline(batch: int, fused: bool, recompute: bool) -> W.GfncorePipeline:
    p = W.GfncorePipeline(batch, recompute=recompute)
    p.trainer.sampler.fused_rollout = fused
    return p


def _round(step, iters):
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(iters):
        step()
    return (time.perf_counter() - w0) / iters, (time.process_time() - c0) / iters


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[16, 64, 256, 1024])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--round-seconds", type=float, default=0.3)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args(argv)
    gfn.set_num_threads(args.threads)
    load0 = os.getloadavg()
    rows = []
    for B in args.batches:
        pipes = {k: _pipeline(B, *v) for k, v in PATHS.items()}
        floor = W.FloorPipeline(B)
        for p in pipes.values():
            p.check()
            for _ in range(args.warmup):
                p.step()
        before = pipes["before"]
        before.record(True)
        t0 = time.perf_counter()
        before.step()
        before.record(False)
        floor.set_schedule(before.take_recorded())
        iters = max(1, int(args.round_seconds / max(time.perf_counter() - t0, 1e-6)))
        res = {k: [] for k in [*pipes, "floor"]}
        for _ in range(args.rounds):
            for k, p in pipes.items():
                p.record(k == "before")
                res[k].append(_round(p.step, iters))
                p.record(False)
                if k == "before":
                    floor.set_schedule(p.take_recorded())
            res["floor"].append(_round(floor.step, iters))
        paths = {k: p.trainer.forward_path for k, p in pipes.items()}
        row = {"batch": B, "paths": paths}
        for k, v in res.items():
            row[k] = statistics.median(w for w, _ in v)
            row[k + "/floor"] = statistics.median(a[0] / b[0] for a, b in zip(v, res["floor"]))
            row[k + "/floor cpu"] = statistics.median(a[1] / b[1] for a, b in zip(v, res["floor"]))
        rows.append(row)
        print(f"  batch {B}: " + ", ".join(f"{k} {row[k] * 1e3:.2f} ms ({row[k + '/floor']:.2f}x)" for k in res),
              file=sys.stderr)
    load1 = os.getloadavg()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {args.threads} thread(s); median of {args.rounds} "
          f"interleaved rounds of ~{args.round_seconds} s; load average {load0[0]:.1f} at the start, {load1[0]:.1f} "
          f"at the end. Ratios: medians of per-round time / floor time (wall; CPU time in parentheses).\n")
    keys = [*PATHS, "floor"]
    print("| batch | " + " | ".join(f"{k} ms" for k in keys) + " | " + " | ".join(f"{k} / floor" for k in PATHS) + " |")
    print("|---:|" + "---:|" * (2 * len(keys) - 1))
    for r in rows:
        print(f"| {r['batch']} | " + " | ".join(f"{r[k] * 1e3:.2f}" for k in keys) + " | " +
              " | ".join(f"{r[k + '/floor']:.2f}x ({r[k + '/floor cpu']:.2f}x)" for k in PATHS) + " |")
    print("\nforward path per pipeline (Trainer.forward_path): " +
          ", ".join(f"{k}: {v}" for k, v in rows[-1]["paths"].items()))


if __name__ == "__main__":
    main()
