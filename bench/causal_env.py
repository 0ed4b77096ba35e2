"""DAG-environment rollout throughput: transitions per second of the compiled DAG environment
(csrc/envs/dag.h through the recording sampler) against the plain-PyTorch DAG environment
(gfncore.causal.reference_env.PyDAG through the generic sampler), in the same run.

    python -m bench.causal_env                      # d = 20 and 50, BGe, N = 100, 1 thread
    python -m bench.causal_env --dims 20 --batch 256 --threads 2

Workload: a batch of trajectories from s0 under a fixed policy that picks a legal edge uniformly
and stops with probability d / (n + d) at a state with n legal edges (so graphs have about d
edges, as posteriors of Erdos-Renyi data with d expected edges do), then what modified DB needs
from the environment:
the reward of every visited state relative to its trajectory's start, from cached BGe delta
scores (two local scores per transition; the compiled environment's log_reward_delta query, the
reference's CausalScore.delta_score_from_parents), and log R of the finished graphs. The policy
is a constant (no network), so the figures are those of the environments plus the sampling rule
(the same compiled op on both sides) and the per-step loop.

Both sides draw the same Philox numbers: the benchmark first checks that they produce identical
trajectories and equal rewards, then warms the score caches and times rounds alternately (median
of each, and the median of the per-round ratios). "steps" are transitions: rows of the packed
trajectories, stop rows included.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch


class UniformEdgePolicy(torch.nn.Module):
    """Constant logits: 0 for every edge and log d for stop, so a state with n legal edges stops
    with probability d / (n + d), about 1 / d while the graph is sparse. One slice per step: the
    policy costs next to nothing, so the table measures the environments and the sampling rule."""

    def __init__(self, d: int, batch: int):
        super().__init__()
        self._device = torch.nn.Parameter(torch.zeros(0), requires_grad=False)  # the samplers read its device
        self.logits = torch.zeros(batch, d * d + 1)
        self.logits[:, -1] = math.log(d)

    def forward_logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.logits[: features.shape[0]]


def pipeline(env, policy, batch: int, seed: int):
    """One batch: rollout, relative state rewards for modified DB (deltas), terminal rewards."""
    from gfncore.losses import _relative_state_rewards
    from gfncore.sampler import Sampler

    sampler = Sampler(env, policy)

    def run():
        traj = sampler.sample(batch, seed=seed)
        rel = _relative_state_rewards(env, traj)
        return traj, rel

    return run


def bench(d: int, batch: int, rows: int, rounds: int, seed: int = 0) -> dict:
    from gfncore.causal import CausalScore, sample_erdos_renyi_sem
    from gfncore.causal.reference_env import PyDAG
    from gfncore.envs import DAG

    cd = sample_erdos_renyi_sem(d, rows, expected_edges=d, seed=seed)
    env = DAG(data=cd)
    ref = PyDAG(d, CausalScore(cd), check=False)
    policy = UniformEdgePolicy(d, batch)
    fast, slow = pipeline(env, policy, batch, seed), pipeline(ref, policy, batch, seed)

    # Correctness first: the same trajectories and the same rewards (this also warms both caches).
    (t1, r1), (t2, r2) = fast(), slow()
    assert torch.equal(t1.states, t2.states) and torch.equal(t1.actions, t2.actions), "trajectories differ"
    assert torch.equal(t1.offsets, t2.offsets)
    assert torch.allclose(r1, r2, rtol=1e-10, atol=1e-8), float((r1 - r2).abs().max())
    assert torch.allclose(t1.log_reward.double(), t2.log_reward.double(), rtol=1e-6)
    # and the deltas are differences of whole-graph scores
    lr = env.log_reward_state(t1.states)
    start = lr[t1.offsets[:-1]][t1.traj_index]
    assert torch.allclose(r1, lr - start, rtol=1e-9, atol=1e-6)
    T = t1.T

    times = {"gfncore": [], "plain PyTorch": []}
    for _ in range(rounds):
        for name, fn in (("gfncore", fast), ("plain PyTorch", slow)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    ratios = [s / f for f, s in zip(times["gfncore"], times["plain PyTorch"])]
    return {"d": d, "batch": batch, "transitions": T, "mean_edges": (T - batch) / batch,
            "gfncore_s": statistics.median(times["gfncore"]), "plain_s": statistics.median(times["plain PyTorch"]),
            "ratio": statistics.median(ratios)}


def main(argv=None):
    import gfncore

    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[20, 50])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rows", type=int, default=100, help="samples N in the data")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    gfncore._C.set_num_threads(a.threads)
    out = [bench(d, a.batch, a.rows, a.rounds) for d in a.dims]
    print(f"torch {torch.__version__}, {a.threads} thread(s), BGe, N = {a.rows}, batch {a.batch}, median of "
          f"{a.rounds} alternating rounds, load average {os.getloadavg()[0]:.1f}")
    print("| d | transitions / batch | mean edges | gfncore steps/s | plain-PyTorch steps/s | gfncore / plain |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in out:
        print(f"| {r['d']} | {r['transitions']} | {r['mean_edges']:.1f} | {r['transitions'] / r['gfncore_s']:,.0f} | "
              f"{r['transitions'] / r['plain_s']:,.0f} | {r['ratio']:.1f}x |")
    return out


if __name__ == "__main__":
    main()
