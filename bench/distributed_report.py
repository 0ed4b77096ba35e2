"""Data-parallel scaling on this machine: the benchmark training step (HyperGrid 4-D, height 8,
MLP 256x2, on-policy TB, Adam) at one global batch, on 1 process and on N processes (gloo, one
thread each), side by side in one run. Prints it/s, speed-up and parallel efficiency.

    python -m bench.distributed_report                 # 1 vs 2 processes, global batch 256
    python -m bench.distributed_report --world 1 2 --batch 64 256 1024

Each configuration runs `--repeats` times, alternating, and reports the median it/s (a shared
machine's load hits every configuration alike). Before timing, every configuration is checked to
produce the same parameters as one process after a few steps.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

WORKER = r"""
import json, os, sys, time, torch, gfncore as gfn
from bench import workloads as W
spec = json.loads(sys.argv[1])
torch.set_num_threads(1); gfn._C.set_num_threads(1)
dist = int(os.environ.get("WORLD_SIZE", "1")) > 1
if dist:
    gfn.distributed.init()
torch.manual_seed(0)
env = W.make_env("cpp")
policy = W.make_policy(env, 0)
trainer = gfn.Trainer(env, policy, loss="tb", batch_size=spec["batch"], lr=W.LR, lr_log_z=W.LR_LOG_Z, seed=0)
for _ in range(spec["check_steps"]):
    trainer.train_step()
check = [float(p.detach().double().sum()) for p in policy.parameters()]
for _ in range(spec["warmup"]):
    trainer.train_step()
if dist:
    torch.distributed.barrier()
t0 = time.perf_counter()
for _ in range(spec["steps"]):
    trainer.train_step()
if dist:
    torch.distributed.barrier()
elapsed = time.perf_counter() - t0
if trainer.is_main:
    print(json.dumps({"its": spec["steps"] / elapsed, "check": check}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(world: int, batch: int, steps: int, warmup: int, check_steps: int) -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = json.dumps({"batch": batch, "steps": steps, "warmup": warmup, "check_steps": check_steps})
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(WORKER)
        script = f.name
    port = _free_port()
    procs = []
    for r in range(world):
        env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
        if world > 1:
            env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(r), WORLD_SIZE=str(world),
                       LOCAL_RANK=str(r), LOCAL_WORLD_SIZE=str(world))
        procs.append(subprocess.Popen([sys.executable, script, spec], env=env, cwd=root, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outs = [p.communicate() for p in procs]
    os.unlink(script)
    for p, (_, err) in zip(procs, outs):
        if p.returncode:
            raise RuntimeError(f"a rank failed:\n{err[-3000:]}")
    return json.loads(outs[0][0].strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch", type=int, nargs="+", default=[256])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    rows = []
    for B in args.batch:
        its = {w: [] for w in args.world}
        checks = {}
        for _ in range(args.repeats):
            for w in args.world:
                r = run(w, B, args.steps, args.warmup, check_steps=3)
                its[w].append(r["its"])
                checks[w] = r["check"]
        base = checks[args.world[0]]
        for w in args.world:
            drift = max(abs(a - b) / max(abs(b), 1e-6) for a, b in zip(checks[w], base))
            assert drift < 1e-4, f"world {w} diverged from world {args.world[0]} (relative {drift:.2e})"
        one = statistics.median(its[args.world[0]])
        for w in args.world:
            m = statistics.median(its[w])
            rows.append((B, w, m, m / one, m / one / (w / args.world[0])))
        print(f"  batch {B}: " + ", ".join(f"{w} proc {statistics.median(its[w]):.1f} it/s" for w in args.world),
              file=sys.stderr)
    print(f"### Data-parallel scaling: HyperGrid 4-D height 8, MLP 256x2, TB, Adam; gloo on {os.cpu_count()} CPUs, "
          f"1 thread per process; median of {args.repeats} runs of {args.steps} steps\n")
    print("| global batch | processes | it/s | speed-up | parallel efficiency |")
    print("|---:|---:|---:|---:|---:|")
    for B, w, m, sp, eff in rows:
        print(f"| {B} | {w} | {m:.1f} | {sp:.2f}x | {eff:.0%} |")


if __name__ == "__main__":
    main()
