"""DAG: causal graphs built one edge at a time, with the Bayesian score of a data set as reward
(DAG-GFlowNet, Deleu et al. 2022). The C++ struct is csrc/envs/dag.h."""
from __future__ import annotations

from typing import Sequence

import torch

from .. import _C
from .compiled import CompiledEnv

SCORES: tuple = tuple(_C.causal_score_kinds)    # position = the struct's `score` code
PRIORS: tuple = tuple(_C.causal_graph_priors)   # position = the struct's `prior` code
MAX_ENUMERATED_NODES = 5                        # all_states(): 29,281 DAGs at d = 5, 3,781,503 at d = 6


def unpack_bits(words: torch.Tensor, n: int) -> torch.Tensor:
    """int32 words [..., W] (bit b of word w is item 32 w + b) -> bool [..., n]."""
    w = words.to(torch.int64) & 0xFFFFFFFF
    bits = (w.unsqueeze(-1) >> torch.arange(32, device=words.device)) & 1
    return bits.flatten(-2)[..., :n].bool()


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """bool [..., n] -> int32 words [..., ceil(n / 32)], the inverse of unpack_bits."""
    n = bits.shape[-1]
    W = (n + 31) // 32
    pad = torch.zeros(*bits.shape[:-1], 32 * W - n, dtype=torch.bool, device=bits.device)
    b = torch.cat([bits.bool(), pad], -1).reshape(*bits.shape[:-1], W, 32).to(torch.int64)
    w = (b << torch.arange(32, device=bits.device)).sum(-1)
    return torch.where(w >= 2**31, w - 2**32, w).to(torch.int32)


def transitive_closure(adj: torch.Tensor) -> torch.Tensor:
    """Reachability by paths of length >= 1 of graphs adj [..., d, d] (bool): log2(d) squarings."""
    r = adj.bool()
    d = r.shape[-1]
    steps = 1
    while steps < d:
        f = r.to(torch.float32)
        r = r | ((f @ f) > 0)
        steps *= 2
    return r


class DAG(CompiledEnv, kind="dag"):
    """Directed acyclic graphs on d nodes, built by adding one edge at a time; every state is a
    DAG and may stop, so every state is a finished object (modified DB applies).

    Action ``i * d + j`` adds the edge i -> j (legal iff it keeps the graph acyclic, is not there
    yet, and j has fewer than ``max_parents`` parents); action ``d * d`` stops. A state's parents
    are the graphs with one edge removed. The state row holds the parent sets and the transitive
    closure as bits (csrc/envs/dag.h), so the acyclicity mask is O(1) per candidate edge; use
    :meth:`adjacency` and :meth:`states_from_adjacency` to go between rows and adjacency matrices
    (``adj[i, j]``: i -> j).

    The reward is log R(G) = log P(G) + sum_j LocalScore(j, Pa_j) of ``data`` [N, d] under
    ``score`` ("bge" or "lingauss"; or a :class:`gfncore.causal.CausalScore`, whose data and
    settings are reused) and the graph ``prior`` ("uniform", "erdos_renyi" with ``edge_prob``,
    "edge" with ``edge_penalty``), read from a thread-safe cache of local scores; without data it
    is the prior alone. ``interventions`` (a bool mask [N, d] or one list of node names / ids per
    row) marks perfect interventions: node j is scored on the rows where it was not intervened
    on. ``data`` may also be a :class:`gfncore.causal.CausalData`. More than 64 nodes needs
    ``multiword=True``.

    Modified DB reads reward differences along edges from the cache (``log_reward_delta``, two
    local scores per move) instead of scoring whole graphs.
    """

    # no `gfncore train dag`: its reward needs a data matrix, which `gfncore causal` reads
    train_command = False

    def __init__(self, num_nodes: int | None = None, max_parents: int | None = None, data=None, score="bge", *,
                 interventions=None, prior: str = "uniform", node_names: Sequence[str] | None = None,
                 alpha_mu: float = 1.0, alpha_w: float | None = None, mean_prior=None, noise_var: float = 0.1,
                 weight_var: float = 1.0, weight_mean: float = 0.0, edge_prob: float | None = None,
                 edge_penalty: float = 1.0, cache: bool = True, cache_capacity: int = 1 << 22,
                 multiword: bool = False, log_reward=None):
        opts = dict(alpha_mu=alpha_mu, alpha_w=alpha_w, mean_prior=mean_prior, noise_var=noise_var,
                    weight_var=weight_var, weight_mean=weight_mean, edge_prob=edge_prob, edge_penalty=edge_penalty,
                    cache=cache, cache_capacity=cache_capacity, multiword=multiword)
        if not isinstance(score, str):
            if not (hasattr(score, "_c") and hasattr(score, "data") and hasattr(score, "options")):
                raise TypeError(f"DAG: score must be one of {list(SCORES)} or a gfncore.causal.CausalScore, "
                                f"got {type(score).__name__}")
            if data is not None:
                raise ValueError("DAG: give either data or a CausalScore (which holds its data), not both")
            data, interventions = score.data, score.interventions
            node_names = node_names if node_names is not None else score.node_names
            prior = score.prior
            opts.update(score.options)
            score = score.kind
        if score not in SCORES:
            raise ValueError(f"DAG: score must be one of {list(SCORES)}, got {score!r}")
        if prior not in PRIORS:
            raise ValueError(f"DAG: prior must be one of {list(PRIORS)}, got {prior!r}")
        if prior == "erdos_renyi" and opts["edge_prob"] is None:
            raise ValueError("DAG: prior='erdos_renyi' needs edge_prob (the probability of each ordered pair, in (0, 1))")
        x = mask = None
        if data is not None:
            if hasattr(data, "data") and hasattr(data, "node_names") and not isinstance(data, torch.Tensor):
                if interventions is None:
                    interventions = data.interventions
                node_names = node_names if node_names is not None else data.node_names
                data = data.data
            x = _data_matrix(data)
            if num_nodes is None:
                num_nodes = int(x.shape[1])
        if num_nodes is None:
            raise ValueError("DAG: give num_nodes, or data [N, d] (whose columns are the nodes)")
        if isinstance(num_nodes, bool) or not isinstance(num_nodes, int):
            raise TypeError(f"DAG: num_nodes must be an int, got {type(num_nodes).__name__}")
        if x is not None and x.shape[1] != num_nodes:
            raise ValueError(f"DAG: data has {x.shape[1]} columns but num_nodes = {num_nodes}")
        names = list(node_names) if node_names is not None else [f"X{i}" for i in range(max(num_nodes, 0))]
        if len(names) != num_nodes:
            raise ValueError(f"DAG: node_names must have one name per node ({num_nodes}), got {len(names)}")
        if interventions is not None:
            if x is None:
                raise ValueError("DAG: interventions were given without data")
            mask = intervention_mask(interventions, x.shape[0], names)
        mp = opts["mean_prior"]
        if mp is not None:
            mp = torch.as_tensor(mp, dtype=torch.float64).reshape(-1)
        super().__init__(num_nodes=num_nodes, max_in_degree=-1 if max_parents is None else max_parents,
                         multiword=opts["multiword"], data=x, interventions=mask, score=SCORES.index(score),
                         prior=PRIORS.index(prior), alpha_mu=opts["alpha_mu"],
                         alpha_w=0.0 if opts["alpha_w"] is None else opts["alpha_w"], mean_prior=mp,
                         noise_var=opts["noise_var"], weight_var=opts["weight_var"], weight_mean=opts["weight_mean"],
                         edge_prob=0.5 if opts["edge_prob"] is None else opts["edge_prob"],
                         edge_penalty=opts["edge_penalty"], cache=opts["cache"],
                         cache_capacity=opts["cache_capacity"], log_reward=log_reward)
        # The parameters as the user gave them (the struct's codes stay in self.params).
        self.score, self.prior, self.node_names = score, prior, names
        self.max_in_degree = None if max_parents is None or max_parents < 0 else int(max_parents)
        self.interventions = mask
        self._options = opts
        self._states_cache = None

    @property
    def d(self) -> int:
        return self.num_nodes

    @property
    def has_data(self) -> bool:
        return self.params["data"] is not None

    # -- graphs <-> state rows --------------------------------------------------------------------
    def adjacency(self, states: torch.Tensor) -> torch.Tensor:
        """The graphs of state rows: bool [N, d, d], adj[n, i, j] True when i -> j."""
        s = self._states(states)
        d, W = self.d, self.state_dim // (2 * self.d)
        parents = unpack_bits(s[:, : d * W].reshape(-1, d, W), d)  # [N, j, i]
        return parents.transpose(1, 2).contiguous()

    def states_from_adjacency(self, adj) -> torch.Tensor:
        """State rows of graphs adj [N, d, d] (or one [d, d]): int32 [N, state_dim]. Raises
        ValueError for a graph that is not a state (a cycle or self-loop, an in-degree over the cap)."""
        a = torch.as_tensor(adj)
        if a.dtype.is_floating_point or a.dtype.is_complex:
            raise TypeError(f"{self.name}: adj must be a bool or 0/1 integer tensor, got {a.dtype}")
        if a.dim() == 2:
            a = a.unsqueeze(0)
        d = self.d
        if a.dim() != 3 or tuple(a.shape[1:]) != (d, d):
            raise ValueError(f"{self.name}: adj must have shape [N, {d}, {d}], got {list(a.shape)}")
        if a.dtype != torch.bool:
            if a.numel() and not bool(((a == 0) | (a == 1)).all()):
                raise ValueError(f"{self.name}: adj must hold only 0 and 1")
            a = a != 0
        a = a.cpu()
        reach = transitive_closure(a)
        bad = reach.diagonal(dim1=1, dim2=2).any(-1)
        if bool(bad.any()):
            raise ValueError(f"{self.name}: adj[{int(bad.nonzero()[0, 0])}] has a directed cycle or a self-loop")
        if self.max_in_degree is not None:
            over = (a.sum(1) > self.max_in_degree).any(-1)
            if bool(over.any()):
                raise ValueError(f"{self.name}: adj[{int(over.nonzero()[0, 0])}] has a node with more than "
                                 f"max_parents = {self.max_in_degree} parents")
        pa = pack_bits(a.transpose(1, 2))   # [N, j, W]: the parents of j
        de = pack_bits(reach)               # [N, u, W]: what u reaches
        return torch.cat([pa.flatten(1), de.flatten(1)], 1).contiguous()

    # -- enumeration ------------------------------------------------------------------------------
    def all_states(self) -> torch.Tensor:
        """Every DAG on d <= 5 nodes as state rows (every state is a finished object), in the
        order of gfncore.causal.all_dags: the empty graph first, then by number of edges."""
        if self.d > MAX_ENUMERATED_NODES:
            raise ValueError(f"{self!r}: DAGs on {self.d} nodes are too many to enumerate "
                             f"(d <= {MAX_ENUMERATED_NODES}; d = 6 has 3,781,503)")
        if self._states_cache is None:
            from .dag_enumerate import all_dags

            graphs = all_dags(self.d)
            if self.max_in_degree is not None:
                graphs = graphs[(graphs.sum(1) <= self.max_in_degree).all(-1)]
            self._states_cache = self.states_from_adjacency(graphs)
        return self._states_cache.clone()

    def all_terminal_states(self) -> torch.Tensor:
        return self.all_states()

    def exact_posterior(self):
        """The exact posterior R(G)/Z over every DAG (d <= 5), from this environment's reward:
        a gfncore.causal.DAGPosterior aligned with all_terminal_states()."""
        from .dag_enumerate import DAGPosterior

        x = self.all_terminal_states()
        log_r = self.log_reward(x)
        if not bool(torch.isfinite(log_r).all()):
            raise ValueError(f"{self!r}: the reward is not finite on every DAG")
        log_z = float(torch.logsumexp(log_r, 0))
        probs = torch.exp(log_r - log_z)
        graphs = self.adjacency(x)
        marg = (probs[:, None, None] * graphs.double()).sum(0)
        return DAGPosterior(graphs=graphs, log_reward=log_r, log_z=log_z, probs=probs, edge_marginals=marg)

    # -- serialisation ------------------------------------------------------------------------------
    def config(self) -> dict:
        p = self.params
        cfg = {"num_nodes": self.d, "max_parents": self.max_in_degree, "data": p["data"], "score": self.score,
               "interventions": self.interventions, "prior": self.prior, "node_names": list(self.node_names)}
        cfg.update(self._options)
        return cfg

    def __repr__(self) -> str:
        parts = [f"num_nodes={self.d}"]
        if self.max_in_degree is not None:
            parts.append(f"max_parents={self.max_in_degree}")
        if self.has_data:
            n = self.params["data"].shape[0]
            parts.append(f"data=<{n} x {self.d}>")
            parts.append(f"score={self.score!r}")
            if self.interventions is not None:
                parts.append(f"interventions=<{int(self.interventions.any(1).sum())} rows>")
        parts.append(f"prior={self.prior!r}")
        if self._log_reward_fn is not None:
            parts.append("log_reward=<custom>")
        return f"DAG({', '.join(parts)})"


def _data_matrix(data) -> torch.Tensor:
    """data as a contiguous float64 CPU tensor [N, d], or a clear error (the C++ score checks
    the values: finite, at least 2 rows)."""
    try:
        x = torch.as_tensor(data)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"DAG: data must be a numeric array [N, d], got {type(data).__name__} ({e})") from None
    if x.dtype == torch.bool or x.dtype.is_complex:
        raise TypeError(f"DAG: data must be a real-valued array [N, d], got {x.dtype}")
    if x.dim() != 2:
        raise ValueError(f"DAG: data must have shape [N, d] (rows = samples, columns = nodes), got {list(x.shape)}")
    return x.detach().to("cpu", torch.float64).contiguous()


def intervention_mask(spec, num_rows: int, node_names: Sequence[str]) -> torch.Tensor:
    """bool [num_rows, d] from a mask (tensor / array / nested lists of bools) or from one iterable
    of node ids or names per row. Raises ValueError naming a node that does not exist."""
    d = len(node_names)
    if isinstance(spec, torch.Tensor) or hasattr(spec, "__array__"):
        t = torch.as_tensor(spec)
        if t.dtype.is_floating_point:
            raise TypeError(f"interventions must be a bool mask [N, d] or per-row node lists, got {t.dtype}")
        if t.dtype != torch.bool:
            if t.numel() and not bool(((t == 0) | (t == 1)).all()):
                raise ValueError("interventions mask must hold only 0 and 1")
            t = t != 0
        if list(t.shape) != [num_rows, d]:
            raise ValueError(f"interventions must have shape [{num_rows}, {d}] (the shape of data), "
                             f"got {list(t.shape)}")
        return t.cpu().contiguous()
    rows = list(spec)
    if len(rows) != num_rows:
        raise ValueError(f"interventions must list the intervened nodes of each of the {num_rows} rows, "
                         f"got {len(rows)} entries")
    index = {name: i for i, name in enumerate(node_names)}
    mask = torch.zeros(num_rows, d, dtype=torch.bool)
    for r, nodes in enumerate(rows):
        if nodes is None:
            continue
        if isinstance(nodes, (str, int)):
            nodes = [nodes]
        for v in nodes:
            mask[r, _node_id(v, index, d, f"interventions[{r}]")] = True
    return mask


def _node_id(v, index: dict, d: int, where: str) -> int:
    if isinstance(v, str):
        if v in index:
            return index[v]
        s = v.strip()
        if s in index:
            return index[s]
        try:
            v = int(s)
        except ValueError:
            raise ValueError(f"{where} names node {v!r}, which does not exist (nodes: {list(index)})") from None
    if isinstance(v, bool) or (hasattr(v, "dtype") and getattr(v.dtype, "kind", "") == "b"):
        raise TypeError(f"{where} must name nodes by name or integer id, got {v!r} "
                        "(pass a bool mask [N, d] as a tensor or array)")
    if not isinstance(v, int):
        try:
            v = int(v)
        except (TypeError, ValueError):
            raise TypeError(f"{where} must name nodes by name or integer id, got {v!r}") from None
    if not 0 <= v < d:
        raise ValueError(f"{where} names node {v}, which does not exist (node ids are 0..{d - 1})")
    return v
