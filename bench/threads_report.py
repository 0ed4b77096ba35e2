"""Thread settings side by side: HyperGrid 4-D training steps per second at several thread counts
and OpenMP wait policies, on the machine as it is and with competing processes.

    python -m bench.threads_report                            # loads: as-is, copies:2C (C cores)
    python -m bench.threads_report --loads idle spin:4 copies:4 --batches 64 1024 --passes 3

Each setting runs in its own subprocess, because OpenMP reads OMP_WAIT_POLICY / GOMP_SPINCOUNT
once, when its runtime loads. Settings are interleaved pass by pass under the same load, so load
drifts hit all of them alike. Loads: ``idle`` (nothing added: the machine as it is, its load
average is printed), ``spin:N`` (N Python spin loops, one core each), ``copies:N`` (N copies of the
benchmark at the same time, each reported: a sweep of runs sharing a machine). Numbers: medians
over every round of every pass (and every copy); gfncore / floor is the median of per-round
ratios against the bare network work of the same step (bench.workloads.FloorPipeline) measured
in the same subprocess right after, at the same settings.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

_UNSET = {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None, "OMP_NUM_THREADS": None}
# name -> (environment overrides (None: remove the variable), threads (0: gfncore's default;
# -1: all cores)). Threads apply to torch and to the kernels alike.
SETTINGS = {
    "1 thread": (_UNSET, 1),
    # libgomp's documented default when OMP_WAIT_POLICY is unset, written out so that gfncore's
    # own default cannot replace it: what a torch user gets
    "all cores, OpenMP default wait (spin 300000)": (dict(_UNSET, GOMP_SPINCOUNT="300000"), -1),
    "all cores, GOMP_SPINCOUNT=10000": (dict(_UNSET, GOMP_SPINCOUNT="10000"), -1),
    "all cores, OMP_WAIT_POLICY=passive": (dict(_UNSET, OMP_WAIT_POLICY="passive"), -1),
    "gfncore default": (_UNSET, 0),
}


def child(args) -> None:
    import torch

    import gfncore as gfn

    from . import workloads as W

    cores = os.cpu_count() or 1
    # threads 0: what `gfncore train --threads 0` does
    gfn.set_num_threads(gfn.default_threads() if args.threads == 0 else cores if args.threads < 0 else args.threads)
    gf, fl = W.GfncorePipeline(args.batch), W.FloorPipeline(args.batch)
    gf.check()
    for _ in range(args.warmup):
        gf.step()
    gf.record(True)
    t0 = time.perf_counter()
    gf.step()
    gf.record(False)
    fl.set_schedule(gf.take_recorded())
    fl.check()
    for _ in range(args.warmup):
        fl.step()
    iters = max(1, int(args.round_seconds / max(time.perf_counter() - t0, 1e-6)))
    rounds = []
    for _ in range(args.rounds):
        gf.record(True)
        t = time.perf_counter()
        for _ in range(iters):
            gf.step()
        g = (time.perf_counter() - t) / iters
        gf.record(False)
        fl.set_schedule(gf.take_recorded())
        t = time.perf_counter()
        for _ in range(iters):
            fl.step()
        rounds.append((g, (time.perf_counter() - t) / iters))
    print(json.dumps({"rounds": rounds, "torch_threads": torch.get_num_threads(), "kernel_threads": gfn._C.num_threads()}))


def run_setting(name: str, batch: int, args, copies: int = 1) -> list[dict]:
    """Runs the setting's benchmark in `copies` simultaneous subprocesses; one result each."""
    env_over, threads = SETTINGS[name]
    env = dict(os.environ)
    for k, v in env_over.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    cmd = [sys.executable, "-m", "bench.threads_report", "--child", "--threads", str(threads), "--batch", str(batch),
           "--rounds", str(args.rounds), "--round-seconds", str(args.round_seconds), "--warmup", str(args.warmup)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root, env=env)
             for _ in range(copies)]
    out = []
    for p in procs:
        so, se = p.communicate(timeout=1800)
        if p.returncode != 0:
            raise RuntimeError(f"{name} failed:\n{se[-3000:]}")
        out.append(json.loads(so.strip().splitlines()[-1]))
    return out


def start_busy(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_busy(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=64, help=argparse.SUPPRESS)
    ap.add_argument("--batches", type=int, nargs="+", default=[64, 1024])
    ap.add_argument("--loads", nargs="+", default=None,
                    help="idle, spin:N or copies:N (default: idle copies:2C for C cores)")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--passes", type=int, default=2, help="interleaved passes over the settings")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per pass")
    ap.add_argument("--round-seconds", type=float, default=0.4)
    ap.add_argument("--warmup", type=int, default=10)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return
    cores = os.cpu_count() or 1
    loads = args.loads or ["idle", f"copies:{2 * cores}"]
    results: dict[tuple, list] = {}
    info: dict[tuple, dict] = {}
    loadavg: dict[str, list] = {}
    for load in loads:
        kind, _, n = load.partition(":")
        if kind not in ("idle", "spin", "copies"):
            ap.error(f"unknown load {load!r}")
        procs = start_busy(int(n)) if kind == "spin" else []
        try:
            time.sleep(0.5 if procs else 0)
            for p in range(args.passes):
                for batch in args.batches:
                    for name in args.settings:
                        rs = run_setting(name, batch, args, copies=int(n) if kind == "copies" else 1)
                        loadavg.setdefault(load, []).append(os.getloadavg()[0])
                        for r in rs:
                            results.setdefault((load, batch, name), []).extend(r["rounds"])
                        info[(batch, name)] = rs[0]
                        g = statistics.median(x[0] for r in rs for x in r["rounds"])
                        print(f"  {load} pass {p + 1} batch {batch}: {name}: {1 / g:.1f} it/s", file=sys.stderr)
        finally:
            stop_busy(procs)

    import torch

    print(f"### Thread settings: HyperGrid 4-D, height 8, MLP 256x2, on-policy TB\n")
    print(f"torch {torch.__version__}, {cores} CPUs; medians of {args.passes} interleaved passes x {args.rounds} rounds "
          f"of ~{args.round_seconds} s. 1-minute load average during each load (incl. this benchmark): "
          + ", ".join(f"{k} {min(v):.1f}-{max(v):.1f}" for k, v in loadavg.items()) + ".\n")
    print("| batch | setting | threads (torch, kernels) |" + "".join(f" it/s {b} | / floor {b} |" for b in loads))
    print("|---:|---|---|" + "---:|---:|" * len(loads))
    for batch in args.batches:
        for name in args.settings:
            i = info[(batch, name)]
            cells = ""
            for b in loads:
                rs = results[(b, batch, name)]
                cells += f" {1 / statistics.median(x[0] for x in rs):.1f} | {statistics.median(x[0] / x[1] for x in rs):.2f}x |"
            print(f"| {batch} | {name} | {i['torch_threads']}, {i['kernel_threads']} |{cells}")


if __name__ == "__main__":
    main()
