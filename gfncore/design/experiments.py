"""Experiments of the design loop: perfect interventions do(X_T = v) with n rows, their costs, the
candidate sets, and the ground-truth simulator that answers them."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch


@dataclass(frozen=True)
class Experiment:
    """A batch of n rows under a perfect intervention on the target nodes: do(X_T = value), or,
    value None, X_T drawn N(0, std^2) independently of their parents. No targets: n
    observational rows."""

    targets: tuple[int, ...]
    n: int
    value: float | None = 2.0
    std: float = 1.0

    def __post_init__(self):
        t = self.targets
        if isinstance(t, (int,)) and not isinstance(t, bool):
            t = (t,)
        try:
            t = tuple(t)
        except TypeError:
            raise TypeError(f"Experiment: targets must be node ids (an int or a tuple of ints), got {self.targets!r}") \
                from None
        for j in t:
            if isinstance(j, bool) or not isinstance(j, int):
                raise TypeError(f"Experiment: targets must be integer node ids, got {j!r}")
        if len(set(t)) != len(t):
            raise ValueError(f"Experiment: targets name a node twice: {t}")
        object.__setattr__(self, "targets", tuple(sorted(t)))
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"Experiment: the sample size n must be an int >= 1, got {self.n!r}")
        if self.value is not None and not math.isfinite(self.value):
            raise ValueError(f"Experiment: value must be finite (or None for random values), got {self.value!r}")
        if not (math.isfinite(self.std) and self.std > 0):
            raise ValueError(f"Experiment: std must be a finite number > 0, got {self.std!r}")

    @property
    def observational(self) -> bool:
        return not self.targets

    def check(self, d: int) -> "Experiment":
        """Raises ValueError when a target is not one of the d nodes; returns self."""
        for j in self.targets:
            if not 0 <= j < d:
                raise ValueError(f"Experiment: intervention on node {j}, which does not exist (node ids are 0..{d - 1})")
        return self

    def mask(self, d: int) -> torch.Tensor:
        """bool [d]: True on the targets."""
        self.check(d)
        m = torch.zeros(d, dtype=torch.bool)
        m[list(self.targets)] = True
        return m

    def label(self, names: Sequence[str] | None = None) -> str:
        if self.observational:
            return f"obs x{self.n}"
        nm = [names[j] if names else f"X{j}" for j in self.targets]
        v = f"{self.value:g}" if self.value is not None else f"N(0,{self.std:g}^2)"
        return f"do({','.join(nm)}={v}) x{self.n}"


@dataclass
class CostModel:
    """What an experiment costs: the sum of its targets' node costs plus sample_cost per row; an
    observational batch costs observational_cost plus sample_cost per row. Every cost must be
    > 0 (sample_cost may be 0: then the cost does not grow with n)."""

    node_costs: Sequence[float]
    sample_cost: float = 0.0
    observational_cost: float = 1.0

    def __post_init__(self):
        costs = [float(c) for c in self.node_costs]
        for j, c in enumerate(costs):
            if not (math.isfinite(c) and c > 0):
                raise ValueError(f"CostModel: the cost of node {j} must be a finite number > 0, got {c!r}")
        if not (math.isfinite(self.sample_cost) and self.sample_cost >= 0):
            raise ValueError(f"CostModel: sample_cost must be a finite number >= 0, got {self.sample_cost!r}")
        if not (math.isfinite(self.observational_cost) and self.observational_cost > 0):
            raise ValueError(f"CostModel: observational_cost must be a finite number > 0, got {self.observational_cost!r}")
        self.node_costs = tuple(costs)

    @classmethod
    def uniform(cls, d: int, node_cost: float = 1.0, **kw) -> "CostModel":
        return cls([node_cost] * d, **kw)

    @property
    def d(self) -> int:
        return len(self.node_costs)

    def cost(self, e: Experiment) -> float:
        e.check(self.d)
        base = sum(self.node_costs[j] for j in e.targets) if e.targets else self.observational_cost
        return base + self.sample_cost * e.n

    def cheapest(self, experiments: Sequence[Experiment]) -> float:
        if not experiments:
            raise ValueError("no candidate experiments")
        return min(self.cost(e) for e in experiments)


def parse_costs(spec, d: int, names: Sequence[str] | None = None) -> list[float]:
    """Node costs from a number (every node), a comma list of d numbers, or name=cost pairs
    (unnamed nodes cost 1)."""
    if isinstance(spec, (int, float)):
        return [float(spec)] * d
    s = str(spec).strip()
    parts = [p.strip() for p in s.split(",") if p.strip()]
    if not parts:
        raise ValueError("node costs: empty specification")
    if all("=" not in p for p in parts):
        vals = [_number(p, "node cost") for p in parts]
        if len(vals) == 1:
            return vals * d
        if len(vals) != d:
            raise ValueError(f"node costs: give one number or one per node ({d}), got {len(vals)}")
        return vals
    index = {n: i for i, n in enumerate(names or [f"X{i}" for i in range(d)])}
    out = [1.0] * d
    for p in parts:
        key, _, val = p.partition("=")
        key = key.strip()
        if key in index:
            j = index[key]
        else:
            try:
                j = int(key)
            except ValueError:
                raise ValueError(f"node costs: intervention cost for node {key!r}, which does not exist "
                                 f"(nodes: {list(index)})") from None
            if not 0 <= j < d:
                raise ValueError(f"node costs: intervention cost for node {j}, which does not exist "
                                 f"(node ids are 0..{d - 1})")
        out[j] = _number(val, f"cost of {key}")
    return out


def _number(s: str, what: str) -> float:
    try:
        return float(s)
    except ValueError:
        raise ValueError(f"{what} must be a number, got {s!r}") from None


def candidate_experiments(d: int, sizes: Sequence[int] = (10,), values: Sequence[float | None] = (2.0,),
                          max_targets: int = 1, std: float = 1.0) -> list[Experiment]:
    """Every intervention on 1..max_targets nodes with each sample size and value."""
    import itertools

    if max_targets < 1:
        raise ValueError(f"max_targets must be >= 1, got {max_targets}")
    if not sizes or not values:
        raise ValueError("sizes and values must be non-empty")
    out = []
    for k in range(1, min(max_targets, d) + 1):
        for t in itertools.combinations(range(d), k):
            for n in sizes:
                for v in values:
                    out.append(Experiment(t, int(n), v, std))
    return out


# ---------------------------------------------------------------------------------------------
# the ground truth


class SEMSimulator:
    """The ground-truth simulator of the active loop: a known linear-Gaussian SEM that answers an
    experiment with n rows (gfncore.causal.data.sample_linear_gaussian)."""

    def __init__(self, graph, weights, noise_std: float = 1.0, seed: int = 0):
        import numpy as np

        self.graph = torch.as_tensor(graph).bool()
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.noise_std = float(noise_std)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        """Back to the first draw: each strategy of a comparison meets the same noise stream."""
        import numpy as np

        self.rng = np.random.default_rng(self.seed)

    @property
    def d(self) -> int:
        return int(self.graph.shape[0])

    def __call__(self, e: Experiment) -> torch.Tensor:
        from ..causal.data import sample_linear_gaussian

        e.check(self.d)
        return sample_linear_gaussian(self.graph, self.weights, e.n, self.noise_std, self.rng, e.targets, e.value,
                                      e.std)


def observe(simulator: Callable, e: Experiment, d: int) -> torch.Tensor:
    """Runs the simulator on an experiment and checks its answer: a finite float tensor [n, d] whose
    target columns hold the set value. Returns it as float64."""
    y = simulator(e)
    if not isinstance(y, torch.Tensor):
        try:
            y = torch.as_tensor(y)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"simulator({e.label()}) must return an array [n, d], got {type(y).__name__}") from None
    if tuple(y.shape) != (e.n, d):
        raise ValueError(f"simulator({e.label()}) returned shape {list(y.shape)}; expected [{e.n}, {d}] "
                         f"(n = {e.n} rows, one column per node)")
    if y.dtype == torch.bool or y.dtype.is_complex:
        raise TypeError(f"simulator({e.label()}) must return real numbers, got {y.dtype}")
    y = y.to(torch.float64)
    if not bool(torch.isfinite(y).all()):
        raise ValueError(f"simulator({e.label()}) returned NaN or inf")
    if e.value is not None and e.targets and not bool((y[:, list(e.targets)] == e.value).all()):
        raise ValueError(f"simulator({e.label()}): the target columns must hold the set value {e.value:g} "
                         "(a perfect intervention)")
    return y
