"""Time per experimental-design decision: nested Monte Carlo against the amortized EIĜ(e, D), in the
same run, over 2d candidates (do(X_j = v) x 10 rows, v in {1, 3}) at d = 5 and d = 20.

    python -m bench.design_eig                      # d = 5 and 20, BGe, N = 50, 1 thread
    python -m bench.design_eig --d 5 --repeats 3

Posterior P(G | D): at d = 5 the exact posterior on all 29,281 DAGs; at d = 20 the distinct graphs
of a DAG GFlowNet's samples weighted by count (the support the loop uses beyond d = 5), after
--steps training steps. Ranking quality is the Spearman correlation, over the candidates, with a
reference EIG on the same posterior: the support estimator (inner sum exact on the support,
--ref-outer draws of y); at d = 5 that reference is the exact EIG. The amortized estimator's
one-off cost (simulating its training set and fitting the regressor) is reported apart: it is
paid once per problem, not per decision. Correctness comes first: every estimate is finite and
the reference's standard errors are reported with it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(torch.as_tensor(a).numpy(), torch.as_tensor(b).numpy()).statistic)


def median_time(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up (and the value checked)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), out


def posterior_support(d: int, cd, model, steps: int, samples: int, seed: int):
    from gfncore.causal.posterior import PosteriorConfig
    from gfncore.design import exact_support
    from gfncore.design.loop import Dataset, GFlowNetBackend

    if d <= 5:
        return exact_support(model, cd.data), {"kind": "exact", "graphs": 29281 if d == 5 else None}
    b = GFlowNetBackend(model, PosteriorConfig(hidden=128, batch_size=64, seed=seed), samples)
    t0 = time.perf_counter()
    b.fit(Dataset(cd.data), steps, seed)
    sup = b.support()
    return sup, {"kind": f"GFlowNet samples ({steps} steps, {samples} samples)", "graphs": int(sup.graphs.shape[0]),
                 "train_seconds": time.perf_counter() - t0}


def run_case(d: int, args) -> dict:
    from gfncore.causal import sample_erdos_renyi_sem
    from gfncore.design import (AmortizedConfig, AmortizedEIG, NodeStats, ScoreModel, candidate_experiments,
                                eig_nested_mc, eig_support)

    cd = sample_erdos_renyi_sem(d, args.n, expected_edges=d, seed=args.seed)
    model = ScoreModel(score="bge")
    stats = NodeStats.of(cd.data)
    cands = candidate_experiments(d, (10,), (1.0, 3.0))
    assert len(cands) == 2 * d
    sup, sup_info = posterior_support(d, cd, model, args.steps, args.samples, args.seed)
    print(f"d = {d}: posterior {sup_info}", flush=True)

    t0 = time.perf_counter()
    ref = eig_support(model, stats, sup, cands, args.ref_outer, torch.Generator().manual_seed(1))
    ref_seconds = time.perf_counter() - t0
    assert bool(torch.isfinite(ref.values).all())

    am = AmortizedEIG(d, cands, AmortizedConfig(histories=args.histories, draws=8, steps=args.amortized_steps),
                      seed=args.seed)
    fit = am.fit(model, stats, sup, torch.zeros(d), cd.num_rows, torch.Generator().manual_seed(2))
    marg = sup.edge_marginals()

    t_am, pred = median_time(lambda: am.predict(marg, torch.zeros(d), cd.num_rows), args.repeats)
    gen = torch.Generator().manual_seed(3)
    t_nmc, nmc = median_time(lambda: eig_nested_mc(model, stats, sup, cands, args.outer, args.inner, gen),
                             max(1, args.repeats // 10))
    assert bool(torch.isfinite(pred).all()) and bool(torch.isfinite(nmc.values).all())
    res = {
        "d": d, "candidates": len(cands), "posterior": sup_info,
        "reference": {"method": f"support, {args.ref_outer} outer draws (inner sum exact on the support)",
                      "seconds": ref_seconds, "max_stderr": float(ref.stderr.max()),
                      "eig_range": [float(ref.values.min()), float(ref.values.max())]},
        "nested_mc": {"outer": args.outer, "inner": args.inner, "seconds_per_decision": t_nmc,
                      "spearman_vs_reference": spearman(nmc.values, ref.values), "max_stderr": float(nmc.stderr.max())},
        "amortized": {"seconds_per_decision": t_am, "spearman_vs_reference": spearman(pred, ref.values),
                      "one_off_fit": fit},
        "speedup": t_nmc / t_am,
    }
    print(f"d = {d}: {len(cands)} candidates  nested MC ({args.outer} x {args.inner}) {t_nmc * 1e3:.1f} ms/decision, "
          f"Spearman {res['nested_mc']['spearman_vs_reference']:.3f}  |  amortized {t_am * 1e3:.3f} ms/decision, "
          f"Spearman {res['amortized']['spearman_vs_reference']:.3f}  |  {res['speedup']:.0f}x  "
          f"(amortized fit once: {fit['simulate_seconds'] + fit['train_seconds']:.1f} s)", flush=True)
    return res


def main(argv=None) -> None:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    p.add_argument("--d", type=int, nargs="+", default=[5, 20])
    p.add_argument("--n", type=int, default=50, help="observational rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--outer", type=int, default=256, help="nested MC: outer draws")
    p.add_argument("--inner", type=int, default=256, help="nested MC: inner graphs per outer draw")
    p.add_argument("--ref-outer", type=int, default=1000, help="reference EIG: outer draws")
    p.add_argument("--steps", type=int, default=300, help="d > 5: GFlowNet training steps")
    p.add_argument("--samples", type=int, default=2000, help="d > 5: GFlowNet samples")
    p.add_argument("--histories", type=int, default=128, help="amortized: simulated data sets")
    p.add_argument("--amortized-steps", type=int, default=2000, help="amortized: regressor steps")
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default="", help="also write the results here")
    args = p.parse_args(argv)
    import gfncore

    gfncore.set_num_threads(args.threads)
    out = [run_case(d, args) for d in args.d]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
