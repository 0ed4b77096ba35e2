"""The exact DP over node subsets: equal to enumeration for d <= 5 (every prior, interventions,
in-degree caps) and to a long MCMC at d = 8."""
from __future__ import annotations

import math

import pytest
import torch

from gfncore.causal import CausalScore, Intervention, sample_erdos_renyi_sem
from gfncore.causal import metrics as M
from gfncore.causal.exact_dp import MAX_DP_NODES, exact_edge_marginals
from gfncore.causal.mcmc import sample_mcmc
from test_causal_mcmc import capped_exact


@pytest.mark.parametrize("d,kind,prior,K,interventions", [
    (1, "bge", "uniform", None, False), (2, "bge", "uniform", None, False), (3, "bge", "uniform", None, False),
    (4, "bge", "uniform", 1, False), (5, "bge", "uniform", None, False), (5, "bge", "uniform", 2, True),
    (4, "lingauss", "erdos_renyi", None, False), (5, "bge", "edge", 3, False)])
def test_dp_equals_enumeration(d, kind, prior, K, interventions):
    ivs = [Intervention(nodes=j, n=5) for j in range(d)] if interventions else []
    cd = sample_erdos_renyi_sem(d, 40, expected_edges=min(d, d * (d - 1) // 2), seed=d + 10, interventions=ivs)
    score = CausalScore(cd, kind, prior=prior, edge_prob=0.3 if prior == "erdos_renyi" else None)
    marg, log_z = capped_exact(score, K)
    dp = exact_edge_marginals(score, max_parents=K)
    assert math.isclose(dp.log_z, log_z, rel_tol=0, abs_tol=1e-7)
    assert torch.allclose(dp.edge_marginals, marg, atol=1e-6), (dp.edge_marginals - marg).abs().max()
    assert dp.edge_marginals.diagonal().abs().max() == 0


def test_dp_agrees_with_long_mcmc_at_d8():
    cd = sample_erdos_renyi_sem(8, 60, expected_edges=8, seed=2, interventions=[Intervention(nodes=0, n=10)])
    score = CausalScore(cd)
    # A tight cap (2 or 3 here) leaves MC^3 chains stuck in separate modes (the diagnostics say
    # so: R-hat 5-10); at 4 they mix.
    dp = exact_edge_marginals(score, max_parents=4)
    res = sample_mcmc(score, chains=4, steps=400_000, max_parents=4, seed=0)
    assert res.diagnostics["agree"], res.diagnostics["message"]
    rmse = M.edge_marginal_rmse(res.edge_marginals, dp.edge_marginals)
    assert rmse < 0.01, rmse
    # ... while the uncapped posterior is measurably another one
    free = exact_edge_marginals(score, edges=True)
    assert free.log_z > dp.log_z


def test_dp_bad_input():
    score = CausalScore(torch.randn(30, MAX_DP_NODES + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="d must be <="):
        exact_edge_marginals(score)
    small = CausalScore(torch.randn(30, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="max_parents"):
        exact_edge_marginals(small, max_parents=-1)
    with pytest.raises(TypeError):
        exact_edge_marginals([1, 2, 3])
    only_z = exact_edge_marginals(small, edges=False)
    assert float(only_z.edge_marginals.abs().sum()) == 0 and math.isfinite(only_z.log_z)
