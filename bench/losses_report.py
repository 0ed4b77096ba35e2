"""Forward + backward time and peak memory of every fused balance objective against its
plain-PyTorch reference (gfncore.ops.reference), measured in the same run.

    python bench/losses_report.py [--quick] [--objectives tb,subtb] [--repeats 7]

Prints a markdown table of medians, speedups (reference time / gfncore time) and memory ratios
(gfncore peak / reference peak). Inputs are float32 packed trajectories: B trajectories with
lengths uniform in [1, 2 * mean - 1]; flow matching gets one state per row with 4 parent edges
and 5 out-edges (HyperGrid 4-D). Each case checks the fused result against the reference
before it is timed.

Peak memory: the largest amount of memory live in torch's CPU allocator during one forward +
backward, from the profiler's allocation events (torch.profiler, profile_memory=True): the
running sum of allocation/free sizes in time order, peak taken over the region. Inputs are
allocated before the region, so they are not counted; outputs, saved tensors, gradients and
temporaries are. gfncore's kernels allocate nothing outside torch (their scratch is a torch
tensor), so both columns count everything each implementation allocates.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's gfncore, not an installed one

import gfncore.ops as ops  # noqa: E402
from gfncore.ops import reference as ref  # noqa: E402

BATCHES = (64, 1024, 16384)
MEAN_LENGTHS = (8, 32, 128)
LAM = 0.9
FM_PARENTS, FM_ACTIONS = 4, 5
REF_MEMORY_LIMIT = 4e9  # skip a reference case whose estimated footprint exceeds this (bytes)


@dataclass
class Objective:
    name: str
    fused: callable
    reference: callable
    diff: tuple  # positions of the differentiable inputs

    def inputs(self, B: int, mean: int, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        lengths = torch.randint(1, 2 * mean, (B,), generator=gen)
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
        T = int(offsets[-1])
        f = lambda n: torch.randn(n, generator=gen)  # noqa: E731
        if self.name == "tb":
            return [f(T), f(T), offsets, f(B), torch.zeros(())]
        if self.name in ("db", "subtb"):
            return [f(T), f(T), f(T), offsets, f(B)]
        if self.name == "mdb":
            return [f(T), f(T), f(T), f(T), offsets]
        if self.name == "zvar":
            return [f(T), f(T), offsets, f(B)]
        if self.name == "fm":
            in_count = torch.randint(0, FM_PARENTS + 1, (T,), generator=gen)
            mask = torch.rand(T, FM_ACTIONS, generator=gen) < 0.6
            mask[:, -1] = True
            return [torch.randn(T, FM_PARENTS, generator=gen), in_count, torch.randn(T, FM_ACTIONS, generator=gen), mask]
        raise KeyError(self.name)

    def reference_bytes(self, B: int, mean: int) -> float:
        """Rough footprint of the reference's forward + backward (only SubTB's is not O(T))."""
        if self.name == "subtb":
            n = 2 * mean  # nodes of the longest trajectory
            return 8 * B * n * n * 4  # about eight live [B, n, n] float32 tensors
        return 0.0


OBJECTIVES = {
    "tb": Objective("tb", ops.trajectory_balance, ref.trajectory_balance, (0, 1, 3, 4)),
    "db": Objective("db", ops.detailed_balance, ref.detailed_balance, (0, 1, 2, 4)),
    "mdb": Objective("mdb", ops.modified_detailed_balance, ref.modified_detailed_balance, (0, 1, 2, 3)),
    "subtb": Objective("subtb", lambda *a: ops.subtrajectory_balance(*a, LAM),
                       lambda *a: ref.subtrajectory_balance(*a, LAM), (0, 1, 2, 4)),
    "fm": Objective("fm", ops.flow_matching, ref.flow_matching, (0, 2)),
    "zvar": Objective("zvar", ops.log_partition_variance, ref.log_partition_variance, (0, 1, 3)),
}


def leaves(obj: Objective, args):
    return [a.detach().requires_grad_(True) if i in obj.diff else a for i, a in enumerate(args)]


def step(fn, args, diff):
    """One loss evaluation: forward, mean, backward (what a training iteration does)."""
    for i in diff:
        args[i].grad = None
    fn(*args).mean().backward()


def check(obj: Objective, args) -> None:
    """The fused op agrees with the reference (float32) before anything is timed."""
    a, b = leaves(obj, args), leaves(obj, args)
    ya, yb = obj.fused(*a), obj.reference(*b)
    ya.mean().backward()
    yb.mean().backward()
    torch.testing.assert_close(ya, yb, rtol=1e-3, atol=1e-3)
    for i in obj.diff:
        torch.testing.assert_close(a[i].grad, b[i].grad, rtol=1e-3, atol=1e-5)


def time_steps(cands, repeats: int, min_time: float = 0.2) -> list[float]:
    """Median seconds per step of each (fn, args, diff) candidate. Rounds of the candidates
    alternate, so load from other processes on the machine hits both sides alike."""
    inner = []
    for fn, args, diff in cands:
        step(fn, args, diff)  # warm-up
        t0 = time.perf_counter()
        step(fn, args, diff)
        inner.append(max(1, int(min_time / repeats / max(time.perf_counter() - t0, 1e-6))))
    samples = [[] for _ in cands]
    for _ in range(repeats):
        for c, (fn, args, diff) in enumerate(cands):
            t0 = time.perf_counter()
            for _ in range(inner[c]):
                step(fn, args, diff)
            samples[c].append((time.perf_counter() - t0) / inner[c])
    return [statistics.median(s) for s in samples]


def peak_bytes(fn, args, diff) -> int:
    """Peak live bytes allocated through torch during one step (profiler allocation events)."""
    from torch.profiler import ProfilerActivity, profile

    step(fn, args, diff)  # warm-up outside the profiled region
    for i in diff:
        args[i].grad = None
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn(*args).mean().backward()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def run_case(obj: Objective, B: int, mean: int, repeats: int) -> dict:
    args = obj.inputs(B, mean)
    T = int(args[0].shape[0])
    row = {"objective": obj.name, "B": B, "mean_len": mean, "T": T}
    ref_ok = obj.reference_bytes(B, mean) <= REF_MEMORY_LIMIT
    if ref_ok:
        check(obj, args)
    else:  # still check the fused op on a slice the reference can afford
        check(obj, obj.inputs(min(B, 64), mean))
    a = leaves(obj, args)
    if ref_ok:
        b = leaves(obj, args)
        row["gfn_s"], row["ref_s"] = time_steps([(obj.fused, a, obj.diff), (obj.reference, b, obj.diff)], repeats)
        row["ref_bytes"] = peak_bytes(obj.reference, b, obj.diff)
    else:
        (row["gfn_s"],) = time_steps([(obj.fused, a, obj.diff)], repeats)
    row["gfn_bytes"] = peak_bytes(obj.fused, a, obj.diff)
    if not ref_ok:
        row["skip"] = f"reference skipped: ~{obj.reference_bytes(B, mean) / 1e9:.0f} GB of [B, L, L] tensors"
    return row


def _fmt_time(s):
    return f"{s * 1e3:.3f} ms" if s < 1 else f"{s:.2f} s"


def _fmt_bytes(n):
    return f"{n / 2**20:.2f} MiB"


def markdown(rows) -> str:
    out = ["| objective | B | mean L | T | gfncore fwd+bwd | reference fwd+bwd | speedup | gfncore peak | reference peak | memory ratio |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        g = f"| {r['objective']} | {r['B']} | {r['mean_len']} | {r['T']} | {_fmt_time(r['gfn_s'])} | "
        if "ref_s" in r:
            ratio = r["gfn_bytes"] / r["ref_bytes"] if r["ref_bytes"] else float("nan")
            g += (f"{_fmt_time(r['ref_s'])} | {r['ref_s'] / r['gfn_s']:.1f}x | {_fmt_bytes(r['gfn_bytes'])} | "
                  f"{_fmt_bytes(r['ref_bytes'])} | {ratio:.3f} |")
        else:
            g += f"{r['skip']} | - | {_fmt_bytes(r['gfn_bytes'])} | - | - |"
        out.append(g)
    return "\n".join(out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--objectives", default=",".join(OBJECTIVES))
    p.add_argument("--quick", action="store_true", help="only B = 64 and 1024")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch and gfncore (0: their defaults)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
        from gfncore import _C

        _C.set_num_threads(a.threads)
    batches = BATCHES[:2] if a.quick else BATCHES
    rows = []
    for name in a.objectives.split(","):
        for B in batches:
            for mean in MEAN_LENGTHS:
                rows.append(run_case(OBJECTIVES[name], B, mean, a.repeats))
                print(f"done {name} B={B} L={mean}", file=sys.stderr, flush=True)
    import os

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} at the end, float32, lam = {LAM} for SubTB\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
