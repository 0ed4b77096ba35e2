"""The active-learning loop of causal experimental design: choose an experiment, observe it from
the ground-truth simulator, add it to the data as interventional rows, update the GFlowNet
posterior by warm-starting from the current policy, repeat until the budget is spent.

Strategies: "eig" (argmax EIG / cost with the configured estimator; "eig_support", "eig_nmc",
"eig_amortized", "eig_exact" name one), "random" (a random affordable experiment), "observational"
(the same budget spent on observational batches) and "heuristic" (the target whose edges are most
uncertain under the current posterior's edge marginals, per unit cost; no information gain).

Posteriors: "gfn" (the GFlowNet sampler: trained from scratch once on the first data set, then
warm-started each round; its exact terminal distribution P_T on d <= 5, its samples beyond) or
"exact" (enumeration, d <= 5: the oracle, no sampler). On d <= 5 every round also records the
metrics of the exact posterior P(G | D_t), which measure what the collected data are worth
independently of the sampler's training error.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from .amortized import AmortizedConfig, AmortizedEIG, pair_entropy
from .eig import GraphSupport, eig_nested_mc, eig_support, exact_support
from .experiments import CostModel, Experiment, candidate_experiments, observe, parse_costs
from .predictive import NodeStats, ScoreModel

STRATEGIES = ("eig", "eig_support", "eig_nmc", "eig_amortized", "eig_exact", "random", "observational", "heuristic")
ESTIMATORS = ("support", "nmc", "amortized", "exact")
BACKENDS = ("gfn", "exact")
MAX_EXACT_NODES = 5


@dataclass
class DesignConfig:
    """Settings of a design run; the CLI's flags are generated from these fields."""

    budget: float = field(default=10.0, metadata={"help": "total cost to spend"})
    strategies: str = field(default="eig,random,observational,heuristic", metadata={
        "help": "comma-separated: eig, eig_support, eig_nmc, eig_amortized, eig_exact, random, observational, heuristic"})
    estimator: str = field(default="support", metadata={
        "help": "EIG estimator of 'eig': support (GFlowNet-weighted), nmc (nested Monte Carlo), amortized, exact"})
    posterior: str = field(default="gfn", metadata={"help": "gfn (GFlowNet, warm-started) or exact (enumeration, d <= 5)"})
    sizes: str = field(default="10", metadata={"help": "rows per experiment (comma-separated candidates)"})
    values: str = field(default="2", metadata={
        "help": "intervention values v of do(X=v) (comma-separated; 'random' draws X ~ N(0, intervention_std^2))"})
    intervention_std: float = field(default=1.0, metadata={"help": "spread of 'random' intervention values"})
    max_targets: int = field(default=1, metadata={"help": "largest set of nodes intervened on at once"})
    node_cost: str = field(default="1", metadata={
        "help": "cost of intervening on a node: one number, d numbers, or name=cost pairs (others 1)"})
    sample_cost: float = field(default=0.0, metadata={"help": "cost per row"})
    observational_cost: float = field(default=1.0, metadata={"help": "cost of an observational batch (plus rows)"})
    outer: int = field(default=256, metadata={"help": "EIG: outer Monte-Carlo draws of y per candidate"})
    inner: int = field(default=256, metadata={"help": "nested MC: inner graphs per outer draw"})
    steps: int = field(default=1500, metadata={"help": "GFlowNet training steps on the first data set (from scratch)"})
    update_steps: int = field(default=300, metadata={"help": "GFlowNet steps per round, warm-started"})
    max_parents: int = field(default=-1, metadata={"help": "most parents of a node (-1: no limit)"})
    hidden: int = field(default=256, metadata={"help": "GFlowNet MLP width"})
    batch_size: int = field(default=128, metadata={"help": "GFlowNet trajectories per step"})
    lr: float = field(default=1e-3, metadata={"help": "GFlowNet Adam learning rate (cosine-decayed each run)"})
    samples: int = field(default=2000, metadata={"help": "GFlowNet samples per round (support and metrics, d > 5)"})
    seed: int = field(default=0, metadata={"help": "seed of the posterior, the estimators and the random strategy"})
    threads: int = field(default=1, metadata={"help": "torch and kernel threads (0: leave as is)"})
    warm_start_check: bool = field(default=False, metadata={
        "help": "also measure steps to a JSD target warm-started vs from scratch on the first round's data "
                "(gfn posterior, d <= 5)"})

    def __post_init__(self):
        checks = [("budget", math.isfinite(self.budget) and self.budget > 0, "> 0"),
                  ("estimator", self.estimator in ESTIMATORS, f"one of {list(ESTIMATORS)}"),
                  ("posterior", self.posterior in BACKENDS, f"one of {list(BACKENDS)}"),
                  ("max_targets", self.max_targets >= 1, ">= 1"),
                  ("outer", self.outer >= 2, ">= 2"), ("inner", self.inner >= 1, ">= 1"),
                  ("steps", self.steps >= 0, ">= 0"), ("update_steps", self.update_steps >= 0, ">= 0"),
                  ("max_parents", self.max_parents >= -1, ">= -1 (-1: no limit)"),
                  ("hidden", self.hidden >= 1, ">= 1"), ("batch_size", self.batch_size >= 1, ">= 1"),
                  ("lr", self.lr > 0, "> 0"), ("samples", self.samples >= 1, ">= 1"),
                  ("threads", self.threads >= 0, ">= 0"),
                  ("intervention_std", self.intervention_std > 0, "> 0")]
        for name, ok, want in checks:
            if not ok:
                raise ValueError(f"{name} must be {want}, got {getattr(self, name)!r}")
        from ..limits import check_threads

        check_threads(self.threads, "--threads")
        for s in self.strategy_list():
            if s not in STRATEGIES:
                raise ValueError(f"strategies: unknown strategy {s!r} (choose from {list(STRATEGIES)})")
        self.size_list()
        self.value_list()

    def strategy_list(self) -> list[str]:
        out = [s.strip() for s in self.strategies.split(",") if s.strip()]
        if not out:
            raise ValueError("strategies must name at least one strategy")
        return out

    def size_list(self) -> list[int]:
        try:
            out = [int(s) for s in str(self.sizes).split(",") if s.strip()]
        except ValueError:
            raise ValueError(f"sizes must be comma-separated integers, got {self.sizes!r}") from None
        if not out:
            raise ValueError("sizes must list at least one sample size")
        for n in out:
            if n < 1:
                raise ValueError(f"sizes: a sample size must be >= 1, got {n}")
        return out

    def value_list(self) -> list[float | None]:
        out = []
        for s in str(self.values).split(","):
            s = s.strip()
            if not s:
                continue
            if s.lower() == "random":
                out.append(None)
                continue
            try:
                v = float(s)
            except ValueError:
                raise ValueError(f"values must be numbers or 'random', got {s!r}") from None
            if not math.isfinite(v):
                raise ValueError(f"values must be finite, got {s!r}")
            out.append(v)
        if not out:
            raise ValueError("values must list at least one intervention value")
        return out


# ---------------------------------------------------------------------------------------------
# posteriors


class Dataset:
    """The growing data set D: rows [N, d] and the perfect-intervention mask [N, d]."""

    def __init__(self, data, interventions=None):
        x = torch.as_tensor(data, dtype=torch.float64).clone()
        if x.dim() != 2:
            raise ValueError(f"data must have shape [N, d], got {list(x.shape)}")
        m = torch.zeros_like(x, dtype=torch.bool) if interventions is None else torch.as_tensor(interventions).bool().clone()
        if m.shape != x.shape:
            raise ValueError(f"interventions must have the shape of data {list(x.shape)}, got {list(m.shape)}")
        self.data, self.mask = x, m

    @property
    def d(self) -> int:
        return int(self.data.shape[1])

    @property
    def num_rows(self) -> int:
        return int(self.data.shape[0])

    def add(self, y: torch.Tensor, e: Experiment) -> None:
        self.data = torch.cat([self.data, y.to(torch.float64)])
        self.mask = torch.cat([self.mask, e.mask(self.d).expand(y.shape[0], self.d)])

    def intervened_rows(self) -> torch.Tensor:
        return self.mask.sum(0).double()

    def stats(self) -> NodeStats:
        return NodeStats.of(self.data, self.mask)

    def copy(self) -> "Dataset":
        return Dataset(self.data, self.mask)


class ExactBackend:
    """P(G | D) by enumerating every DAG (d <= 5): the oracle posterior, no sampler to train."""

    name = "exact"

    def __init__(self, model: ScoreModel, max_parents: int | None = None):
        self.model, self.max_parents = model, max_parents
        self._support = None
        self.last = {}

    def fit(self, ds: Dataset, steps: int = 0, seed: int = 0) -> dict:
        t0 = time.perf_counter()
        self._support = exact_support(self.model, ds.data, ds.mask, self.max_parents)
        self.last = {"steps": 0, "seconds": time.perf_counter() - t0}
        return self.last

    update = fit

    def support(self) -> GraphSupport:
        return self._support

    def clone(self) -> "ExactBackend":
        return copy.copy(self)

    def metrics(self, true_graph) -> dict:
        return {}


class GFlowNetBackend:
    """The GFlowNet posterior (modified DB on the DAG environment, gfncore.causal.posterior's
    trainer): trained from scratch on the first data set, then warm-started from the current
    policy on each new one (the policy's weights carry over; what a new trainer sets from its
    environment's reward at initialisation follows the new data, see warm_start)."""

    name = "gfn"

    def __init__(self, model: ScoreModel, cfg, samples: int = 2000):
        self.model, self.cfg, self.samples = model, cfg, samples
        self.env = self.trainer = None
        self.policy_state = None
        self.init_log_z = 0.0    # log Z the held policy's trainer started from
        self._support = None
        self.last = {}

    def _trainer(self, ds: Dataset, seed: int):
        from ..causal.posterior import make_trainer

        env = self.model.env(ds.data, ds.mask, max_parents=self._max_parents())
        cfg = dataclasses.replace(self.cfg, seed=seed)
        trainer = make_trainer(env, cfg)
        trainer._design_init_log_z = float(trainer.policy.log_z.detach())
        return env, trainer, cfg

    def fit(self, ds: Dataset, steps: int, seed: int = 0) -> dict:
        """From scratch."""
        from ..causal.posterior import train_posterior

        env, trainer, cfg = self._trainer(ds, seed)
        seconds = train_posterior(trainer, steps, cfg, progress=False)
        return self._done(env, trainer, steps, seconds, warm=False)

    def update(self, ds: Dataset, steps: int, seed: int = 0) -> dict:
        """Warm start: the current policy, trained `steps` more steps on the new data."""
        from ..causal.posterior import train_posterior

        if self.policy_state is None:
            return self.fit(ds, steps, seed)
        env, trainer, cfg = self._trainer(ds, seed)
        self.warm_start(trainer, env)
        seconds = train_posterior(trainer, steps, cfg, progress=False)
        return self._done(env, trainer, steps, seconds, warm=True)

    def warm_start(self, trainer, env) -> None:
        """Load the current policy into a new trainer of a new environment. The new trainer's
        buffers keep their values (DAGPolicy's reward_ref: the log R of a good graph under the new
        data, so the stop logit's reward shift stays near 0 where the mass is), and log Z (and log
        F's bias) move by the change of the value a trainer starts them from (log R of a greedy
        graph: log Z moves with the data's log-likelihood scale, hundreds of nats per round)."""
        p = trainer.policy
        buffers = {k: v.clone() for k, v in p.named_buffers()}
        init = float(p.log_z.detach())
        p.load_state_dict(self.policy_state)
        with torch.no_grad():
            for k, v in p.named_buffers():
                v.copy_(buffers[k])
            p.log_z.add_(init - self.init_log_z)
            if p.flow_head is not None:
                p.flow_head.bias.add_(init - self.init_log_z)
        trainer._design_init_log_z = init

    def _done(self, env, trainer, steps, seconds, warm) -> dict:
        self.env, self.trainer = env, trainer
        self.policy_state = copy.deepcopy(trainer.policy.state_dict())
        self.init_log_z = trainer._design_init_log_z
        self._support = None
        self.last = {"steps": steps, "seconds": seconds, "warm": warm}
        return self.last

    def support(self) -> GraphSupport:
        """P_T exactly on every DAG (d <= 5, pushed through the state graph), else the distinct
        sampled graphs weighted by count."""
        from ..metrics import exact_terminal_distribution

        if self._support is None:
            env = self.env
            if env.d <= MAX_EXACT_NODES:
                p = exact_terminal_distribution(env, self.trainer.policy)
                self._support = GraphSupport.from_probs(env.adjacency(env.all_terminal_states()), p / p.sum())
            else:
                self._support = GraphSupport.from_samples(env.adjacency(self.trainer.sample(self.samples)))
        return self._support

    def steps_to_jsd(self, ds: Dataset, targets: Sequence[float], max_steps: int, every: int = 50, warm: bool = True,
                     seed: int = 0) -> dict:
        """Training steps until the sampler's exact terminal distribution is within each JSD target
        of the exact posterior of ds (d <= 5), warm-started from the current policy or from scratch,
        at a constant learning rate (so both runs follow the same schedule whatever their length).
        Returns {"steps": {target: steps or None}, "curve": [(steps, jsd)], "seconds": ...}."""
        from ..causal.metrics import jsd
        from ..causal.posterior import train_posterior
        from ..metrics import exact_terminal_distribution

        env, trainer, cfg = self._trainer(ds, seed)
        cfg = dataclasses.replace(cfg, lr_final=1.0)
        if warm:
            if self.policy_state is None:
                raise ValueError("steps_to_jsd(warm=True) needs a trained policy to start from")
            self.warm_start(trainer, env)
        exact = exact_support(self.model, ds.data, ds.mask, self._max_parents()).probs
        todo = sorted(targets, reverse=True)
        reached: dict = {t: None for t in todo}
        curve, seconds = [], 0.0
        while True:
            p = exact_terminal_distribution(env, trainer.policy)
            j = jsd(exact, p / p.sum())
            curve.append((trainer.step_count, j))
            for t in todo:
                if reached[t] is None and j <= t:
                    reached[t] = trainer.step_count
            if all(v is not None for v in reached.values()) or trainer.step_count >= max_steps:
                break
            seconds += train_posterior(trainer, min(trainer.step_count + every, max_steps), cfg, progress=False)
        return {"steps": reached, "curve": curve, "seconds": seconds, "warm": warm}

    def _max_parents(self):
        return None if self.cfg.max_parents < 0 else self.cfg.max_parents

    def clone(self) -> "GFlowNetBackend":
        other = GFlowNetBackend(self.model, self.cfg, self.samples)
        other.env, other.trainer, other.init_log_z = self.env, self.trainer, self.init_log_z
        other.policy_state = copy.deepcopy(self.policy_state)
        other._support, other.last = self._support, dict(self.last)
        return other

    def metrics(self, true_graph) -> dict:
        return {"log_z": float(self.trainer.log_z)}


# ---------------------------------------------------------------------------------------------
# metrics


def posterior_metrics(support: GraphSupport, true_graph: torch.Tensor | None, prefix: str = "") -> dict:
    """Entropy, expected SHD, probability of the true graph and of its equivalence class, edge AUROC."""
    from ..causal import metrics as M

    p = support.probs
    out = {prefix + "entropy": support.entropy()}
    if true_graph is not None:
        t = torch.as_tensor(true_graph).bool()
        g = support.graphs
        out[prefix + "expected_shd"] = float((p * M.shd(g, t).double()).sum())
        same = (g == t).flatten(1).all(1)
        out[prefix + "p_true_graph"] = float(p[same].sum())
        out[prefix + "p_true_mec"] = float((p * M.markov_equivalent(g, t).double()).sum())
        out[prefix + "edge_auroc"] = (M.edge_auroc(support.edge_marginals(), t)
                                      if bool(t.any()) and not bool(t.sum() == t.numel() - t.shape[0]) else math.nan)
    return out


# ---------------------------------------------------------------------------------------------
# the loop


@dataclass
class RoundRecord:
    strategy: str
    round: int
    spent: float
    experiment: str
    cost: float
    score: float
    decision_seconds: float
    update_seconds: float
    update_steps: int
    metrics: dict

    def row(self) -> dict:
        r = dataclasses.asdict(self)
        r.update(r.pop("metrics"))
        return r


class DesignRun:
    """One comparison of strategies from the same first data set and posterior (see the module
    docstring). `run()` returns {strategy: [RoundRecord per round, round 0 first]}.

    simulator(experiment) -> float [n, d] answers an experiment (gfncore.design.SEMSimulator for a
    known SEM); one with a reset() method is reset before each strategy, so that every strategy
    meets the same noise stream."""

    def __init__(self, data, simulator: Callable[[Experiment], torch.Tensor], config: DesignConfig | None = None,
                 model: ScoreModel | None = None, amortized: AmortizedConfig | None = None,
                 costs: CostModel | None = None, candidates: Sequence[Experiment] | None = None,
                 true_graph=None, interventions=None, node_names=None, posterior_config=None,
                 progress: Callable[[str], None] | None = None):
        self.cfg = config or DesignConfig()
        self.model = model or ScoreModel()
        self.amortized_cfg = amortized or AmortizedConfig()
        self.ds0 = Dataset(data, interventions)
        d = self.ds0.d
        self.names = list(node_names) if node_names is not None else [f"X{i}" for i in range(d)]
        self.simulator = simulator
        self.true_graph = None if true_graph is None else torch.as_tensor(true_graph).bool()
        self.costs = costs or CostModel(parse_costs(self.cfg.node_cost, d, self.names), self.cfg.sample_cost,
                                        self.cfg.observational_cost)
        if self.costs.d != d:
            raise ValueError(f"the cost table has {self.costs.d} node costs for {d} nodes")
        self.candidates = list(candidates) if candidates is not None else candidate_experiments(
            d, self.cfg.size_list(), self.cfg.value_list(), self.cfg.max_targets, self.cfg.intervention_std)
        for e in self.candidates:
            if not isinstance(e, Experiment):
                raise TypeError(f"candidates must be Experiment objects, got {type(e).__name__}")
            if e.observational:
                raise ValueError("candidates must intervene on at least one node (the observational "
                                 "strategy adds observational batches)")
            e.check(d)
        cheapest = self.costs.cheapest(self.candidates)
        if self.cfg.budget < cheapest:
            raise ValueError(f"budget {self.cfg.budget:g} is smaller than the cheapest experiment "
                             f"({cheapest:g}): nothing can be done")
        self.obs_experiment = Experiment((), self.candidates[0].n)
        strategies = self.cfg.strategy_list()
        if d > MAX_EXACT_NODES and (self.cfg.posterior == "exact" or "eig_exact" in strategies
                                    or ("eig" in strategies and self.cfg.estimator == "exact")):
            raise ValueError(f"exact posteriors enumerate DAGs on d <= {MAX_EXACT_NODES} nodes, got d = {d}")
        self.posterior_config = posterior_config
        self.log = progress or (lambda s: None)
        self.info: dict = {}

    # -- pieces ------------------------------------------------------------------------------------
    def _backend(self):
        mp = None if self.cfg.max_parents < 0 else self.cfg.max_parents
        if self.cfg.posterior == "exact":
            return ExactBackend(self.model, mp)
        from ..causal.posterior import CausalConfig

        pc = self.posterior_config or CausalConfig(
            steps=self.cfg.steps, batch_size=self.cfg.batch_size, lr=self.cfg.lr, hidden=self.cfg.hidden,
            seed=self.cfg.seed, threads=self.cfg.threads)
        # the reward is the ScoreModel's; the in-degree cap must match the exact posterior's
        pc = dataclasses.replace(pc, score=self.model.score, prior=self.model.prior, max_parents=self.cfg.max_parents)
        return GFlowNetBackend(self.model, pc, self.cfg.samples)

    def _metrics(self, backend, ds: Dataset) -> dict:
        d = ds.d
        out = {}
        sup = backend.support()
        if d <= MAX_EXACT_NODES:
            exact = sup if backend.name == "exact" else exact_support(self.model, ds.data, ds.mask, self._mp())
            out.update(posterior_metrics(exact, self.true_graph))
            if backend.name != "exact":
                from ..causal.metrics import jsd

                out.update(posterior_metrics(sup, self.true_graph, "gfn_"))
                out["gfn_jsd"] = jsd(exact.probs, sup.probs)
        else:
            m = posterior_metrics(sup, self.true_graph)
            # the support's entropy is the plug-in of the samples; log Z - E[log R] estimates H(P(G|D))
            env = backend.env
            x = env.states_from_adjacency(sup.graphs)
            m["entropy"] = float(backend.trainer.log_z) - float((sup.probs * env.log_reward(x)).sum())
            out.update(m)
        out.update(backend.metrics(self.true_graph))
        return out

    def _scores(self, strategy: str, backend, ds: Dataset, affordable: list[Experiment], gen: torch.Generator):
        """EIG / cost (or the heuristic's uncertainty / cost) of each affordable experiment."""
        costs = torch.tensor([self.costs.cost(e) for e in affordable], dtype=torch.float64)
        if strategy == "heuristic":
            H = pair_entropy(backend.support().edge_marginals())
            u = []
            for e in affordable:
                t = e.mask(ds.d).double()
                touch = ((t[:, None] + t[None, :]) > 0).double()
                u.append(float((H * touch).sum() / 2))
            # ties (same targets, other n or value) go to the larger batch
            return torch.tensor(u, dtype=torch.float64) / costs + 1e-9 * torch.tensor([e.n for e in affordable])
        est = strategy.split("_", 1)[1] if "_" in strategy else self.cfg.estimator
        stats = ds.stats()
        if est == "support":
            eig = eig_support(self.model, stats, backend.support(), affordable, self.cfg.outer, gen).values
        elif est == "exact":
            eig = eig_support(self.model, stats, exact_support(self.model, ds.data, ds.mask, self._mp()), affordable,
                              self.cfg.outer, gen).values
        elif est == "nmc":
            eig = eig_nested_mc(self.model, stats, backend.support(), affordable, self.cfg.outer, self.cfg.inner,
                                gen).values
        else:
            eig = self.amortized.predict(backend.support().edge_marginals(), ds.intervened_rows(), ds.num_rows,
                                         affordable)
        return eig / costs

    def _mp(self):
        return None if self.cfg.max_parents < 0 else self.cfg.max_parents

    def _needs_amortized(self) -> bool:
        s = self.cfg.strategy_list()
        return "eig_amortized" in s or ("eig" in s and self.cfg.estimator == "amortized")

    # -- the loop ----------------------------------------------------------------------------------
    def run(self) -> dict:
        from ..runtime import set_num_threads

        cfg = self.cfg
        if cfg.threads:
            set_num_threads(cfg.threads)
        d = self.ds0.d
        root = self._backend()
        t0 = time.perf_counter()
        first = root.fit(self.ds0, cfg.steps, cfg.seed)
        self.info["initial_fit"] = dict(first)
        m0 = self._metrics(root, self.ds0)
        self.log(f"round 0: {self._fmt(m0)} ({time.perf_counter() - t0:.1f} s)")
        if self._needs_amortized():
            self.amortized = AmortizedEIG(d, self.candidates, self.amortized_cfg, seed=cfg.seed)
            self.info["amortized"] = self.amortized.fit(self.model, self.ds0.stats(), root.support(),
                                                        self.ds0.intervened_rows(), self.ds0.num_rows,
                                                        torch.Generator().manual_seed(cfg.seed + 7))
            self.log(f"amortized EIG trained: {self.info['amortized']}")
        results = {}
        self.first_round = {}
        for si, strategy in enumerate(cfg.strategy_list()):
            results[strategy] = self._run_strategy(strategy, si, root.clone(), m0, first)
        if cfg.warm_start_check and root.name == "gfn" and d <= MAX_EXACT_NODES and self.first_round:
            self.info["warm_start_check"] = self.warm_start_check(root, m0)
        return results

    def warm_start_check(self, root, m0: dict) -> dict:
        """Steps to reach JSD targets on the first strategy's round-1 data, from the round-0 policy
        (warm) and from scratch, at a constant learning rate. The targets include the JSD the
        from-scratch fit of round 0 reached."""
        strategy, ds = next(iter(self.first_round.items()))
        targets = sorted({0.1, 0.05, 0.03, round(m0.get("gfn_jsd", 0.03), 4)}, reverse=True)
        cap = max(2 * self.cfg.steps, 200)
        out = {"data": f"{strategy} round 1", "targets": targets, "max_steps": cap}
        for warm in (True, False):
            r = root.steps_to_jsd(ds, targets, cap, every=50, warm=warm, seed=self.cfg.seed + 99)
            out["warm" if warm else "scratch"] = {"steps": {str(k): v for k, v in r["steps"].items()},
                                                  "curve": r["curve"], "seconds": r["seconds"]}
            self.log(f"warm-start check ({'warm' if warm else 'scratch'}): steps to JSD targets {r['steps']}")
        return out

    def _run_strategy(self, strategy: str, si: int, backend, m0: dict, first: dict) -> list[RoundRecord]:
        cfg = self.cfg
        ds = self.ds0.copy()
        if hasattr(self.simulator, "reset"):
            self.simulator.reset()
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + 17 * si + 1)
        recs = [RoundRecord(strategy, 0, 0.0, "", 0.0, math.nan, 0.0, first["seconds"], first["steps"], dict(m0))]
        spent, r = 0.0, 0
        while True:
            left = cfg.budget - spent + 1e-9
            t0 = time.perf_counter()
            if strategy == "observational":
                e = self.obs_experiment
                if self.costs.cost(e) > left:
                    break
                score = math.nan
            else:
                affordable = [e for e in self.candidates if self.costs.cost(e) <= left]
                if not affordable:
                    break
                if strategy == "random":
                    e = affordable[int(torch.randint(0, len(affordable), (1,), generator=gen))]
                    score = math.nan
                else:
                    s = self._scores(strategy, backend, ds, affordable, gen)
                    k = int(torch.argmax(s))
                    e, score = affordable[k], float(s[k])
            decision = time.perf_counter() - t0
            y = observe(self.simulator, e, ds.d)
            ds.add(y, e)
            if r == 0:
                self.first_round.setdefault(strategy, ds.copy())
            c = self.costs.cost(e)
            spent += c
            r += 1
            up = backend.update(ds, cfg.update_steps, cfg.seed + r)
            m = self._metrics(backend, ds)
            recs.append(RoundRecord(strategy, r, spent, e.label(self.names), c, score, decision, up["seconds"],
                                    up["steps"], m))
            self.log(f"{strategy} round {r}: {e.label(self.names)} (spent {spent:g}/{cfg.budget:g}) {self._fmt(m)}")
        return recs

    @staticmethod
    def _fmt(m: dict) -> str:
        keys = [("entropy", "H"), ("expected_shd", "E[SHD]"), ("p_true_mec", "P(MEC)"), ("gfn_jsd", "JSD")]
        return "  ".join(f"{lab} {m[k]:.3f}" for k, lab in keys if k in m and m[k] is not None)
