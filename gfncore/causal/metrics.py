"""How good a posterior over causal graphs is: against a known true graph (expected SHD, edge
AUROC, probability of its Markov equivalence class) and against the exact posterior on
enumerable d (JSD, edge-marginal RMSE and correlation).

`graphs` are adjacency tensors [S, d, d] (graphs[s, i, j]: i -> j), either samples (weights None:
each counts 1/S) or a support with probabilities `weights` [S] (e.g. DAGPosterior.graphs and
.probs), so the same functions give sample estimates and exact expectations.
"""
from __future__ import annotations

import math

import torch


def _graphs(graphs) -> torch.Tensor:
    g = torch.as_tensor(graphs).bool()
    if g.dim() == 2:
        g = g.unsqueeze(0)
    if g.dim() != 3 or g.shape[1] != g.shape[2]:
        raise ValueError(f"graphs must have shape [S, d, d], got {list(g.shape)}")
    return g


def _weights(weights, S: int) -> torch.Tensor:
    if weights is None:
        if S == 0:
            raise ValueError("no graphs given")
        return torch.full((S,), 1.0 / S, dtype=torch.float64)
    w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
    if w.shape[0] != S:
        raise ValueError(f"weights must have one entry per graph ({S}), got {w.shape[0]}")
    if bool((w < 0).any()) or not math.isclose(float(w.sum()), 1.0, rel_tol=0, abs_tol=1e-6):
        raise ValueError("weights must be non-negative and sum to 1")
    return w


def _true(true_graph, d: int) -> torch.Tensor:
    t = torch.as_tensor(true_graph).bool()
    if list(t.shape) != [d, d]:
        raise ValueError(f"true_graph must have shape [{d}, {d}], got {list(t.shape)}")
    return t


def edge_marginals(graphs, weights=None) -> torch.Tensor:
    """P(i -> j) under the distribution: float64 [d, d]."""
    g = _graphs(graphs)
    w = _weights(weights, g.shape[0])
    return (w[:, None, None] * g.double()).sum(0)


def shd(graphs, true_graph) -> torch.Tensor:
    """Structural Hamming distance of each graph to the true one: the number of node pairs whose
    edge differs (missing, extra or reversed; a reversal counts once, as in DiBS and DAG-GFlowNet).
    int64 [S]."""
    g = _graphs(graphs)
    t = _true(true_graph, g.shape[-1])
    diff = g ^ t
    pair = diff | diff.transpose(-1, -2)
    return pair.flatten(1).sum(1) // 2


def expected_shd(graphs, true_graph, weights=None) -> float:
    """E[SHD(G, G*)] under the distribution."""
    g = _graphs(graphs)
    return float((_weights(weights, g.shape[0]) * shd(g, true_graph).double()).sum())


def expected_edges(graphs, weights=None) -> float:
    """E[|E|] under the distribution."""
    g = _graphs(graphs)
    return float((_weights(weights, g.shape[0]) * g.flatten(1).sum(1).double()).sum())


def n_distinct(graphs) -> int:
    """How many different graphs are among the samples."""
    g = _graphs(graphs)
    return int(torch.unique(g.flatten(1), dim=0).shape[0]) if g.shape[0] else 0


def _off_diagonal(m: torch.Tensor) -> torch.Tensor:
    d = m.shape[-1]
    return m[~torch.eye(d, dtype=torch.bool)]


def edge_auroc(marginals, true_graph) -> float:
    """Area under the ROC curve of the edge marginals P(i -> j) as a classifier of the true edges,
    over the d (d - 1) ordered pairs (Mann-Whitney statistic; ties count one half)."""
    m = torch.as_tensor(marginals, dtype=torch.float64)
    t = _true(true_graph, m.shape[-1])
    s, y = _off_diagonal(m), _off_diagonal(t)
    pos, neg = s[y], s[~y]
    if pos.numel() == 0 or neg.numel() == 0:
        raise ValueError("edge AUROC needs a true graph with at least one edge and one non-edge")
    greater = (pos[:, None] > neg[None, :]).double().sum()
    ties = (pos[:, None] == neg[None, :]).double().sum()
    return float((greater + 0.5 * ties) / (pos.numel() * neg.numel()))


def edge_marginal_rmse(a, b) -> float:
    """Root-mean-square difference of two edge-marginal matrices over the d (d - 1) off-diagonal pairs."""
    x, y = _pair(a, b)
    return float(((x - y) ** 2).mean().sqrt())


def edge_marginal_corr(a, b) -> float:
    """Pearson correlation of two edge-marginal matrices over the off-diagonal pairs (NaN when
    either is constant: the correlation is undefined)."""
    x, y = _pair(a, b)
    x, y = x - x.mean(), y - y.mean()
    den = float(x.norm() * y.norm())
    return float((x * y).sum()) / den if den > 0 else math.nan


def _pair(a, b):
    x = torch.as_tensor(a, dtype=torch.float64)
    y = torch.as_tensor(b, dtype=torch.float64)
    if x.shape != y.shape or x.dim() != 2 or x.shape[0] != x.shape[1]:
        raise ValueError(f"edge marginals must be two [d, d] matrices, got {list(x.shape)} and {list(y.shape)}")
    return _off_diagonal(x), _off_diagonal(y)


def jsd(p, q) -> float:
    """Jensen-Shannon divergence (nats, in [0, log 2]) between two distributions over the same
    enumerated graphs (e.g. DAGPosterior.probs and a sampler's exact terminal distribution)."""
    from ..metrics import jsd as _jsd

    p = torch.as_tensor(p, dtype=torch.float64).reshape(-1)
    q = torch.as_tensor(q, dtype=torch.float64).reshape(-1)
    if p.shape != q.shape:
        raise ValueError(f"p and q must be over the same graphs, got {p.shape[0]} and {q.shape[0]} entries")
    for name, v in (("p", p), ("q", q)):
        if bool((v < 0).any()) or not math.isclose(float(v.sum()), 1.0, rel_tol=0, abs_tol=1e-6):
            raise ValueError(f"{name} must be a probability vector (non-negative, summing to 1)")
    return _jsd(p, q)


# ---------------------------------------------------------------------------------------------
# Markov equivalence (Verma & Pearl 1990): same skeleton and same v-structures.


def skeleton(graphs) -> torch.Tensor:
    """Undirected adjacency of each graph: bool [S, d, d], symmetric."""
    g = _graphs(graphs)
    return g | g.transpose(-1, -2)


def v_structures(graphs) -> torch.Tensor:
    """Immoralities i -> j <- k with i, k not adjacent: bool [S, d, d, d] indexed [s, i, j, k],
    symmetric in (i, k)."""
    g = _graphs(graphs)
    d = g.shape[-1]
    sk = skeleton(g)
    v = g[:, :, :, None] & g.transpose(-1, -2)[:, None, :, :]  # [s, i, j, k]: i -> j and k -> j
    nonadj = ~sk & ~torch.eye(d, dtype=torch.bool)             # [s, i, k]
    return v & nonadj[:, :, None, :]


def markov_equivalent(graphs, other) -> torch.Tensor:
    """Whether each graph is Markov equivalent to `other` ([d, d], or [S, d, d] pairwise): bool [S]."""
    g = _graphs(graphs)
    o = _graphs(other).expand(g.shape[0], -1, -1)
    same_skeleton = (skeleton(g) == skeleton(o)).flatten(1).all(1)
    same_v = (v_structures(g) == v_structures(o)).flatten(1).all(1)
    return same_skeleton & same_v


def mec_probability(graphs, true_graph, weights=None) -> float:
    """Probability of the true graph's Markov equivalence class under the distribution."""
    g = _graphs(graphs)
    t = _true(true_graph, g.shape[-1])
    return float((_weights(weights, g.shape[0]) * markov_equivalent(g, t).double()).sum())
