"""Expected information gain about the causal graph of an experiment e:

    EIG(e | D) = I(Y_e ; G | D) = E_{G ~ P(G|D), y ~ P(y|e,G,D)} [ log P(y|e,G,D) - log P(y|e,D) ],
    P(y | e, D) = sum_G P(G | D) P(y | e, G, D),

estimated two ways.

- `eig_support`: P(G | D) given as weights on a support of graphs (every DAG with the exact
  posterior, or with a GFlowNet's exact terminal distribution P_T; or the distinct graphs a sampler
  drew). The inner sum over G' is exact on the support; the outer expectation is a Monte-Carlo
  average over y ~ P(y | e, D), of the Rao-Blackwellised form
  E_y KL(P(G | D, e, y) || P(G | D)) (which equals the definition and never goes negative), with
  its standard error. The definition's own integrand, averaged over the same draws, is returned too.
- `eig_nested_mc`: the reference nested Monte Carlo of the definition: N outer draws (G_n, y_n)
  and, for each, M fresh inner graphs G'_{n,m} ~ P(G | D) estimating P(y_n | e, D) by their mean.
  Its bias is O(1/M) (upwards: log of a mean underestimates on average); the standard error is
  over the N independent terms.

Both evaluate log P(y | e, G, D) through families: one table of family terms per draw y (the
distinct (node, parents) pairs of the support, gfncore.design.predictive), summed per graph.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from .experiments import Experiment
from .predictive import Families, NodeStats, ScoreModel, base_log_marginal, predictive_log_prob, sample_predictive


class GraphSupport:
    """A distribution over DAGs on d nodes given by graphs [S, d, d] and normalised log weights [S]
    (-inf: weight 0), with the distinct families of its graphs indexed once."""

    def __init__(self, graphs: torch.Tensor, log_weights: torch.Tensor | None = None, families=None):
        g = torch.as_tensor(graphs).bool()
        if g.dim() != 3 or g.shape[1] != g.shape[2] or g.shape[0] == 0:
            raise ValueError(f"graphs must have shape [S, d, d] with S >= 1, got {list(g.shape)}")
        S = g.shape[0]
        if log_weights is None:
            lw = torch.full((S,), -math.log(S), dtype=torch.float64)
        else:
            lw = torch.as_tensor(log_weights, dtype=torch.float64).reshape(-1)
            if lw.shape[0] != S:
                raise ValueError(f"log_weights must have one entry per graph ({S}), got {lw.shape[0]}")
            if bool(torch.isnan(lw).any()) or bool((lw == math.inf).any()):
                raise ValueError("log_weights must be finite or -inf")
            lw = lw - torch.logsumexp(lw, 0)
        self.graphs, self.log_weights = g, lw
        if families is None:
            families = Families.of_graphs(g)
        self.families, self.family_ids = families

    @classmethod
    def from_probs(cls, graphs, probs) -> "GraphSupport":
        p = torch.as_tensor(probs, dtype=torch.float64).reshape(-1)
        if bool((p < 0).any()) or not float(p.sum()) > 0:
            raise ValueError("probs must be non-negative with a positive sum")
        return cls(graphs, p.log())

    @classmethod
    def from_samples(cls, samples, log_reward=None) -> "GraphSupport":
        """The distinct sampled graphs, weighted by their counts (the sampler's empirical
        distribution) or, given log_reward(adj [S, d, d]) -> [S], by the reward renormalised on them."""
        s = torch.as_tensor(samples).bool()
        d = s.shape[-1]
        uniq, counts = torch.unique(s.flatten(1), dim=0, return_counts=True)
        g = uniq.view(-1, d, d)
        if log_reward is None:
            return cls(g, counts.double().log())
        return cls(g, torch.as_tensor(log_reward(g), dtype=torch.float64))

    @property
    def d(self) -> int:
        return int(self.graphs.shape[-1])

    @property
    def probs(self) -> torch.Tensor:
        return self.log_weights.exp()

    def index_of(self, adj) -> int:
        """Position of one graph [d, d] in the support; ValueError if it is not there."""
        a = torch.as_tensor(adj).bool()
        hit = (self.graphs == a).flatten(1).all(1).nonzero().flatten()
        if hit.numel() == 0:
            raise ValueError("the graph is not in the support")
        return int(hit[0])

    def reweighted(self, log_lik: torch.Tensor) -> "GraphSupport":
        """The posterior after more data: weights times their likelihood log_lik [S], renormalised."""
        return GraphSupport(self.graphs, self.log_weights + log_lik, (self.families, self.family_ids))

    def edge_marginals(self) -> torch.Tensor:
        return (self.probs[:, None, None] * self.graphs.double()).sum(0)

    def entropy(self) -> float:
        """H(P) in nats over the support."""
        lw = self.log_weights
        live = torch.isfinite(lw)
        return float(-(lw[live].exp() * lw[live]).sum())

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Graph indices [n] drawn by weight."""
        return torch.multinomial(self.probs, n, replacement=True, generator=generator)

    def log_likelihood(self, F: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Sum of family terms F [B, U] over each graph's families: [B, S] (or [B, len(ids)] for the
        graphs ids)."""
        fid = self.family_ids if ids is None else self.family_ids[ids]
        S, U = fid.shape[0], len(self.families)
        if ids is None and S * U <= (1 << 22):
            # one GEMM with the 0/1 graph-family incidence: several times faster than gathering
            if getattr(self, "_incidence", None) is None:
                inc = torch.zeros(S, U, dtype=torch.float64)
                inc[torch.arange(S).repeat_interleave(self.d), fid.reshape(-1)] = 1.0
                self._incidence = inc
            return F @ self._incidence.T
        B = F.shape[0]
        out = torch.empty(B, S, dtype=torch.float64)
        flat = fid.reshape(-1)
        step = max(1, (1 << 22) // max(flat.numel(), 1))
        for i in range(0, B, step):
            out[i:i + step] = F[i:i + step][:, flat].view(-1, S, self.d).sum(-1)
        return out


@dataclass
class EIGEstimate:
    """Estimates of the expected information gain (nats) of each candidate experiment."""

    values: torch.Tensor    # float64 [C]
    stderr: torch.Tensor    # float64 [C]
    method: str
    outer: int
    inner: int | None = None          # nested MC: inner graphs per outer draw
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"method": self.method, "values": self.values.tolist(), "stderr": self.stderr.tolist(),
                "outer": self.outer, "inner": self.inner, "seconds": self.seconds}


def _check(experiments: Sequence[Experiment], d: int) -> list[Experiment]:
    exps = list(experiments)
    if not exps:
        raise ValueError("no candidate experiments")
    for e in exps:
        if not isinstance(e, Experiment):
            raise TypeError(f"candidates must be Experiment objects, got {type(e).__name__}")
        e.check(d)
    return exps


def information_gain_draws(model: ScoreModel, stats: NodeStats, support: GraphSupport, e: Experiment, draws: int,
                           generator: torch.Generator, base: torch.Tensor | None = None,
                           chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`draws` draws y ~ P(y | e, D) (G by weight, then y ~ P(y | e, G, D)) and, for each, the
    information gain KL(P(G | D, e, y) || P(G | D)) over the support (float64 [draws], >= 0) and the
    definition's integrand log P(y|e,G,D) - log P(y|e,D) at the drawn G."""
    d = support.d
    mask = e.mask(d)
    if base is None:
        base = base_log_marginal(model, support.families, stats)
    lw = support.log_weights
    live = torch.isfinite(lw)
    sub = support if bool(live.all()) else GraphSupport(support.graphs[live], lw[live])
    lw = sub.log_weights
    step = chunk or max(1, (1 << 21) // sub.graphs.shape[0])
    kls, ints = [], []
    for i in range(0, draws, step):
        m = min(step, draws - i)
        idx = sub.sample(m, generator)
        y = sample_predictive(model, stats, sub.graphs[idx], e.n, mask, e.value, e.std, generator)
        F = predictive_log_prob(model, sub.families, stats, y, mask, base=base if sub is support else None)
        ll = sub.log_likelihood(F)                                          # [m, S]
        lp = ll + lw
        top = lp.max(1, keepdim=True).values
        q = (lp - top).exp_()                                               # one exp for both uses
        tot = q.sum(1)
        lse = top.squeeze(1) + tot.log()                                    # log P(y | e, D)
        # KL(P(G|D,y) || P(G|D)) = sum_G P(G|D,y) log P(y|G,D) - log P(y|D)
        kls.append(((q * ll).sum(1) / tot - lse).clamp_min(0.0))
        ints.append(ll.gather(1, idx[:, None]).squeeze(1) - lse)
    return torch.cat(kls), torch.cat(ints)


def eig_support(model: ScoreModel, stats: NodeStats, support: GraphSupport, experiments: Sequence[Experiment],
                outer: int = 1024, generator: torch.Generator | None = None, method: str = "support") -> EIGEstimate:
    """EIG of each experiment with P(G | D) = the support's weights, the inner sum exact on the
    support and `outer` Monte-Carlo draws of y (Rao-Blackwellised: the mean information gain)."""
    exps = _check(experiments, support.d)
    if outer < 2:
        raise ValueError(f"outer must be >= 2 (the standard error needs two draws), got {outer}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    base = base_log_marginal(model, support.families, stats)
    vals, ses, dvals, dses = [], [], [], []
    for e in exps:
        kl, integrand = information_gain_draws(model, stats, support, e, outer, gen, base)
        vals.append(kl.mean())
        ses.append(kl.std() / math.sqrt(outer))
        dvals.append(integrand.mean())
        dses.append(integrand.std() / math.sqrt(outer))
    return EIGEstimate(torch.stack(vals), torch.stack(ses), method, outer, None, time.perf_counter() - t0,
                       {"definition": torch.stack(dvals), "definition_stderr": torch.stack(dses)})


def eig_nested_mc(model: ScoreModel, stats: NodeStats, support: GraphSupport, experiments: Sequence[Experiment],
                  outer: int = 256, inner: int = 256, generator: torch.Generator | None = None) -> EIGEstimate:
    """Nested Monte Carlo: graphs drawn from the support by weight (for a sampler's draws, use
    GraphSupport.from_samples: drawing by count is drawing a sample uniformly); N = outer draws
    (G_n, y_n), each with M = inner fresh graphs for log P(y_n | e, D)."""
    exps = _check(experiments, support.d)
    if outer < 2 or inner < 1:
        raise ValueError(f"nested MC needs outer >= 2 and inner >= 1, got outer={outer}, inner={inner}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    d = support.d
    vals, ses = [], []
    for e in exps:
        mask = e.mask(d)
        own = support.sample(outer, gen)                              # [N]
        inn = support.sample(outer * inner, gen).view(outer, inner)   # [N, M]
        y = sample_predictive(model, stats, support.graphs[own], e.n, mask, e.value, e.std, gen)
        # only the families of the graphs drawn
        used = torch.unique(torch.cat([own, inn.reshape(-1)]))
        fams = torch.unique(support.family_ids[used].reshape(-1))
        remap = torch.full((len(support.families),), -1, dtype=torch.int64)
        remap[fams] = torch.arange(fams.shape[0])
        sub = Families(support.families.nodes[fams], support.families.parents[fams])
        F = predictive_log_prob(model, sub, stats, y, mask)            # [N, U']
        ids = remap[support.family_ids]                                # [S, d], -1 where unused
        ll_own = F.gather(1, ids[own]).sum(-1)                         # [N]
        ll_in = F.gather(1, ids[inn].view(outer, -1)).view(outer, inner, d).sum(-1)
        t = ll_own - (torch.logsumexp(ll_in, 1) - math.log(inner))
        vals.append(t.mean())
        ses.append(t.std() / math.sqrt(outer))
    return EIGEstimate(torch.stack(vals), torch.stack(ses), "nested_mc", outer, inner, time.perf_counter() - t0)


# (d, max_parents) -> (every DAG, its family index): the same for every data set, and indexing the
# families of 29,281 graphs (torch.unique over rows) cost more than scoring them on d = 5
_ALL_DAGS: dict = {}


def exact_support(model: ScoreModel, data, interventions=None, max_parents: int | None = None) -> GraphSupport:
    """Every DAG on d <= 5 nodes (with at most max_parents parents per node) with the exact posterior
    P(G | D) of the model (the compiled score), in the order of gfncore.causal.all_dags."""
    from ..causal.enumerate import all_dags

    x = torch.as_tensor(data, dtype=torch.float64)
    cap = max_parents if max_parents is not None and max_parents >= 0 else None
    key = (int(x.shape[1]), cap)
    if key not in _ALL_DAGS:
        graphs = all_dags(key[0])
        if cap is not None:
            graphs = graphs[(graphs.sum(1) <= cap).all(-1)]
        _ALL_DAGS[key] = (graphs, Families.of_graphs(graphs))
    graphs, families = _ALL_DAGS[key]
    log_r = model.causal_score(x, interventions).log_score(graphs)
    if not bool(torch.isfinite(log_r).all()):
        raise ValueError("the score is not finite on every DAG")
    return GraphSupport(graphs.clone(), log_r, families)
