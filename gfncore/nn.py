"""Policies: forward-policy logits P_F(.|s), a backward policy P_B (uniform or learned), a state
flow log F(s) where a loss needs one, and the learned log Z."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .envs.base import Env


def mlp(n_in: int, hidden: int, layers: int, n_out: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = n_in
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    mods.append(nn.Linear(d, n_out))
    return nn.Sequential(*mods)


def _has_hooks(mods) -> bool:
    if nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in mods)


@dataclass
class PolicyOutput:
    pf_logits: torch.Tensor
    pb_logits: torch.Tensor | None = None
    log_flow: torch.Tensor | None = None


class MLPPolicy(nn.Module):
    """MLP over the environment's encoded states.

    pb: "uniform" (P_B(s|s') = 1/#parents(s'), nothing learned), "learned" (its own MLP) or
    "shared" (a P_B head on the P_F trunk). flow=True adds a log F(s) head (DB, SubTB).
    """

    def __init__(self, env: Env, hidden: int = 256, layers: int = 2, pb: str = "uniform", flow: bool = False,
                 log_z_init: float = 0.0):
        super().__init__()
        if pb not in ("uniform", "learned", "shared"):
            raise ValueError(f"pb must be 'uniform', 'learned' or 'shared', got {pb!r}")
        if layers < 1 or hidden < 1:
            raise ValueError("layers and hidden must be >= 1")
        self.pb, self.has_flow = pb, flow
        self.n_actions, self.n_backward = env.n_actions, env.n_backward_actions
        self.trunk = mlp(env.feature_dim, hidden, layers - 1, hidden) if layers > 1 else nn.Linear(env.feature_dim, hidden)
        self.act = nn.ReLU()
        self.pf_head = nn.Linear(hidden, env.n_actions)
        self.pb_head = nn.Linear(hidden, env.n_backward_actions) if pb == "shared" else None
        self.pb_net = mlp(env.feature_dim, hidden, layers, env.n_backward_actions) if pb == "learned" else None
        self.flow_head = nn.Linear(hidden, 1) if flow else None
        self.log_z = nn.Parameter(torch.tensor(float(log_z_init)))

    def forward_logits(self, features: torch.Tensor) -> torch.Tensor:
        """P_F logits only: what a rollout needs."""
        layers = self._plain_layers()
        if layers is None:
            return self.pf_head(self.act(self.trunk(features)))
        # A rollout calls this once per step on a few rows, where nn.Module dispatch of six
        # modules costs about as much as the matmuls; the same ops without it.
        h = features
        for lin in layers:
            h = torch.relu(F.linear(h, lin.weight, lin.bias))
        return F.linear(h, self.pf_head.weight, self.pf_head.bias)

    def _plain_layers(self):
        """The trunk's Linear layers if trunk -> ReLU -> pf_head is exactly Linear/ReLU modules
        without hooks (so calling their weights directly is the same computation); else None."""
        key = (self.trunk, self.act, self.pf_head)
        cache = self.__dict__.get("_plain_cache")
        if cache is None or any(a is not b for a, b in zip(cache[0], key)):
            mods = list(self.trunk) if isinstance(self.trunk, nn.Sequential) else [self.trunk]
            ok = (all(type(m) in (nn.Linear, nn.ReLU) for m in mods) and type(self.act) is nn.ReLU
                  and type(self.pf_head) is nn.Linear and type(mods[-1]) is nn.Linear
                  and all(type(a) is nn.Linear and type(b) is nn.ReLU for a, b in zip(mods[:-1:2], mods[1::2]))
                  and len(mods) % 2 == 1)
            cache = (key, [m for m in mods if type(m) is nn.Linear] if ok else None, mods + [self.act, self.pf_head])
            self.__dict__["_plain_cache"] = cache
        if cache[1] is None or _has_hooks(cache[2]):
            return None
        return cache[1]

    def forward(self, features: torch.Tensor) -> PolicyOutput:
        h = self.act(self.trunk(features))
        out = PolicyOutput(self.pf_head(h))
        if self.pb_head is not None:
            out.pb_logits = self.pb_head(h)
        elif self.pb_net is not None:
            out.pb_logits = self.pb_net(features)
        if self.flow_head is not None:
            out.log_flow = self.flow_head(h).squeeze(-1)
        return out

    def log_z_parameters(self) -> list[nn.Parameter]:
        return [self.log_z]

    def network_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n != "log_z"]
