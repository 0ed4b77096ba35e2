"""The reward of a causal-graph GFlowNet: log R(G) = log P(G) + sum_j LocalScore(j, Pa_j).

`CausalScore` wraps the compiled score (csrc/causal/scores.h): BGe or linear-Gaussian marginal
likelihood, a modular graph prior, interventional rows, and a thread-safe cache of local scores.
`ReferenceScore` is the same model written out in numpy from the formulas (dense matrices, no
cache, no shared code with the C++), for tests and as the baseline of bench/causal_scores.py.

Graphs are adjacency matrices, adj[..., i, j] = True when i -> j (so column j holds Pa_j).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from .. import _C
from .data import CausalData, intervention_mask


def _as_mask(x, name: str) -> torch.Tensor:
    """bool/uint8/integer 0-1 array -> contiguous CPU uint8 (or bool) tensor the binding reads."""
    t = torch.as_tensor(x)
    if t.dtype.is_floating_point or t.dtype.is_complex:
        raise TypeError(f"{name} must be a bool or integer 0/1 array, got {t.dtype}")
    if t.dtype not in (torch.bool, torch.uint8):
        if t.numel() and not bool(((t == 0) | (t == 1)).all()):
            raise ValueError(f"{name} must hold only 0 and 1")
        t = t.to(torch.uint8)
    return t.cpu().contiguous()


def _as_index(x, name: str, n: int) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer node ids, got {t.dtype}")
    t = t.to(torch.int64).cpu().reshape(-1).contiguous()
    if t.shape[0] != n:
        raise ValueError(f"{name} must have {n} entries (one per graph), got {t.shape[0]}")
    return t


class CausalScore:
    """The log reward log R(G) of causal graphs G: log P(G) + log P(D | G), from data D.

    kind: "bge" (Geiger & Heckerman; alpha_mu, alpha_w = d + 2 by default, mean_prior = 0) or
    "lingauss" (x_j | x_Pa ~ N(weight_mean X_Pa 1, noise_var I + weight_var X_Pa X_Pa^T); no
    intercept, so centre the data). prior: "uniform"; "erdos_renyi" (every ordered pair an edge
    with probability edge_prob); "edge" (log P(G) = -edge_penalty |E|, DAG-GFlowNet's EdgePrior
    with beta = exp(-edge_penalty)).

    interventions: None (observational), a bool [N, d] mask (True where the node was set by a
    perfect intervention in that row), or one iterable of node ids / names per row. Node j's local
    score uses only the rows where j was not intervened on.

    d > 64 nodes needs multiword=True (up to _C.causal_max_nodes).
    """

    def __init__(self, data, kind: str = "bge", *, interventions=None, prior: str = "uniform",
                 node_names: Sequence[str] | None = None, alpha_mu: float = 1.0, alpha_w: float | None = None,
                 mean_prior=None, noise_var: float = 0.1, weight_var: float = 1.0, weight_mean: float = 0.0,
                 edge_prob: float | None = None, edge_penalty: float = 1.0, cache: bool = True,
                 cache_capacity: int = 1 << 22, multiword: bool = False):
        if isinstance(data, CausalData):
            if interventions is None:
                interventions = data.interventions
            node_names = node_names if node_names is not None else data.node_names
            data = data.data
        x = torch.as_tensor(data)
        if not x.dtype.is_floating_point:
            if x.dtype == torch.bool or x.dtype.is_complex:
                raise TypeError(f"data must be a float array [N, d], got {x.dtype}")
            x = x.to(torch.float64)
        x = x.detach().cpu().contiguous()
        if x.dim() != 2:
            raise ValueError(f"data must have shape [N, d] (rows = samples, columns = nodes), got {list(x.shape)}")
        n, d = x.shape
        self.node_names = list(node_names) if node_names is not None else [str(i) for i in range(d)]
        if len(self.node_names) != d:
            raise ValueError(f"node_names must have one name per column of data ({d}), got {len(self.node_names)}")
        mask = None
        if interventions is not None:
            mask = intervention_mask(interventions, n, self.node_names)
        if mean_prior is not None:
            mean_prior = [float(v) for v in torch.as_tensor(mean_prior, dtype=torch.float64).reshape(-1)]
        self.kind = kind
        self.prior = prior
        self.interventions = mask
        self.data = x  # kept so that an environment can rebuild the same score (gfncore.envs.DAG)
        self.options = dict(alpha_mu=float(alpha_mu), alpha_w=alpha_w, mean_prior=mean_prior, noise_var=float(noise_var),
                            weight_var=float(weight_var), weight_mean=float(weight_mean), edge_prob=edge_prob,
                            edge_penalty=float(edge_penalty), cache=bool(cache), cache_capacity=int(cache_capacity),
                            multiword=bool(multiword))
        self._c = _C.CausalScore(kind, x, mask, prior=prior, alpha_mu=float(alpha_mu), alpha_w=alpha_w,
                                 mean_prior=mean_prior, noise_var=float(noise_var), weight_var=float(weight_var),
                                 weight_mean=float(weight_mean), edge_prob=edge_prob,
                                 edge_penalty=float(edge_penalty), cache=bool(cache),
                                 cache_capacity=int(cache_capacity), multiword=bool(multiword))

    @property
    def num_nodes(self) -> int:
        return self._c.num_nodes

    @property
    def num_rows(self) -> int:
        return self._c.num_rows

    @property
    def config(self) -> dict:
        """Every hyperparameter, defaults filled in (alpha_w, mean_prior)."""
        return dict(self._c.config())

    def rows_per_node(self) -> list[int]:
        """How many rows score each node's family (those where it was not intervened on)."""
        return list(self._c.rows_per_node())

    def log_score(self, adj) -> torch.Tensor:
        """log R(G) for graphs adj [B, d, d] (or one [d, d]): float64 [B] (or a scalar)."""
        a = _as_mask(adj, "adj")
        single = a.dim() == 2
        if single:
            a = a.unsqueeze(0)
        out = torch.empty(a.shape[0] if a.dim() == 3 else 0, dtype=torch.float64)
        self._c.log_score(a, out)
        return out[0] if single else out

    def log_prior(self, adj) -> torch.Tensor:
        """log P(G) alone (the prior's share of log_score): float64 [B]."""
        a = torch.as_tensor(adj).bool()
        terms = torch.tensor(self._c.log_prior_terms(), dtype=torch.float64)
        return terms[a.sum(-2).long()].sum(-1)

    def local_score(self, nodes, parents, use_cache: bool = True) -> torch.Tensor:
        """LocalScore(j, Pa) (marginal likelihood of x_j given x_Pa, plus the prior's share) for
        node ids nodes [B] and parent masks parents [B, d]: float64 [B]."""
        p = _as_mask(parents, "parents")
        if p.dim() == 1:
            p = p.unsqueeze(0)
        j = _as_index(nodes, "nodes", p.shape[0])
        out = torch.empty(j.shape[0], dtype=torch.float64)
        self._c.local_scores(j, p, out, use_cache)
        return out

    def delta_score(self, adj, sources, targets) -> torch.Tensor:
        """log R(G + i->j) - log R(G) = LocalScore(j, Pa_j + i) - LocalScore(j, Pa_j) for graphs adj
        [B, d, d] and edges sources[b] -> targets[b] not yet in adj[b]: float64 [B]."""
        a = _as_mask(adj, "adj")
        if a.dim() == 2:
            a = a.unsqueeze(0)
        B = a.shape[0] if a.dim() == 3 else 0
        out = torch.empty(B, dtype=torch.float64)
        self._c.delta_scores(a, _as_index(sources, "sources", B), _as_index(targets, "targets", B), out)
        return out

    def delta_score_from_parents(self, targets, parents, sources) -> torch.Tensor:
        """The same delta scores from the parent masks of the targets before the edge, parents
        [B, d] (parents[b] = Pa(targets[b])): what a DAG environment asks, without whole graphs."""
        p = _as_mask(parents, "parents")
        if p.dim() == 1:
            p = p.unsqueeze(0)
        B = p.shape[0]
        out = torch.empty(B, dtype=torch.float64)
        self._c.delta_scores_parents(_as_index(targets, "targets", B), p, _as_index(sources, "sources", B), out)
        return out

    def cache_stats(self) -> dict:
        """Local-score cache counters: enabled, hits, misses, entries, evictions."""
        return dict(self._c.cache_stats())

    def clear_cache(self) -> None:
        self._c.clear_cache()


# ---------------------------------------------------------------------------------------------
# Reference: the same model from the formulas, in numpy float64, one family at a time.


def bge_posterior_scatter(x, *, alpha_mu: float = 1.0, alpha_w: float | None = None, mean_prior=None):
    """The BGe posterior scatter matrix R = T + S_N + (N alpha_mu / (N + alpha_mu)) (nu - xbar)(nu - xbar)^T
    of rows x [N, d] (N may be 0), with T = t I, t = alpha_mu (alpha_w - d - 1) / (alpha_mu + 1).
    Returns (R, t, N) as numpy float64."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    N, d = x.shape
    aw = float(d + 2 if alpha_w is None else alpha_w)
    am = float(alpha_mu)
    nu = np.zeros(d) if mean_prior is None else np.asarray(mean_prior, dtype=np.float64)
    t = am * (aw - d - 1) / (am + 1)
    R = t * np.eye(d)
    if N > 0:
        xbar = x.mean(0)
        xc = x - xbar
        R = R + xc.T @ xc + (N * am / (N + am)) * np.outer(nu - xbar, nu - xbar)
    return R, t, N


def bge_local_score_from_scatter(R, t: float, N: int, node: int, parents: Sequence[int], *, alpha_mu: float = 1.0,
                                 alpha_w: float | None = None) -> float:
    """log P(x_node | x_parents) under BGe, literally eq. (19) of Kuipers, Moffa & Heckerman (2014)
    with T = t I: ratios of Gamma functions and of determinants of T and R over {node} + parents
    (two slogdets per family, as DAG-GFlowNet's scores/bge_score.py)."""
    import numpy as np

    d = R.shape[0]
    aw = float(d + 2 if alpha_w is None else alpha_w)
    am = float(alpha_mu)
    P = list(parents)
    Y = [node] + P
    k = len(P)

    def logdet(idx):
        if not idx:
            return 0.0
        sign, ld = np.linalg.slogdet(R[np.ix_(idx, idx)])
        if sign <= 0:
            raise ValueError("BGe scatter submatrix is not positive definite")
        return ld

    return (0.5 * (math.log(am) - math.log(N + am))
            + math.lgamma(0.5 * (N + aw - d + k + 1)) - math.lgamma(0.5 * (aw - d + k + 1))
            - 0.5 * N * math.log(math.pi)
            + 0.5 * (aw - d + k + 1) * len(Y) * math.log(t) - 0.5 * (aw - d + k) * k * math.log(t)
            + 0.5 * (N + aw - d + k) * logdet(P) - 0.5 * (N + aw - d + k + 1) * logdet(Y))


def bge_local_score_reference(x, node: int, parents: Sequence[int], *, alpha_mu: float = 1.0,
                              alpha_w: float | None = None, mean_prior=None) -> float:
    """log P(x_node | x_parents) under BGe from the rows x [N, d] scored for this node."""
    R, t, N = bge_posterior_scatter(x, alpha_mu=alpha_mu, alpha_w=alpha_w, mean_prior=mean_prior)
    return bge_local_score_from_scatter(R, t, N, node, parents, alpha_mu=alpha_mu, alpha_w=alpha_w)


def lingauss_local_score_reference(x, node: int, parents: Sequence[int], *, noise_var: float = 0.1,
                                   weight_var: float = 1.0, weight_mean: float = 0.0) -> float:
    """log N(x_node; weight_mean X_Pa 1, noise_var I + weight_var X_Pa X_Pa^T), the N x N Gaussian
    density evaluated directly (Cholesky of the full covariance)."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    N = x.shape[0]
    if N == 0:
        return 0.0
    y = x[:, node]
    A = x[:, list(parents)]
    cov = noise_var * np.eye(N) + weight_var * A @ A.T
    r = y - weight_mean * A.sum(1)
    L = np.linalg.cholesky(cov)
    z = np.linalg.solve(L, r)
    return float(-0.5 * (N * math.log(2 * math.pi) + 2 * np.log(np.diag(L)).sum() + z @ z))


def log_prior_reference(adj, prior: str = "uniform", *, edge_prob: float | None = None,
                        edge_penalty: float = 1.0) -> float:
    """log P(G) (up to the normalising constant over DAGs) of one adjacency matrix [d, d]."""
    import numpy as np

    a = np.asarray(adj, dtype=bool)
    d = a.shape[0]
    e = int(a.sum())
    if prior == "uniform":
        return 0.0
    if prior == "erdos_renyi":
        return e * math.log(edge_prob) + (d * (d - 1) - e) * math.log1p(-edge_prob)
    if prior == "edge":
        return -edge_penalty * e
    raise ValueError(f"unknown prior {prior!r}")


class ReferenceScore:
    """Plain-numpy twin of CausalScore (same arguments): per-node row subsets, dense formulas,
    no cache. Slow by design; the tests and the benchmark compare against it."""

    def __init__(self, data, kind: str = "bge", *, interventions=None, prior: str = "uniform",
                 node_names: Sequence[str] | None = None, alpha_mu: float = 1.0, alpha_w: float | None = None,
                 mean_prior=None, noise_var: float = 0.1, weight_var: float = 1.0, weight_mean: float = 0.0,
                 edge_prob: float | None = None, edge_penalty: float = 1.0):
        import numpy as np

        if isinstance(data, CausalData):
            if interventions is None:
                interventions = data.interventions
            node_names = node_names if node_names is not None else data.node_names
            data = data.data
        x = torch.as_tensor(data).double().cpu().numpy()
        n, d = x.shape
        names = list(node_names) if node_names is not None else [str(i) for i in range(d)]
        mask = np.zeros((n, d), dtype=bool)
        if interventions is not None:
            mask = intervention_mask(interventions, n, names).numpy()
        self.rows = [x[~mask[:, j]] for j in range(d)]
        self.kind, self.prior = kind, prior
        if kind == "bge":  # per node: its scatter matrix, from its own rows (no sharing between nodes)
            self.scatter = [bge_posterior_scatter(r, alpha_mu=alpha_mu, alpha_w=alpha_w, mean_prior=mean_prior)
                            for r in self.rows]
        self.kw = (dict(alpha_mu=alpha_mu, alpha_w=alpha_w, mean_prior=mean_prior) if kind == "bge"
                   else dict(noise_var=noise_var, weight_var=weight_var, weight_mean=weight_mean))
        self.prior_kw = dict(edge_prob=edge_prob, edge_penalty=edge_penalty)
        self.d = d

    def _prior_share(self, k: int) -> float:
        if self.prior == "erdos_renyi":
            p = self.prior_kw["edge_prob"]
            return k * math.log(p) + (self.d - 1 - k) * math.log1p(-p)
        if self.prior == "edge":
            return -self.prior_kw["edge_penalty"] * k
        return 0.0

    def _marginal(self, node: int, parents: list) -> float:
        if self.kind == "bge":
            R, t, N = self.scatter[node]
            return bge_local_score_from_scatter(R, t, N, node, parents, alpha_mu=self.kw["alpha_mu"],
                                                alpha_w=self.kw["alpha_w"])
        return lingauss_local_score_reference(self.rows[node], node, parents, **self.kw)

    def local_score(self, node: int, parents: Sequence[int]) -> float:
        """LocalScore(node, parents), prior share included, as CausalScore.local_score."""
        return self._marginal(node, list(parents)) + self._prior_share(len(parents))

    def log_marginal_likelihood(self, adj) -> float:
        import numpy as np

        a = np.asarray(adj, dtype=bool)
        return sum(self._marginal(j, [int(i) for i in np.flatnonzero(a[:, j])]) for j in range(self.d))

    def log_score(self, adj) -> torch.Tensor:
        """log R(G) = log P(G) + log P(D | G) for graphs [B, d, d]: float64 [B]."""
        a = torch.as_tensor(adj).bool().reshape(-1, self.d, self.d).numpy()
        return torch.tensor([self.log_marginal_likelihood(g) + log_prior_reference(g, self.prior, **self.prior_kw)
                             for g in a], dtype=torch.float64)

    def delta_score(self, adj, source: int, target: int) -> float:
        import numpy as np

        a = np.asarray(adj, dtype=bool)
        pa = list(np.flatnonzero(a[:, target]))
        return self.local_score(target, sorted(pa + [source])) - self.local_score(target, pa)


def score_of_env(env):
    """A CausalScore with the data, interventions and settings of a DAG environment."""
    cfg = env.config()
    if cfg.get("data") is None:
        raise ValueError(f"{env!r} has no data: structure MCMC needs a data set's score")
    keys = ("alpha_mu", "alpha_w", "mean_prior", "noise_var", "weight_var", "weight_mean", "edge_prob", "edge_penalty",
            "cache", "cache_capacity", "multiword")
    return CausalScore(cfg["data"], cfg["score"], interventions=cfg["interventions"], prior=cfg["prior"],
                       node_names=cfg["node_names"], **{k: cfg[k] for k in keys if k in cfg})


def _as_score(score):
    if isinstance(score, CausalScore):
        return score
    if hasattr(score, "config") and hasattr(score, "adjacency"):  # a DAG environment
        return score_of_env(score)
    if hasattr(score, "node_names") and hasattr(score, "data"):  # CausalData
        return CausalScore(score)
    raise TypeError(f"score must be a gfncore.causal.CausalScore, a DAG environment or a CausalData, "
                    f"got {type(score).__name__}")
