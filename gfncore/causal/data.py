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


def load_csv(path, intervention_column: str | None = "intervened", header: bool = True) -> CausalData:
    """Read a data set: header row of node names, numeric columns, and optionally a column
    (`intervention_column`) of ';'-separated intervened node names or indices per row. The file
    rules (UTF-8 with or without a BOM, a header row, distinct names) are gfncore.datafiles';
    header=False reads every row as data, the nodes named X0, X1, ... (no intervention column)."""
    from ..datafiles import read_table

    names_in, body = read_table(path, header=header)
    header_row = names_in if header else [f"X{i}" for i in range(len(names_in))]
    iv_col = (header_row.index(intervention_column)
              if header and intervention_column and intervention_column in header_row else None)
    names = [h for c, h in enumerate(header_row) if c != iv_col]
    if not names:
        raise ValueError(f"{path}: no data columns")
    cols = [c for c in range(len(header_row)) if c != iv_col]
    # One float() per cell through map and one tensor at the end: per-cell tensor writes cost ~1 us
    # each (5000 x 50 cells took 4.8 s on the loaded machine, this 1.3 s).
    rows_out, iv_cells = [], []
    for ln, r in body:
        try:
            rows_out.append(list(map(float, [r[c] for c in cols])))
        except ValueError:
            for c in cols:  # find the bad cell for the message
                cell = r[c].strip()
                try:
                    float(cell)
                except ValueError:
                    raise ValueError(f"{path}, line {ln}: column {header_row[c]!r} holds {cell!r}, which is not a "
                                     f"number (every column except {intervention_column!r} must be numeric)") from None
            raise
        if iv_col is not None:
            cell = r[iv_col].strip()
            iv_cells.append([tok for tok in (t.strip() for t in cell.split(";")) if tok] if cell else [])
    values = torch.tensor(rows_out, dtype=torch.float64).reshape(len(body), len(cols))
    bad = ~torch.isfinite(values)
    if bool(bad.any()):
        q, c_out = (int(v) for v in bad.nonzero()[0])
        raise ValueError(f"{path}, line {body[q][0]}: column {names[c_out]!r} holds {body[q][1][cols[c_out]].strip()!r}; "
                         f"values must be finite")
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


def transform(data: CausalData, *, log: bool = False, standardize: bool = False) -> CausalData:
    """The data set with its values transformed, in this order (interventions, names and the true
    graph kept):

    - log: the natural log of every value, for positive measurements whose noise is multiplicative
      (protein abundances, expression counts); a value <= 0 raises ValueError naming its row and
      column.
    - standardize: each column centred and scaled to unit variance over all rows. The scores are
      not scale-invariant: BGe's Wishart prior T = t I and the linear-Gaussian noise_var assume
      columns of comparable, roughly unit scale, so data in mixed units should be standardised.
      Off by default: it changes the score of a data set that is already on one scale.
    """
    x = data.data.double().clone()
    if log:
        bad = ~(x > 0)
        if bool(bad.any()):
            r, c = (int(v) for v in bad.nonzero()[0])
            raise ValueError(f"--log needs positive values: row {r + 1}, column {data.node_names[c]!r} holds {float(x[r, c])!r}")
        x = x.log()
    if standardize:
        std = x.std(0, unbiased=True) if x.shape[0] > 1 else torch.zeros(x.shape[1], dtype=x.dtype)
        const = ~(std > 0)
        if bool(const.any()):
            c = int(const.nonzero()[0])
            raise ValueError(f"cannot standardise: column {data.node_names[c]!r} is constant")
        x = (x - x.mean(0)) / std
    return CausalData(data=x, interventions=data.interventions, node_names=list(data.node_names), graph=data.graph,
                      weights=data.weights)


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
