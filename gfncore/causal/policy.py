"""The forward policy of the DAG GFlowNet: an MLP over the graph, with the stop logit offset by
the state's own log reward.

Where every state may stop, P_F(stop | s) = R(s) / F(s) at the optimum. For a BGe posterior
log R spans hundreds of nats between the empty graph and the posterior's modes, so a plain MLP
must output stop logits hundreds of nats apart and, because modified DB compares the stop
probabilities of consecutive states, to within a fraction of a nat. Offsetting the stop logit by
log R(s) (a state-dependent shift, so any P_F stays reachable: only the parameterisation changes;
the forward-looking flows of Pan et al. 2023, F(s) = F~(s) R(s), applied to P_F) leaves the
network log F(s) - log R(s): tens of nats. On d = 5, N = 100 BGe data this turned JSD 0.07-0.11
into about 0.02 on the data sets where the empty graph is 200-300 nats below log Z.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch

from ..nn import MLPPolicy, PolicyOutput


class DAGPolicy(MLPPolicy):
    """MLPPolicy over a DAG environment's features [adjacency, legal edges] whose stop logit is
    shifted by r(s) - reward_ref, with r(s) = log R(s) - log R(empty graph) the environment's last
    feature (gfncore.envs.DAG.encode) and reward_ref a constant in the same units (the log R of a
    good graph, so the shift is near 0 where the posterior's mass is). Options as MLPPolicy."""

    def __init__(self, env, hidden: int = 256, layers: int = 2, pb: str = "uniform", flow: bool = False,
                 log_z_init: float = 0.0, reward_ref: float = 0.0):
        if getattr(env, "kind", None) != "dag":
            raise TypeError(f"DAGPolicy needs a gfncore.envs.DAG environment, got {type(env).__name__}")
        inner = SimpleNamespace(feature_dim=env.feature_dim - 1, context_dim=0, n_actions=env.n_actions,
                                n_backward_actions=env.n_backward_actions)
        super().__init__(inner, hidden=hidden, layers=layers, pb=pb, flow=flow, log_z_init=log_z_init)
        self.register_buffer("reward_ref", torch.tensor(float(reward_ref)))

    def _shift(self, logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        r = (features[:, -1] - self.reward_ref).to(logits.dtype).unsqueeze(1)
        return torch.cat([logits[:, :-1], logits[:, -1:] + r], 1)

    def forward_logits(self, features: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self._shift(super().forward_logits(features[:, :-1], context), features)

    def forward(self, features: torch.Tensor, context: torch.Tensor | None = None) -> PolicyOutput:
        out = super().forward(features[:, :-1], context)
        out.pf_logits = self._shift(out.pf_logits, features)
        return out
