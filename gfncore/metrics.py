"""Exact and empirical measures of how close a sampler's terminal distribution is to R(x)/Z."""
from __future__ import annotations

import math

import torch

from .envs.base import Env, context_rows


class StateIndex:
    """Maps state rows to their positions in a fixed table of states (mixed-radix keys)."""

    def __init__(self, table: torch.Tensor):
        t = table.to(torch.int64)
        self.lo = int(t.min()) if t.numel() else 0
        self.base = (int(t.max()) - self.lo + 1) if t.numel() else 1
        if self.base ** t.shape[1] >= 2**62:
            raise ValueError("state space too large to index exactly")
        self.weights = torch.tensor([self.base ** d for d in range(t.shape[1])], dtype=torch.int64)
        keys = self.keys(table)
        self.sorted_keys, self.order = torch.sort(keys)

    def keys(self, states: torch.Tensor) -> torch.Tensor:
        return ((states.to(torch.int64) - self.lo) * self.weights).sum(-1)

    def __call__(self, states: torch.Tensor) -> torch.Tensor:
        k = self.keys(states.cpu())
        pos = torch.searchsorted(self.sorted_keys, k).clamp(max=len(self.sorted_keys) - 1)
        if not bool((self.sorted_keys[pos] == k).all()):
            raise ValueError("a state is not in the table")
        return self.order[pos]


def _context_rows(context, n: int, dev) -> torch.Tensor | None:
    if context is None:
        return None
    return context_rows(context, n, torch.get_default_dtype(), dev)


@torch.no_grad()
def exact_terminal_distribution(env: Env, policy, chunk: int = 65536, context=None) -> torch.Tensor:
    """P_T(x) of the sampler, exactly: probability pushed from s0 through the state DAG, one
    step at a time, accumulating the stop mass at each state (given a context c for a
    conditional policy). Aligned with env.all_terminal_states(); float64."""
    from .sampler import policy_logits

    S = env.all_states()
    index = StateIndex(S)
    dev = next(policy.parameters()).device
    logits = torch.cat([
        policy_logits(policy, env.encode(S[i:i + chunk]).to(dev),
                      _context_rows(context, S[i:i + chunk].shape[0], dev)).double().cpu()
        for i in range(0, max(S.shape[0], 1), chunk)])
    mask = env.forward_mask(S)
    probs = torch.softmax(logits.masked_fill(~mask, -math.inf), -1)
    stop = env.stop_action
    p_stop = probs[:, stop]
    rows, acts = mask[:, :stop].nonzero(as_tuple=True)
    child = index(env.step(S[rows], acts))
    w = probs[rows, acts]
    p = torch.zeros(S.shape[0], dtype=torch.float64)
    p[index(env.initial_states(1))] = 1.0
    term = torch.zeros_like(p)
    # no path of a DAG visits more states than it has: the bound when the environment declares none
    for _ in range((env.max_length or S.shape[0]) + 1):
        term += p * p_stop
        p = torch.zeros_like(p).index_add_(0, child, p[rows] * w)
        if not bool(p.any()):
            break
    else:
        raise ValueError(f"{env!r}: probability still flows after {(env.max_length or S.shape[0]) + 1} steps: the state "
                         f"graph has a cycle (run gfncore.envs.check_env(env))")
    x = env.all_terminal_states()
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{type(env).__name__}.all_terminal_states() returned {type(x).__name__}, not a tensor of "
                        f"states [N, {env.state_dim}]; exact metrics need every finished object")
    return term[index(x)]


def l1(p: torch.Tensor, q: torch.Tensor) -> float:
    """L1 distance sum_x |p(x) - q(x)| (in [0, 2])."""
    return float((p - q).abs().sum())


def jsd(p: torch.Tensor, q: torch.Tensor) -> float:
    """Jensen-Shannon divergence in nats (in [0, log 2])."""
    m = 0.5 * (p + q)

    def kl(a, b):
        nz = a > 0
        return float((a[nz] * (a[nz].log() - b[nz].log())).sum())

    # non-negative by definition; rounding can leave -1e-17 for equal p and q (printed "-0.0000")
    return max(0.0, 0.5 * kl(p, m) + 0.5 * kl(q, m))


def empirical_distribution(env: Env, x: torch.Tensor) -> torch.Tensor:
    """Histogram of sampled objects over env.all_terminal_states()."""
    terms = env.all_terminal_states()
    idx = StateIndex(terms)(x.cpu())
    return torch.bincount(idx, minlength=terms.shape[0]).double() / max(x.shape[0], 1)


def empirical_l1(env: Env, x: torch.Tensor, context=None) -> float:
    """L1 between the empirical distribution of samples x and R/Z (at context c when conditional)."""
    return l1(empirical_distribution(env, x), env.true_distribution(context))


def modes_found(env: Env, x: torch.Tensor) -> int:
    """Number of distinct modes (highest-reward objects) among samples x."""
    if not hasattr(env, "mode_mask") or x.shape[0] == 0:
        return 0
    m = env.mode_mask(x)
    return int(torch.unique(x[m], dim=0).shape[0])


def n_modes(env: Env) -> int:
    return int(env.mode_mask(env.all_terminal_states()).sum()) if hasattr(env, "mode_mask") else 0


def evaluate(env: Env, policy, log_z: float, samples: torch.Tensor | None = None, context=None) -> dict:
    """Exact L1, JSD and |log Z - log Z_true| of a sampler (at one context c for a conditional
    GFlowNet); modes found by the samples, and their empirical L1 where they are at least 10 per
    object (empirical_l1_samples says how many)."""
    p = exact_terminal_distribution(env, policy, context=context)
    q = env.true_distribution(context)
    true = env.true_log_z(context)
    out = {"l1": l1(p, q), "jsd": jsd(p, q), "log_z": float(log_z), "true_log_z": true,
           "log_z_error": abs(float(log_z) - true)}
    if samples is not None:
        # the L1 of an empirical histogram is dominated by the sample size when there are few
        # samples per object (10,000 samples of 4,096 objects: ~0.5 for a perfect sampler), so it
        # is reported only from 10 samples per object on, with its sample size
        if len(samples) >= 10 * q.numel():
            out["empirical_l1"] = empirical_l1(env, samples, context)
            out["empirical_l1_samples"] = len(samples)
        out["modes_found"] = modes_found(env, samples)
        out["n_modes"] = n_modes(env)
    return out


@torch.no_grad()
def importance_log_z(env: Env, policy, n: int, context=None, generator: torch.Generator | None = None,
                     log_reward=None) -> dict:
    """Importance-sampling estimate of log Z from n trajectories τ ~ P_F (at one context c for a
    conditional policy): log (1/n) Σ_τ R(x) P_B(τ|x) / P_F(τ). Z-hat is unbiased for Z (so log Z-hat
    is consistent, biased low by Jensen for small n), whatever the policy, as long as P_F covers
    R; `log_reward(x)` replaces env.log_reward (e.g. the exact full-data reward of a sampler
    trained on a noisy minibatch one). Returns {"log_z", "ess" (effective sample size of the
    weights), "n"}."""
    from .losses import log_probs
    from .sampler import Sampler

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (trajectories) must be an int >= 1, got {n!r}")
    dev = next(policy.parameters()).device
    ctx = _context_rows(context, n, dev)
    traj = Sampler(env, policy).sample(n, generator=generator, context=ctx)
    lpf, lpb, _ = log_probs(env, policy, traj)
    idx = traj.traj_index
    s = torch.zeros(n, dtype=torch.float64, device=lpf.device).index_add_(0, idx, (lpb - lpf).double())
    x = traj.terminal_states
    lr = (env.log_reward(x, None if ctx is None else ctx.to(x.device)) if log_reward is None else log_reward(x))
    w = lr.to(torch.float64).to(s.device) + s
    lw = torch.log_softmax(w, 0)
    return {"log_z": float(torch.logsumexp(w, 0)) - math.log(n), "ess": float(1.0 / lw.exp().square().sum()), "n": n}
