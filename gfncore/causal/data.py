"""Data for causal structure learning: synthetic linear-Gaussian SEMs and CSV files.

CSV format (load_csv / save_csv): a header row of node names, then one row per sample with one
number per node. One optional extra column, named "intervened" by default, lists the nodes set by
a perfect intervention in that row: node names or 0-based column indices separated by ';'
(e.g. "X;Z" or "0;2"); an empty cell means an observational row. Every other column must hold
finite numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch

from ..envs.dag import _node_id, intervention_mask  # noqa: F401  (the DAG environment parses interventions too)


@dataclass
class CausalData:
    """A data set D for the reward P(D | G): samples, which nodes each row intervened on, and the
    true graph when it is known (synthetic data)."""

    data: torch.Tensor                          # float64 [N, d]
    interventions: torch.Tensor | None = None   # bool [N, d], True where node j was set in row r
    node_names: list[str] = field(default_factory=list)
    graph: torch.Tensor | None = None           # bool [d, d], graph[i, j]: i -> j
    weights: torch.Tensor | None = None         # float64 [d, d], edge weights of the SEM

    def __post_init__(self):
        if not self.node_names:
            self.node_names = [f"X{i}" for i in range(self.data.shape[1])]

    @property
    def num_nodes(self) -> int:
        return int(self.data.shape[1])

    @property
    def num_rows(self) -> int:
        return int(self.data.shape[0])


@dataclass(frozen=True)
class Intervention:
    """A batch of n interventional rows: the given nodes are set by a perfect intervention, to
    `value` (do(X_j = value)) or, when value is None, to fresh N(0, std^2) draws independent of
    their parents. Their descendants follow the SEM as usual."""

    nodes: int | tuple[int, ...]
    n: int
    value: float | None = None
    std: float = 1.0


# ---------------------------------------------------------------------------------------------
# Synthetic data


def erdos_renyi_dag(num_nodes: int, expected_edges: float, rng) -> torch.Tensor:
    """A random DAG: each pair of a random topological order is an edge with probability
    expected_edges / (d (d - 1) / 2). bool [d, d], graph[i, j]: i -> j. rng: numpy Generator."""
    import numpy as np

    d = num_nodes
    pairs = d * (d - 1) / 2
    if d < 1:
        raise ValueError(f"num_nodes must be >= 1, got {d}")
    if pairs == 0:
        return torch.zeros(d, d, dtype=torch.bool)
    p = expected_edges / pairs
    if not 0 <= p <= 1:
        raise ValueError(f"expected_edges must be in [0, d (d - 1) / 2 = {pairs:g}], got {expected_edges}")
    upper = np.triu(rng.random((d, d)) < p, k=1)
    perm = rng.permutation(d)
    g = np.zeros((d, d), dtype=bool)
    g[np.ix_(perm, perm)] = upper  # node perm[a] precedes perm[b] when a < b
    return torch.from_numpy(g)


def _topological_order(graph) -> list[int]:
    import numpy as np

    g = np.asarray(graph, dtype=bool)
    indeg = g.sum(0).astype(int)
    order, ready = [], [j for j in range(g.shape[0]) if indeg[j] == 0]
    while ready:
        i = ready.pop(0)
        order.append(i)
        for j in np.flatnonzero(g[i]):
            indeg[j] -= 1
            if indeg[j] == 0:
                ready.append(int(j))
    if len(order) != g.shape[0]:
        raise ValueError("graph has a directed cycle")
    return order


def sample_linear_gaussian(graph, weights, num_samples: int, noise_std: float, rng,
                           intervened: Iterable[int] = (), value: float | None = None,
                           intervention_std: float = 1.0) -> torch.Tensor:
    """Ancestral samples of x_j = sum_i weights[i, j] x_i + noise_std * eps_j, eps ~ N(0, 1), with
    the nodes in `intervened` replaced by do(x_j = value) (or by N(0, intervention_std^2) draws
    when value is None). float64 [num_samples, d]."""
    import numpy as np

    g = np.asarray(graph, dtype=bool)
    w = np.asarray(weights, dtype=np.float64) * g
    d = g.shape[0]
    targets = set(int(j) for j in intervened)
    x = np.zeros((num_samples, d))
    for j in _topological_order(g):
        if j in targets:
            x[:, j] = value if value is not None else intervention_std * rng.standard_normal(num_samples)
        else:
            x[:, j] = x @ w[:, j] + noise_std * rng.standard_normal(num_samples)
    return torch.from_numpy(x)


def sample_erdos_renyi_sem(num_nodes: int, num_samples: int, expected_edges: float | None = None,
                           noise_std: float = 1.0, weight_range: tuple[float, float] = (0.5, 2.0), seed: int = 0,
                           interventions: Sequence[Intervention] = ()) -> CausalData:
    """A random Erdos-Renyi linear-Gaussian SEM and samples from it: `num_samples` observational
    rows, then one batch per Intervention. Edge weights are uniform in +-[lo, hi] (random sign);
    expected_edges defaults to num_nodes (the "ER1" graphs of DAG-GFlowNet; d(d-1)/2 below d = 3).
    Node names X0..X{d-1}.
    Returns CausalData with the true graph and weights."""
    import numpy as np

    d = int(num_nodes)
    if d < 1:
        raise ValueError(f"num_nodes must be >= 1, got {num_nodes}")
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    if not (math.isfinite(noise_std) and noise_std > 0):
        raise ValueError(f"noise_std must be a positive number, got {noise_std}")
    lo, hi = (float(v) for v in weight_range)
    if not (0 <= lo <= hi and math.isfinite(hi)):
        raise ValueError(f"weight_range must be (lo, hi) with 0 <= lo <= hi, got {weight_range}")
    rng = np.random.default_rng(seed)
    # d edges ("ER1") where a DAG can hold them: d = 2 holds one at most
    graph = erdos_renyi_dag(d, min(d, d * (d - 1) / 2) if expected_edges is None else expected_edges, rng)
    mag = rng.uniform(lo, hi, size=(d, d))
    sign = np.where(rng.random((d, d)) < 0.5, -1.0, 1.0)
    weights = torch.from_numpy(mag * sign * graph.numpy())
    parts = [sample_linear_gaussian(graph, weights, num_samples, noise_std, rng)]
    masks = [torch.zeros(num_samples, d, dtype=torch.bool)]
    for k, iv in enumerate(interventions):
        if not isinstance(iv, Intervention):
            iv = Intervention(**iv) if isinstance(iv, dict) else Intervention(*iv)
        nodes = (iv.nodes,) if isinstance(iv.nodes, (int, np.integer)) else tuple(iv.nodes)
        for j in nodes:
            if not (isinstance(j, (int, np.integer)) and 0 <= j < d):
                raise ValueError(f"interventions[{k}] names node {j!r}, which does not exist (node ids are 0..{d - 1})")
        if iv.n < 0:
            raise ValueError(f"interventions[{k}].n must be >= 0, got {iv.n}")
        parts.append(sample_linear_gaussian(graph, weights, iv.n, noise_std, rng, nodes, iv.value, iv.std))
        m = torch.zeros(iv.n, d, dtype=torch.bool)
        m[:, list(nodes)] = True
        masks.append(m)
    mask = torch.cat(masks)
    return CausalData(data=torch.cat(parts), interventions=mask if bool(mask.any()) else None,
                      node_names=[f"X{i}" for i in range(d)], graph=graph, weights=weights)


# ---------------------------------------------------------------------------------------------
# CSV


def load_csv(path, intervention_column: str | None = "intervened") -> CausalData:
    """Read a data set: header row of node names, numeric columns, and optionally a column
    (`intervention_column`) of ';'-separated intervened node names or indices per row."""
    import csv

    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path}: empty file (expected a header row of node names)")
    header = [h.strip() for h in rows[0]]
    iv_col = header.index(intervention_column) if intervention_column and intervention_column in header else None
    names = [h for c, h in enumerate(header) if c != iv_col]
    if not names:
        raise ValueError(f"{path}: no data columns")
    if any(not h for h in names):
        raise ValueError(f"{path}: the header row has an empty column name")
    dup = sorted({h for h in names if names.count(h) > 1})
    if dup:
        raise ValueError(f"{path}: duplicate column names {dup}")
    cols = [c for c in range(len(header)) if c != iv_col]
    body = [(ln, r) for ln, r in enumerate(rows[1:], start=2) if any(cell.strip() for cell in r)]
    values = torch.empty(len(body), len(cols), dtype=torch.float64)
    iv_cells = []
    for q, (ln, r) in enumerate(body):
        if len(r) != len(header):
            raise ValueError(f"{path}, line {ln}: {len(r)} fields, the header has {len(header)}")
        for c_out, c in enumerate(cols):
            cell = r[c].strip()
            try:
                v = float(cell)
            except ValueError:
                raise ValueError(f"{path}, line {ln}: column {header[c]!r} holds {cell!r}, which is not a number "
                                 f"(every column except {intervention_column!r} must be numeric)") from None
            if not math.isfinite(v):
                raise ValueError(f"{path}, line {ln}: column {header[c]!r} holds {cell!r}; values must be finite")
            values[q, c_out] = v
        if iv_col is not None:
            cell = r[iv_col].strip()
            iv_cells.append([tok for tok in (t.strip() for t in cell.split(";")) if tok] if cell else [])
    mask = None
    if iv_col is not None:
        index = {h: i for i, h in enumerate(names)}
        mask = torch.zeros(len(body), len(names), dtype=torch.bool)
        for q, toks in enumerate(iv_cells):
            for tok in toks:
                mask[q, _node_id(tok, index, len(names), f"{path}, line {body[q][0]}, column {intervention_column!r}")] = True
        if not bool(mask.any()):
            mask = None
    return CausalData(data=values, interventions=mask, node_names=names)


def save_csv(data: CausalData, path, intervention_column: str = "intervened") -> None:
    """Write `data` in the format load_csv reads (the intervened column only when there are
    interventions)."""
    import csv

    x = data.data.double().cpu()
    mask = data.interventions
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(data.node_names) + ([intervention_column] if mask is not None else []))
        for r in range(x.shape[0]):
            row = [repr(float(v)) for v in x[r]]
            if mask is not None:
                row.append(";".join(data.node_names[j] for j in mask[r].nonzero().flatten().tolist()))
            w.writerow(row)
