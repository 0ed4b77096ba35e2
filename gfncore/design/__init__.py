"""Bayesian experimental design for causal structure learning: choose the next intervention by its
expected information gain about the graph per unit cost, with the GFlowNet posterior P(G | D).

- `experiments`: perfect interventions do(X_T = v) with n rows, costs (a table per node plus a
  cost per row), candidate sets, the ground-truth simulator and the checks on its answers.
- `predictive`: the posterior predictive P(y | e, G, D) of the BGe and linear-Gaussian scores in
  closed form (family by family), and draws y ~ P(y | e, G, D).
- `eig`: EIG(e | D) on a support of graphs (every DAG with the exact posterior or the sampler's
  exact distribution, or sampled graphs) and by nested Monte Carlo.
- `amortized`: EIĜ(e, D), a regressor trained with the MSE criterion on stochastic information-gain
  targets (gfncore.amortize); one forward pass per candidate at decision time.
- `loop`: the active loop (choose, observe, add, warm-start the GFlowNet, repeat until the budget
  is spent) and its baselines (random, observational, edge-uncertainty heuristic).
- `cli`: ``gfncore design --synthetic d=5,n=50,seed=0 --budget 10 --out DIR``.
"""
from .amortized import AmortizedConfig, AmortizedEIG, design_features
from .eig import EIGEstimate, GraphSupport, eig_nested_mc, eig_support, exact_support, information_gain_draws
from .experiments import CostModel, Experiment, SEMSimulator, candidate_experiments, observe
from .loop import DesignConfig, DesignRun
from .predictive import NodeStats, ScoreModel

__all__ = ["AmortizedConfig", "AmortizedEIG", "design_features", "EIGEstimate", "GraphSupport", "eig_nested_mc",
           "eig_support", "exact_support", "information_gain_draws", "CostModel", "Experiment", "SEMSimulator",
           "candidate_experiments", "observe", "DesignConfig", "DesignRun", "NodeStats", "ScoreModel"]
