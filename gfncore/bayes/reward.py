"""The posterior reward of a GFlowNet over parameters, log R(θ) = log P(θ) + log P(D|θ), and its
unbiased minibatch estimate (the seed's section 4)."""
from __future__ import annotations

import math
from typing import Callable

import torch

from .models import ParameterGrid

LogPriorFn = Callable[[torch.Tensor], torch.Tensor]
LogLikelihoodFn = Callable[[torch.Tensor, tuple], torch.Tensor]


def as_data(data) -> tuple:
    """The data set as a tuple of tensors sharing their first (example) dimension; floating-point
    tensors become float64."""
    items = tuple(data) if isinstance(data, (tuple, list)) else (data,)
    if not items:
        raise ValueError("data must hold at least one tensor")
    for i, t in enumerate(items):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"data[{i}] must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() == 0:
            raise ValueError(f"data[{i}] must have an example dimension first, got a scalar")
    N = items[0].shape[0]
    for i, t in enumerate(items):
        if t.shape[0] != N:
            raise ValueError(f"every data tensor needs the same number of examples: data[0] has {N}, "
                             f"data[{i}] has {t.shape[0]}")
    if N == 0:
        raise ValueError("data has no examples")
    return tuple(t.to(torch.float64) if t.is_floating_point() else t for t in items)


class MinibatchLogReward:
    """The log-reward of a GFlowNet posterior sampler over θ, log R(θ) = log P(θ) + log P(D|θ), or
    its unbiased minibatch estimate log P(θ) + (|D|/|b|)·Σ_{z∈b} log P(z|θ).

    Each call draws one minibatch b of batch_size examples, uniformly without replacement, and
    shares it across the rows of theta, so every row's estimate is unbiased: each example is in b
    with probability |b|/|D|. With shuffle="epoch" (the default: random reshuffling, as a data
    loader does) the minibatches are consecutive slices of one random permutation of the data, a
    new one when fewer than batch_size examples remain: each slice is a uniform random subset, the
    draws of one epoch are disjoint, and an epoch costs one permutation. With
    shuffle="independent" every call draws a fresh subset (a permutation of |D| per call). With
    batch_size=None (or = |D|) it is the exact full-batch log R. The variance of one estimate is
    `noise_variance(theta)`.

    With `reference` = some θ_ref [n] (any real vector: the least-squares fit, a posterior mean, 0)
    it is the difference estimator log P(θ) + Σ_{z∈D} log P(z|θ_ref)
    + (|D|/|b|)·Σ_{z∈b} [log P(z|θ) − log P(z|θ_ref)]: the same expectation (the θ_ref term is a
    control variate with a known total), and a variance that shrinks as θ nears θ_ref, because the
    part of each example's log-likelihood that does not depend on θ (the y² of a Gaussian, say)
    cancels instead of being scaled up by |D|/|b|.

    With `cv_order=2` the control variate is the second-order Taylor expansion of each example's
    log-likelihood around θ_ref, q_z(θ) = ℓ_z(θ_ref) + g_z·δ + ½ δᵀH_z δ (δ = θ − θ_ref; per-example
    gradients and Hessians from forward-mode autodiff of log_likelihood, computed once), whose sum
    over D is known exactly: log P(θ) + Σ_D q_z(θ) + (|D|/|b|)·Σ_{z∈b} [ℓ_z(θ) − q_z(θ)]. Only the
    part of the log-likelihood that is not quadratic in θ is left to the minibatch: for a Gaussian
    likelihood with θ in the mean (linear regression) that part is 0 and the estimate is exact; for
    tall data, where the posterior is narrow, what is left shrinks like |δ|³ (Bardenet et al. 2017;
    Baker et al. 2019 use the same variate for SG-MCMC). It needs log_likelihood to be twice
    differentiable in θ and torch.func-compatible (no Python branching on values); it stores
    |D|·n² numbers.

    theta is [B, n] grid values (float64; `grid.theta(index)` maps indices). The user's functions
    are checked on every call: log_prior must return [B], log_likelihood [B, |b|], both floating
    point with no NaN and no +inf (−inf, a zero probability, is allowed); errors name the first
    bad θ row.
    """

    def __init__(self, log_prior: LogPriorFn, log_likelihood: LogLikelihoodFn, data, batch_size: int | None = None,
                 generator: torch.Generator | None = None, grid: ParameterGrid | None = None,
                 reference: torch.Tensor | None = None, shuffle: str = "epoch", chunk: int = 1 << 22,
                 cv_order: int = 1):
        if not callable(log_prior) or not callable(log_likelihood):
            raise TypeError("log_prior and log_likelihood must be callables")
        if grid is not None and not isinstance(grid, ParameterGrid):
            raise TypeError(f"grid must be a ParameterGrid, got {type(grid).__name__}")
        self.log_prior, self.log_likelihood, self.grid = log_prior, log_likelihood, grid
        self.data = as_data(data)
        self.n_data = self.data[0].shape[0]
        if batch_size is not None:
            if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
                raise ValueError(f"batch_size must be an int >= 1 or None (full batch), got {batch_size!r}")
            if batch_size > self.n_data:
                raise ValueError(f"batch_size = {batch_size} is larger than the data ({self.n_data} examples); "
                                 "use batch_size=None for the full batch")
        self.batch_size = self.n_data if batch_size is None else batch_size
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        if shuffle not in ("epoch", "independent"):
            raise ValueError(f"shuffle must be 'epoch' or 'independent', got {shuffle!r}")
        self.shuffle = shuffle
        self._perm, self._pos = None, 0
        self.chunk = chunk  # θ rows × examples per log_likelihood call in full-batch mode
        self.reference = None
        if reference is not None:
            ref = torch.as_tensor(reference, dtype=torch.float64).reshape(1, -1)
            self.reference = self._theta(ref)[0]
            per = self.per_example(ref)[0]
            if not bool(torch.isfinite(per).all()):
                i = int((~torch.isfinite(per)).nonzero()[0, 0])
                raise ValueError(f"reference θ has log P(z|θ_ref) = {float(per[i])} at data example {i}; "
                                 "the control variate needs a finite log-likelihood on every example")
            self._ref_per_example, self._ref_total = per, float(per.sum())
        if cv_order not in (1, 2):
            raise ValueError(f"cv_order must be 1 (θ_ref's log-likelihood) or 2 (its Taylor expansion), got {cv_order!r}")
        if cv_order == 2 and reference is None:
            raise ValueError("cv_order=2 expands the log-likelihood around a reference θ: pass reference=")
        self.cv_order = cv_order
        self._ref_grad = self._ref_hess = None
        if cv_order == 2:
            self._ref_grad, self._ref_hess = self._taylor(self.reference)
            self._grad_total, self._hess_total = self._ref_grad.sum(0), self._ref_hess.sum(0)

    @classmethod
    def from_model(cls, model, data, batch_size: int | None = None, generator: torch.Generator | None = None,
                   reference: torch.Tensor | None = None, shuffle: str = "epoch", cv_order: int = 1):
        """The reward of a built-in model (or any object with log_prior, log_likelihood and grid)."""
        return cls(model.log_prior, model.log_likelihood, data, batch_size, generator, getattr(model, "grid", None),
                   reference, shuffle, cv_order=cv_order)

    def _taylor(self, ref: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example gradients [|D|, n] and Hessians [|D|, n, n] of log P(z|θ) at θ = ref, by
        forward-over-forward autodiff (n² tangents over a chunk of examples at a time)."""
        from torch.func import jacfwd

        n = ref.numel()
        if self.n_data * n * n > 1 << 28:
            raise ValueError(f"cv_order=2 would store {self.n_data} x {n} x {n} Hessian entries: too many; "
                             "use cv_order=1")
        grads, hessians = [], []
        for i in range(0, self.n_data, chunk):
            batch = tuple(t[i:i + chunk] for t in self.data)

            def f(t, batch=batch):
                return self.log_likelihood(t.unsqueeze(0), batch).squeeze(0)

            try:
                g = jacfwd(f)(ref)
                h = jacfwd(jacfwd(f))(ref)
            except Exception as e:  # a user function that autodiff cannot see through
                raise ValueError(f"cv_order=2 needs log_likelihood to be twice differentiable in θ with torch.func "
                                 f"(jacfwd); it failed with {type(e).__name__}: {e}. Use cv_order=1 (PosteriorConfig.control_variate=1, "
                                 f"--control-variate 1)") from e
            m = batch[0].shape[0]
            if tuple(g.shape) != (m, n) or tuple(h.shape) != (m, n, n):
                raise ValueError(f"cv_order=2: log_likelihood's derivatives have shapes {tuple(g.shape)}, "
                                 f"{tuple(h.shape)}; expected ({m}, {n}) and ({m}, {n}, {n})")
            grads.append(g.detach().to(torch.float64))
            hessians.append(h.detach().to(torch.float64))
        g, h = torch.cat(grads), torch.cat(hessians)
        if not (bool(torch.isfinite(g).all()) and bool(torch.isfinite(h).all())):
            raise ValueError("cv_order=2: the log-likelihood's gradient or Hessian at the reference θ is not finite")
        return g, h

    def _quadratic(self, theta: torch.Tensor, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """g·δ + ½ δᵀ h δ for each row of theta (δ = θ − θ_ref) [B], with g [n] and h [n, n] sums
        of per-example terms."""
        d = theta - self.reference
        return d @ g + 0.5 * ((d @ h) * d).sum(-1)

    @property
    def full_batch(self) -> bool:
        return self.batch_size == self.n_data

    @property
    def scale(self) -> float:
        """|D| / |b|, the factor on the minibatch log-likelihood sum."""
        return self.n_data / self.batch_size

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        """log R(θ) [B] (float64): exact in full-batch mode, else one fresh minibatch estimate."""
        if self.full_batch:
            return self.full(theta)
        return self.on_batch(theta, self.sample_batch())

    def of_index(self, index: torch.Tensor) -> torch.Tensor:
        """`self(grid.theta(index))` for grid indices [B, n] (what a sampler's states hold); needs the grid."""
        if self.grid is None:
            raise ValueError("of_index needs the reward's grid (pass grid=, or build it with from_model)")
        return self(self.grid.theta(index))

    def sample_batch(self) -> torch.Tensor:
        """Indices of one minibatch: batch_size examples, uniformly without replacement."""
        b = self.batch_size
        if self.shuffle == "independent":
            return torch.randperm(self.n_data, generator=self.generator)[:b]
        if self._perm is None or self._pos + b > self.n_data:
            self._perm, self._pos = torch.randperm(self.n_data, generator=self.generator), 0
        self._pos += b
        return self._perm[self._pos - b:self._pos]

    def on_batch(self, theta: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """log P(θ) + (|D|/|index|)·Σ_{i∈index} log P(z_i|θ) [B] for given example indices."""
        theta = self._theta(theta)
        index = torch.as_tensor(index, dtype=torch.int64)
        if index.dim() != 1 or index.numel() == 0:
            raise ValueError(f"index must be a non-empty 1-D tensor of example indices, got shape {tuple(index.shape)}")
        ll = self._log_likelihood(theta, index)
        scale = self.n_data / index.numel()
        if self.reference is None:
            return self._log_prior(theta) + scale * ll.sum(1)
        out = self._log_prior(theta) + self._ref_total + scale * (ll - self._ref_per_example[index]).sum(1)
        if self.cv_order == 2:
            # the quadratic part: its sum over D exactly, minus the minibatch's scaled-up share
            out = out + self._quadratic(theta, self._grad_total, self._hess_total) - scale * self._quadratic(
                theta, self._ref_grad[index].sum(0), self._ref_hess[index].sum(0))
        return out

    def full(self, theta: torch.Tensor) -> torch.Tensor:
        """The exact log R(θ) = log P(θ) + Σ_{z∈D} log P(z|θ) [B], in chunks of examples."""
        theta = self._theta(theta)
        total = torch.zeros(theta.shape[0], dtype=torch.float64)
        step = max(1, self.chunk // max(theta.shape[0], 1))
        for i in range(0, self.n_data, step):
            total += self._log_likelihood(theta, torch.arange(i, min(i + step, self.n_data))).sum(1)
        return self._log_prior(theta) + total

    def per_example(self, theta: torch.Tensor) -> torch.Tensor:
        """log P(z|θ) for every example [B, |D|]."""
        theta = self._theta(theta)
        return self._log_likelihood(theta, torch.arange(self.n_data))

    def noise_variance(self, theta: torch.Tensor) -> torch.Tensor:
        """Var of the minibatch estimate of log R(θ) [B], exactly: sampling b of N without replacement,
        Var((N/b) Σ_b ℓ) = N² (1 − b/N) s² / b with s² the variance of ℓ over D (N − 1 norm), where
        ℓ = log P(z|θ), less the control variate (log P(z|θ_ref), and its Taylor terms with cv_order=2)."""
        N, b = self.n_data, self.batch_size
        if N == 1:
            return torch.zeros(self._theta(theta).shape[0], dtype=torch.float64)
        per = self.per_example(theta)
        if self.reference is not None:
            per = per - self._ref_per_example
        if self.cv_order == 2:
            d = self._theta(theta) - self.reference
            per = per - d @ self._ref_grad.T - 0.5 * torch.einsum("bi,kij,bj->bk", d, self._ref_hess, d)
        s2 = per.var(1)
        return N * N * (1 - b / N) * s2 / b

    # -- checks --------------------------------------------------------------------------------

    def _theta(self, theta) -> torch.Tensor:
        if not isinstance(theta, torch.Tensor):
            raise TypeError(f"theta must be a torch.Tensor [B, n] of grid values, got {type(theta).__name__}")
        if not theta.is_floating_point():
            raise TypeError(f"theta must hold grid values (floating point), got {theta.dtype}; "
                            "map grid indices with ParameterGrid.theta(index)")
        if theta.dim() != 2:
            raise ValueError(f"theta must be 2-D [B, n], got shape {tuple(theta.shape)}")
        if self.grid is not None and theta.shape[1] != self.grid.n:
            raise ValueError(f"theta must have {self.grid.n} columns (the grid's n), got shape {tuple(theta.shape)}")
        return theta.to(torch.float64)

    def _log_prior(self, theta: torch.Tensor) -> torch.Tensor:
        lp = self.log_prior(theta)
        _check_values(lp, (theta.shape[0],), "log_prior(theta)", theta)
        return lp.to(torch.float64)

    def _log_likelihood(self, theta: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        batch = tuple(t[index] for t in self.data)
        ll = self.log_likelihood(theta, batch)
        _check_values(ll, (theta.shape[0], index.numel()), "log_likelihood(theta, batch)", theta, index)
        return ll.to(torch.float64)


def _check_values(v, shape: tuple, who: str, theta: torch.Tensor, index: torch.Tensor | None = None) -> None:
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"{who} must return a torch.Tensor, got {type(v).__name__}")
    if tuple(v.shape) != shape:
        what = "[B]" if len(shape) == 1 else "[B, |batch|]"
        raise ValueError(f"{who} must return shape {what} = {shape}, got {tuple(v.shape)}")
    if not v.is_floating_point():
        raise TypeError(f"{who} must return floating point log-probabilities, got {v.dtype}")
    bad = torch.isnan(v) | (v == math.inf)
    if bool(bad.any()):
        pos = bad.nonzero()[0]
        r = int(pos[0])
        where = f" for data example {int(index[int(pos[1])])}" if index is not None else ""
        raise ValueError(f"{who} returned {float(v[tuple(pos)])} for theta[{r}] = {theta[r].tolist()}{where}; "
                         "log-probabilities must be finite or -inf")


def fit_reference(log_prior: LogPriorFn, log_likelihood: LogLikelihoodFn, data, n: int,
                  start: torch.Tensor | None = None, max_iter: int = 100, chunk: int = 1 << 16) -> torch.Tensor:
    """A reference θ_ref [n] for the control variate: the maximum a posteriori point of the continuous
    relaxation of θ (the user's functions evaluated off the grid), by L-BFGS on the full data (a few
    tens of passes; once per run). Only its closeness to the posterior mass matters, not its
    optimality, so a user may pass any θ instead (reference=...). Needs the functions to be
    differentiable in θ."""
    data = as_data(data)
    N = data[0].shape[0]
    theta = (torch.zeros(n, dtype=torch.float64) if start is None
             else torch.as_tensor(start, dtype=torch.float64).reshape(n).clone())
    theta.requires_grad_(True)
    def loss_fn() -> torch.Tensor:
        t = theta.unsqueeze(0)
        loss = -log_prior(t).sum()
        for i in range(0, N, chunk):
            loss = loss - log_likelihood(t, tuple(d[i:i + chunk] for d in data)).sum()
        return loss / N  # per example, so L-BFGS's tolerances mean the same at any |D|

    from ..train.regression import minimize_lbfgs

    try:
        minimize_lbfgs([theta], loss_fn, max_iter)
    except RuntimeError as e:  # e.g. a function that autograd cannot differentiate
        raise ValueError(f"fitting the control variate's reference θ needs log_prior and log_likelihood to be "
                         f"differentiable in θ ({e}); pass reference= yourself, or train without a control "
                         f"variate") from e
    out = theta.detach()
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"fitting the reference θ diverged ({out.tolist()}); pass reference= yourself")
    return out
