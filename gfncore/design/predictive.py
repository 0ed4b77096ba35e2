"""The posterior predictive P(y | e, G, D) of new interventional rows under a causal graph G, for
the two scores of gfncore.causal (BGe and linear-Gaussian), batched over many draws and families.

Both marginal likelihoods factorise over families, and node j's family uses only the rows where j
was not intervened on. Under a perfect intervention do(X_T = v) with n rows y, the predictive is
therefore a ratio of local scores:

    log P(y | e, G, D) = sum_{j not in T} [ LocalScore(j, Pa_j; D + y) - LocalScore(j, Pa_j; D) ],

the new rows being scored for every node except the targets (whose values are set, not drawn).
The C++ CausalScore computes the same local scores for one fixed data set with a cache; the
information gain of an experiment needs them on thousands of hypothetical data sets D + y at once,
so they are computed here in float64 torch from per-node sufficient statistics (row count, row
sums, Gram matrix), the families of every draw grouped by their number of parents k, each group one
batched Cholesky of k x k matrices. tests/test_design_predictive.py checks them against the C++
score on D + y with the rows marked as intervened.

Drawing y ~ P(y | e, G, D) samples each family's parameters from their posterior given D, then
simulates the SEM with the targets clamped:
- linear-Gaussian: w_j ~ N(mu_j, Sigma_j), the conjugate Gaussian posterior of the weights
  (noise variance known);
- BGe: the Normal-Wishart posterior of the family's block {j} + Pa_j, read through its partition:
  the conditional variance sigma^2 = psi / chi^2_nu (nu = N + alpha_w - d + |Pa| + 1), the
  regression weights beta ~ N(R_Pa^-1 R_Pa,j, sigma^2 R_Pa^-1), the intercept
  ~ N(m_j - beta . m_Pa, sigma^2 / (alpha_mu + N)), with R the posterior scatter and m the
  posterior mean (the family's Student-t predictive, drawn exactly).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

SCORES = ("bge", "lingauss")  # the marginal likelihoods whose predictive is written out below


@dataclass(frozen=True)
class ScoreModel:
    """The marginal likelihood P(D | G) and graph prior of a causal-graph GFlowNet's reward, with
    the hyperparameters the predictive needs (the same names as gfncore.causal.CausalScore)."""

    score: str = field(default="bge", metadata={"help": "marginal likelihood: bge or lingauss"})
    alpha_mu: float = field(default=1.0, metadata={"help": "BGe: prior precision scale of the mean"})
    alpha_w: float = field(default=0.0, metadata={"help": "BGe: Wishart degrees of freedom (0: d + 2)"})
    noise_var: float = field(default=1.0, metadata={"help": "lingauss: noise variance of every node"})
    weight_var: float = field(default=1.0, metadata={"help": "lingauss: prior variance of each edge weight"})
    weight_mean: float = field(default=0.0, metadata={"help": "lingauss: prior mean of each edge weight"})
    prior: str = field(default="uniform", metadata={"help": "graph prior: uniform, erdos_renyi or edge"})
    edge_prob: float = field(default=0.0, metadata={"help": "erdos_renyi prior: edge probability (0: 1 / (d - 1))"})
    edge_penalty: float = field(default=1.0, metadata={"help": "edge prior: log P(G) = -edge_penalty |E|"})

    def __post_init__(self):
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {list(SCORES)}, got {self.score!r}")
        for name in ("alpha_mu", "noise_var", "weight_var"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        from ..envs.dag import PRIORS

        if self.prior not in PRIORS:
            raise ValueError(f"prior must be one of {list(PRIORS)}, got {self.prior!r}")
        if not math.isfinite(self.weight_mean):
            raise ValueError(f"weight_mean must be finite, got {self.weight_mean!r}")
        if not 0 <= self.edge_prob < 1:
            raise ValueError(f"edge_prob must be in [0, 1) (0: 1 / (d - 1)), got {self.edge_prob!r}")

    def alpha_w_for(self, d: int) -> float:
        aw = float(d + 2 if self.alpha_w == 0 else self.alpha_w)
        if aw <= d - 1:
            raise ValueError(f"alpha_w must be > d - 1 = {d - 1}, got {aw}")
        return aw

    def _score_kwargs(self, d: int) -> dict:
        ep = None
        if self.prior == "erdos_renyi":
            ep = self.edge_prob if self.edge_prob > 0 else 1.0 / max(d - 1, 1)
            if ep >= 1:
                raise ValueError("the erdos_renyi prior needs d >= 3 for the default edge_prob; give edge_prob")
        return dict(prior=self.prior, alpha_mu=self.alpha_mu, alpha_w=self.alpha_w_for(d), noise_var=self.noise_var,
                    weight_var=self.weight_var, weight_mean=self.weight_mean, edge_prob=ep,
                    edge_penalty=self.edge_penalty)

    def causal_score(self, data, interventions=None):
        """The compiled reward log R(G) = log P(G) + log P(D | G) of a data set under this model."""
        from ..causal.scores import CausalScore

        x = torch.as_tensor(data, dtype=torch.float64)
        return CausalScore(x, self.score, interventions=interventions, **self._score_kwargs(x.shape[1]))

    def env(self, data, interventions=None, node_names=None, max_parents: int | None = None):
        """The DAG environment (gfncore.envs.DAG) whose reward is this model on a data set."""
        from ..envs import DAG

        x = torch.as_tensor(data, dtype=torch.float64)
        return DAG(data=x, score=self.score, interventions=interventions, node_names=node_names,
                   max_parents=max_parents, **self._score_kwargs(x.shape[1]))


# ---------------------------------------------------------------------------------------------
# sufficient statistics


@dataclass
class NodeStats:
    """Per-node sufficient statistics of a data set: for node j, over the rows where j was not
    intervened on, the row count N[j], row sums S[j] [d] and Gram matrix Q[j] [d, d]."""

    count: torch.Tensor  # float64 [d]
    sums: torch.Tensor   # float64 [d, d]
    gram: torch.Tensor   # float64 [d, d, d]

    @property
    def d(self) -> int:
        return int(self.count.shape[0])

    @classmethod
    def of(cls, data, interventions=None) -> "NodeStats":
        x = torch.as_tensor(data, dtype=torch.float64).cpu()
        if x.dim() != 2:
            raise ValueError(f"data must have shape [N, d], got {list(x.shape)}")
        n, d = x.shape
        if interventions is None:
            keep = torch.ones(n, d, dtype=torch.float64)
        else:
            m = torch.as_tensor(interventions)
            if m.dtype != torch.bool or tuple(m.shape) != (n, d):
                raise ValueError(f"interventions must be a bool mask of shape [{n}, {d}], got "
                                 f"{m.dtype} {list(m.shape)}")
            keep = (~m).double()
        return cls(count=keep.sum(0), sums=keep.T @ x, gram=torch.einsum("nk,ni,nj->kij", keep, x, x))

    def add(self, data, interventions=None) -> "NodeStats":
        """The statistics of this data set with more rows appended."""
        o = NodeStats.of(data, interventions)
        return NodeStats(self.count + o.count, self.sums + o.sums, self.gram + o.gram)


# ---------------------------------------------------------------------------------------------
# families


@dataclass
class Families:
    """Families (node j, parent set Pa) as node ids [U] and parent masks [U, d]."""

    nodes: torch.Tensor    # int64 [U]
    parents: torch.Tensor  # bool [U, d]

    def __len__(self) -> int:
        return int(self.nodes.shape[0])

    @property
    def d(self) -> int:
        return int(self.parents.shape[1])

    @classmethod
    def of_graphs(cls, graphs: torch.Tensor) -> tuple["Families", torch.Tensor]:
        """The distinct families of graphs [S, d, d] and each graph's family ids [S, d] (node order)."""
        g = torch.as_tensor(graphs).bool()
        S, d = g.shape[0], g.shape[-1]
        pa = g.transpose(1, 2).reshape(S * d, d)  # row (s, j): the parents of j in graph s
        nodes = torch.arange(d).repeat(S)
        if d <= 56:
            # one int64 key per family, (node, parent 0, parent 1, ...) in lexicographic order: a
            # 1-D unique is ~10x faster than unique over rows
            bits = torch.bitwise_left_shift(torch.ones(d, dtype=torch.int64), torch.arange(d - 1, -1, -1))
            keys = (nodes << d) | (pa.long() * bits).sum(1)
            uniq, inv = torch.unique(keys, return_inverse=True)
            parents = (uniq[:, None] & bits) != 0
            return cls((uniq >> d).contiguous(), parents.contiguous()), inv.view(S, d)
        rows = torch.cat([nodes[:, None], pa.long()], 1)
        uniq, inv = torch.unique(rows, dim=0, return_inverse=True)
        return cls(uniq[:, 0].contiguous(), uniq[:, 1:].bool().contiguous()), inv.view(S, d)

    def groups(self) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
        """The families by number of parents k: (k, positions [U_k], variables [U_k, k + 1]: the
        parents in increasing order, then the node)."""
        if getattr(self, "_groups", None) is None:
            k_all = self.parents.sum(1)
            out = []
            for k in torch.unique(k_all).tolist():
                pos = (k_all == k).nonzero().flatten()
                par = self.parents[pos].nonzero()[:, 1].view(-1, k) if k else torch.zeros(len(pos), 0, dtype=torch.int64)
                out.append((int(k), pos, torch.cat([par, self.nodes[pos, None]], 1)))
            self._groups = out
        return self._groups


def _chunks(total: int, per_item: int, budget: int = 1 << 22):
    step = max(1, budget // max(per_item, 1))
    for i in range(0, total, step):
        yield slice(i, min(total, i + step))


def family_log_marginal(model: ScoreModel, d: int, k: int, count: torch.Tensor, s: torch.Tensor,
                        Q: torch.Tensor) -> torch.Tensor:
    """log P(x_j | x_Pa) of families with k parents, without the graph prior's share, from the
    sufficient statistics of node j's rows over the family's variables Y = (Pa..., j): count [...],
    sums s [..., k + 1] and Gram matrix Q [..., k + 1, k + 1] -> [...]. The linear-Gaussian
    formula is Bayesian linear regression's evidence; BGe is eq. (19) of Kuipers, Moffa &
    Heckerman (2014), with log det R_Y = log det R_Pa + log (Schur complement of R_Pa)."""
    eye = torch.eye(k, dtype=torch.float64)
    if model.score == "lingauss":
        s2, sw, m = model.noise_var, model.weight_var, model.weight_mean
        xx = Q[..., k, k]
        quad = logdet = torch.zeros_like(xx)
        if k:
            A = Q[..., :k, :k] / s2 + eye / sw
            b = m / sw + Q[..., :k, k] / s2
            L = torch.linalg.cholesky(A)
            z = torch.linalg.solve_triangular(L, b.unsqueeze(-1), upper=False).squeeze(-1)
            quad = z.square().sum(-1)
            logdet = 2 * L.diagonal(dim1=-2, dim2=-1).log().sum(-1) + k * math.log(sw)  # log det(sw A)
        return (-0.5 * count * math.log(2 * math.pi * s2) - 0.5 * logdet
                - 0.5 * (xx / s2 + m * m * k / sw - quad))
    aw, am = model.alpha_w_for(d), model.alpha_mu
    t = am * (aw - d - 1) / (am + 1)
    # posterior scatter R = T + Q + am nu nu^T - (s + am nu)(s + am nu)^T / (N + am), prior mean nu = 0
    R = t * torch.eye(k + 1, dtype=torch.float64) + Q - s.unsqueeze(-1) * s.unsqueeze(-2) / (count + am)[..., None, None]
    schur = R[..., k, k]
    logdet_pa = torch.zeros_like(schur)
    if k:
        L = torch.linalg.cholesky(R[..., :k, :k])
        z = torch.linalg.solve_triangular(L, R[..., :k, k].unsqueeze(-1), upper=False).squeeze(-1)
        schur = schur - z.square().sum(-1)
        logdet_pa = 2 * L.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    a0 = aw - d + k
    return (0.5 * (math.log(am) - torch.log(count + am)) + torch.lgamma(0.5 * (count + a0 + 1))
            - math.lgamma(0.5 * (a0 + 1)) - 0.5 * count * math.log(math.pi)
            + 0.5 * ((a0 + 1) * (k + 1) - a0 * k) * math.log(t)
            - 0.5 * logdet_pa - 0.5 * (count + a0 + 1) * torch.log(schur))


def _family_stats(stats: NodeStats, nodes: torch.Tensor, Y: torch.Tensor):
    """count [U], sums [U, k + 1] and Gram [U, k + 1, k + 1] of each family's node rows over Y."""
    return (stats.count[nodes], stats.sums[nodes[:, None], Y],
            stats.gram[nodes[:, None, None], Y[:, :, None], Y[:, None, :]])


def base_log_marginal(model: ScoreModel, fam: Families, stats: NodeStats) -> torch.Tensor:
    """log P(D_j | Pa) of every family on its node's rows of D: [U]."""
    out = torch.zeros(len(fam), dtype=torch.float64)
    for k, pos, Y in fam.groups():
        out[pos] = family_log_marginal(model, fam.d, k, *_family_stats(stats, fam.nodes[pos], Y))
    return out


def predictive_log_prob(model: ScoreModel, fam: Families, stats: NodeStats, y: torch.Tensor,
                        targets: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
    """log P(y_j | y_Pa, e, D) of each family for a batch of interventional data sets y [B, n, d]
    (rows set by a perfect intervention on the nodes where targets [d] (bool) is True): [B, U],
    0 for the families of targeted nodes. Sum over a graph's families for log P(y | e, G, D)."""
    y = torch.as_tensor(y, dtype=torch.float64)
    B, n, d = y.shape
    out = torch.zeros(B, len(fam), dtype=torch.float64)
    if B == 0 or n == 0:
        return out
    tgt = targets.to(torch.bool)
    if base is None:
        base = base_log_marginal(model, fam, stats)
    gy = y.transpose(1, 2) @ y          # [B, d, d]
    sy = y.sum(1)                       # [B, d]
    for k, pos, Y in fam.groups():
        live = ~tgt[fam.nodes[pos]]
        if not bool(live.any()):
            continue
        pos, Y = pos[live], Y[live]
        cnt, sm, Q = _family_stats(stats, fam.nodes[pos], Y)
        Yi, Yj = Y[:, :, None], Y[:, None, :]
        for cb in _chunks(B, Y.shape[0] * (k + 1) * (k + 2)):
            lm = family_log_marginal(model, d, k, (cnt + n).expand(cb.stop - cb.start, -1),
                                     sm + sy[cb][:, Y], Q + gy[cb][:, Yi, Yj])
            out[cb, pos] = lm - base[pos]
    return out


# ---------------------------------------------------------------------------------------------
# sampling y ~ P(y | e, G, D)


def sample_parameters(model: ScoreModel, stats: NodeStats, graphs: torch.Tensor, generator: torch.Generator):
    """One draw of every family's parameters from their posterior given D, for graphs [B, d, d]:
    (weights [B, d, d] with weights[b, i, j] the effect of i on j, intercepts [B, d], noise
    standard deviations [B, d])."""
    g = torch.as_tensor(graphs).bool()
    B, d = g.shape[0], g.shape[-1]
    p = g.transpose(1, 2).to(torch.float64)               # [B, j, d]: parents of j
    eye = torch.eye(d, dtype=torch.float64)
    ar = torch.arange(d)
    cnt = stats.count[None]
    eps = torch.randn(B, d, d, generator=generator, dtype=torch.float64)
    if model.score == "lingauss":
        s2, sw, m = model.noise_var, model.weight_var, model.weight_mean
        A = p[:, :, :, None] * stats.gram[None] * p[:, :, None, :] / s2 + eye / sw
        b = p * (m / sw + stats.gram[ar, :, ar][None] / s2)   # Q_j[Pa, j]
        L = torch.linalg.cholesky(A)
        mu = torch.cholesky_solve(b.unsqueeze(-1), L).squeeze(-1)
        # mu + L^-T eps has covariance (L L^T)^-1 = A^-1, the posterior covariance
        w = mu + torch.linalg.solve_triangular(L.transpose(-1, -2), eps.unsqueeze(-1), upper=True).squeeze(-1)
        w = w * p
        return (w.transpose(1, 2).contiguous(), torch.zeros(B, d, dtype=torch.float64),
                torch.full((B, d), math.sqrt(s2), dtype=torch.float64))
    aw, am = model.alpha_w_for(d), model.alpha_mu
    t = am * (aw - d - 1) / (am + 1)
    R = t * eye + stats.gram - stats.sums.unsqueeze(-1) * stats.sums.unsqueeze(-2) / (stats.count + am)[:, None, None]
    mean = stats.sums / (stats.count + am)[:, None]          # [j, d]: posterior mean on node j's rows
    M = p[:, :, :, None] * R[None] * p[:, :, None, :] + torch.diag_embed(1 - p)
    L = torch.linalg.cholesky(M)
    rk = p * R[ar, :, ar][None]                              # [B, j, d]: R_j[Pa, j]
    beta_mean = torch.cholesky_solve(rk.unsqueeze(-1), L).squeeze(-1) * p
    psi = (R[ar, ar, ar][None] - (rk * beta_mean).sum(-1)).clamp_min(1e-300)
    nu = cnt + aw - d + p.sum(-1) + 1                         # [B, j]
    var = psi / (2 * _standard_gamma(0.5 * nu, generator))    # sigma^2 = psi / chi^2_nu
    z = torch.linalg.solve_triangular(L.transpose(-1, -2), eps.unsqueeze(-1), upper=True).squeeze(-1)
    beta = (beta_mean + var.sqrt().unsqueeze(-1) * z) * p    # ~ N(beta_mean, sigma^2 R_Pa^-1)
    loc = mean[ar, ar][None] - (beta * mean[None]).sum(-1)
    c = loc + (var / (am + cnt)).sqrt() * torch.randn(B, d, generator=generator, dtype=torch.float64)
    return beta.transpose(1, 2).contiguous(), c, var.sqrt()


def _standard_gamma(shape: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Gamma(shape, 1) draws, seeded from the torch generator (torch's own gamma sampler takes none)."""
    import numpy as np

    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    g = np.random.default_rng(seed).standard_gamma(shape.double().numpy())
    return torch.from_numpy(np.asarray(g, dtype=np.float64)).reshape(shape.shape)


def simulate(weights: torch.Tensor, intercepts: torch.Tensor, noise_std: torch.Tensor, n: int,
             targets: torch.Tensor, value: float | None, std: float, generator: torch.Generator) -> torch.Tensor:
    """n rows of each linear-Gaussian SEM (weights [B, d, d], intercepts [B, d], noise_std [B, d])
    under do(X_T = value) (or, value None, X_T ~ N(0, std^2) independently of the parents):
    float64 [B, n, d]."""
    B, d = intercepts.shape
    t = targets.to(torch.bool)
    keep = (~t).to(torch.float64)
    W = weights * keep[None, None, :]                         # a target ignores its parents
    eps = torch.randn(B, n, d, generator=generator, dtype=torch.float64)
    base = (intercepts * keep)[:, None, :] + eps * (noise_std * keep)[:, None, :]
    if value is None:
        base = base + (std * eps) * (~keep.bool()).to(torch.float64)
    else:
        base = base + float(value) * (1 - keep)
    x = base
    for _ in range(d):  # x = base + x W: exact after the longest path (< d edges)
        x = base + x @ W
    return x


def sample_predictive(model: ScoreModel, stats: NodeStats, graphs: torch.Tensor, n: int, targets: torch.Tensor,
                      value: float | None, std: float, generator: torch.Generator) -> torch.Tensor:
    """One interventional data set y ~ P(y | e, G, D) of n rows per graph [B, d, d]: [B, n, d]."""
    w, c, s = sample_parameters(model, stats, graphs, generator)
    return simulate(w, c, s, n, targets, value, std, generator)
