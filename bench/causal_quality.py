"""Posterior quality per second: the GFlowNet (gfncore.causal.fit_posterior's model and trainer)
against MC^3 structure MCMC (gfncore.causal.mcmc) at equal wall time, on the same BGe score.

    python -m bench.causal_quality                       # d = 11, 20, 50; 300 s per method and d
    python -m bench.causal_quality --fast                # smoke test: d = 6, 4 s per method
    python -m bench.causal_quality --dims 11 --budget 120 --out runs/bench-quality

Data: Erdos-Renyi linear-Gaussian SEM with d expected edges, N = 100, max-parents 4. Reference
edge marginals: the exact DP over node subsets (gfncore.causal.exact_dp) where d <= 13, else a
long MC^3 run (--ref-steps moves per chain, 4 chains; its between-chain diagnostics are printed,
so a reference whose chains disagree is visible as such).

Time is the process's CPU time (time.process_time; both methods run on one thread), not the wall
clock: on the shared machine this bench was written on, wall time under a load of 7-10 jobs
measured the other jobs more than these two. On an idle machine the two are the same.

At each time checkpoint (evaluation time excluded for both methods) it reports: edge RMSE
against the reference, mean log R of the current samples, distinct graphs among them, and
effective samples per second (GFlowNet samples are i.i.d.: ESS = their number; MCMC: the ESS of
the chains' log R traces by batch means). It writes causal_quality.json and causal_quality.png
(RMSE against time, one panel per d) to --out.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch

clock = time.process_time  # see the module docstring: CPU seconds of this (one-thread) process


def ess_batch_means(trace: torch.Tensor) -> float:
    """Effective sample size of one chain's trace [n] by batch means (sqrt(n) batches)."""
    x = trace.double()
    n = x.shape[0]
    b = max(int(math.sqrt(n)), 2)
    m = n // b
    if m < 2 or float(x.var()) == 0:
        return float(n)
    means = x[: m * b].reshape(m, b).mean(1)
    sigma2 = b * float(means.var())
    return float(min(n, n * float(x.var()) / sigma2)) if sigma2 > 0 else float(n)


def reference(score, d: int, max_parents: int, ref_steps: int, seed: int) -> dict:
    from gfncore.causal.exact_dp import exact_edge_marginals
    from gfncore.causal.mcmc import sample_mcmc

    t0 = time.perf_counter()
    if d <= 13:
        dp = exact_edge_marginals(score, max_parents=max_parents)
        return {"kind": "exact DP", "marginals": dp.edge_marginals, "log_z": dp.log_z,
                "seconds": time.perf_counter() - t0}
    res = sample_mcmc(score, chains=4, steps=ref_steps, max_parents=max_parents, seed=seed + 1000, samples=4000)
    return {"kind": f"MC^3 4 x {ref_steps} moves", "marginals": res.edge_marginals,
            "mean_log_r": float(res.sample_log_r.mean()), "diagnostics": res.diagnostics,
            "seconds": time.perf_counter() - t0}


def run_mcmc(score, ref, budget: float, checkpoints: list, max_parents: int, seed: int, segment: int) -> list:
    """MC^3 in segments of `segment` moves per chain, each continuing from the last graphs with a
    fresh Philox seed; the first quarter of the budget's segments are the burn-in."""
    from gfncore.causal import metrics as M
    from gfncore.causal.mcmc import sample_mcmc

    rows, elapsed, start, k = [], 0.0, None, 0
    total = None
    traces, n_states, burned = [], 0, False
    for cp in checkpoints:
        while elapsed < cp:
            t0 = clock()
            res = sample_mcmc(score, chains=4, steps=segment, burn_in=0, max_parents=max_parents, seed=seed + k,
                              samples=400, start=start)
            k += 1
            elapsed += clock() - t0
            start = res.final_graphs
            if not burned and elapsed < 0.25 * checkpoints[0]:
                continue  # burn-in: the chains start at the empty graph
            burned = True
            w = res.edge_marginals * segment
            total = w if total is None else total + w
            n_states += segment
            traces.append(res.sample_log_r)
        if total is None:
            rows.append({"t": elapsed, "rmse": None})
            continue
        marg = total / n_states
        tr = torch.cat(traces, 1)
        ess = sum(ess_batch_means(tr[c]) for c in range(tr.shape[0]))
        last = traces[-1]
        rows.append({"t": elapsed, "rmse": M.edge_marginal_rmse(marg, ref["marginals"]),
                     "mean_log_r": float(last.mean()), "distinct": M.n_distinct(res.samples),
                     "ess_per_s": ess / elapsed, "moves": 4 * segment * k})
    return rows


def run_gfn(cd, ref, budget: float, checkpoints: list, max_parents: int, seed: int, n_eval: int) -> list:
    """The GFlowNet with fit_posterior's defaults at this d (model, trainer, exploration), trained
    step by step; at each checkpoint n_eval samples from the learned sampler (not timed)."""
    from gfncore.causal import metrics as M
    from gfncore.causal.posterior import PosteriorConfig, make_env, make_trainer

    cfg = PosteriorConfig(max_parents=max_parents, seed=seed, threads=1)
    env = make_env(cd, cfg)
    t0 = clock()
    trainer = make_trainer(env, cfg)
    elapsed = clock() - t0
    rows = []
    for cp in checkpoints:
        while elapsed < cp:
            t0 = clock()
            trainer.train_step()
            elapsed += clock() - t0
        with torch.no_grad():
            x = trainer.sample(n_eval)
            g = env.adjacency(x)
            lr = env.log_reward(x)
        marg = M.edge_marginals(g)
        rows.append({"t": elapsed, "rmse": M.edge_marginal_rmse(marg, ref["marginals"]), "mean_log_r": float(lr.mean()),
                     "distinct": M.n_distinct(g), "ess_per_s": n_eval / elapsed, "steps": trainer.step_count})
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dims", default="11,20,50")
    ap.add_argument("--budget", type=float, default=300.0, help="wall seconds per method and d")
    ap.add_argument("--checkpoints", type=int, default=6)
    ap.add_argument("--max-parents", type=int, default=4)
    ap.add_argument("--ref-steps", type=int, default=4_000_000, help="moves per chain of the MC^3 reference (d > 13)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=1000, help="GFlowNet samples per checkpoint")
    ap.add_argument("--fast", action="store_true", help="smoke test: d = 6, 4 s per method, 3 checkpoints")
    ap.add_argument("--out", default="runs/bench-causal-quality")
    args = ap.parse_args(argv)
    import gfncore
    from gfncore.causal import CausalScore, sample_erdos_renyi_sem

    gfncore.set_num_threads(1)
    dims = [6] if args.fast else [int(x) for x in args.dims.split(",")]
    budget = 4.0 if args.fast else args.budget
    n_cp = 3 if args.fast else args.checkpoints
    ref_steps = 100_000 if args.fast else args.ref_steps
    n_eval = 200 if args.fast else args.samples
    cps = [budget * (q + 1) / n_cp for q in range(n_cp)]
    os.makedirs(args.out, exist_ok=True)
    results = {}
    for d in dims:
        cd = sample_erdos_renyi_sem(d, 100, expected_edges=d, seed=args.seed)
        score = CausalScore(cd)
        ref = reference(score, d, args.max_parents, ref_steps, args.seed)
        print(f"d = {d}: reference {ref['kind']} in {ref['seconds']:.1f} s"
              + (f"; {ref['diagnostics']['message']}" if "diagnostics" in ref else ""))
        segment = max(2000, 200 * d)
        mc = run_mcmc(score, ref, budget, cps, args.max_parents, args.seed, segment)
        gf = run_gfn(cd, ref, budget, cps, args.max_parents, args.seed, n_eval)
        print(f"{'method':6} {'t (s)':>7} {'RMSE':>7} {'mean log R':>11} {'distinct':>8} {'ESS/s':>9}")
        for name, rows in (("MC^3", mc), ("GFN", gf)):
            for r in rows:
                if r.get("rmse") is None:
                    print(f"{name:6} {r['t']:7.1f}   (burn-in)")
                    continue
                print(f"{name:6} {r['t']:7.1f} {r['rmse']:7.4f} {r['mean_log_r']:11.2f} {r['distinct']:8d} "
                      f"{r['ess_per_s']:9.1f}")
        results[d] = {"reference": {k: v for k, v in ref.items() if k != "marginals"}, "mcmc": mc, "gfn": gf}
    with open(os.path.join(args.out, "causal_quality.json"), "w") as f:
        json.dump(results, f, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    try:
        plot(results, os.path.join(args.out, "causal_quality.png"))
    except ImportError as e:
        print(f"no plot ({e}); pip install matplotlib")
    return results


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 3.6), squeeze=False)
    for ax, (d, r) in zip(axes[0], results.items()):
        for name, key in (("MC$^3$", "mcmc"), ("GFlowNet", "gfn")):
            pts = [(x["t"], x["rmse"]) for x in r[key] if x.get("rmse") is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=name)
        ax.set_title(f"d = {d} (reference: {r['reference']['kind']})", fontsize=9)
        ax.set_xlabel("CPU seconds (1 thread)")
        ax.set_ylabel("edge-marginal RMSE")
        ax.set_yscale("log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
