"""The three environment routes side by side: the same HyperGrid (4-D, height 8) as the C++
struct, as numba callbacks and as a batched-torch PythonEnv, measured in ONE process, interleaved
round by round, medians printed as markdown tables.

    python -m bench.routes_report            # env-only rollouts and training, per route
    python -m bench.routes_report --quick

Every route is checked to draw the C++ route's trajectories (same seed) before anything is timed.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

import gfncore as gfn

from . import workloads as W
from .report import _time_round


def rollout_rows(batches, rounds: int, target_s: float) -> list[dict]:
    """Environment-only rollouts (uniform policy, no network): trajectories per second per route."""
    rows = []
    for B in batches:
        pipes = {r: W.GfncoreRollout(B, route=r) for r in W.ROUTES}
        for p in pipes.values():
            p.check()
        iters = {}
        for r, p in pipes.items():
            p.step()
            t0 = time.perf_counter()
            p.step()
            iters[r] = max(1, int(target_s / max(time.perf_counter() - t0, 1e-6)))
        times = {r: [] for r in pipes}
        for _ in range(rounds):
            for r, p in pipes.items():
                times[r].append(_time_round(p.step, iters[r])[0])
        row = {"batch": B}
        for r in pipes:
            row[r] = B / statistics.median(times[r])
        # paired per-round ratios: adjacent in time, so drifts in machine load cancel
        row["numba_vs_cpp"] = statistics.median(n / c for n, c in zip(times["numba"], times["cpp"]))
        row["python_vs_numba"] = statistics.median(p / n for p, n in zip(times["python"], times["numba"]))
        rows.append(row)
        print(f"  rollouts batch {B}: " + ", ".join(f"{r} {row[r]:,.0f} traj/s" for r in W.ROUTES), file=sys.stderr)
    return rows


def training_rows(batch: int, rounds: int, warmup: int, target_s: float) -> list[dict]:
    """On-policy TB training per route, each against the floor of its own rollouts."""
    pipes = {r: W.GfncorePipeline(batch, route=r) for r in W.ROUTES}
    floors = {r: W.FloorPipeline(batch) for r in W.ROUTES}
    for r, p in pipes.items():
        p.check()
        for _ in range(warmup):
            p.step()
        p.record(True)
        p.step()
        p.record(False)
        floors[r].set_schedule(p.take_recorded())
    t0 = time.perf_counter()
    pipes["cpp"].step()
    iters = max(1, int(target_s / max(time.perf_counter() - t0, 1e-6)))
    res = {r: ([], []) for r in pipes}
    for _ in range(rounds):
        for r, p in pipes.items():
            p.record(True)
            res[r][0].append(_time_round(p.step, iters)[0])
            p.record(False)
            floors[r].set_schedule(p.take_recorded())
            res[r][1].append(_time_round(floors[r].step, iters)[0])
    out = []
    for r, (g, f) in res.items():
        out.append({"route": r, "ms": statistics.median(g), "floor_ms": statistics.median(f),
                    "ratio": statistics.median(a / b for a, b in zip(g, f))})
        print(f"  training {r}: {out[-1]['ms'] * 1e3:.2f} ms/iter, {out[-1]['ratio']:.2f}x floor", file=sys.stderr)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch and gfncore kernel threads (default 1)")
    ap.add_argument("--rollout-batches", type=int, nargs="+", default=[64, 1024, 16384])
    ap.add_argument("--train-batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--round-seconds", type=float, default=0.4)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="5 rounds of ~0.2 s")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.round_seconds, args.warmup = 5, 0.2, 3
    torch.set_num_threads(args.threads)
    gfn._C.set_num_threads(args.threads)
    print("rollouts ...", file=sys.stderr)
    roll = rollout_rows(args.rollout_batches, args.rounds, args.round_seconds)
    print("training ...", file=sys.stderr)
    train = training_rows(args.train_batch, args.rounds, args.warmup, args.round_seconds)

    print(f"### Environment routes: HyperGrid {W.NDIM}-D, height {W.HEIGHT} as C++ / numba / Python\n")
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{args.threads} torch and kernel thread(s); medians of {args.rounds} interleaved rounds of "
          f"~{args.round_seconds} s; ratios are medians of per-round ratios.\n")
    print("Environment-only rollouts (uniform policy, no network), trajectories per second:\n")
    print("| batch | C++ | numba | Python | numba time / C++ time | Python time / numba time |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in roll:
        print(f"| {r['batch']} | {r['cpp']:,.0f} | {r['numba']:,.0f} | {r['python']:,.0f} | "
              f"{r['numba_vs_cpp']:.2f}x | {r['python_vs_numba']:.1f}x |")
    print(f"\nTraining (on-policy TB, batch {args.train_batch}, MLP {W.HIDDEN}x{W.LAYERS}, Adam), each route against "
          f"the network floor of its own rollouts:\n")
    print("| route | ms/iter | it/s | floor ms/iter | / floor |")
    print("|---|---:|---:|---:|---:|")
    for r in train:
        print(f"| {r['route']} | {r['ms'] * 1e3:.2f} | {1 / r['ms']:.1f} | {r['floor_ms'] * 1e3:.2f} | {r['ratio']:.2f}x |")


if __name__ == "__main__":
    main()
