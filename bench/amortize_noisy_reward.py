"""Training a GFlowNet posterior sampler on a noisy minibatch log-reward: does it reach the exact
posterior and log P(D), and how much slower than on the full-batch reward?

    python bench/amortize_noisy_reward.py [--steps 3000] [--seeds 0,1] [--quick]

A stand-in for the sampler of issue 9 that needs no environment layer: θ (5 weights x 5 grid values,
Bayesian linear regression, 200 examples; `gfncore.bayes.synthetic_problem`) is built one
coordinate at a time in a fixed order, so the state graph is a tree (P_B = 1) and trajectory
balance reads (log Z + Σ_t log P_F − log R̂(θ))². The policy is an MLP on the one-hot partial
assignment. Every configuration is scored exactly: P_T(θ) of the trained policy for all 3,125 θ
(product of its conditionals) against P(θ|D) from enumeration, and log Z against log P(D).

Rewards: the full-batch log R; the minibatch estimate with |b| = 20 drawn once per training step
and shared by the step's trajectories (`MinibatchLogReward`); the same with the control variate at
the least-squares fit θ_ref = (XᵀX)⁻¹Xᵀy (no posterior knowledge used). Objectives: TB with a
learned log Z, and the log-partition variance (ZVar: log Z = batch mean of log R̂ − Σ log P_F),
which no common shift of log R̂ across the batch can move.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's gfncore

from gfncore.bayes import MinibatchLogReward, exact_posterior_of, synthetic_problem  # noqa: E402


class Autoregressive(torch.nn.Module):
    """P_F(θ_t = k | θ_<t): an MLP on the one-hot partial assignment (K + 1 symbols per slot, the
    last one 'unset'), plus a learned log Z."""

    def __init__(self, n: int, K: int, hidden: int = 128):
        super().__init__()
        self.n, self.K = n, K
        self.net = torch.nn.Sequential(torch.nn.Linear(n * (K + 1), hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, K))
        self.log_z = torch.nn.Parameter(torch.zeros(()))

    def logits(self, state: torch.Tensor) -> torch.Tensor:
        return self.net(torch.nn.functional.one_hot(state, self.K + 1).flatten(1).float())

    def sample(self, B: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """B assignments [B, n] and their log P_F [B] (differentiable)."""
        state = torch.full((B, self.n), self.K, dtype=torch.int64)
        logp = torch.zeros(B)
        for t in range(self.n):
            lp = torch.log_softmax(self.logits(state), -1)
            with torch.no_grad():
                a = torch.multinomial(lp.exp(), 1, generator=gen).squeeze(1)
            logp = logp + lp.gather(1, a[:, None]).squeeze(1)
            state = state.clone()
            state[:, t] = a
        return state, logp

    @torch.no_grad()
    def log_pt(self, index: torch.Tensor) -> torch.Tensor:
        """Exact log P_T(θ) for every row of grid indices [S, n]: the product of its conditionals."""
        state = torch.full_like(index, self.K)
        out = torch.zeros(index.shape[0], dtype=torch.float64)
        for t in range(self.n):
            out += torch.log_softmax(self.logits(state).double(), -1).gather(1, index[:, t:t + 1]).squeeze(1)
            state[:, t] = index[:, t]
        return out


def train(problem, post, reward, loss: str, steps: int, seed: int, batch: int = 64, lr: float = 1e-3,
          lr_log_z: float = 0.05) -> dict:
    torch.manual_seed(seed)
    full_reward = MinibatchLogReward.from_model(problem.model, problem.data)
    grid = problem.grid
    pol = Autoregressive(grid.n, grid.K)
    opt = torch.optim.Adam([{"params": pol.net.parameters(), "lr": lr}, {"params": [pol.log_z], "lr": lr_log_z}])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=0.0)
    gen = torch.Generator().manual_seed(seed + 1)
    t0 = time.perf_counter()
    with torch.no_grad():  # log Z starts at the untrained policy's estimate (log P(D) is about −560 here)
        idx, logp = pol.sample(4 * batch, gen)
        pol.log_z.fill_(float((reward(grid.theta(idx)) - logp.double()).mean()))
    zs = []
    for i in range(steps):
        idx, logp = pol.sample(batch, gen)
        log_r = reward(grid.theta(idx)).float()
        if loss == "tb":
            objective = (pol.log_z + logp - log_r).square().mean()
        else:  # zvar: log Z estimated as the batch mean of log R̂ − log P_F
            zeta = log_r - logp
            objective = (zeta - zeta.mean()).square().mean()
            zs.append(float(zeta.detach().mean()))
        opt.zero_grad()
        objective.backward()
        opt.step()
        sched.step()
    seconds = time.perf_counter() - t0
    log_pt = pol.log_pt(post.index)
    if loss == "tb":
        log_z = float(pol.log_z.detach())
    else:  # the batch means of the last tenth of training, averaged
        log_z = sum(zs[-max(1, steps // 10):]) / max(1, steps // 10)
    # one pass over the full data at the end: importance-sampling log Z from 4096 fresh samples,
    # log mean exp(log R − log P_F) (consistent; the noisy reward would bias it by log E[e^ε] > 0)
    with torch.no_grad():
        idx, logp = pol.sample(4096, gen)
        w = full_reward(grid.theta(idx)) - logp.double()
        log_z_is = float(torch.logsumexp(w, 0)) - math.log(w.numel())
    return {"l1": post.l1(log_pt.exp()), "log_z_err": log_z - post.log_evidence,
            "log_z_is_err": log_z_is - post.log_evidence, "seconds": seconds}


def main(argv=None):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--batch-sizes", default="20", help="minibatch sizes of the noisy reward (comma-separated)")
    p.add_argument("--rewards", default="full,mb,cv", help="full, mb (minibatch), cv (minibatch + control variate)")
    p.add_argument("--losses", default="tb,zvar")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-log-z", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="300 steps, one seed (a smoke run)")
    a = p.parse_args(argv)
    if a.quick:
        a.steps, a.seeds = 300, "0"
    torch.set_num_threads(a.threads)
    problem = synthetic_problem("linear", seed=0)
    post = exact_posterior_of(problem.model, problem.data)
    X, y = problem.data
    ols = torch.linalg.lstsq(X, y[:, None]).solution[:, 0]
    rewards = {}
    for kind in a.rewards.split(","):
        if kind == "full":
            rewards["full batch"] = lambda g: MinibatchLogReward.from_model(problem.model, problem.data)
        for b in (int(v) for v in a.batch_sizes.split(",")):
            if kind == "mb":
                rewards[f"minibatch {b}"] = lambda g, b=b: MinibatchLogReward.from_model(
                    problem.model, problem.data, b, g)
            if kind == "cv":
                rewards[f"minibatch {b} + control variate"] = lambda g, b=b: MinibatchLogReward.from_model(
                    problem.model, problem.data, b, g, reference=ols)
    print(f"problem: linear, 5 x 5 grid, 200 examples, log P(D) = {post.log_evidence:.3f}, "
          f"posterior perplexity {math.exp(-(post.probs * post.log_probs).sum()):.1f}; {a.steps} steps, "
          f"64 trajectories per step, lr {a.lr}, lr log Z {a.lr_log_z} (cosine to 0), {a.threads} thread(s)\n")
    # the noise each reward carries, weighted by the exact posterior (what training sees near the end)
    for name, make in rewards.items():
        r = make(torch.Generator().manual_seed(0))
        if not r.full_batch:
            sd = r.noise_variance(post.theta).sqrt()
            print(f"- {name}: sd of log R̂ averaged over P(θ|D) = {float(post.probs @ sd):.2f} nats, "
                  f"over the prior = {float(problem.model.log_prior(post.theta).exp() @ sd):.2f}")
    print("\n| reward | objective | seed | exact L1 | log Z − log P(D) (trained) | (full-data IS, 4096) | train s |"
          "\n|---|---|---:|---:|---:|---:|---:|")
    for name, make in rewards.items():
        for loss in a.losses.split(","):
            for seed in (int(s) for s in a.seeds.split(",")):
                res = train(problem, post, make(torch.Generator().manual_seed(100 + seed)), loss, a.steps, seed,
                            lr=a.lr, lr_log_z=a.lr_log_z)
                print(f"| {name} | {loss} | {seed} | {res['l1']:.3f} | {res['log_z_err']:+.3f} | "
                      f"{res['log_z_is_err']:+.3f} | {res['seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
