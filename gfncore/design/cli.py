"""`gfncore design`: the active-learning comparison of experimental-design strategies on a synthetic
causal problem, or the ranking of the next experiment for a data set.

    gfncore design --synthetic d=5,n=50,seed=0 --budget 10 --out DIR
    gfncore design --synthetic d=5,n=50,seed=0 --budget 10 --strategies eig,eig_amortized,random --out DIR
    gfncore design --data FILE.csv --budget 3 --out DIR        # rank the next experiments (no loop)

With --synthetic, a random linear-Gaussian SEM gives the first data set and answers every
experiment (the ground truth); each strategy spends the budget from the same first posterior.
Outputs: curves.csv (metrics per round and strategy), curves.png, summary.json. With --data there
is no simulator: the posterior of the data is learned once and the candidates are ranked by
EIG / cost (ranking.csv, summary.json).

Flags come from DesignConfig (the run), ScoreModel (the reward) and AmortizedConfig (the amortized
estimator, prefixed --amortized-).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import sys

import torch

from ..cli.common import int64
from ..runfolder import atomic_open

OUTPUTS = ("curves.csv", "curves.png", "summary.json", "ranking.csv")
METRICS = (("entropy", "posterior entropy (nats)"), ("expected_shd", "expected SHD to the true graph"),
           ("p_true_mec", "P(true equivalence class)"), ("edge_auroc", "edge-marginal AUROC"))


class DesignCLIError(ValueError):
    """A bad command line or input: printed as one line, exit status 2 (as every gfncore command)."""


def _add_fields(p: argparse.ArgumentParser, cls, prefix: str = "") -> None:
    for f in dataclasses.fields(cls):
        flag = "--" + prefix + f.name.replace("_", "-")
        help_ = f"{f.metadata.get('help', '')} (default: {f.default})"
        typ = f.type if isinstance(f.type, str) else f.type.__name__
        if typ == "bool":
            p.add_argument(flag, dest=prefix.replace("-", "_") + f.name, default=f.default,
                           action=argparse.BooleanOptionalAction, help=help_)
        else:
            p.add_argument(flag, dest=prefix.replace("-", "_") + f.name, default=f.default,
                           type={"int": int64, "float": float}.get(typ, str), help=help_)


def _from_args(cls, ns, prefix: str = ""):
    return cls(**{f.name: getattr(ns, prefix.replace("-", "_") + f.name) for f in dataclasses.fields(cls)})


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Adds the `design` command to an argparse subparsers object; returns its parser."""
    from .amortized import AmortizedConfig
    from .loop import DesignConfig
    from .predictive import ScoreModel

    desc = ("Bayesian experimental design for causal structure learning: choose interventions by expected "
            "information gain about the graph per unit cost, with a GFlowNet posterior, and compare with "
            "random, observational and heuristic choices under a budget.")
    p = subparsers.add_parser("design", help="choose causal experiments by expected information gain per cost",
                              description=desc)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--synthetic", metavar="SPEC",
                     help="a random linear-Gaussian SEM as ground truth: d=5,n=50,seed=0[,edges=d][,noise=1.0]")
    src.add_argument("--data", metavar="FILE.csv", help="rank the next experiments for this data set (no loop)")
    p.add_argument("--intervention-column", dest="intervention_column", default="intervened",
                   help="CSV column listing each row's intervened nodes (default: intervened)")
    p.add_argument("--out", default="", help="output directory (default: runs/design)")
    p.add_argument("--overwrite", action="store_true", help="replace the outputs of a run already in --out")
    p.add_argument("--progress", dest="progress", default=True, action=argparse.BooleanOptionalAction,
                   help="print one line per round (default: True)")
    _add_fields(p, DesignConfig)
    _add_fields(p, ScoreModel)
    _add_fields(p, AmortizedConfig, "amortized-")
    return p


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, torch.Tensor):
        return _jsonable(x.tolist())
    return x


def prepare_out(out: str, overwrite: bool) -> None:
    existing = [f for f in OUTPUTS if os.path.exists(os.path.join(out, f))]
    if existing and not overwrite:
        raise DesignCLIError(f"{out} already holds a run ({', '.join(existing)}): pass --overwrite to replace it")
    for f in existing:
        os.remove(os.path.join(out, f))
    os.makedirs(out, exist_ok=True)


def write_curves(path: str, results: dict) -> list[dict]:
    rows = [rec.row() for recs in results.values() for rec in recs]
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with atomic_open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return rows


def plot_curves(path: str, results: dict, title: str) -> None:
    """Four panels against budget spent, one line per strategy (dotted: the GFlowNet's own view)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    for k, (strategy, recs) in enumerate(results.items()):
        x = [r.spent for r in recs]
        for ax, (key, label) in zip(axes, METRICS):
            y = [r.metrics.get(key, math.nan) for r in recs]
            ax.plot(x, y, "o-", color=f"C{k}", ms=3, label=strategy)
            g = [r.metrics.get("gfn_" + key, math.nan) for r in recs]
            if any(v == v for v in g):
                ax.plot(x, g, ":", color=f"C{k}", alpha=0.7)
            ax.set_xlabel("budget spent")
            ax.set_ylabel(label)
    for ax in axes:  # each panel its own legend: the panels are read one at a time
        ax.legend(fontsize=7)
    fig.suptitle(title + ("  (solid: exact posterior of the data; dotted: the GFlowNet's P_T)"
                          if any("gfn_entropy" in r.metrics for recs in results.values() for r in recs) else ""),
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarise(results: dict, run, source: dict, cfg, model, acfg) -> dict:
    from .loop import MAX_EXACT_NODES

    strategies = {}
    for s, recs in results.items():
        last = recs[-1]
        means = {}
        for key, _ in METRICS:
            vals = [r.metrics.get(key) for r in recs[1:] if r.metrics.get(key) is not None]
            if vals:
                means[key] = sum(vals) / len(vals)
        strategies[s] = {
            "rounds": len(recs) - 1, "spent": last.spent, "final": last.metrics,
            "mean_over_rounds": means, "experiments": [r.experiment for r in recs[1:]],
            "decision_seconds_mean": (sum(r.decision_seconds for r in recs[1:]) / max(len(recs) - 1, 1)),
            "update_steps": [r.update_steps for r in recs[1:]],
            "update_seconds_mean": (sum(r.update_seconds for r in recs[1:]) / max(len(recs) - 1, 1)),
        }
    names = run.names
    summary = {
        "data": source, "nodes": names, "metrics_of": ("the exact posterior P(G | D_t) (entropy exact); gfn_*: the "
                                                       "GFlowNet's exact P_T" if run.ds0.d <= MAX_EXACT_NODES
                                                       else "the GFlowNet's samples; entropy = log Z - E[log R]"),
        "true_graph": [f"{names[i]}->{names[j]}" for i, j in run.true_graph.nonzero().tolist()]
        if run.true_graph is not None else None,
        "candidates": [{"experiment": e.label(names), "cost": run.costs.cost(e)} for e in run.candidates],
        "estimator_sizes": {"outer": cfg.outer, "inner": cfg.inner if "nmc" in (cfg.estimator, *cfg.strategy_list())
                            or "eig_nmc" in cfg.strategy_list() else None},
        "warm_start": {"initial_steps_from_scratch": run.info["initial_fit"]["steps"],
                       "initial_seconds": run.info["initial_fit"]["seconds"], "update_steps_per_round": cfg.update_steps},
        "strategies": strategies, "config": dataclasses.asdict(cfg), "score": dataclasses.asdict(model),
    }
    if "amortized" in run.info:
        summary["amortized"] = {**run.info["amortized"], "config": dataclasses.asdict(acfg)}
    if "warm_start_check" in run.info:
        summary["warm_start"]["steps_to_jsd"] = run.info["warm_start_check"]
    return summary


def run(ns: argparse.Namespace) -> int:
    """Runs `gfncore design` from parsed arguments; returns the exit status (0 done, 2 bad input,
    a busy --out or a failed write, 130 interrupted)."""
    from ..runfolder import RunFolder, check_free, one_line
    from .amortized import AmortizedConfig
    from .loop import DesignConfig
    from .predictive import ScoreModel

    out = ns.out or os.path.join("runs", "design")
    try:
        with RunFolder() as folder:  # one writer: the lock is held from the first write to the last
            check_free(out)
            cfg = _from_args(DesignConfig, ns)
            model = _from_args(ScoreModel, ns)
            acfg = _from_args(AmortizedConfig, ns, "amortized-")
            folder.acquire(out)
            prepare_out(out, ns.overwrite)
            if ns.data:
                return _rank(ns, cfg, model, out)
            return _compare(ns, cfg, model, acfg, out)
    except KeyboardInterrupt:
        print("\ngfncore design: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as e:
        print(f"gfncore design: error: {one_line(e)}", file=sys.stderr)
        return 2


def _compare(ns, cfg, model, acfg, out: str) -> int:
    from ..causal.cli import parse_synthetic
    from ..causal.data import Intervention, sample_erdos_renyi_sem
    from .experiments import SEMSimulator
    from .loop import DesignRun

    s = parse_synthetic(ns.synthetic)
    ivs = [Intervention(nodes=j, n=s["intervene"]) for j in range(s["d"])] if s["intervene"] else []
    cd = sample_erdos_renyi_sem(s["d"], s["n"], expected_edges=s["edges"], noise_std=s["noise"], seed=s["seed"],
                                interventions=ivs)
    sim = SEMSimulator(cd.graph, cd.weights, s["noise"], seed=s["seed"] + 1)
    say = print if ns.progress else None
    dr = DesignRun(cd.data, sim, cfg, model, acfg, true_graph=cd.graph, interventions=cd.interventions,
                   node_names=cd.node_names, progress=say)
    results = dr.run()
    write_curves(os.path.join(out, "curves.csv"), results)
    summary = summarise(results, dr, {"kind": "synthetic", **s}, cfg, model, acfg)
    png = os.path.join(out, "curves.png")
    try:
        plot_curves(png, results, f"d={s['d']}, n={s['n']}, seed={s['seed']}, budget {cfg.budget:g}, "
                                  f"posterior {cfg.posterior}, estimator {cfg.estimator}")
        summary["outputs"] = {"curves.png": png}
    except ImportError as e:
        print(f"gfncore design: no plot ({e}); pip install matplotlib to draw it", file=sys.stderr)
    with atomic_open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(_jsonable(summary), f, indent=2)
    print(f"{'strategy':<16} {'rounds':>6} {'spent':>6} " + " ".join(f"{k:>13}" for k, _ in METRICS))
    for st, v in summary["strategies"].items():
        fin = v["final"]
        print(f"{st:<16} {v['rounds']:>6} {v['spent']:>6g} " + " ".join(
            f"{fin.get(k, math.nan):>13.4f}" for k, _ in METRICS))
    print(f"outputs in {out}/ (curves.csv, curves.png, summary.json)")
    return 0


def _rank(ns, cfg, model, out: str) -> int:
    """Posterior of the data (GFlowNet, or exact), then EIG / cost of every affordable candidate."""
    from ..causal.data import load_csv
    from .eig import eig_nested_mc, eig_support
    from .experiments import CostModel, candidate_experiments, parse_costs
    from .loop import Dataset, DesignRun

    if not os.path.isfile(ns.data):
        raise DesignCLIError(f"--data: no such file: {ns.data}")
    cd = load_csv(ns.data, intervention_column=ns.intervention_column)
    d = cd.num_nodes
    costs = CostModel(parse_costs(cfg.node_cost, d, cd.node_names), cfg.sample_cost, cfg.observational_cost)
    cands = candidate_experiments(d, cfg.size_list(), cfg.value_list(), cfg.max_targets, cfg.intervention_std)
    if cfg.budget < costs.cheapest(cands):
        raise DesignCLIError(f"budget {cfg.budget:g} is smaller than the cheapest experiment ({costs.cheapest(cands):g})")
    cands = [e for e in cands if costs.cost(e) <= cfg.budget]

    def no_simulator(e):
        raise RuntimeError("no simulator")

    dr = DesignRun(cd.data, no_simulator, dataclasses.replace(cfg, strategies="eig"), model, candidates=cands,
                   costs=costs, interventions=cd.interventions, node_names=cd.node_names)
    backend = dr._backend()
    ds = Dataset(cd.data, cd.interventions)
    backend.fit(ds, cfg.steps, cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    sup = backend.support()
    if cfg.estimator == "nmc":
        est = eig_nested_mc(model, ds.stats(), sup, cands, cfg.outer, cfg.inner, gen)
    else:
        if cfg.estimator == "amortized":
            print("gfncore design: ranking one data set, the support estimator answers directly (amortization "
                  "pays off over many decisions)", file=sys.stderr)
        est = eig_support(model, ds.stats(), sup, cands, cfg.outer, gen)
    c = torch.tensor([costs.cost(e) for e in cands], dtype=torch.float64)
    order = torch.argsort(est.values / c, descending=True).tolist()
    with atomic_open(os.path.join(out, "ranking.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rank", "experiment", "eig_nats", "stderr", "cost", "eig_per_cost"])
        for r, k in enumerate(order, 1):
            w.writerow([r, cands[k].label(cd.node_names), f"{float(est.values[k]):.6g}", f"{float(est.stderr[k]):.3g}",
                        f"{float(c[k]):g}", f"{float(est.values[k] / c[k]):.6g}"])
    summary = {"data": {"kind": "csv", "path": os.path.abspath(ns.data), "rows": cd.num_rows, "nodes": cd.node_names},
               "estimator": est.as_dict(), "posterior": cfg.posterior, "score": dataclasses.asdict(model),
               "best": cands[order[0]].label(cd.node_names),
               "ranking": [{"experiment": cands[k].label(cd.node_names), "eig": float(est.values[k]),
                            "stderr": float(est.stderr[k]), "cost": float(c[k])} for k in order]}
    with atomic_open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(_jsonable(summary), f, indent=2)
    for k in order[:10]:
        print(f"{cands[k].label(cd.node_names):<28} EIG {float(est.values[k]):.4f} +- {float(est.stderr[k]):.4f}  "
              f"cost {float(c[k]):g}")
    print(f"outputs in {out}/ (ranking.csv, summary.json)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="gfncore")
    add_parser(p.add_subparsers(dest="command", required=True))
    return p


def main(argv: list[str] | None = None) -> int:
    """`python -m gfncore.design.cli [flags]`: the same as `gfncore design [flags]`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return run(build_parser().parse_args(["design", *argv]))


if __name__ == "__main__":
    sys.exit(main())
