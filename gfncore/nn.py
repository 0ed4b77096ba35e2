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

    Conditional GFlowNets (``context_dim`` > 0, by default the environment's): the policy sees
    each row's context c, concatenated to the state features (``conditioning="concat"``) or as a
    FiLM scale and shift of the trunk's output (``"film"``), and log Z(c) is a learned head
    (``log_z_of(c)``, an MLP of width ``log_z_hidden``) instead of one scalar.

    ``context_encoder``: a module mapping raw contexts [n, C] to embeddings [n, E] (its ``out_dim``
    attribute says E), e.g. :class:`SetEncoder` for a context that is a whole data set. The
    embedding is what the trunk (concat or FiLM) and the log Z(c) head see; the encoder trains
    with the network's learning rate.
    """

    def __init__(self, env: Env, hidden: int = 256, layers: int = 2, pb: str = "uniform", flow: bool = False,
                 log_z_init: float = 0.0, context_dim: int | None = None, conditioning: str = "concat",
                 log_z_hidden: int = 64, context_encoder: nn.Module | None = None):
        super().__init__()
        if pb not in ("uniform", "learned", "shared"):
            raise ValueError(f"pb must be 'uniform', 'learned' or 'shared', got {pb!r}")
        if layers < 1 or hidden < 1:
            raise ValueError("layers and hidden must be >= 1")
        if conditioning not in ("concat", "film"):
            raise ValueError(f"conditioning must be 'concat' or 'film', got {conditioning!r}")
        C = env.context_dim if context_dim is None else int(context_dim)
        if C < 0:
            raise ValueError(f"context_dim must be >= 0, got {C}")
        self.pb, self.has_flow = pb, flow
        self.context_dim, self.conditioning = C, conditioning
        self.n_actions, self.n_backward = env.n_actions, env.n_backward_actions
        self.context_encoder = context_encoder
        E = C  # the width of what the networks see of a context
        if context_encoder is not None:
            if not C:
                raise ValueError("context_encoder needs a conditional policy (context_dim > 0)")
            if not isinstance(context_encoder, nn.Module):
                raise TypeError(f"context_encoder must be a torch.nn.Module, got {type(context_encoder).__name__}")
            E = getattr(context_encoder, "out_dim", None)
            if isinstance(E, bool) or not isinstance(E, int) or E < 1:
                raise ValueError(f"context_encoder must say its embedding width as an int attribute out_dim >= 1, "
                                 f"got {E!r}")
        n_in = env.feature_dim + (E if conditioning == "concat" else 0)
        self.trunk = mlp(n_in, hidden, layers - 1, hidden) if layers > 1 else nn.Linear(n_in, hidden)
        self.act = nn.ReLU()
        self.pf_head = nn.Linear(hidden, env.n_actions)
        self.pb_head = nn.Linear(hidden, env.n_backward_actions) if pb == "shared" else None
        self.pb_net = mlp(n_in, hidden, layers, env.n_backward_actions) if pb == "learned" else None
        self.flow_head = nn.Linear(hidden, 1) if flow else None
        self.film = nn.Linear(E, 2 * hidden) if C and conditioning == "film" else None
        if self.film is not None:  # start as the identity modulation
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
        self.log_z = nn.Parameter(torch.tensor(float(log_z_init)))
        self.log_z_net = None
        if C:
            self.log_z_net = mlp(E, log_z_hidden, 2, 1)
            with torch.no_grad():
                self.log_z_net[-1].bias.fill_(float(log_z_init))
        # Trainer(seed=s) re-draws the weights of a policy that is exactly as this constructor left
        # it (seed_weights): a snapshot of them, and the arguments that rebuild it. A subclass or a
        # context encoder brought from outside draws weights this constructor cannot re-draw.
        self._fresh = None
        if type(self) is MLPPolicy and not any(True for _ in (context_encoder.parameters() if context_encoder
                                                               is not None else ())):
            self._fresh = ((env, hidden, layers, pb, flow, log_z_init, context_dim, conditioning, log_z_hidden,
                            context_encoder), self._fingerprint())

    def _fingerprint(self) -> list[float]:
        with torch.no_grad():
            return [float(p.double().sum()) for p in self.parameters()] + [
                float(p.double().abs().sum()) for p in self.parameters()]

    def __getstate__(self):  # the rebuild arguments hold the environment: not part of a pickled policy
        d = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        d = dict(d)
        d["_fresh"] = None
        return d

    def seed_weights(self, seed: int) -> bool:
        """If this policy's weights are still exactly the constructor's (not trained, loaded or
        edited since), re-draw them as `torch.manual_seed(seed)` just before the constructor would
        have, without touching torch's global random state; return whether it did. Trainer(seed=s)
        calls it, so a seeded Trainer seeds the initial weights too."""
        if self._fresh is None or self._fingerprint() != self._fresh[1]:
            self._fresh = None
            return False
        args = self._fresh[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            again = MLPPolicy(*args)
        self.load_state_dict(again.state_dict())
        self._fresh = None  # from here on the weights are the run's: a second Trainer keeps them
        return True

    def _input(self, features: torch.Tensor, context: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(trunk input, the context as the networks see it: encoded, in the features' dtype)."""
        if not self.context_dim:
            if context is not None:
                raise ValueError("this policy takes no context (context_dim = 0)")
            return features, None
        if context is None:
            raise ValueError(f"this policy is conditional: pass the rows' contexts [n, {self.context_dim}]")
        if context.shape != (features.shape[0], self.context_dim):
            raise ValueError(f"context must have shape [{features.shape[0]}, {self.context_dim}], got "
                             f"{list(context.shape)}")
        context = self._encode(context.to(features.dtype))
        return (torch.cat([features, context], -1) if self.conditioning == "concat" else features), context

    def _encode(self, context: torch.Tensor) -> torch.Tensor:
        if self.context_encoder is None:
            return context
        e = self.context_encoder(context)
        if e.shape != (context.shape[0], self.log_z_net[0].in_features):
            raise ValueError(f"context_encoder must map [n, {self.context_dim}] contexts to [n, "
                             f"{self.log_z_net[0].in_features}] (its out_dim), got {list(e.shape)}")
        return e

    def _trunk(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        h = self.trunk(x)
        if self.film is not None:
            scale, shift = self.film(context.to(h.dtype)).chunk(2, -1)
            h = h * (1 + scale) + shift
        return self.act(h)

    def log_z_of(self, context: torch.Tensor) -> torch.Tensor:
        """log Z(c) for each context [B, C] -> [B] (the scalar log Z for an unconditional policy)."""
        if self.log_z_net is None:
            return self.log_z.expand(context.shape[0])
        dtype = self.log_z_net[0].weight.dtype
        if context.dim() != 2 or context.shape[1] != self.context_dim:
            raise ValueError(f"context must have shape [n, {self.context_dim}], got {list(context.shape)}")
        return self.log_z_net(self._encode(context.to(dtype))).squeeze(-1)

    def forward_logits(self, features: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """P_F logits only: what a rollout needs."""
        x, context = self._input(features, context)
        layers = self._plain_layers() if self.film is None else None
        if layers is None:
            return self.pf_head(self._trunk(x, context))
        features = x
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

    def forward(self, features: torch.Tensor, context: torch.Tensor | None = None) -> PolicyOutput:
        x, context = self._input(features, context)
        h = self._trunk(x, context)
        out = PolicyOutput(self.pf_head(h))
        if self.pb_head is not None:
            out.pb_logits = self.pb_head(h)
        elif self.pb_net is not None:
            out.pb_logits = self.pb_net(x)
        if self.flow_head is not None:
            out.log_flow = self.flow_head(h).squeeze(-1)
        return out

    def log_z_parameters(self) -> list[nn.Parameter]:
        """log Z, or the log Z(c) head: trained with the log Z learning rate."""
        if self.log_z_net is not None:
            return list(self.log_z_net.parameters())
        return [self.log_z]

    def network_parameters(self) -> list[nn.Parameter]:
        z = {id(p) for p in self.log_z_parameters()} | {id(self.log_z)}
        return [p for p in self.parameters() if id(p) not in z]


class ContextScaler(nn.Module):
    """The context encoder of a scalar-context policy: c -> (c − centre) / half-width of the training
    range, so the log Z(c) head's and the trunk's first ReLU layers see inputs in [−1, 1] around 0
    (raw inputs all of one sign leave many ReLUs dead across the whole range, and the head then
    cannot bend to follow log S(c))."""

    def __init__(self, low: float, high: float, dim: int = 1):
        super().__init__()
        self.out_dim = dim
        self.register_buffer("centre", torch.tensor(0.5 * (low + high)))
        self.register_buffer("scale", torch.tensor(2.0 / (high - low)))

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        return (context - self.centre.to(context.dtype)) * self.scale.to(context.dtype)


class SetEncoder(nn.Module):
    """A permutation-invariant encoder of a context that is a set (DeepSets, Zaheer et al. 2017):
    the context row [set_size * element_dim] is read as set_size elements, each mapped by an MLP
    phi, mean-pooled, and mapped by an MLP rho to an embedding [out_dim]. A conditional GFlowNet
    whose context is a whole data set D (a posterior over parameters amortized over data sets)
    sees D through it, so reordering the examples cannot change P_F(.|s, D) or log Z(D).

    With ``moments=2`` (the default) the pooled vector also holds the set's empirical first and
    second moments, the means of e_i and of every product e_i[a] e_i[b]. A randomly initialised phi
    averaged over a set gives nearly the same vector for every set (the differences between data
    sets live in small shifts of such averages, which its ReLUs blur), so rho would first have to
    learn to amplify them; the moments carry them from the first step, and for a linear-Gaussian
    likelihood they are the sufficient statistics (X^T X, X^T y, y^T y) themselves. ``moments=0``
    pools phi alone.

    Identical context rows (a batch draws several trajectories per context, and every state of a
    trajectory carries its context) are encoded once.
    """

    def __init__(self, element_dim: int, set_size: int, hidden: int = 64, out_dim: int = 64, layers: int = 2,
                 moments: int = 2):
        super().__init__()
        for name, v in (("element_dim", element_dim), ("set_size", set_size), ("hidden", hidden),
                        ("out_dim", out_dim), ("layers", layers)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"SetEncoder: {name} must be an int >= 1, got {v!r}")
        if moments not in (0, 1, 2):
            raise ValueError(f"SetEncoder: moments must be 0, 1 or 2, got {moments!r}")
        self.element_dim, self.set_size, self.out_dim, self.moments = element_dim, set_size, out_dim, moments
        self.context_dim = element_dim * set_size
        self.phi = mlp(element_dim, hidden, layers, hidden)
        iu = torch.triu_indices(element_dim, element_dim)
        self.register_buffer("_pairs", iu, persistent=False)
        n_mom = (element_dim if moments >= 1 else 0) + (iu.shape[1] if moments == 2 else 0)
        self.rho = mlp(hidden + n_mom, hidden, 1, out_dim)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        if context.dim() != 2 or context.shape[1] != self.context_dim:
            raise ValueError(f"SetEncoder: context must have shape [n, {self.context_dim}] ({self.set_size} elements "
                             f"of {self.element_dim}), got {list(context.shape)}")
        if context.shape[0] > 1:
            uniq, inv = torch.unique(context, dim=0, return_inverse=True)
            if uniq.shape[0] < context.shape[0]:
                return self._embed(uniq)[inv]
        return self._embed(context)

    def _embed(self, context: torch.Tensor) -> torch.Tensor:
        elems = context.reshape(context.shape[0], self.set_size, self.element_dim)
        pooled = [self.phi(elems).mean(1)]
        if self.moments >= 1:
            pooled.append(elems.mean(1))
        if self.moments == 2:
            a, b = self._pairs
            pooled.append((elems[..., a] * elems[..., b]).mean(1))
        return self.rho(torch.cat(pooled, -1) if len(pooled) > 1 else pooled[0])


class SetAttentionEncoder(SetEncoder):
    """A permutation-invariant set encoder with attention (Set Transformer, Lee et al. 2019): the
    elements are embedded, pass through `blocks` self-attention blocks (each element sees every
    other, so interactions between examples are modelled before pooling), and are pooled by
    attention from `seeds` learned queries (PMA); with ``moments`` the set's first and second
    moments join the pooled vector as in :class:`SetEncoder`, and rho maps it to [out_dim].
    Identical context rows are encoded once."""

    def __init__(self, element_dim: int, set_size: int, hidden: int = 64, out_dim: int = 64, heads: int = 4,
                 blocks: int = 1, seeds: int = 1, moments: int = 2):
        super().__init__(element_dim, set_size, hidden=hidden, out_dim=out_dim, moments=moments)
        for name, v in (("heads", heads), ("seeds", seeds)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"SetAttentionEncoder: {name} must be an int >= 1, got {v!r}")
        if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 0:
            raise ValueError(f"SetAttentionEncoder: blocks must be an int >= 0, got {blocks!r}")
        if hidden % heads:
            raise ValueError(f"SetAttentionEncoder: hidden ({hidden}) must be a multiple of heads ({heads})")
        self.phi = mlp(element_dim, hidden, 1, hidden)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(hidden, heads, dim_feedforward=2 * hidden, dropout=0.0, batch_first=True)
            for _ in range(blocks))
        self.seeds = nn.Parameter(torch.randn(1, seeds, hidden) / hidden ** 0.5)
        self.pool = nn.MultiheadAttention(hidden, heads, batch_first=True)
        n_mom = self.rho[0].in_features - hidden
        self.rho = mlp(seeds * hidden + n_mom, hidden, 1, out_dim)

    def _embed(self, context: torch.Tensor) -> torch.Tensor:
        elems = context.reshape(context.shape[0], self.set_size, self.element_dim)
        h = self.phi(elems)
        for blk in self.blocks:
            h = blk(h)
        pooled, _ = self.pool(self.seeds.expand(h.shape[0], -1, -1), h, h, need_weights=False)
        parts = [pooled.flatten(1)]
        if self.moments >= 1:
            parts.append(elems.mean(1))
        if self.moments == 2:
            a, b = self._pairs
            parts.append((elems[..., a] * elems[..., b]).mean(1))
        return self.rho(torch.cat(parts, -1))
