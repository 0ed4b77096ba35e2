"""Bayesian causal structure learning: the posterior P(G | D) over DAGs as a GFlowNet reward.

- `scores`: log R(G) = log P(G) + sum_j LocalScore(j, Pa_j) (BGe, linear-Gaussian; uniform,
  Erdos-Renyi and edge-count priors) in C++ with a thread-safe local-score cache, and a plain
  numpy reference of the same formulas.
- `data`: Erdos-Renyi linear-Gaussian SEMs (observational and interventional), CSV input/output.
- `enumerate`: every DAG on d <= 5 nodes, the exact posterior (DAGPosterior), log Z and edge marginals
  (they live with the DAG environment, gfncore.envs.dag_enumerate).
- `posterior`: fit_posterior (settings: CausalConfig), the GFlowNet sampler of P(G | D) on the DAG environment
  (gfncore.envs.DAG) with good defaults, and its metrics.
- `mcmc`: structure MCMC (MC^3, compiled, parallel chains with diagnostics): sample_mcmc.
- `exact_dp`: the exact log Z and edge marginals by a DP over node subsets (d <= 16).
- `metrics`: expected SHD, edges, edge AUROC, JSD, edge-marginal RMSE / correlation, Markov
  equivalence.
"""
from .data import CausalData, Intervention, load_csv, sample_erdos_renyi_sem, save_csv
from .enumerate import DAGPosterior, ExactPosterior, all_dags, dag_posterior, exact_posterior, is_dag
from .posterior import CausalConfig, Posterior, PosteriorConfig, fit_posterior
from .exact_dp import DPPosterior, exact_edge_marginals
from .mcmc import MCMCConfig, MCMCResult, sample_mcmc
from .scores import CausalScore, ReferenceScore

__all__ = ["CausalData", "Intervention", "load_csv", "save_csv", "sample_erdos_renyi_sem", "CausalScore",
           "ReferenceScore", "DAGPosterior", "all_dags", "dag_posterior", "is_dag", "fit_posterior", "CausalConfig",
           "Posterior", "sample_mcmc", "MCMCConfig", "MCMCResult", "exact_edge_marginals", "DPPosterior",
           # the names before issue 16, kept for existing code
           "ExactPosterior", "exact_posterior", "PosteriorConfig"]
