"""How a run starts: the learned log Z (or log Z(c) head) at an estimate rather than at 0."""
from __future__ import annotations

import torch

from ..envs.base import context_rows


@torch.no_grad()
def initialise_log_z(env, policy, contexts: torch.Tensor, n: int = 16, generator=None) -> float:
    """Start the log Z(c) head (or the scalar log Z) at the untrained policy's importance-sampling
    estimate, averaged over a few contexts: the first steps then train the policy instead of
    walking log Z across nats. Returns the value."""
    from ..metrics import importance_log_z

    if contexts is None:
        v = importance_log_z(env, policy, n, generator=generator)["log_z"]
    else:
        v = sum(importance_log_z(env, policy, n, context=context_rows(c, dtype=c.dtype), generator=generator)["log_z"]
                for c in contexts) / contexts.shape[0]
    net = getattr(policy, "log_z_net", None)
    if net is not None:
        net[-1].bias.fill_(v)
    else:
        policy.log_z.fill_(v)
    return v
