"""A posterior sampler amortized over data sets, scored on data sets it never saw against exact
enumeration, beside the prior (what a sampler that ignores the data would give) and a sampler
trained for one data set.

    python bench/bayes_amortized.py [--weights 3] [--steps 4000] [--held-out 16]

Bayesian linear regression on a grid of `--weights` weights x 5 values, noise sd 2, data sets of
`--set-size` examples drawn from the prior predictive (fresh every training step). For each held-out
data set D: the exact L1 of Q(θ|D) to P(θ|D), |log Z(D) − log P(D)| from the log Z(D) head (one
forward) and from importance sampling with the amortized sampler (no training), and the L1 of the
prior to the posterior. Then, for a few of them, a `PosteriorSampler` trained on that D alone until
it is as close (exact L1 checked every 25 steps): what one query costs without amortization.
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

from gfncore.bayes import (AmortizedConfig, AmortizedPosterior, LinearRegression, ParameterGrid,  # noqa: E402
                           PosteriorConfig, PosteriorSampler, exact_posterior, held_out_datasets)


def main(argv=None):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    p.add_argument("--weights", type=int, default=3)
    p.add_argument("--set-size", type=int, default=32)
    p.add_argument("--noise-std", type=float, default=2.0)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--held-out", type=int, default=16)
    p.add_argument("--per-dataset", type=int, default=3, help="held-out data sets also trained on alone")
    p.add_argument("--threads", type=int, default=1)
    # the levers measured in the ablations (AmortizedConfig's fields)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--trajectories-per-dataset", type=int, default=16)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--encoder", default="deepsets", choices=("deepsets", "attention"))
    p.add_argument("--conditioning", default="concat", choices=("concat", "film"))
    p.add_argument("--loss", default="tb", choices=("tb", "zvar"))
    p.add_argument("--true-theta-fraction", type=float, default=0.0)
    p.add_argument("--json", default="")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from gfncore import _C

    _C.set_num_threads(a.threads)
    model = LinearRegression(ParameterGrid.linspace(-1, 1, 5, a.weights), noise_std=a.noise_std)
    am = AmortizedPosterior(model, AmortizedConfig(
        set_size=a.set_size, steps=a.steps, batch_size=a.batch_size, trajectories_per_dataset=a.trajectories_per_dataset,
        hidden=a.hidden, encoder=a.encoder, conditioning=a.conditioning, loss=a.loss,
        true_theta_fraction=a.true_theta_fraction))
    val = held_out_datasets(model, a.set_size, a.held_out)
    before = am.evaluate(val, is_samples=0)
    am.fit(progress=True)
    rows = am.evaluate(val, is_samples=1024)
    prior_p = model.prior.log_prob(model.grid.theta(model.grid.all_indices())).exp()
    for r, (X, y) in zip(rows, val):
        X32, y32 = am.env.unpack(am.context(X, y))
        post = exact_posterior(model.log_prior, model.log_likelihood, model.grid, (X32[0], y32[0]))
        r["prior_l1"] = post.l1(prior_p)
    # query costs: the head (one forward), importance sampling (1024 trajectories), the exact Q table
    X, y = val[0]
    t_head = statistics.median(_time(lambda: am.log_evidence(X, y)) for _ in range(50))
    t_is = statistics.median(_time(lambda: am.log_evidence_is(X, y, 1024)) for _ in range(5))
    t_sample = statistics.median(_time(lambda: am.sample(X, y, 1000)) for _ in range(5))
    # one data set at a time, without amortization
    alone = []
    for r, (X, y) in list(zip(rows, val))[:a.per_dataset]:
        X32, y32 = am.env.unpack(am.context(X, y))
        post = exact_posterior(model.log_prior, model.log_likelihood, model.grid, (X32[0], y32[0]))
        q = PosteriorSampler.from_model(model, (X32[0], y32[0]), PosteriorConfig(steps=1000, eval_every=25,
                                                                                 threads=a.threads))
        q.fit(progress=False, exact=post)
        hit = next((h for h in q.history if h["l1"] <= r["l1"]), None)
        alone.append({"amortized_l1": r["l1"], "steps_to_match": hit["step"] if hit else None,
                      "train_s_to_match": hit["train_s"] if hit else None, "final_l1": q.history[-1]["l1"],
                      "train_s": q.train_seconds})
    mean = lambda rs, k: sum(x[k] for x in rs) / len(rs)  # noqa: E731
    s = {"weights": a.weights, "grid_size": model.grid.size, "set_size": a.set_size, "steps": a.steps,
         "train_s": am.trainer.train_seconds, "held_out": rows, "before": before, "alone": alone,
         "query_s": {"head": t_head, "importance_1024": t_is, "sample_1000": t_sample}}
    print(f"\nlinear regression, {a.weights} weights x 5 values ({model.grid.size} settings), noise sd {a.noise_std}, "
          f"data sets of {a.set_size}; {a.steps} steps ({am.trainer.train_seconds:.0f} s, {a.threads} thread(s)); "
          f"{a.held_out} held-out data sets (posterior perplexity median "
          f"{statistics.median(r['perplexity'] for r in rows):.1f}):\n")
    print("| | exact L1 of Q(θ\\|D) | \\|log Z(D) − log P(D)\\| head | importance sampling (1024) |\n|---|---:|---:|---:|")
    print(f"| untrained | {mean(before, 'l1'):.3f} | {mean(before, 'log_z_error'):.3f} | — |")
    print(f"| amortized, mean | {mean(rows, 'l1'):.3f} | {mean(rows, 'log_z_error'):.3f} | "
          f"{mean(rows, 'log_z_is_error'):.3f} |")
    print(f"| amortized, worst | {max(r['l1'] for r in rows):.3f} | {max(r['log_z_error'] for r in rows):.3f} | "
          f"{max(r['log_z_is_error'] for r in rows):.3f} |")
    print(f"| the prior (ignores D) | {mean(rows, 'prior_l1'):.3f} | — | — |")
    print(f"\nper query: log Z(D) head {1e3 * t_head:.2f} ms, importance sampling {1e3 * t_is:.1f} ms, 1000 samples "
          f"{1e3 * t_sample:.1f} ms")
    for x in alone:
        print(f"- one data set alone: reached the amortized L1 ({x['amortized_l1']:.3f}) after "
              + (f"{x['steps_to_match']} steps, {x['train_s_to_match']:.1f} s" if x["steps_to_match"] else "never")
              + f"; after 1000 steps L1 {x['final_l1']:.3f} ({x['train_s']:.1f} s)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(s, f, indent=1)


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
