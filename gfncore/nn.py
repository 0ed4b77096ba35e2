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


# torch's global forward-hook registries (register_module_forward_hook fills them in place)
_GLOBAL_HOOKS = (nn.modules.module._global_forward_hooks, nn.modules.module._global_forward_pre_hooks)


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
        d = self.__dict__
        mods = d["_modules"]
        cache = d.get("_plain_cache")
        if cache is None or cache[0] is not mods["trunk"] or cache[1] is not mods["act"] or cache[2] is not mods["pf_head"]:
            cache = self._plan()
            d["_plain_cache"] = cache
        # hook registries are dicts that registration fills in place: any() sees later hooks
        if cache[3] is None or _GLOBAL_HOOKS[0] or _GLOBAL_HOOKS[1] or any(cache[4]):
            return None
        return cache[3]

    def _plan(self):
        trunk, act, head = self.trunk, self.act, self.pf_head
        mods = list(trunk) if isinstance(trunk, nn.Sequential) else [trunk]
        ok = (len(mods) % 2 == 1 and type(act) is nn.ReLU and type(head) is nn.Linear
              and all(type(m) is (nn.Linear if i % 2 == 0 else nn.ReLU) for i, m in enumerate(mods)))
        every = [trunk, *mods, act, head] if isinstance(trunk, nn.Sequential) else [*mods, act, head]
        hooks = [h for m in every for h in (m._forward_hooks, m._forward_pre_hooks)]
        return trunk, act, head, (mods[0::2] if ok else None), hooks

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
