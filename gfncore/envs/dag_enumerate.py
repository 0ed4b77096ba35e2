"""Every DAG on d <= 5 nodes, and the exact posterior P(G | D) = R(G) / Z over them.

The number of labelled DAGs grows super-exponentially (1, 1, 3, 25, 543, 29281, 3781503 for
d = 0..6, OEIS A003024), so exact answers stop at d = 5: that is where a trained GFlowNet's
terminal distribution is compared with the truth (JSD, edge marginals, log Z).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import torch

MAX_ENUMERATED_NODES = 5


def is_dag(adj: torch.Tensor) -> torch.Tensor:
    """For adjacency matrices [..., d, d] (adj[i, j]: i -> j): True where the graph has no directed
    cycle (self-loops are cycles). bool [...]. A graph is acyclic iff its adjacency is nilpotent."""
    a = torch.as_tensor(adj).bool()
    d = a.shape[-1]
    if d == 0:
        return torch.ones(a.shape[:-2], dtype=torch.bool)
    a = a.float()
    p = a
    for _ in range(d - 1):
        p = (p @ a).clamp_(max=1.0)  # walks of length m, as 0/1
    return ~p.flatten(-2).bool().any(-1)


def graph_keys(adj: torch.Tensor) -> torch.Tensor:
    """An int64 code per graph [..., d, d]: sum of 2^(i d + j) over its edges (d <= 7)."""
    a = torch.as_tensor(adj).bool()
    d = a.shape[-1]
    if d * d > 62:
        raise ValueError(f"graph_keys needs d <= 7, got d = {d}")
    w = (2 ** torch.arange(d * d, dtype=torch.int64)).reshape(d, d)
    return (a.long() * w).flatten(-2).sum(-1)


@functools.lru_cache(maxsize=None)
def _all_dags(d: int) -> torch.Tensor:
    pairs = [(i, j) for i in range(d) for j in range(i + 1, d)]
    P = len(pairs)
    # Each unordered pair is absent, i -> j or j -> i: 3^P candidate graphs without 2-cycles.
    codes = torch.arange(3 ** P, dtype=torch.int64)
    digits = (codes[:, None] // (3 ** torch.arange(P, dtype=torch.int64))) % 3
    adj = torch.zeros(3 ** P, d, d, dtype=torch.bool)
    for p, (i, j) in enumerate(pairs):
        adj[:, i, j] = digits[:, p] == 1
        adj[:, j, i] = digits[:, p] == 2
    adj = adj[is_dag(adj)]
    # Canonical order: by number of edges, then by key; the empty graph comes first.
    keys = graph_keys(adj)
    n_edges = adj.flatten(1).sum(1)
    order = torch.argsort(n_edges * (1 << 40) + keys)
    return adj[order].contiguous()


def all_dags(d: int) -> torch.Tensor:
    """Every labelled DAG on d <= 5 nodes: bool [G, d, d], the empty graph first, then by edge count."""
    if not isinstance(d, int) or isinstance(d, bool):
        raise TypeError(f"d must be an int, got {type(d).__name__}")
    if not 1 <= d <= MAX_ENUMERATED_NODES:
        raise ValueError(f"all_dags enumerates d in [1, {MAX_ENUMERATED_NODES}] nodes, got {d} "
                         f"(d = 6 already has 3,781,503 DAGs)")
    return _all_dags(d).clone()


@dataclass
class DAGPosterior:
    """The exact posterior P(G | D) = R(G) / Z over every DAG on d nodes."""

    graphs: torch.Tensor          # bool [G, d, d]
    log_reward: torch.Tensor      # float64 [G], log R(G)
    log_z: float                  # log sum_G R(G)
    probs: torch.Tensor           # float64 [G], R(G) / Z
    edge_marginals: torch.Tensor  # float64 [d, d], P(i -> j | D)

    def __post_init__(self):
        self._keys, self._order = torch.sort(graph_keys(self.graphs))

    @property
    def num_nodes(self) -> int:
        return int(self.graphs.shape[-1])

    def index(self, adj: torch.Tensor) -> torch.Tensor:
        """Positions of graphs adj [B, d, d] in `graphs` (int64 [B]); ValueError if one is not a DAG."""
        a = torch.as_tensor(adj).bool().reshape(-1, self.num_nodes, self.num_nodes)
        k = graph_keys(a)
        pos = torch.searchsorted(self._keys, k).clamp(max=len(self._keys) - 1)
        bad = self._keys[pos] != k
        if bool(bad.any()):
            raise ValueError(f"graph {int(bad.nonzero()[0])} is not a DAG on {self.num_nodes} nodes")
        return self._order[pos]

    def empirical(self, samples: torch.Tensor) -> torch.Tensor:
        """Histogram of sampled graphs [S, d, d] over `graphs` (float64 [G], sums to 1)."""
        idx = self.index(samples)
        return torch.bincount(idx, minlength=self.graphs.shape[0]).double() / max(idx.shape[0], 1)


def dag_posterior(score, d: int | None = None) -> DAGPosterior:
    """Enumerate every DAG, score it, normalise. `score` is a CausalScore (or anything with
    num_nodes and log_score(adj [B, d, d]) -> [B]), or a callable adj -> log R with d given."""
    if d is None:
        d = int(score.num_nodes)
    fn: Callable = score.log_score if hasattr(score, "log_score") else score
    graphs = all_dags(d)
    log_r = torch.as_tensor(fn(graphs), dtype=torch.float64).reshape(-1)
    if log_r.shape[0] != graphs.shape[0]:
        raise ValueError(f"the score returned {log_r.shape[0]} values for {graphs.shape[0]} graphs")
    if not bool(torch.isfinite(log_r).all()):
        raise ValueError("the score is not finite on every DAG")
    log_z = float(torch.logsumexp(log_r, 0))
    probs = torch.exp(log_r - log_z)
    marg = (probs[:, None, None] * graphs.double()).sum(0)
    return DAGPosterior(graphs=graphs, log_reward=log_r, log_z=log_z, probs=probs, edge_marginals=marg)


def count_dags(d: int) -> int:
    """Number of labelled DAGs on d nodes by Robinson's recurrence (1973):
    a(n) = sum_{k=1}^{n} (-1)^(k+1) C(n, k) 2^(k (n - k)) a(n - k), a(0) = 1."""
    a = [1]
    for n in range(1, d + 1):
        a.append(sum((-1) ** (k + 1) * math.comb(n, k) * 2 ** (k * (n - k)) * a[n - k] for k in range(1, n + 1)))
    return a[d]


# the names before issue 16 (two ExactPosterior classes, bayes's and causal's, clashed)
ExactPosterior, exact_posterior = DAGPosterior, dag_posterior
