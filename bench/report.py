"""Side-by-side benchmark report: every pipeline measured in ONE process, interleaved round by
round (so machine load hits all of them alike), medians printed as a markdown table.

    python -m bench.report                 # full table (a few minutes on 2 cores)
    python -m bench.report --quick         # fewer rounds
    python -m bench.report --threads 2

Times are wall-clock medians over rounds (each round = `iters` consecutive steps, divided by
iters). CPU time (process_time) medians are printed too: on a shared machine they show the work
done, free of time spent descheduled.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

import gfncore as gfn

from . import workloads as W


def _time_round(step, iters: int) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(iters):
        step()
    return (time.perf_counter() - w0) / iters, (time.process_time() - c0) / iters


def train_table(batches, plain_batches, rounds: int, warmup: int, target_s: float) -> list[dict]:
    rows = []
    for B in batches:
        gf, fl = W.GfncorePipeline(B), W.FloorPipeline(B)
        pl = W.PlainPipeline(B) if B in plain_batches else None
        gf.check()
        if pl:
            pl.check()
        for _ in range(warmup):
            gf.step()
            if pl:
                pl.step()
        gf.record(True)
        t0 = time.perf_counter()
        gf.step()
        gf.record(False)
        fl.set_schedule(gf.take_recorded())
        fl.check()
        for _ in range(warmup):
            fl.step()
        iters = max(1, int(target_s / max(time.perf_counter() - t0, 1e-6)))
        res = {"gfncore": [], "floor": [], "plain": []}
        for _ in range(rounds):
            gf.record(True)
            res["gfncore"].append(_time_round(gf.step, iters))
            gf.record(False)
            fl.set_schedule(gf.take_recorded())  # the floor replays exactly the rollouts just timed
            res["floor"].append(_time_round(fl.step, iters))
            if pl:
                res["plain"].append(_time_round(pl.step, iters))
        row = {"batch": B, "iters": iters, "rounds": rounds}
        for k, v in res.items():
            if v:
                row[k] = statistics.median(w for w, _ in v)
                row[k + "_cpu"] = statistics.median(c for _, c in v)
        # ratios paired round by round (adjacent in time, so slow drifts in machine load cancel)
        for name, num, den in (("gf_floor", "gfncore", "floor"), ("plain_gf", "plain", "gfncore")):
            if res[num] and res[den]:
                row[name] = statistics.median(a[0] / b[0] for a, b in zip(res[num], res[den]))
                row[name + "_cpu"] = statistics.median(a[1] / b[1] for a, b in zip(res[num], res[den]))
        rows.append(row)
        print(f"  batch {B}: " + ", ".join(f"{k} {row[k] * 1e3:.2f} ms" for k in res if k in row), file=sys.stderr)
    return rows


def loss_table(batch: int, losses, rounds: int, warmup: int, target_s: float) -> list[dict]:
    """Training it/s with each objective at the same configuration, interleaved round by round.
    Each objective gets its own floor, replaying the rollouts it just timed (the policy forwards,
    one batched forward + backward, Adam: no env, sampling or loss logic)."""
    pipes = {name: W.GfncorePipeline(batch, loss=name) for name in losses}
    floors = {name: W.FloorPipeline(batch) for name in losses}
    for name, p in pipes.items():
        for _ in range(warmup):
            p.step()
        p.record(True)
        p.step()
        p.record(False)
        floors[name].set_schedule(p.take_recorded())
    t0 = time.perf_counter()
    pipes[losses[0]].step()
    iters = max(1, int(target_s / max(time.perf_counter() - t0, 1e-6)))
    res = {name: ([], []) for name in losses}
    for _ in range(rounds):
        for name, p in pipes.items():
            p.record(True)
            res[name][0].append(_time_round(p.step, iters)[0])
            p.record(False)
            floors[name].set_schedule(p.take_recorded())
            res[name][1].append(_time_round(floors[name].step, iters)[0])
    return [{"loss": name, "ms": statistics.median(g), "floor_ms": statistics.median(f),
             "ratio": statistics.median(a / b for a, b in zip(g, f))} for name, (g, f) in res.items()]


def rollout_table(batches, rounds: int, target_s: float) -> list[dict]:
    rows = []
    for B in batches:
        gf, pl = W.GfncoreRollout(B), W.PlainRollout(B)
        gf.check()
        pl.check()
        res = {}
        for name, p in (("gfncore", gf), ("plain", pl)):
            t0 = time.perf_counter()
            p.step()
            p.step()
            res[name] = (p, max(1, int(target_s / max((time.perf_counter() - t0) / 2, 1e-6))))
        times = {k: [] for k in res}
        for _ in range(rounds):
            for k, (p, it) in res.items():
                times[k].append(_time_round(p.step, it)[0])
        row = {"batch": B}
        for k in res:
            row[k] = B / statistics.median(times[k])
        rows.append(row)
        print(f"  rollout batch {B}: " + ", ".join(f"{k} {row[k]:.0f} traj/s" for k in res), file=sys.stderr)
    return rows


def peak_memory(batch: int, threads: int) -> dict:
    """Peak resident memory a training iteration adds (VmHWM after a reset, minus VmRSS), each
    pipeline in its own subprocess so the peaks do not mask each other."""
    out = {}
    for name in ("gfncore", "plain", "floor"):
        # a fixed mmap threshold makes glibc return every large block on free, so the resident
        # set follows live memory instead of whatever the heap happened to retain
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
        r = subprocess.run([sys.executable, "-m", "bench.memory", name, str(batch), str(threads)], capture_output=True,
                           text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env=env)
        if r.returncode != 0:
            raise RuntimeError(f"bench.memory {name} failed:\n{r.stderr}")
        out[name] = float(r.stdout.split()[-1])
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch and gfncore kernel threads (default 1)")
    ap.add_argument("--batches", type=int, nargs="+", default=[16, 64, 256, 1024])
    ap.add_argument("--plain-batches", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--rollout-batches", type=int, nargs="+", default=[64, 1024, 16384])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--round-seconds", type=float, default=0.4)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="5 rounds of ~0.2 s")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--losses", nargs="*", default=["tb", "db", "subtb", "fm", "zvar", "mdb"],
                    help="objectives for the end-to-end per-loss table (at batch 64); none to skip")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.round_seconds, args.warmup = 5, 0.2, 5
    torch.set_num_threads(args.threads)
    gfn._C.set_num_threads(args.threads)

    print("training ...", file=sys.stderr)
    train = train_table(args.batches, set(args.plain_batches), args.rounds, args.warmup, args.round_seconds)
    print("rollouts ...", file=sys.stderr)
    roll = rollout_table(args.rollout_batches, max(3, args.rounds // 2), args.round_seconds)
    per_loss = loss_table(64, args.losses, args.rounds, args.warmup, args.round_seconds) if args.losses else []
    mem = None if args.no_memory else peak_memory(1024 if 1024 in args.batches else args.batches[-1], args.threads)

    print(f"### gfncore benchmark: HyperGrid {W.NDIM}-D, height {W.HEIGHT}, R0={W.R0}; MLP {W.HIDDEN}x{W.LAYERS}; "
          f"on-policy TB; Adam\n")
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch.set_num_threads({args.threads}) and gfncore kernel threads {gfn._C.num_threads()}; "
          f"median of {args.rounds} interleaved rounds of ~{args.round_seconds} s; "
          f"wall clock (CPU-time medians in parentheses); ratios are medians of per-round ratios.\n")
    print("Training iterations (one iteration = rollout of `batch` trajectories + TB loss + backward + Adam):\n")
    print("| batch | floor ms/iter | gfncore ms/iter | plain-PyTorch ms/iter | floor it/s | gfncore it/s | "
          "plain it/s | gfncore / floor | plain / gfncore |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in train:
        def ms(k):
            return f"{r[k] * 1e3:.2f} ({r[k + '_cpu'] * 1e3:.2f})" if k in r else "—"

        def its(k):
            return f"{1 / r[k]:.1f}" if k in r else "—"

        ratio_pl = f"{r['plain_gf']:.2f}x ({r['plain_gf_cpu']:.2f}x)" if "plain" in r else "—"
        print(f"| {r['batch']} | {ms('floor')} | {ms('gfncore')} | {ms('plain')} | {its('floor')} | {its('gfncore')} | "
              f"{its('plain')} | {r['gf_floor']:.2f}x ({r['gf_floor_cpu']:.2f}x) | {ratio_pl} |")
    print("\nEnvironment-only rollouts (uniform policy: logits = 0, no network), trajectories per second:\n")
    print("| batch | gfncore traj/s | plain-PyTorch traj/s | gfncore / plain |")
    print("|---:|---:|---:|---:|")
    for r in roll:
        print(f"| {r['batch']} | {r['gfncore']:,.0f} | {r['plain']:,.0f} | {r['gfncore'] / r['plain']:.1f}x |")
    if per_loss:
        print("\nEnd to end with each objective at batch 64 (same network; db and subtb add a 1-unit flow head; "
              "fm also runs the network over every parent state, which its floor does not count):\n")
        print("| loss | ms/iter | it/s | floor ms/iter | / floor |")
        print("|---|---:|---:|---:|---:|")
        for r in per_loss:
            print(f"| {r['loss']} | {r['ms'] * 1e3:.2f} | {1 / r['ms']:.1f} | {r['floor_ms'] * 1e3:.2f} | {r['ratio']:.2f}x |")
    if mem:
        b = 1024 if 1024 in args.batches else args.batches[-1]
        print(f"\nPeak memory at batch {b}: resident-set high-water mark during 30 training iterations minus the "
              "resident set before them (after 3 warm-up iterations; Linux VmHWM reset through /proc/self/clear_refs; "
              "one process per pipeline, glibc MALLOC_MMAP_THRESHOLD_=65536):\n")
        print("| pipeline | peak RSS added (MiB) |")
        print("|---|---:|")
        for k, v in mem.items():
            print(f"| {k} | {v:.1f} |")


if __name__ == "__main__":
    main()
