"""GFlowNet posterior samplers trained on the full-data reward against the minibatch reward: steps
and training seconds to reach a given posterior quality (exact L1 and |log Z − log P(D)| by
enumeration), side by side in one run.

    python bench/bayes_minibatch.py --part small     # the tests' linear problem, 200 examples
    python bench/bayes_minibatch.py --part tall      # logistic regression, 1e4 and 1e5 examples

small: Bayesian linear regression, 5 weights x 5 values (3,125 settings), 200 examples; full batch,
and minibatches of 20 with the second-order control variate (exact for this model), the
first-order one (noisy: sd ~6 nats over the posterior; with the default settings and with ZVar, a
smaller network and learning rate) and none.
tall: Bayesian logistic regression, 4 weights x 7 values (2,401 settings), |D| examples with
features scaled by 6/sqrt(|D|) so the posterior stays spread over tens of settings (perplexity
~40) instead of collapsing onto one; full batch against minibatches of |D|/100 with the second- and
first-order variates.

Training time excludes the exact evaluations (every --eval-every steps); the speed-up is the ratio
of training seconds to first reach the target (L1 and |log Z error| both under it).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's gfncore

from gfncore.bayes import exact_posterior_of, synthetic_problem  # noqa: E402
from gfncore.bayes.posterior import PosteriorConfig, PosteriorSampler  # noqa: E402


def run(problem, post, cfg: PosteriorConfig, every: int, target: float) -> dict:
    t0 = time.perf_counter()
    q = PosteriorSampler.from_model(problem.model, problem.data, cfg)
    setup = time.perf_counter() - t0
    q.fit(progress=False, exact=post)
    hit = next((h for h in q.history if h["l1"] < target and abs(h["log_z_error"]) < target), None)
    final = q.history[-1]
    is_est = q.importance_evidence(2048)
    return {"minibatch": cfg.minibatch, "control_variate": cfg.control_variate, "steps": cfg.steps,
            "setup_s": setup, "train_s": q.train_seconds, "ms_per_step": 1e3 * q.train_seconds / cfg.steps,
            "final_l1": final["l1"], "final_log_z_error": final["log_z_error"],
            "log_z_is_error": is_est["log_z"] - post.log_evidence,
            "noise_sd": float(post.probs @ q.reward.noise_variance(post.theta).sqrt()) if not q.reward.full_batch
            else 0.0,
            "target": target, "steps_to_target": hit["step"] if hit else None,
            "train_s_to_target": hit["train_s"] if hit else None,
            "setup_s_note": "reference fit, Taylor terms, shift and log Z pilot: once per run, not in train_s",
            "curve": [{k: h[k] for k in ("step", "train_s", "l1", "log_z_error")} for h in q.history]}


def table(rows: list[dict], title: str) -> str:
    out = [title, "", "| reward | steps | noise sd of log R̂ (nats, over P(θ|D)) | ms/step | final exact L1 | "
           "final log Z − log P(D) | IS log Z − log P(D) | steps to target | train s to target |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        name = "full batch" if not r["minibatch"] else f"minibatch {r['minibatch']}, control variate {r['control_variate']}"
        if r.get("settings"):
            name += " (" + ", ".join(f"{k} {v}" for k, v in r["settings"].items()) + ")"
        out.append(f"| {name} | {r['steps']} | {r['noise_sd']:.3g} | {r['ms_per_step']:.1f} | {r['final_l1']:.4f} | "
                   f"{r['final_log_z_error']:+.4f} | {r['log_z_is_error']:+.4f} | "
                   f"{r['steps_to_target'] if r['steps_to_target'] else '—'} | "
                   + (f"{r['train_s_to_target']:.1f}" if r["train_s_to_target"] else "—") + " |")
    full = next((r for r in rows if not r["minibatch"]), None)
    if full and full["train_s_to_target"]:
        for r in rows:
            if r["minibatch"] and r["train_s_to_target"]:
                out.append(f"\n- {r['minibatch']}-example minibatches (variate {r['control_variate']}) reach the target "
                           f"{full['train_s_to_target'] / r['train_s_to_target']:.2f}x faster than the full batch "
                           f"(training seconds).")
    return "\n".join(out) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=["small", "tall"], default="small")
    p.add_argument("--n-examples", default="10000,100000", help="tall: data sizes")
    p.add_argument("--minibatch", type=int, default=0, help="tall: minibatch size (default |D|/100)")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--noisy-steps", type=int, default=8000, help="small: steps for the first-order variate")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--target", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="", help="write the results here")
    p.add_argument("--only", default="", help="small: run only these configurations (comma-separated indices)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    results = {}
    if a.part == "small":
        prob = synthetic_problem("linear", seed=0)
        post = exact_posterior_of(prob.model, prob.data)
        rows = []
        # the noisy (first-order) reward also with settings suited to noise: ZVar (no learned log Z to
        # absorb each step's common shift), a smaller network and learning rate
        noisy_tuned = {"loss": "zvar", "lr": 3e-3, "hidden": 64}
        configs = [(0, 2, a.steps, {}), (20, 2, a.steps, {}), (20, 1, a.noisy_steps, {}),
                   (20, 1, a.noisy_steps, noisy_tuned), (20, 0, a.steps, {})]
        for i, (mb, cv, steps, extra) in enumerate(configs):
            if a.only and str(i) not in a.only.split(","):
                continue
            cfg = PosteriorConfig(steps=steps, minibatch=mb, control_variate=cv, threads=a.threads, seed=a.seed,
                                  eval_every=a.eval_every if steps <= 2000 else 500, **extra)
            rows.append(run(prob, post, cfg, a.eval_every, a.target))
            rows[-1]["settings"] = extra
            print(f"done: minibatch {mb} cv {cv} {extra}: L1 {rows[-1]['final_l1']:.4f}, {rows[-1]['train_s']:.1f} s",
                  flush=True)
        results["small"] = rows
        print(table(rows, f"linear, 5 x 5 grid, 200 examples, log P(D) = {post.log_evidence:.3f}; target "
                          f"{a.target}; {a.threads} thread(s)"))
    else:
        for N in (int(v) for v in a.n_examples.split(",")):
            prob = synthetic_problem("logistic", n_weights=4, K=7, n_examples=N, n_test=0, seed=a.seed,
                                     grid_range=1.5, feature_std=6.0 / math.sqrt(N))
            t = time.perf_counter()
            post = exact_posterior_of(prob.model, prob.data)
            enum_s = time.perf_counter() - t
            perp = math.exp(-float((post.probs * post.log_probs).sum()))
            mb = a.minibatch or max(N // 100, 1)
            rows = []
            for m, cv in ((0, 2), (mb, 2), (mb, 1)):
                cfg = PosteriorConfig(steps=a.steps, minibatch=m, control_variate=cv, threads=a.threads, seed=a.seed,
                                      eval_every=a.eval_every)
                rows.append(run(prob, post, cfg, a.eval_every, a.target))
                print(f"done: N {N} minibatch {m}: L1 {rows[-1]['final_l1']:.4f}, {rows[-1]['train_s']:.1f} s",
                      flush=True)
            results[f"tall_{N}"] = {"rows": rows, "perplexity": perp, "enumeration_s": enum_s}
            print(table(rows, f"logistic, 4 x 7 grid, {N} examples (posterior perplexity {perp:.1f}, exact "
                              f"enumeration {enum_s:.1f} s), log P(D) = {post.log_evidence:.3f}; target {a.target}; "
                              f"{a.threads} thread(s)"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
