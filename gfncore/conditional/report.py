"""The reports of a conditional run: the markdown table and the plot of log Ŝ(c) against the exact
log S(c) across the contexts, from its summary dict."""
from __future__ import annotations


def _md_row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def format_table(s: dict) -> str:
    """log Ŝ(c) against the exact log S(c) across the context range, as markdown."""
    name = s["context"]
    en = s["enumerable"]
    lines = [f"{s['env']}: {name} in [{s['range'][0]}, {s['range'][1]}] for training (minus ±{s['held_out_gap']:.3g} "
             f"around each held-out {name}); {s['loss']}, {s['steps']} steps, {s['train_s']:.1f} s training, "
             f"{s['threads']} thread(s).", "",
             _md_row(name, "kind", "exact log S", "log Ŝ (head)", "|error|", f"log Ŝ (IS, {s['eval_samples']})",
                     "|error|", *(["exact L1"] if en else []), "E log R: samples", "exact"),
             "|---:|---|---:|---:|---:|---:|---:|" + ("---:|" if en else "") + "---:|---:|"]
    for r in s["curve"]:
        mr = (f"{r['mean_log_r']:.3f} ± {r['mean_log_r_se']:.3f}", f"{r['true_mean_log_r']:.3f}") \
            if "mean_log_r" in r else ("", "")
        isr = (f"{r['log_z_is']:.4f}", f"{r['log_z_is_error']:.4f}") if "log_z_is" in r else ("", "")
        lines.append(_md_row(f"{r['context']:.4g}", r["kind"], f"{r['true_log_z']:.4f}", f"{r['log_z']:.4f}",
                             f"{r['log_z_error']:.4f}", *isr, *([f"{r['l1']:.4f}"] if en else []), *mr))
    lines.append("")
    lines.append("- log Ŝ (head): one forward of the learned log Z(c) head. log Ŝ (IS): log of the mean of "
                 "R(c, x) P_B(τ|x) / P_F(τ|c) over trajectories of the amortized sampler at c (equation 1 "
                 "averaged over y; unbiased for S(c), no training).")
    lines.append(f"- held-out: max |log Ŝ − log S| = {s['max_log_z_error_held_out']:.4f} (head)"
                 + (f", {s['max_log_z_is_error_held_out']:.4f} (IS)" if s["max_log_z_is_error_held_out"] is not None
                    else "")
                 + (f", max exact L1 = {s['max_l1_held_out']:.4f}" if en else "")
                 + f"; whole training range: {s['max_log_z_error_in_range']:.4f}"
                 + (f"; extrapolated: {s['max_log_z_error_extrapolated']:.4f}"
                    if s["max_log_z_error_extrapolated"] is not None else "") + ".")
    q = s["query"]
    is_cost = (f", {1e3 * q['log_z_is_query_s']:.1f} ms (IS, {s['eval_samples']} trajectories)"
               if q["log_z_is_query_s"] is not None else "")
    lines.append(f"- one amortized query of log Ŝ(c): {1e6 * q['log_z_query_s']:.0f} us (head){is_cost}; "
                 f"sampling π̂(·|c): {1e6 * q['sample_s_per_object']:.1f} us per object.")
    if "per_context" in s:
        lines += ["", "A separate sampler per context (same network and settings), trained until it matches the "
                  "amortized one there:", "",
                  _md_row(name, "amortized |error|", *(["amortized L1"] if en else []), "steps to match",
                          "train s"), "|---:|---:|" + ("---:|" if en else "") + "---:|---:|"]
        for r in s["per_context"]:
            lines.append(_md_row(f"{r['context']:.4g}", f"{r['amortized_log_z_error']:.4f}",
                                 *([f"{r['amortized_l1']:.4f}"] if en else []),
                                 r["steps_to_match"] if r["steps_to_match"] else f"not in {r['steps_run']}",
                                 f"{r['train_s']:.1f}"))
        a = s.get("amortization", {})
        if a.get("query_speedup"):
            lines += ["", f"- one context answered by a separate sampler: {a['per_context_train_s_mean']:.1f} s of "
                      f"training; by the amortized one: {1e6 * a['amortized_query_s']:.0f} us "
                      f"({a['query_speedup']:.2g}x cheaper per query). The amortized training ({a['amortized_train_s']:.1f}"
                      f" s) costs as much as {a['break_even_contexts']:.1f} per-context samplers."]
    return "\n".join(lines) + "\n"


def plot_curve(s: dict, path: str) -> str | None:
    """Two panels: log Ŝ(c) and the exact log S(c) across the contexts (training range shaded,
    excluded bands and held-out contexts marked), and the errors against c. Returns path, or
    None without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        print("conditional: the plot needs matplotlib (pip install matplotlib); summary.json and table.md are written")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = s["curve"]
    c = [r["context"] for r in rows]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.4))
    for ax in (ax0, ax1):
        for a, b in s["training_pieces"]:
            ax.axvspan(a, b, color="C2", alpha=0.08, lw=0)
        for h in s["held_out"]:
            ax.axvline(h, color="C3", ls=":", lw=1)
    ax0.plot(c, [r["true_log_z"] for r in rows], "-", color="k", lw=1.5, label="exact log S(c)")
    ax0.plot(c, [r["log_z"] for r in rows], "o", color="C0", ms=5, label="amortized log Ŝ(c)")
    hr = [r for r in rows if r["kind"] == "held-out"]
    ax0.plot([r["context"] for r in hr], [r["log_z"] for r in hr], "s", color="C3", ms=7, mfc="none",
             label="held-out c")
    ax0.set_xlabel(s["context"])
    ax0.set_ylabel("log S(c) = log Σ_y R(c, y)")
    ax0.set_title(f"{s['env']}: one sampler for every {s['context']}")
    ax0.legend(fontsize=8)
    ax1.semilogy(c, [max(r["log_z_error"], 1e-6) for r in rows], "o-", color="C0", label="|log Ŝ(c) − log S(c)| (head)")
    if all("log_z_is_error" in r for r in rows):
        ax1.semilogy(c, [max(r["log_z_is_error"], 1e-6) for r in rows], "s--", color="C2", ms=4,
                     label=f"|log Ŝ(c) − log S(c)| (IS, {s['eval_samples']})")
    if s["enumerable"]:
        ax1.semilogy(c, [max(r["l1"], 1e-6) for r in rows], "^-", color="C1", label="exact L1 of π̂(·|c)")
    ax1.set_xlabel(s["context"])
    ax1.set_ylabel("error")
    ax1.set_title("errors (shaded: training contexts; dotted: held out)")
    ax1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def print_summary(s: dict) -> None:
    print(s["table"])
    print(f"outputs in {s['out']}/")
