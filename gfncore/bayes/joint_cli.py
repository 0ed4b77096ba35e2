"""`gfncore bayes --joint-predictive`: train the joint predictive posterior Q(Y, θ | X) of a built-in
model on inputs drawn from N(0, feature_std²), then score it on held-out (x, D) from the model's prior
predictive against the exact predictive by enumeration (TV, KL) and against the outcomes that
followed (calibration), and score Q(θ | X, Y) by its exact L1. Writes summary.json,
predictive.csv (one row per held-out (x, D)) and calibration.png into --out."""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field

import torch


@dataclass
class JointCliConfig:
    """The joint predictive's own flags of `gfncore bayes` (training flags are PosteriorConfig's)."""

    joint_predictive: bool = field(default=False, metadata={
        "help": "train the joint predictive posterior Q(Y, theta | X) on data sets from the prior predictive "
                "and score its predictive Q(y | x, D) against the exact one"})
    set_size: int = field(default=6, metadata={"help": "joint predictive: examples per data set"})
    y_grid: str = field(default="", metadata={
        "help": "joint predictive, linear model: outcome grid LOW:HIGH:K (default: +-3 prior-predictive sd, 9 values)"})
    held_out_sets: int = field(default=64, metadata={"help": "joint predictive: held-out (x, D) scored"})


def parse_y_grid(spec: str, model, feature_std: float) -> tuple:
    """The outcome grid of a regression model: LOW:HIGH:K, or ±3 prior-predictive sd with 9 values."""
    if not spec:
        # Var(y) under the prior predictive: noise² + Σ_j E[x_j²] E[θ_j²]
        ev = float((model.prior.log_prob(model.grid.values[:, None]).exp() * model.grid.values ** 2).sum()
                   / model.prior.log_prob(model.grid.values[:, None]).exp().sum())
        sd = math.sqrt(model.noise_std ** 2 + model.grid.n * feature_std ** 2 * ev)
        return tuple(torch.linspace(-3 * sd, 3 * sd, 9, dtype=torch.float64).tolist())
    try:
        lo, hi, k = spec.split(":")
        lo, hi, k = float(lo), float(hi), int(k)
    except ValueError:
        raise ValueError(f"--y-grid must be LOW:HIGH:K (e.g. -6:6:13), got {spec!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi and k >= 2):
        raise ValueError(f"--y-grid {spec!r}: need finite LOW < HIGH and K >= 2")
    return tuple(torch.linspace(lo, hi, k, dtype=torch.float64).tolist())


def run_joint(data_cfg, post_cfg, jcfg: JointCliConfig) -> dict:
    """Train, evaluate against exact answers, write the outputs; returns the summary."""
    from .joint import JointConfig, JointPredictive
    from .models import LinearRegression, LogisticRegression, ParameterGrid

    if data_cfg.data:
        raise ValueError("--joint-predictive trains on data sets from the model's prior predictive; it takes no --data")
    if isinstance(jcfg.set_size, bool) or not isinstance(jcfg.set_size, int) or jcfg.set_size < 2:
        raise ValueError(f"--set-size must be an int >= 2, got {jcfg.set_size!r}")
    if jcfg.held_out_sets < 1:
        raise ValueError(f"--held-out-sets must be >= 1, got {jcfg.held_out_sets}")
    grid = ParameterGrid.linspace(data_cfg.grid_low, data_cfg.grid_high, data_cfg.K, data_cfg.n_weights)
    if grid.size > 100_000:
        raise ValueError(f"--joint-predictive scores against enumeration: the grid has {grid.size} settings "
                         f"(K^n-weights), more than 100,000")
    fstd = data_cfg.feature_std or 1.0
    if data_cfg.model == "linear":
        model = LinearRegression(grid, data_cfg.noise_std, data_cfg.prior_std)
        y_grid = parse_y_grid(jcfg.y_grid, model, fstd)
    else:
        if jcfg.y_grid:
            raise ValueError("--y-grid is for --model linear; logistic outcomes are 0 and 1")
        model, y_grid = LogisticRegression(grid, data_cfg.prior_std), ()
    cfg = JointConfig(set_size=jcfg.set_size, y_grid=y_grid, feature_std=fstd, steps=post_cfg.steps,
                      batch_size=post_cfg.batch_size, minibatch=post_cfg.minibatch, hidden=post_cfg.hidden,
                      layers=post_cfg.layers, lr=post_cfg.lr, lr_final=post_cfg.lr_final, seed=post_cfg.seed)
    out = data_cfg.out or os.path.join("runs", f"bayes_{data_cfg.model}_joint")
    os.makedirs(out, exist_ok=True)
    from ..runtime import pinned_threads

    with pinned_threads(post_cfg.threads):
        jp = JointPredictive(model, cfg)
        sets = jp.held_out(jcfg.held_out_sets, seed=data_cfg.data_seed + 12345)
        before = jp.evaluate(sets)
        jp.fit(progress=data_cfg.progress)
        ev = jp.evaluate(sets)
        cal = calibration(jp, sets)
    s = {"model": data_cfg.model, "joint_predictive": True, "n_weights": grid.n, "grid_size": grid.size,
         "grid_values": grid.values.tolist(), "y_grid": list(jp.outcomes.values.tolist()), **jp.summary(),
         "held_out_sets": len(sets), **{k: v for k, v in ev.items() if not isinstance(v, list)},
         "untrained": {k: v for k, v in before.items() if not isinstance(v, list)}, "calibration": cal,
         "data_config": dataclasses.asdict(data_cfg)}
    _write_rows(os.path.join(out, "predictive.csv"), jp, sets, ev)
    path = os.path.join(out, "summary.json")
    with open(path, "w") as f:
        json.dump(s, f, indent=1)
    s["plot"] = plot_calibration(cal, os.path.join(out, "calibration.png"))
    if s["plot"]:
        with open(path, "w") as f:
            json.dump(s, f, indent=1)
    s["out"] = out
    return s


def calibration(jp, sets: list[dict], n_bins: int = 10) -> dict:
    """How Q(y | x, D) and the exact predictive fare against the outcomes that followed each (x, D):
    classification: reliability bins of P(y = 1), ECE, Brier score, accuracy; regression on the
    grid: the randomised PIT's calibration error (mean |empirical CDF − identity| at 19 levels).
    Both: the mean log predictive probability of the outcome."""
    rows = {"Q": [], "exact": []}
    outcome = []
    for r in sets:
        rows["Q"].append(jp.predict(r["x"], r["X"], r["Y"])[0])
        rows["exact"].append(jp.exact_predictive(r["x"], r["X"], r["Y"])[0])
        outcome.append(int(jp.outcomes.index(r["y_next"].reshape(1))[0]))
    k = torch.tensor(outcome)
    out = {}
    g = torch.Generator().manual_seed(0)
    u = torch.rand(len(sets), generator=g, dtype=torch.float64)
    for name, ps in rows.items():
        P = torch.stack(ps)
        pk = P[torch.arange(len(sets)), k]
        res = {"log_predictive": float(pk.clamp_min(1e-300).log().mean())}
        if jp.outcomes.task == "classification":
            p1 = P[:, 1]
            y = k.to(torch.float64)
            bins = torch.clamp((p1 * n_bins).long(), max=n_bins - 1)
            rel = []
            ece = 0.0
            for b in range(n_bins):
                sel = bins == b
                if bool(sel.any()):
                    conf, freq, cnt = float(p1[sel].mean()), float(y[sel].mean()), int(sel.sum())
                    rel.append({"bin": b, "mean_p": conf, "frequency": freq, "count": cnt})
                    ece += cnt / len(sets) * abs(conf - freq)
            res.update(ece=ece, brier=float(((p1 - y) ** 2).mean()), accuracy=float(((p1 > 0.5) == (y > 0.5))
                                                                                      .double().mean()),
                       reliability=rel)
        else:
            cdf = P.cumsum(1)
            below = torch.where(k > 0, cdf[torch.arange(len(sets)), (k - 1).clamp(min=0)], torch.zeros_like(pk))
            pit = below + u * pk
            levels = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
            emp = (pit[None, :] <= levels[:, None]).double().mean(1)
            res.update(calibration_error=float((emp - levels).abs().mean()), pit_levels=levels.tolist(),
                       pit_cdf=emp.tolist())
        out[name] = res
    return out


def _write_rows(path: str, jp, sets: list[dict], ev: dict) -> None:
    with open(path, "w") as f:
        K = jp.outcomes.K
        f.write(",".join(["m", "y_next"] + [f"q{j}" for j in range(K)] + [f"p{j}" for j in range(K)] + ["tv", "kl"])
                + "\n")
        for r, tv, kl in zip(sets, ev["tv"], ev["kl"]):
            q = jp.predict(r["x"], r["X"], r["Y"])[0].tolist()
            p = jp.exact_predictive(r["x"], r["X"], r["Y"])[0].tolist()
            f.write(",".join([str(r["X"].shape[0]), f"{float(r['y_next']):.6g}"] + [f"{v:.6g}" for v in q + p]
                             + [f"{tv:.6g}", f"{kl:.6g}"]) + "\n")


def plot_calibration(cal: dict, path: str) -> str | None:
    """Reliability diagram (classification) or PIT CDF (regression) of Q and of the exact predictive."""
    try:
        import matplotlib
    except ImportError:
        print("bayes: the plot needs matplotlib (pip install matplotlib); summary.json and predictive.csv are written")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    for name, c, m in (("Q", "C0", "o"), ("exact", "k", "s")):
        r = cal[name]
        if "reliability" in r:
            ax.plot([b["mean_p"] for b in r["reliability"]], [b["frequency"] for b in r["reliability"]], m + "-",
                    color=c, ms=4, label=f"{name} (ECE {r['ece']:.3f})")
            ax.set_xlabel("predicted P(y = 1 | x, D)")
            ax.set_ylabel("observed frequency")
        else:
            ax.plot(r["pit_levels"], r["pit_cdf"], m + "-", color=c, ms=4,
                    label=f"{name} (cal. error {r['calibration_error']:.3f})")
            ax.set_xlabel("level")
            ax.set_ylabel("share of PIT values below")
    ax.legend(fontsize=8)
    ax.set_title("joint predictive: calibration on held-out (x, D)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def print_summary(s: dict) -> None:
    print(f"joint predictive Q(Y, theta | X), {s['model']} model, {s['n_weights']} weights, grid {s['grid_size']} "
          f"settings, data sets of {s['config']['set_size']}; {s['steps']} steps, {s['train_s']:.1f} s training")
    print(f"on {s['held_out_sets']} held-out (x, D): TV to the exact predictive mean {s['predictive_tv']:.4f} "
          f"(max {s['predictive_tv_max']:.4f}), KL mean {s['predictive_kl']:.5f}; Q(theta | X, Y) exact L1 mean "
          f"{s['theta_l1']:.4f} (max {s['theta_l1_max']:.4f})")
    q, e = s["calibration"]["Q"], s["calibration"]["exact"]
    if "ece" in q:
        print(f"calibration: ECE {q['ece']:.4f} (exact predictive {e['ece']:.4f}), Brier {q['brier']:.4f} "
              f"({e['brier']:.4f}), log predictive {q['log_predictive']:.4f} ({e['log_predictive']:.4f})")
    else:
        print(f"calibration: PIT error {q['calibration_error']:.4f} (exact predictive {e['calibration_error']:.4f}), "
              f"log predictive {q['log_predictive']:.4f} ({e['log_predictive']:.4f})")
    print(f"outputs in {s['out']}/")
