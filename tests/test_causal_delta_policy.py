"""DAGDeltaPolicy: the edge logits' offsets are the environment's own Delta log R of each legal
edge (0 elsewhere), and the binding rejects bad features."""
from __future__ import annotations

import pytest
import torch

from gfncore import _C
from gfncore.causal import sample_erdos_renyi_sem
from gfncore.causal.delta_policy import DAGDeltaPolicy
from gfncore.causal.mcmc import sample_mcmc, score_of_env
from gfncore.causal.posterior import PosteriorConfig, make_env


def test_edge_deltas_are_the_environment_reward_deltas():
    cd = sample_erdos_renyi_sem(6, 60, expected_edges=6, seed=0)
    env = make_env(cd, PosteriorConfig(max_parents=3))
    score = score_of_env(env)
    x = env.states_from_adjacency(sample_mcmc(score, chains=2, steps=2000, max_parents=3, samples=20).samples)
    feats = env.encode(x)
    pol = DAGDeltaPolicy(env, score)
    for dt in (torch.float32, torch.float64):
        D = pol.edge_deltas(feats.to(dt))
        mask = env.forward_mask(x)[:, :-1]
        assert bool((D[~mask] == 0).all())
        for b in range(x.shape[0]):
            legal = mask[b].nonzero().flatten()
            want = env.log_reward_delta(x[b:b + 1].expand(len(legal), -1), legal).double()
            assert torch.allclose(D[b, legal].double(), want, rtol=1e-5, atol=1e-3)
    logits = pol.forward_logits(feats)
    assert logits.shape == (x.shape[0], env.n_actions)


def test_edge_deltas_bad_input():
    cd = sample_erdos_renyi_sem(4, 30, seed=0)
    env = make_env(cd, PosteriorConfig())
    score = score_of_env(env)
    with pytest.raises(ValueError, match="features must have shape"):
        _C.causal_edge_deltas(score._c, torch.zeros(3, 10), torch.zeros(3, 16))
    with pytest.raises(ValueError, match="out must"):
        _C.causal_edge_deltas(score._c, torch.zeros(3, 33), torch.zeros(3, 15))
    with pytest.raises(TypeError):
        DAGDeltaPolicy(object(), score)
