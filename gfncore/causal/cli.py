"""`gfncore causal`: learn the posterior over causal graphs of a CSV data set (or of synthetic
data) and write edge marginals, posterior samples, a summary and a heat map.

    gfncore causal --data FILE.csv [--score bge|lingauss] [--steps N] --out DIR
    gfncore causal --synthetic d=5,n=100,seed=0 --out DIR
    gfncore causal --data FILE.csv --out DIR --resume --steps 6000     # continue a run
    gfncore causal --data FILE.csv --method mcmc --max-parents 4 --out DIR   # structure MCMC instead

Flags of the run come from CausalConfig (gfncore/causal/posterior.py). Outputs in DIR:
edge_marginals.csv (d x d, row i column j = P(i -> j | D), a header row of node names),
posterior_samples.csv (one graph per row), summary.json, edge_marginals.png, checkpoint.pt and
run.json (what --resume checks).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import math
import os
import sys

import torch

from ..runfolder import write_text

OUTPUTS = ("edge_marginals.csv", "posterior_samples.csv", "summary.json", "edge_marginals.png", "checkpoint.pt",
           "run.json", "data.csv")
# Settings a resumed run may change: none alters what the training steps compute (--steps is the
# total to reach). Every other PosteriorConfig field defines the model or its training (the
# learning-rate schedule's --lr-final included) and must stay as saved.
RESUMABLE = ("steps", "samples", "threads")
SYNTHETIC_KEYS = {"d": int, "n": int, "seed": int, "edges": float, "noise": float, "intervene": int}


class CausalCLIError(ValueError):
    """A bad command line or input file: printed as one line, exit status 2."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Adds the `causal` command to an argparse subparsers object; returns its parser."""
    from ..cli.common import add_dataclass_args
    from .posterior import CausalConfig

    desc = ("Learn the posterior P(G | D) over causal graphs (DAGs) of a data set with a GFlowNet "
            "(modified detailed balance on the DAG environment, BGe score by default).")
    p = subparsers.add_parser("causal", help="Bayesian causal structure learning from data", description=desc)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="FILE.csv", help="CSV: a header row of node names, one numeric column per "
                                                        "node, optionally a column of intervened nodes")
    src.add_argument("--synthetic", metavar="SPEC",
                     help="Erdos-Renyi linear-Gaussian data: d=5,n=100,seed=0[,edges=d][,noise=1.0][,intervene=0] "
                          "(intervene=k adds k rows with a perfect intervention on each node)")
    p.add_argument("--intervention-column", dest="intervention_column", default="intervened",
                   help="name of the CSV column listing each row's intervened nodes, ';'-separated (default: intervened)")
    p.add_argument("--header", dest="header", default=True, action=argparse.BooleanOptionalAction,
                   help="the CSV's first row names the nodes (--no-header: every row is data, nodes X0, X1, ...)")
    p.add_argument("--out", default="", help="output directory (default: runs/causal)")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out (to --steps steps)")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument("--log", action="store_true",
                   help="natural log of every value first (positive measurements such as protein abundances)")
    p.add_argument("--standardize", action="store_true",
                   help="centre and scale each column to unit variance (over all rows) before scoring: the BGe and "
                        "linear-Gaussian priors assume columns of comparable scale (default: the values as given)")
    p.add_argument("--method", choices=("gfn", "mcmc"), default="gfn",
                   help="gfn: train a GFlowNet (default); mcmc: MC^3 structure MCMC (gfncore.causal.mcmc) on the "
                        "same score and cap, with the same outputs and between-chain diagnostics")
    p.add_argument("--chains", type=int, default=4, help="--method mcmc: chains run in parallel (default: 4)")
    p.add_argument("--mcmc-steps", dest="mcmc_steps", type=int, default=0,
                   help="--method mcmc: recorded moves per chain (default 0: 2000 d^2, at least 50,000)")
    p.add_argument("--burn-in", dest="burn_in", type=int, default=-1,
                   help="--method mcmc: moves discarded first in each chain (default -1: a quarter of --mcmc-steps)")
    p.add_argument("--progress", dest="progress", default=True, action=argparse.BooleanOptionalAction,
                   help="show a progress bar (default: True)")
    add_dataclass_args(p, CausalConfig)
    return p


def parse_synthetic(spec: str) -> dict:
    """'d=5,n=100,seed=0' -> {'d': 5, 'n': 100, 'seed': 0, ...} with defaults, or CausalCLIError."""
    out = {"d": 5, "n": 100, "seed": 0, "edges": None, "noise": 1.0, "intervene": 0}
    for part in filter(None, (t.strip() for t in spec.split(","))):
        key, sep, val = part.partition("=")
        key = key.strip()
        if not sep or key not in SYNTHETIC_KEYS:
            raise CausalCLIError(f"--synthetic: expected key=value with keys {sorted(SYNTHETIC_KEYS)}, got {part!r}")
        try:
            out[key] = SYNTHETIC_KEYS[key](val.strip())
        except ValueError:
            raise CausalCLIError(f"--synthetic: {key} must be a{'n integer' if SYNTHETIC_KEYS[key] is int else ' number'}"
                                 f", got {val.strip()!r}") from None
    if out["d"] < 1 or out["n"] < 0 or out["intervene"] < 0:
        raise CausalCLIError(f"--synthetic: d must be >= 1 and n, intervene >= 0, got {spec!r}")
    return out


def load_data(ns):
    """(CausalData, a description for summary.json) from --data or --synthetic."""
    from .data import Intervention, load_csv, sample_erdos_renyi_sem

    if ns.data:
        if not os.path.isfile(ns.data):
            raise CausalCLIError(f"--data: no such file: {ns.data}")
        cd = load_csv(ns.data, intervention_column=ns.intervention_column, header=ns.header)
        check_size(cd.num_nodes, cd.num_rows, ns, f"--data {ns.data} ({cd.num_nodes} columns)")
        return _transformed(cd, ns), {"kind": "csv", "path": os.path.abspath(ns.data), **_transform_flags(ns)}
    s = parse_synthetic(ns.synthetic)
    check_size(s["d"], s["n"] + s["intervene"] * s["d"], ns, f"--synthetic d={s['d']}")
    ivs = [Intervention(nodes=j, n=s["intervene"]) for j in range(s["d"])] if s["intervene"] else []
    cd = sample_erdos_renyi_sem(s["d"], s["n"], expected_edges=s["edges"], noise_std=s["noise"], seed=s["seed"],
                                interventions=ivs)
    return _transformed(cd, ns), {"kind": "synthetic", **s, **_transform_flags(ns)}


def _transform_flags(ns) -> dict:
    return {"log": bool(getattr(ns, "log", False)), "standardize": bool(getattr(ns, "standardize", False))}


def _transformed(cd, ns):
    """--log, then --standardize (gfncore.causal.data.transform)."""
    from .data import transform

    f = _transform_flags(ns)
    return transform(cd, **f) if any(f.values()) else cd


def check_size(d: int, rows: int, ns, what: str, fix: str | None = None) -> None:
    """Refuses a graph whose run cannot fit in memory, before anything is allocated: the SEM's
    d x d weights and the data (float64), and a policy with d*d edge outputs, each weight held four
    times (value, gradient, Adam's two moments), plus a batch of d*d logits."""
    from ..limits import check_memory

    hidden, batch = getattr(ns, "hidden", 256), getattr(ns, "batch_size", 128)
    check_memory(float(d) * d * (9 + 16 * hidden + 14 * batch) + 8.0 * rows * d, what,
                 fix or "use fewer nodes (columns)")


def fingerprint(cd) -> str:
    """sha256 of the data matrix, intervention mask and node names: a resumed run must see the same data."""
    h = hashlib.sha256()
    h.update(cd.data.double().contiguous().numpy().tobytes())
    if cd.interventions is not None:
        h.update(cd.interventions.to(torch.uint8).contiguous().numpy().tobytes())
    h.update("\x00".join(cd.node_names).encode())
    return h.hexdigest()


def prepare_out(out: str, resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise CausalCLIError("--resume and --overwrite exclude each other")
    existing = [f for f in OUTPUTS if os.path.exists(os.path.join(out, f))]
    if resume:
        if not os.path.exists(os.path.join(out, "checkpoint.pt")) or not os.path.exists(os.path.join(out, "run.json")):
            raise CausalCLIError(f"--resume: {out} holds no run to resume (no checkpoint.pt and run.json)")
        return
    if existing and not overwrite:
        raise CausalCLIError(f"{out} already holds a run ({', '.join(existing)}): pass --resume to continue it or "
                             f"--overwrite to replace it")
    for f in existing:
        os.remove(os.path.join(out, f))
    os.makedirs(out, exist_ok=True)


def check_resume(out: str, cfg, fp: str) -> None:
    with open(os.path.join(out, "run.json")) as f:
        run = json.load(f)
    if run.get("data_sha256") != fp:
        raise CausalCLIError(f"--resume: the data differ from those of the run in {out} (another file or spec)")
    old = run.get("config", {})
    changed = [f.name for f in dataclasses.fields(cfg)
               if f.name not in RESUMABLE and f.name in old and old[f.name] != getattr(cfg, f.name)]
    if changed:
        raise CausalCLIError("--resume: these settings differ from the saved run: " +
                             ", ".join(f"{k} ({old[k]!r} -> {getattr(cfg, k)!r})" for k in changed))


def write_outputs(out: str, post, cd, source: dict, cfg) -> dict:
    """edge_marginals.csv, posterior_samples.csv, summary.json and the heat map; returns the summary."""
    import csv

    names = post.node_names
    d = len(names)
    f = io.StringIO(newline="")
    w = csv.writer(f)
    w.writerow(names)
    for i in range(d):
        w.writerow([f"{float(v):.6g}" for v in post.edge_marginals[i]])
    write_text(os.path.join(out, "edge_marginals.csv"), f.getvalue())
    env = post.env
    samples = post.samples
    log_r = env.log_reward(env.states_from_adjacency(samples)) if samples.shape[0] else torch.zeros(0)
    f = io.StringIO(newline="")
    w = csv.writer(f)
    w.writerow(["sample", "num_edges", "log_reward", "edges"])
    for s in range(samples.shape[0]):
        e = samples[s].nonzero().tolist()
        w.writerow([s, len(e), f"{float(log_r[s]):.10g}", ";".join(f"{names[i]}->{names[j]}" for i, j in e)])
    write_text(os.path.join(out, "posterior_samples.csv"), f.getvalue())
    summary = {
        "env": repr(env), "data": {**source, "rows": cd.num_rows, "nodes": d, "node_names": names,
                                   "interventional_rows": int(cd.interventions.any(1).sum())
                                   if cd.interventions is not None else 0},
        "metrics": post.metrics, "config": dataclasses.asdict(cfg),
        "top_graphs": top_graphs(post, names),
        "outputs": {k: os.path.join(out, k) for k in ("edge_marginals.csv", "posterior_samples.csv", "checkpoint.pt")
                    if k != "checkpoint.pt" or os.path.exists(os.path.join(out, k))},  # --method mcmc saves none
    }
    if post.true_graph is not None:
        summary["true_graph"] = [f"{names[i]}->{names[j]}" for i, j in post.true_graph.nonzero().tolist()]
    png = os.path.join(out, "edge_marginals.png")
    try:
        plot_marginals(post, png)
        summary["outputs"]["edge_marginals.png"] = png
    except ImportError as e:  # the results above are written already
        summary["outputs"]["edge_marginals.png"] = None
        print(f"gfncore causal: no heat map ({e}); pip install matplotlib to draw it", file=sys.stderr)
    write_text(os.path.join(out, "summary.json"), json.dumps(_jsonable(summary), indent=2))
    return summary


def top_graphs(post, names, k: int = 10) -> list[dict]:
    """The k most probable graphs under the sampler (exact for d <= 5, else by sample frequency)."""
    if post.learned_probs is not None:
        probs, graphs = post.learned_probs, post.exact.graphs
        exact = post.exact.probs
    elif post.samples.shape[0]:
        graphs, counts = torch.unique(post.samples.flatten(1), dim=0, return_counts=True)
        graphs = graphs.reshape(-1, len(names), len(names))
        probs, exact = counts.double() / post.samples.shape[0], None
    else:
        return []
    order = torch.argsort(probs, descending=True)[:k]
    out = []
    for q in order.tolist():
        g = {"edges": [f"{names[i]}->{names[j]}" for i, j in graphs[q].nonzero().tolist()],
             "probability": float(probs[q])}
        if exact is not None:
            g["exact_probability"] = float(exact[q])
        out.append(g)
    return out


def plot_marginals(post, path: str) -> None:
    """Heat maps: the learned edge marginals, the exact ones (d <= 5) and the true graph (if known)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = post.node_names
    d = len(names)
    panels = [("learned P(i -> j | D)", post.edge_marginals)]
    if post.exact is not None:
        panels.append(("exact P(i -> j | D)", post.exact.edge_marginals))
    if post.true_graph is not None:
        panels.append(("true graph", post.true_graph.double()))
    size = min(3.2 + 0.25 * d, 9.0)
    fig, axes = plt.subplots(1, len(panels), figsize=(size * len(panels), size), squeeze=False)
    for ax, (title, m) in zip(axes[0], panels):
        im = ax.imshow(m.numpy(), cmap="viridis", vmin=0, vmax=1)
        ax.set_title(title)
        ticks = list(range(d)) if d <= 30 else []
        ax.set_xticks(ticks, [names[t] for t in ticks], rotation=90 if d > 8 else 0, fontsize=8)
        ax.set_yticks(ticks, [names[t] for t in ticks], fontsize=8)
        ax.set_xlabel("child j")
        ax.set_ylabel("parent i")
        if d <= 10:
            for i in range(d):
                for j in range(d):
                    v = float(m[i, j])
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 else "black")
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8)
    m = post.metrics
    bits = [f"{m['steps']} steps"]
    for key, fmt in (("jsd", "JSD {:.4f}"), ("edge_corr", "edge corr {:.3f}"), ("expected_shd", "E[SHD] {:.2f}")):
        if m.get(key) is not None:
            bits.append(fmt.format(m[key]))
    # the title just above the panels: square panels in a figure sized for their labels leave
    # empty space at the top, and a suptitle at the figure's top edge would sit above that band
    fig.canvas.draw()
    top = max(ax.title.get_window_extent().y1 for ax in axes[0]) / fig.bbox.height  # the panel titles' top
    fig.suptitle(", ".join(bits), y=min(top + 8 / (72 * fig.get_figheight()), 0.99), va="bottom")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, torch.Tensor):
        return x.tolist()
    return x


def _corr_text(v) -> str:
    """An edge-marginal correlation, or why there is none (a constant marginal matrix)."""
    return f"{v:.4f}" if v is not None and v == v else "undefined (constant marginals)"


def run(ns: argparse.Namespace) -> int:
    """Runs `gfncore causal` from parsed arguments; returns the exit status (0 done, 2 bad input
    (flags, data, --out, --resume, another run writing --out, a write that failed) as `gfncore
    train` reports it, 1 a run that failed, 130 interrupted: the checkpoint is saved, --resume
    continues)."""
    from ..runfolder import RunFolder

    out = ns.out or os.path.join("runs", "causal")
    with RunFolder() as folder:  # one writer: the lock is held from the first write to the last
        return _run(ns, out, folder)


def _run(ns, out: str, folder) -> int:
    from ..cli.common import USAGE, UsageError, from_args
    from ..runfolder import check_free, one_line
    from ..train import NonFiniteError
    from .posterior import CausalConfig, fit_posterior, validate_config

    try:  # bad input: one line and exit 2 before training, as `gfncore train` reports it
        check_free(out)
        cfg = from_args(CausalConfig, ns)
        validate_config(cfg)
        cd, source = load_data(ns)
        fp = fingerprint(cd)
        folder.acquire(out)
        prepare_out(out, ns.resume, ns.overwrite)
        if ns.resume:
            if ns.method == "mcmc":
                raise CausalCLIError("--resume continues a GFlowNet run; --method mcmc runs have no checkpoint")
            check_resume(out, cfg, fp)
        if ns.method == "mcmc":
            from .mcmc import MCMCConfig, validate_mcmc_config

            mcfg = MCMCConfig(chains=ns.chains, steps=ns.mcmc_steps, burn_in=ns.burn_in)
            validate_mcmc_config(mcfg)
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return USAGE
    except (ValueError, TypeError, OSError) as e:
        print(f"gfncore causal: error: {one_line(e)}", file=sys.stderr)
        return USAGE
    try:
        run_json = os.path.join(out, "run.json")

        def record():
            write_text(run_json, json.dumps(_jsonable({"data": source, "data_sha256": fp,
                                                       "config": dataclasses.asdict(cfg)}), indent=2))

        record()
        if source.get("kind") == "synthetic":  # the data, in the format --data reads
            from .data import save_csv

            save_csv(cd, os.path.join(out, "data.csv"), ns.intervention_column)
        if ns.method == "mcmc":
            from .mcmc_posterior import mcmc_posterior

            post = mcmc_posterior(cd, cfg, mcfg)
        else:
            post = fit_posterior(cd, config=cfg, progress=ns.progress, checkpoint=os.path.join(out, "checkpoint.pt"),
                                 resume=ns.resume)
        summary = write_outputs(out, post, cd, source, cfg)
    except KeyboardInterrupt:
        print(f"\ngfncore causal: interrupted; the checkpoint in {out} is saved: continue with --resume", file=sys.stderr)
        return 130
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return USAGE
    except NonFiniteError as e:
        print(f"gfncore causal: error: {e}; the last checkpoint is in {out}", file=sys.stderr)
        return 1
    except (ValueError, TypeError) as e:  # data the score or the environment rejects (too few rows, d too large)
        print(f"gfncore causal: error: {e}", file=sys.stderr)
        return USAGE
    except OSError as e:  # a full disk, a read-only folder: the last checkpoint is intact
        print(f"gfncore causal: error: {one_line(e)}", file=sys.stderr)
        return USAGE
    m = summary["metrics"]
    if m.get("method") == "mcmc":
        mc = m["mcmc"]
        print(f"{summary['env']}: MC^3, {mc['chains']} chains x {mc['burn_in'] + mc['steps_per_chain']} moves in "
              f"{m['train_seconds']:.1f} s ({m['steps_per_second'] or 0:.3g} moves/s); mean log R = {m['mean_log_r']:.2f}")
        print(mc["message"])
        if "edge_rmse" in m:
            print(f"exact: edge-marginal corr = {_corr_text(m.get('edge_corr'))}   RMSE = {m['edge_rmse']:.4f}")
    else:
        print(f"{summary['env']}: {m['steps']} steps in {m['train_seconds']:.1f} s "
              f"({m['steps_per_second'] or 0:.1f} steps/s)")
    if "jsd" in m:
        print(f"exact: JSD = {m['jsd']:.4f} nats   edge-marginal corr = {_corr_text(m.get('edge_corr'))}   "
              f"RMSE = {m['edge_rmse']:.4f}   |log Z error| = {m['log_z_error']:.3f}")
    line = [f"E[edges] = {m['expected_edges']:.2f}" if "expected_edges" in m else ""]
    if "expected_shd" in m:
        line.append(f"E[SHD] = {m['expected_shd']:.2f}")
    if "edge_auroc" in m:
        line.append(f"edge AUROC = {m['edge_auroc']:.3f}")
    if "distinct_graphs" in m:
        line.append(f"{m['distinct_graphs']} distinct graphs in {m['samples']} samples")
    print("   ".join(x for x in line if x))
    print(f"outputs in {out}/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ..cli.common import Parser as _Parser  # one-line errors (UsageError), as in `gfncore train`

    p = _Parser(prog="gfncore")
    add_parser(p.add_subparsers(dest="command", required=True))
    return p


def main(argv: list[str] | None = None) -> int:
    """`python -m gfncore.causal.cli [flags]`: the same as `gfncore causal [flags]`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from ..cli.common import USAGE, UsageError

    try:
        ns = build_parser().parse_args(["causal", *argv])
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return USAGE
    return run(ns)


if __name__ == "__main__":
    sys.exit(main())
