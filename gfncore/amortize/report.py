"""The reports of the amortization demonstration: markdown tables and the plot, from its summary."""
from __future__ import annotations


def _md_row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def format_tables(s: dict) -> str:
    """The demonstration's results as markdown tables."""
    a, eq, cfg, rc = s["amortized"], s["equal_time"], s["config"], s["regressor"]
    errs = lambda r: (f"{r['rel_err_mean']:.4f}", f"{r['rel_err_median']:.4f}", f"{r['rel_err_p90']:.4f}")  # noqa: E731
    lines = [f"Problem: x in R^{cfg['x_dim']}, y in {{0,1}}^{cfg['n']}, log S(x) in "
             f"[{s['log_s_range'][0]:.2f}, {s['log_s_range'][1]:.2f}] on {cfg['n_test']} held-out x; "
             f"{s['threads']} torch thread(s).", "",
             f"Amortized (criterion {a['criterion']}, N = {a['n_train']}) vs Monte Carlo with K samples, errors "
             "against the exact S(x):", "",
             _md_row("estimator", "mean rel. err", "median", "p90", "mean abs log err",
                 f"us/query (batch of {cfg['n_test']})", "us/query (one at a time)"),
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in [("amortized Ŝ(x)", a)] + [(f"MC K={r['K']}", r) for r in s["monte_carlo"]]:
        lines.append(_md_row(name, *errs(r), f"{r['log_err_mean']:.4f}", f"{r['us_per_query_batched']:.2f}",
                         f"{r['us_per_query_single']:.1f}"))
    lines.append("")
    for mode in ("batched", "single"):
        e = eq[mode]
        if e["K_at_equal_time"] is None:
            lines.append(f"- {mode}: the amortized query ({e['amortized_us']:.2f} us) is outside the measured MC "
                         f"time range (MC K={e['mc_smallest_K']}, the smallest K measured, costs "
                         f"{e['mc1_over_amortized_time']:.2f}x the amortized query).")
        else:
            lines.append(f"- {mode}: at the amortized query's time ({e['amortized_us']:.2f} us) MC affords "
                         f"K ≈ {e['K_at_equal_time']:.1f}, mean rel. error ≈ {e['mc_rel_err_at_equal_time']:.4f} "
                         f"(amortized: {a['rel_err_mean']:.4f}).")
    repaid = eq["queries_to_repay_training"]
    lines.append(f"- MC needs K ≈ {eq['K_to_match_amortized_error']:.0f} (≈ {eq['mc_us_to_match_batched']:.1f} "
                 f"us/query batched) to match the amortized error; training took {a['train_seconds']:.1f} s, "
                 f"repaid after ≈ " + (f"{repaid:.0f} queries." if repaid else "never."))
    lines += ["", f"Criteria at N = {cfg['n_train']} (same steps and draws):", "",
              _md_row("criterion", "converges to", "mean rel. err vs S", "vs exp E[log R]", "train s"),
              "|---|---|---:|---:|---:|"]
    for r in s["criteria"]:
        target = "exp E[log R|x] (biased)" if r["criterion"] == "log_mse" else "S(x)"
        lines.append(_md_row(r["criterion"], target, f"{r['rel_err_mean']:.4f}", f"{r['rel_err_vs_geometric_mean']:.4f}",
                         f"{r['train_seconds']:.1f}"))
    lines += ["", f"Training-set size (criterion {a['criterion']}; {rc['steps']} steps of {rc['batch_size']} x "
              f"with {rc['y_per_x']} fresh y each):", "",
              _md_row("N (distinct x)", "mean rel. err held-out x", "median", "p90", "mean rel. err seen x", "train s"),
              "|---:|---:|---:|---:|---:|---:|"]
    for r in s["train_sizes"]:
        lines.append(_md_row(r["n_train"], *errs(r), f"{r['rel_err_mean_seen_x']:.4f}", f"{r['train_seconds']:.1f}"))
    lines += ["", f"Training length (criterion {a['criterion']}, N = {cfg['n_train']}): reward draws spent once, "
              "against MC's K draws per query:", "",
              _md_row("steps", "reward draws", "mean rel. err held-out x", "median", "p90", "train s"),
              "|---:|---:|---:|---:|---:|---:|"]
    for r in s["train_steps"]:
        lines.append(_md_row(r["steps"], r["reward_evaluations"], *errs(r), f"{r['train_seconds']:.1f}"))
    return "\n".join(lines) + "\n"


def plot_demo(s: dict, path: str) -> str | None:
    """Three panels: error against time per query (MC over K, the amortized Ŝ), and the amortized
    error against training-set size and against training draws, MC levels marked. Written to path;
    returns path, or None without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        print("amortize: the plot needs matplotlib (pip install matplotlib); summary.json and table.md "
              "are written")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (matplotlib.ticker.NullFormatter below)

    fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(16, 4.4))
    mc = s["monte_carlo"]
    a = s["amortized"]
    ax0.loglog([r["us_per_query_batched"] for r in mc], [r["rel_err_mean"] for r in mc], "o-", label="Monte Carlo")
    for r in mc:
        ax0.annotate(f"K={r['K']}", (r["us_per_query_batched"], r["rel_err_mean"]), fontsize=7,
                     xytext=(3, 3), textcoords="offset points")
    ax0.loglog([a["us_per_query_batched"]], [a["rel_err_mean"]], "r*", ms=14,
               label=f"amortized ({a['criterion']}, N={a['n_train']})")
    ax0.set_xlabel(f"time per query, us (batch of {s['config']['n_test']}, {s['threads']} thread)")
    ax0.set_ylabel("mean relative error on held-out x")
    ax0.set_title("accuracy vs query time")
    ax0.legend(fontsize=8)
    mc_lines = [r for r in mc if r["K"] in (16, 256, 4096)] or mc[-2:]
    for ax, rows, key, xlabel, title in (
            (ax1, s["train_sizes"], "n_train", "training-set size N (distinct x)",
             "amortized error vs training-set size"),
            (ax2, s.get("train_steps", []), "reward_evaluations", "reward draws spent in training",
             "amortized error vs training draws")):
        if not rows:
            ax.set_visible(False)
            continue
        ax.semilogx([r[key] for r in rows], [r["rel_err_mean"] for r in rows], "s-", color="C3",
                    label="amortized, held-out x")
        if key == "n_train":
            ax.semilogx([r[key] for r in rows], [r["rel_err_mean_seen_x"] for r in rows], "s--", color="C3",
                        alpha=0.5, label="amortized, training x")
        for r, c in zip(mc_lines, ("C0", "C1", "C2")):
            ax.axhline(r["rel_err_mean"], color=c, ls=":", label=f"MC K={r['K']} (per query)")
        ax.set_yscale("log")
        # ticks at the measured points: a range within one decade would otherwise get a single label
        xs = sorted({r[key] for r in rows})
        ax.set_xticks(xs, [f"{x:,}" for x in xs])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels collide on short ranges
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mean relative error")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
