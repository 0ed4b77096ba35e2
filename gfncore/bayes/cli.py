"""Command line: `gfncore bayes --model linear|logistic [--data FILE.csv | --synthetic ...] --out DIR`
trains a GFlowNet posterior sampler over a grid of weights and writes posterior samples, the
evidence estimate, predictive accuracy and calibration, and a plot of the marginal posteriors.
Flags come from the dataclasses (BayesDataConfig here, PosteriorConfig for training).

Without --data it runs a synthetic problem; the defaults are the enumerable one of the tests
(5 weights x 5 grid values = 3,125 settings, 200 examples), where summary.json also holds the exact
log P(D) (`true_log_z`) and the exact L1 of the sampler to the posterior (`l1`).

    python -m gfncore.bayes.cli --model linear --out runs/bayes
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from dataclasses import dataclass, field

import torch

from ..runfolder import write_text

OUTPUTS = ("summary.json", "samples.csv", "predictive.csv", "metrics.jsonl", "marginals.png", "data.csv")
ENUMERATE_MAX = 1_000_000  # grid settings (and, for the exact sampler distribution, 2x that many states)


@dataclass
class BayesDataConfig:
    """The model, its grid and the data of a `gfncore bayes` run."""

    model: str = field(default="linear", metadata={"help": "linear (Gaussian noise) or logistic regression"})
    data: str = field(default="", metadata={
        "help": "UTF-8 CSV file: a header row, one column per feature, then the target; empty: synthetic data"})
    synthetic: bool = field(default=False, metadata={"help": "use synthetic data (the default without --data)"})
    header: bool = field(default=True, metadata={
        "help": "the CSV's first row names the columns (--no-header: every row is data, columns x0, x1, ..., y)"})
    target: str = field(default="", metadata={"help": "the target column's name or 0-based index (default: last)"})
    intercept: bool = field(default=False, metadata={"help": "add a constant feature (one more weight)"})
    standardize: bool = field(default=True, metadata={"help": "z-score a CSV's features (training-split moments)"})
    test_fraction: float = field(default=0.2, metadata={"help": "share of a CSV's rows held out for the predictive"})
    K: int = field(default=5, metadata={"help": "grid values per weight"})
    grid_low: float = field(default=-1.0, metadata={"help": "smallest grid value"})
    grid_high: float = field(default=1.0, metadata={"help": "largest grid value"})
    prior_std: float = field(default=1.0, metadata={"help": "std of the Gaussian prior on each weight (on the grid)"})
    noise_std: float = field(default=4.0, metadata={"help": "linear: the known noise std"})
    n_weights: int = field(default=5, metadata={"help": "synthetic: weights (features)"})
    n_examples: int = field(default=200, metadata={"help": "synthetic: training examples"})
    n_test: int = field(default=1000, metadata={"help": "synthetic: held-out examples"})
    feature_std: float = field(default=0.0, metadata={"help": "synthetic: feature std (0: 1 linear, 0.5 logistic)"})
    data_seed: int = field(default=0, metadata={"help": "seed of the synthetic data and of the CSV split"})
    samples: int = field(default=10000, metadata={"help": "posterior samples written to samples.csv"})
    out: str = field(default="", metadata={"help": "output directory (default: runs/bayes_<model>)"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def __post_init__(self):
        if self.model not in ("linear", "logistic"):
            raise ValueError(f"--model must be linear or logistic, got {self.model!r}")
        if self.data and self.synthetic:
            raise ValueError("give either --data FILE.csv or --synthetic, not both")
        if not 0 <= self.test_fraction < 1:
            raise ValueError(f"--test-fraction must be in [0, 1), got {self.test_fraction}")
        if not (math.isfinite(self.grid_low) and math.isfinite(self.grid_high) and self.grid_low < self.grid_high):
            raise ValueError(f"need finite --grid-low < --grid-high, got {self.grid_low}, {self.grid_high}")
        for name in ("K", "n_weights", "n_examples", "samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be an int >= 1, got {v!r}")
        if self.n_test < 0 or self.feature_std < 0:
            raise ValueError("--n-test and --feature-std must be >= 0")


def read_csv(path: str, target: str = "", header: bool = True) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(X [N, d], y [N], feature names) from a CSV of numbers, the target column last unless named.
    The file rules (UTF-8 with or without a BOM, a header row unless header=False, distinct
    names) are gfncore.datafiles'; without a header the columns are x0, x1, ... and y last."""
    from ..datafiles import read_table

    names, body = read_table(path, header=header)
    width = len(names)
    if not header:
        names = [f"x{i}" for i in range(width - 1)] + ["y"]
    values = []
    for ln, r in body:
        try:
            values.append([float(c) for c in r])
        except ValueError:
            raise ValueError(f"--data {path!r}: row {ln} is not all numbers: {r}") from None
    if width < 2:
        raise ValueError(f"--data {path!r} needs at least one feature column and a target column")
    if not values:
        raise ValueError(f"--data {path!r} has a header but no rows")
    t = torch.tensor(values, dtype=torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"--data {path!r} holds NaN or inf")
    if target == "":
        j = width - 1
    elif target.isdigit():
        j = int(target)
    elif target in names:
        j = names.index(target)
    else:
        raise ValueError(f"--target {target!r} is neither a column index nor a column name ({names})")
    if not 0 <= j < width:
        raise ValueError(f"--target {j} is out of range (the file has {width} columns)")
    keep = [i for i in range(width) if i != j]
    return t[:, keep], t[:, j], [names[i] for i in keep]


def check_size(c: BayesDataConfig, n_weights: int, hidden: int, what: str) -> None:
    """Refuses a grid whose sampler cannot fit in memory before anything is allocated: the policy
    has n*K + 1 outputs and n*(K+1) inputs, each weight held four times (value, gradient, Adam's
    two moments)."""
    from ..limits import check_memory

    n, K = n_weights, c.K
    check_memory(16.0 * hidden * (2 * n * K + n + 1) + 8.0 * K, what)


def load_problem(c: BayesDataConfig, hidden: int = 128) -> dict:
    """The model and its train/test data: a synthetic problem, or a CSV split in two."""
    from .models import LinearRegression, LogisticRegression, ParameterGrid, synthetic_problem

    check_size(c, c.n_weights if not c.data else 1, hidden,
               f"--K {c.K}" + (f" with --n-weights {c.n_weights}" if not c.data else ""))
    if not c.data:
        if c.grid_low != -c.grid_high:
            raise ValueError(f"synthetic data uses a grid symmetric around 0: --grid-low must be -(--grid-high), got "
                             f"{c.grid_low}, {c.grid_high}")
        p = synthetic_problem(c.model, n_weights=c.n_weights, K=c.K, n_examples=c.n_examples, n_test=c.n_test,
                              seed=c.data_seed, grid_range=c.grid_high, prior_std=c.prior_std, noise_std=c.noise_std,
                              feature_std=c.feature_std or None)
        return {"model": p.model, "train": p.data, "test": p.test if c.n_test else None,
                "features": [f"w{i}" for i in range(c.n_weights)], "source": "synthetic",
                "theta_true": p.theta_true.tolist()}
    X, y, names = read_csv(c.data, c.target, header=c.header)
    check_size(c, X.shape[1] + int(c.intercept), hidden, f"--K {c.K} with {X.shape[1]} features in --data {c.data}")
    if c.model == "logistic" and bool(((y != 0) & (y != 1)).any()):
        raise ValueError(f"--model logistic needs a 0/1 target; {c.data!r} has values {torch.unique(y)[:10].tolist()}")
    g = torch.Generator().manual_seed(c.data_seed)
    perm = torch.randperm(X.shape[0], generator=g)
    n_test = int(round(c.test_fraction * X.shape[0]))
    if X.shape[0] - n_test < 1:
        raise ValueError(f"--data {c.data!r} has {X.shape[0]} rows: too few to hold out {c.test_fraction:.0%}")
    tr, te = perm[n_test:], perm[:n_test]
    if c.standardize and len(tr) > 1:
        sd = X[tr].std(0)
        X = (X - X[tr].mean(0)) / torch.where(sd > 1e-12, sd, torch.ones_like(sd))  # constant columns stay put
    if c.intercept:
        X = torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype)], 1)
        names = names + ["intercept"]
    grid = ParameterGrid.linspace(c.grid_low, c.grid_high, c.K, X.shape[1])
    model = LinearRegression(grid, c.noise_std, c.prior_std) if c.model == "linear" else LogisticRegression(
        grid, c.prior_std)
    return {"model": model, "train": (X[tr], y[tr]), "test": (X[te], y[te]) if n_test else None,
            "features": names, "source": os.path.abspath(c.data)}


def _write_csv(path: str, prob: dict) -> None:
    import csv

    parts = [prob["train"]] + ([prob["test"]] if prob["test"] is not None else [])
    X = torch.cat([p[0] for p in parts]).double()
    y = torch.cat([p[1] for p in parts]).double()
    from ..runfolder import atomic_open

    with atomic_open(path, "w", newline="") as f:  # a full disk: an error naming the path, no torn file
        w = csv.writer(f)
        w.writerow([f"x{j}" for j in range(X.shape[1])] + ["y"])
        w.writerows([*map(repr, xr), repr(yv)] for xr, yv in zip(X.tolist(), y.tolist()))


def run_bayes(data_cfg: BayesDataConfig, cfg, overwrite: bool = False) -> dict:
    """A `gfncore bayes` run: train, evaluate, write outputs into data_cfg.out (a folder that holds
    a run only with overwrite=True, locked for the run); returns the summary."""
    from ..runfolder import RunFolder
    from .posterior import PosteriorSampler

    out = data_cfg.out or os.path.join("runs", f"bayes_{data_cfg.model}")
    check_out(out, overwrite)
    prob = load_problem(data_cfg, cfg.hidden)
    q = PosteriorSampler.from_model(prob["model"], prob["train"], cfg)
    with RunFolder() as folder:  # one writer: the lock is held from the first write to the last
        folder.acquire(out)
        check_out(out, overwrite, locked=True)
        return _train_and_write(data_cfg, cfg, prob, q, out)


def check_out(out: str, overwrite: bool, locked: bool = False) -> None:
    """Refuses an --out that is a file, that another process writes, or that holds a run (without
    --overwrite); with --overwrite (once the lock is held) removes that run's own files."""
    from ..runfolder import check_free

    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} exists and is not a folder")
    if not locked:
        check_free(out)
    existing = [f for f in OUTPUTS if os.path.exists(os.path.join(out, f))]
    if existing and not overwrite:
        raise ValueError(f"{out} already holds a run ({', '.join(existing)}): pass --overwrite to replace it "
                         f"or choose another --out")
    if locked:
        for f in existing:
            os.remove(os.path.join(out, f))


def _train_and_write(data_cfg: BayesDataConfig, cfg, prob: dict, q, out: str) -> dict:
    from .exact import exact_posterior_of

    model, train = prob["model"], prob["train"]
    grid = model.grid
    if prob["source"] == "synthetic":  # the data, in the format --data reads (target column "y", last)
        _write_csv(os.path.join(out, "data.csv"), prob)
    exact = None
    if grid.size <= ENUMERATE_MAX and (grid.K + 1) ** grid.n <= 2 * ENUMERATE_MAX:
        with q._pinned_threads():
            exact = exact_posterior_of(model, train)
    metrics_path = os.path.join(out, "metrics.jsonl")
    q.fit(progress=data_cfg.progress, exact=exact, log_path=metrics_path)
    summary = {"model": data_cfg.model, "source": prob["source"], "n_train": int(train[0].shape[0]),
               "n_weights": grid.n, "grid_size": grid.size, **q.summary(), "grid_values": grid.values.tolist(),
               "data_config": dataclasses.asdict(data_cfg)}
    if "theta_true" in prob:
        summary["theta_true"] = prob["theta_true"]
    if cfg.evidence_samples:
        est = q.importance_evidence()
        summary.update(log_z_is=est["log_z"], log_z_is_ess=est["ess"])
    if exact is not None:
        ev = q.evaluate(exact, evidence_samples=0)
        summary.update(true_log_z=exact.log_evidence, l1=ev["l1"], log_z_error=ev["log_z_error"])
        if "log_z_is" in summary:
            summary["log_z_is_error"] = summary["log_z_is"] - exact.log_evidence
    theta = q.sample_theta(data_cfg.samples)
    idx = torch.searchsorted(grid.values, theta.contiguous())  # grid values back to indices
    marg = torch.stack([torch.bincount(idx[:, j], minlength=grid.K).double() / idx.shape[0] for j in range(grid.n)])
    summary["posterior_mean"] = theta.mean(0).tolist()
    summary["posterior_std"] = theta.std(0).tolist()
    summary["marginals"] = marg.tolist()
    if exact is not None:
        summary["exact_marginals"] = exact.marginals().tolist()
        summary["exact_posterior_mean"] = exact.mean().tolist()
    if prob["test"] is not None and prob["test"][0].shape[0]:
        Xt, yt = prob["test"]
        pred = q.predictive(Xt, yt, m=min(data_cfg.samples, 4096))
        summary["predictive"] = pred
        _write_predictive(os.path.join(out, "predictive.csv"), model, theta[:4096], Xt, yt)
    _write_samples(os.path.join(out, "samples.csv"), theta, prob["features"])
    path = os.path.join(out, "summary.json")
    write_text(path, json.dumps(summary, indent=1))
    # the plot last, so that without matplotlib every result is already on disk
    summary["plot"] = plot_marginals(summary, prob["features"], os.path.join(out, "marginals.png"))
    if summary["plot"]:
        write_text(path, json.dumps(summary, indent=1))
    summary["out"] = out
    return summary


def _write_samples(path: str, theta: torch.Tensor, names: list[str]) -> None:
    write_text(path, "".join([",".join(names) + "\n"] + [",".join(f"{v:.6g}" for v in row) + "\n"
                                                         for row in theta.tolist()]))


def _write_predictive(path: str, model, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> None:
    """Per test example: y and the posterior predictive Q(y|x, D) (p = Q(y=1) or mean and std)."""
    from .predictive import posterior_predictive

    pred = posterior_predictive(model, theta, X, y)
    cols = ["y"] + [k for k in ("p", "mean", "std", "log_prob") if k in pred]
    lines = [",".join(cols) + "\n"] + [",".join(f"{float(y[i] if k == 'y' else pred[k][i]):.6g}" for k in cols) + "\n"
                                       for i in range(X.shape[0])]
    write_text(path, "".join(lines))  # whole or not at all: a full disk never leaves a torn CSV


def plot_marginals(s: dict, names: list[str], path: str) -> str | None:
    """One panel per weight: the sampler's marginal posterior over the grid (from its samples) and,
    where enumerable, the exact one. Returns path, or None without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        print("bayes: the plot needs matplotlib (pip install matplotlib); summary.json and samples.csv are written")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, vals = s["n_weights"], s["grid_values"]
    cols = min(n, 5)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.6 * rows), squeeze=False)
    w = 0.8 * (vals[1] - vals[0]) if len(vals) > 1 else 0.5
    for j in range(rows * cols):
        ax = axes[j // cols][j % cols]
        if j >= n:
            ax.set_visible(False)
            continue
        ax.bar(vals, s["marginals"][j], width=w, color="C0", alpha=0.7, label="GFlowNet Q")
        if "exact_marginals" in s:
            ax.plot(vals, s["exact_marginals"][j], "k_", ms=14, mew=2, label="exact")
        if "theta_true" in s:
            ax.axvline(s["theta_true"][j], color="C3", ls=":", lw=1, label="true")
        ax.set_title(names[j] if j < len(names) else f"w{j}", fontsize=9)
        ax.set_ylim(0, 1)
        if j == 0:
            ax.legend(fontsize=7)
    title = f"{s['model']} regression: marginal posteriors, log Z = {s['log_z']:.3f}"
    if "true_log_z" in s:
        title += f" (exact {s['true_log_z']:.3f}), L1 = {s['l1']:.3f}"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _add_flags(p: argparse.ArgumentParser) -> None:
    from ..cli.common import add_dataclass_args
    from .joint_cli import JointCliConfig
    from .posterior import PosteriorConfig

    add_dataclass_args(p, BayesDataConfig)
    add_dataclass_args(p, PosteriorConfig)
    add_dataclass_args(p, JointCliConfig)
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The `bayes` subcommand on a `gfncore` parser's subparsers."""
    help_ = "posterior over a grid of regression weights (GFlowNet sampler, evidence, predictive)"
    p = subparsers.add_parser("bayes", help=help_, description=__doc__.split("\n\n")[0])
    _add_flags(p)
    return p


def run(ns: argparse.Namespace) -> int:
    """Run `gfncore bayes` from parsed flags; prints the result and returns the exit status."""
    from ..cli.common import from_args
    from .posterior import PosteriorConfig

    from ..cli.common import UsageError
    from ..runfolder import one_line
    from .joint_cli import JointCliConfig, print_summary, run_joint

    try:
        jcfg = from_args(JointCliConfig, ns)
        if jcfg.joint_predictive:
            print_summary(run_joint(from_args(BayesDataConfig, ns), from_args(PosteriorConfig, ns), jcfg))
            return 0
        s = run_bayes(from_args(BayesDataConfig, ns), from_args(PosteriorConfig, ns), overwrite=ns.overwrite)
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as e:  # bad flags or data, a busy --out, a failed write: one line
        print(f"gfncore bayes: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ngfncore bayes: interrupted; the files written before the signal are whole (a run writes its "
              "results at the end: run it again with --overwrite)", file=sys.stderr)
        return 130
    print(f"{s['model']} regression, {s['n_train']} examples, grid {s['grid_size']} settings "
          f"({s['n_weights']} weights x {len(s['grid_values'])} values); {s['steps']} steps, {s['train_s']:.1f} s training")
    line = f"log P(D) estimate: log Z = {s['log_z']:.4f}"
    if "log_z_is" in s:
        line += f", importance sampling {s['log_z_is']:.4f}"
    if "true_log_z" in s:
        line += f"; exact {s['true_log_z']:.4f}; exact L1 = {s['l1']:.4f}"
    print(line)
    p = s.get("predictive")
    if p:
        if "accuracy" in p:
            print(f"predictive on {p['n_test']} held-out: accuracy {p['accuracy']:.4f}, ECE {p['ece']:.4f}, "
                  f"log-lik {p['log_predictive']:.4f}")
        else:
            print(f"predictive on {p['n_test']} held-out: RMSE {p['rmse']:.4f}, calibration error "
                  f"{p['calibration_error']:.4f}, log-lik {p['log_predictive']:.4f}")
    print(f"outputs in {s['out']}/")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m gfncore.bayes.cli", description=__doc__.split("\n\n")[0])
    _add_flags(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
