"""The joint predictive posterior Q(Y, θ | X) against exact enumeration, against θ-averaged
predictives (accuracy and time per prediction), and its predictive entropy as an information-gain
proxy against the exact EIG.

    python bench/bayes_joint.py [--model logistic|linear] [--steps 1500] [--held-out 64]

A grid model (`--weights` weights x `--K` values; linear: noise sd `--noise-std`, outcomes on
`--y-values` points over ±`--y-range`), data sets of `--set-size` examples. For held-out (x, D) from
the prior predictive (|D| = 1..set_size−1): the TV and KL(P‖Q) of the y-step's Q(y | x, D) to the
exact Σ_θ P(θ|D) P(y|x, θ), and the exact L1 of Q(θ | X, Y) on the full data sets. Then the
θ-averaged predictive on the full data sets (|D| = set_size, where the policy's θ-steps give
Q(θ | X, Y)): from S samples of Q(θ | X, Y) and from its exact table, each against the exact
predictive, with the time per prediction of each route. Finally, for each held-out D and
`--candidates` inputs x: Spearman correlation of H[Q(y | x, D)] with the exact EIG
I(y; θ | x, D), and the EIG of the x each criterion picks (regret against the best x, and a random x).
Checks correctness (the joint's TV) before it times anything.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's gfncore

from gfncore.bayes import LinearRegression, LogisticRegression, ParameterGrid  # noqa: E402
from gfncore.bayes.joint import JointConfig, JointPredictive  # noqa: E402


def _time(fn, repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def _ranks(v: torch.Tensor) -> torch.Tensor:
    r = torch.empty_like(v)
    r[v.argsort()] = torch.arange(v.numel(), dtype=v.dtype)
    return r


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()).clamp_min(1e-300))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="logistic", choices=("logistic", "linear"))
    p.add_argument("--weights", type=int, default=2)
    p.add_argument("--K", type=int, default=3)
    p.add_argument("--noise-std", type=float, default=1.0)
    p.add_argument("--y-range", type=float, default=3.0)
    p.add_argument("--y-values", type=int, default=7)
    p.add_argument("--set-size", type=int, default=6)
    p.add_argument("--feature-std", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--held-out", type=int, default=64)
    p.add_argument("--samples", type=int, default=1024, help="θ samples of the θ-averaged predictive")
    p.add_argument("--candidates", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default="")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from gfncore import _C

    _C.set_num_threads(a.threads)
    grid = ParameterGrid.linspace(-1, 1, a.K, a.weights)
    if a.model == "logistic":
        model, y_grid = LogisticRegression(grid), ()
    else:
        model = LinearRegression(grid, noise_std=a.noise_std)
        y_grid = tuple(torch.linspace(-a.y_range, a.y_range, a.y_values).tolist())
    jp = JointPredictive(model, JointConfig(set_size=a.set_size, y_grid=y_grid, feature_std=a.feature_std,
                                            steps=a.steps, batch_size=a.batch_size, seed=a.seed))
    sets = jp.held_out(a.held_out)
    before = jp.evaluate(sets)
    jp.fit(progress=True)
    ev = jp.evaluate(sets)
    s = {"args": vars(a), "train_s": jp.trainer.train_seconds,
         "untrained": {k: v for k, v in before.items() if not isinstance(v, list)},
         "joint": {k: v for k, v in ev.items() if not isinstance(v, list)}}

    # θ-averaged predictives on the full data sets, where Q(θ | X, Y) exists
    g = torch.Generator().manual_seed(a.seed + 1)
    tv_sampled, tv_table, tv_joint_theta_exact = [], [], []
    for r in sets:
        X, Y, x = r["X_full"], r["Y_full"], r["x"]
        exact = jp.exact_predictive(x, X, Y)[0]
        th = grid.theta(jp.sample_theta(X, Y, a.samples, g))
        pred_s = jp.outcomes.log_probs(th, x.reshape(1, 1, -1).expand(th.shape[0], -1, -1)).exp().mean(0)[0]
        q = jp.theta_distribution(X, Y)
        allth = grid.theta(grid.all_indices())
        pred_t = (q[:, None] * jp.outcomes.log_probs(allth, x.reshape(1, 1, -1).expand(allth.shape[0], -1, -1))
                  .exp()[:, 0]).sum(0)
        tv_sampled.append(0.5 * float((pred_s - exact).abs().sum()))
        tv_table.append(0.5 * float((pred_t - exact).abs().sum()))
    r = sets[0]
    xq = r["x"]
    t_joint = _time(lambda: jp.predict(xq, r["X"], r["Y"]), 200)
    t_batch = _time(lambda: jp.predict(torch.randn(256, grid.n, dtype=torch.float64), r["X"], r["Y"]), 20) / 256

    def theta_avg():
        th = grid.theta(jp.sample_theta(r["X_full"], r["Y_full"], a.samples, g))
        return jp.outcomes.log_probs(th, xq.reshape(1, 1, -1).expand(th.shape[0], -1, -1)).exp().mean(0)

    def theta_table():
        q = jp.theta_distribution(r["X_full"], r["Y_full"])
        allth = grid.theta(grid.all_indices())
        return (q[:, None, None] * jp.outcomes.log_probs(allth, xq.reshape(1, 1, -1).expand(allth.shape[0], -1, -1))
                .exp()).sum(0)

    t_avg = _time(theta_avg, 20)
    t_table = _time(theta_table, 20)
    t_exact = _time(lambda: jp.exact_predictive(xq, r["X"], r["Y"]), 50)
    s["theta_averaged"] = {"samples": a.samples, "tv_sampled_mean": statistics.mean(tv_sampled),
                           "tv_sampled_max": max(tv_sampled), "tv_table_mean": statistics.mean(tv_table),
                           "tv_table_max": max(tv_table)}
    s["time_per_prediction_s"] = {"joint_y_step": t_joint, "joint_y_step_batched_256": t_batch,
                                  f"theta_averaged_{a.samples}": t_avg, "theta_averaged_exact_table": t_table,
                                  "exact_enumeration": t_exact}

    # predictive entropy as an information-gain proxy
    rho, regret_h, regret_rand, best = [], [], [], []
    gc = torch.Generator().manual_seed(a.seed + 2)
    for r in sets:
        xc = a.feature_std * torch.randn(a.candidates, grid.n, generator=gc, dtype=torch.float64)
        eig = jp.exact_eig(xc, r["X"], r["Y"])
        h = jp.predictive_entropy(xc, r["X"], r["Y"])
        rho.append(spearman(h, eig))
        best.append(float(eig.max()))
        regret_h.append(float(eig.max() - eig[h.argmax()]))
        regret_rand.append(float(eig.max() - eig.mean()))
    s["design"] = {"candidates": a.candidates, "spearman_entropy_eig_mean": statistics.mean(rho),
                   "spearman_entropy_eig_min": min(rho), "best_eig_mean": statistics.mean(best),
                   "regret_entropy_mean": statistics.mean(regret_h), "regret_random_mean": statistics.mean(regret_rand)}

    j, t = s["joint"], s["time_per_prediction_s"]
    print(f"\n{a.model} model, {a.weights} weights x {a.K} values, data sets of {a.set_size}; {a.steps} steps "
          f"({s['train_s']:.0f} s, {a.threads} thread(s)); {a.held_out} held-out (x, D)\n")
    print("| | TV to exact, mean | max | KL(P‖Q), mean | Q(θ\\|X,Y) exact L1, mean | max |\n"
          "|---|---:|---:|---:|---:|---:|")
    u = s["untrained"]
    print(f"| untrained | {u['predictive_tv']:.4f} | {u['predictive_tv_max']:.4f} | {u['predictive_kl']:.5f} | "
          f"{u['theta_l1']:.4f} | {u['theta_l1_max']:.4f} |")
    print(f"| joint predictive (y-step) | {j['predictive_tv']:.4f} | {j['predictive_tv_max']:.4f} | "
          f"{j['predictive_kl']:.5f} | {j['theta_l1']:.4f} | {j['theta_l1_max']:.4f} |")
    ta = s["theta_averaged"]
    print(f"\nθ-averaged predictive at |D| = {a.set_size} (Q(θ|X,Y) of the same policy), TV to exact: "
          f"{a.samples} samples mean {ta['tv_sampled_mean']:.4f} (max {ta['tv_sampled_max']:.4f}); exact Q table mean "
          f"{ta['tv_table_mean']:.4f} (max {ta['tv_table_max']:.4f})")
    print(f"time per prediction: joint y-step {1e6 * t['joint_y_step']:.0f} us (batched: "
          f"{1e6 * t['joint_y_step_batched_256']:.1f} us per query), θ-averaged over {a.samples} samples "
          f"{1e3 * t[f'theta_averaged_{a.samples}']:.2f} ms, over the exact Q(θ) table "
          f"{1e3 * t['theta_averaged_exact_table']:.2f} ms, exact enumeration {1e3 * t['exact_enumeration']:.2f} ms")
    d = s["design"]
    print(f"design: Spearman(H[Q(y|x,D)], exact EIG) over {a.candidates} candidates: mean "
          f"{d['spearman_entropy_eig_mean']:.3f}"
          f" (min {d['spearman_entropy_eig_min']:.3f}); EIG regret of the max-entropy x {d['regret_entropy_mean']:.4f}"
          f" nats, of a random x {d['regret_random_mean']:.4f} (best EIG {d['best_eig_mean']:.4f})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(s, f, indent=1)
    return s


if __name__ == "__main__":
    main()
