"""A forward policy of the DAG GFlowNet whose logits are offset by the log reward of the graph
each action leads to: edge i -> j by Delta log R = LocalScore(j, Pa_j + i) - LocalScore(j, Pa_j)
(read from the score's cache), stop by 0.

Why: every state is a finished object, so write the flow forward-looking, F(s) = R(s) F~(s)
(Pan et al. 2023). At the optimum of modified DB, P_F(stop | s) = 1 / F~(s) and
P_F(s' | s) = R(s') F~(s') P_B(s | s') / (R(s) F~(s)), so
    log P_F(s' | s) - log P_F(stop | s) = Delta log R(s -> s') + log F~(s') + log P_B(s | s').
With Delta log R added to the edge logits the network outputs only log F~(s') + log P_B: a few
to tens of nats, where the plain network (and DAGPolicy, whose stop offset leaves it r(s') to
predict for every candidate) must learn the score of each child, hundreds of nats apart at d = 20.
Any P_F stays reachable: the offsets depend on the state only.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch

from .. import _C
from ..nn import MLPPolicy, PolicyOutput


class DAGDeltaPolicy(MLPPolicy):
    """MLPPolicy over a DAG environment's [adjacency, legal edges] whose edge logits are offset by
    each legal edge's Delta log R (and the stop logit by nothing). score: the environment's
    CausalScore (gfncore.causal.mcmc.score_of_env(env) builds one)."""

    def __init__(self, env, score, hidden: int = 256, layers: int = 2, pb: str = "uniform", flow: bool = False,
                 log_z_init: float = 0.0):
        if getattr(env, "kind", None) != "dag":
            raise TypeError(f"DAGDeltaPolicy needs a gfncore.envs.DAG environment, got {type(env).__name__}")
        if int(score.num_nodes) != env.d:
            raise ValueError(f"the score has {score.num_nodes} nodes, the environment {env.d}")
        inner = SimpleNamespace(feature_dim=env.feature_dim - 1, context_dim=0, n_actions=env.n_actions,
                                n_backward_actions=env.n_backward_actions)
        super().__init__(inner, hidden=hidden, layers=layers, pb=pb, flow=flow, log_z_init=log_z_init)
        self.d = env.d
        self._score = score

    @torch.no_grad()
    def edge_deltas(self, features: torch.Tensor) -> torch.Tensor:
        f = features.detach().cpu().contiguous()
        out = torch.empty(f.shape[0], self.d * self.d, dtype=f.dtype)
        _C.causal_edge_deltas(self._score._c, f, out)
        return out.to(features.device)

    def _shift(self, logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        delta = self.edge_deltas(features).to(logits.dtype)
        return torch.cat([logits[:, :-1] + delta, logits[:, -1:]], 1)

    def forward_logits(self, features: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self._shift(super().forward_logits(features[:, :-1], context), features)

    def forward(self, features: torch.Tensor, context: torch.Tensor | None = None) -> PolicyOutput:
        out = super().forward(features[:, :-1], context)
        out.pf_logits = self._shift(out.pf_logits, features)
        return out
