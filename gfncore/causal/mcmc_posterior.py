"""`gfncore causal --method mcmc`: structure MCMC on the score and cap of a GFlowNet run's config,
returned as the GFlowNet run's Posterior so that the CLI writes the same outputs. Apart from
gfncore.causal.mcmc because it builds the environment the way posterior.py does, and posterior.py
seeds its replay buffer from mcmc.py (one direction each)."""
from __future__ import annotations

import dataclasses

import torch

from .mcmc import MCMCConfig, sample_mcmc, score_of_env


def mcmc_posterior(data, cfg, mcfg: MCMCConfig, *, interventions=None, node_names=None, true_graph=None):
    """`gfncore causal --method mcmc`: MC^3 on the score and cap a GFlowNet run of the same
    PosteriorConfig would use, returned as a gfncore.causal.Posterior (trainer None) so that the
    CLI writes the same outputs. Edge marginals are the chains' average; for d <= 5 they are
    compared with enumeration, for d <= 10 with the exact DP."""
    from . import metrics as M
    from .posterior import Posterior, make_env

    env = make_env(data, cfg, interventions, node_names)
    if true_graph is None and hasattr(data, "graph"):
        true_graph = data.graph
    mcfg = dataclasses.replace(mcfg, max_parents=cfg.max_parents, seed=cfg.seed, samples=cfg.samples,
                               threads=cfg.threads)
    score = score_of_env(env)
    res = sample_mcmc(score, mcfg)
    marg = res.edge_marginals
    diag = res.diagnostics
    total = res.config.chains * (res.config.steps + res.config.burn_in)
    m = {"method": "mcmc", "samples": int(res.samples.shape[0]), "expected_edges": float(marg.sum()),
         "mean_log_r": diag["mean_log_r"], "mcmc": {k: v for k, v in diag.items()},
         "steps": total, "train_seconds": res.seconds, "sample_seconds": 0.0,
         "steps_per_second": total / res.seconds if res.seconds > 0 else None, "marginals": "mcmc"}
    if res.samples.shape[0]:
        m["expected_edges_samples"] = M.expected_edges(res.samples)
        m["distinct_graphs"] = M.n_distinct(res.samples)
    exact = env.exact_posterior() if env.d <= 5 else None
    ref = exact.edge_marginals if exact is not None else None
    if exact is None and env.d <= 10:
        from .exact_dp import exact_edge_marginals

        dp = exact_edge_marginals(score, max_parents=env.max_in_degree)
        ref = dp.edge_marginals
        m["true_log_z"] = dp.log_z
    if ref is not None:
        m.update(edge_rmse=M.edge_marginal_rmse(marg, ref), edge_corr=M.edge_marginal_corr(marg, ref),
                 exact_expected_edges=float(ref.sum()))
        if exact is not None:
            m["true_log_z"] = exact.log_z
    if true_graph is not None:
        t = torch.as_tensor(true_graph).bool()
        if res.samples.shape[0]:
            m["expected_shd"] = M.expected_shd(res.samples, t)
            m["true_mec_probability"] = M.mec_probability(res.samples, t)
        if t.any() and not t.all():
            m["edge_auroc"] = M.edge_auroc(marg, t)
    return Posterior(env=env, trainer=None, samples=res.samples, edge_marginals=marg, metrics=m,
                     node_names=list(env.node_names), exact=exact, learned_probs=None,
                     true_graph=None if true_graph is None else torch.as_tensor(true_graph).bool())

