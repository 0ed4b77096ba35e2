"""The demonstration of gfncore.amortize: a problem with an exact S(x) (BernoulliExpProblem) and a run
that compares the amortized Ŝ(x) with Monte Carlo at equal query time (run_demo)."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field

import torch

from .library import CRITERIA, ExpectationRegressor, RegressorConfig, monte_carlo, relative_error
from .report import format_tables, plot_demo


# --------------------------------------------------------------------------------------------
# demonstration problem with an exact S(x)


class BernoulliExpProblem:
    """Demonstration problem with an exact expected reward: x ∈ R^k, y ∈ {0,1}^n with independent
    y_i ~ Bernoulli(σ((W x)_i)), R(x, y) = exp(a(x)·y) with a(x) = scale · tanh(A x + b).
    Because the y_i are independent and R factorises,
    S(x) = Π_i (1 − p_i + p_i e^{a_i}), i.e. log S = Σ_i [softplus(ℓ_i + a_i) − softplus(ℓ_i)]
    with ℓ = W x; `log_s_enumerate` sums p(y|x) R(x, y) over all 2^n y's instead (n ≤ 12), a check
    of the closed form. W, A, b are fixed by the seed; queries x ~ N(0, I_k)."""

    def __init__(self, x_dim: int = 4, n: int = 10, scale: float = 1.0, seed: int = 0):
        for name, v in (("x_dim", x_dim), ("n", n)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if not (math.isfinite(scale) and scale >= 0):
            raise ValueError(f"scale must be a finite float >= 0, got {scale!r}")
        self.x_dim, self.n, self.scale, self.seed = x_dim, n, float(scale), seed
        g = torch.Generator().manual_seed(seed)
        r = 1.0 / math.sqrt(x_dim)
        self.W = torch.randn(n, x_dim, generator=g, dtype=torch.float64) * r
        self.A = torch.randn(n, x_dim, generator=g, dtype=torch.float64) * r
        self.b = torch.randn(n, generator=g, dtype=torch.float64) * 0.5

    def sample_x(self, m: int, generator: torch.Generator) -> torch.Tensor:
        """m queries x ~ N(0, I_k) (float32)."""
        return torch.randn(m, self.x_dim, generator=generator)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return x.double() @ self.W.T

    def a(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.tanh(x.double() @ self.A.T + self.b)

    def sample_y(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One y ~ p(y|x) per row of x: [B, n] float32 of 0/1."""
        p = torch.sigmoid(self.logits(x))
        return (torch.rand(p.shape, generator=generator, dtype=torch.float64) < p).to(torch.float32)

    def log_reward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log R(x, y) = a(x)·y [B] (float64)."""
        return (self.a(x) * y.double()).sum(-1)

    def log_s(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log S(x) in closed form, a product over coordinates (float64)."""
        ell = self.logits(x)
        F = torch.nn.functional.softplus
        return (F(ell + self.a(x)) - F(ell)).sum(-1)

    def log_s_enumerate(self, x: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """Exact log S(x) by summing p(y|x) R(x, y) over all 2^n y's (n ≤ 12; float64)."""
        if self.n > 12:
            raise ValueError(f"enumeration needs n <= 12 (2^n y's per query), got n = {self.n}")
        ys = ((torch.arange(2 ** self.n)[:, None] >> torch.arange(self.n)) & 1).double()  # [2^n, n]
        out = []
        for i in range(0, x.shape[0], chunk):
            xi = x[i:i + chunk]
            ell, a = self.logits(xi), self.a(xi)
            lp1, lp0 = torch.nn.functional.logsigmoid(ell), torch.nn.functional.logsigmoid(-ell)
            # log p(y|x) + a·y for every (query, y) pair
            log_joint = (lp1 + a) @ ys.T + lp0 @ (1 - ys).T
            out.append(torch.logsumexp(log_joint, 1))
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)

    def log_s_geometric(self, x: torch.Tensor) -> torch.Tensor:
        """E[log R(x, y) | x] = Σ_i p_i a_i(x): what the biased log_mse criterion converges to."""
        return (torch.sigmoid(self.logits(x)) * self.a(x)).sum(-1)


# --------------------------------------------------------------------------------------------
# the demonstration: amortized Ŝ against Monte Carlo at equal query time


@dataclass
class DemoConfig:
    """The amortization demonstration (`run_demo`); the regressor's own settings are a RegressorConfig."""

    x_dim: int = field(default=4, metadata={"help": "dimension k of the query x"})
    n: int = field(default=10, metadata={"help": "binary coordinates of y (exact enumeration needs n <= 12)"})
    scale: float = field(default=1.0, metadata={"help": "reward scale: a(x) = scale * tanh(A x + b)"})
    problem_seed: int = field(default=0, metadata={"help": "seed of the problem's W, A, b"})
    n_train: int = field(default=4096, metadata={"help": "training-set size of the criterion comparison"})
    train_sizes: tuple[int, ...] = field(default=(64, 256, 1024, 4096, 16384), metadata={
        "help": "training-set sizes of the size sweep (comma-separated)"})
    train_steps: tuple[int, ...] = field(default=(250, 500, 1000, 2000, 4000), metadata={
        "help": "training lengths of the reward-draw sweep at n_train (comma-separated)"})
    mc_samples: tuple[int, ...] = field(default=(1, 4, 16, 64, 256, 1024, 4096), metadata={
        "help": "Monte-Carlo samples per query K (comma-separated)"})
    compare_criteria: bool = field(default=True, metadata={"help": "also train the other two criteria at n_train"})
    n_test: int = field(default=1000, metadata={"help": "held-out queries (x never seen in training)"})
    timing_repeats: int = field(default=7, metadata={"help": "timed repeats per method (medians reported)"})
    latency_queries: int = field(default=50, metadata={"help": "single queries timed one call at a time"})
    threads: int = field(default=1, metadata={"help": "torch threads for training and timing (0: leave as is)"})
    data_seed: int = field(default=0, metadata={"help": "seed of the training/test queries and the MC draws"})
    out: str = field(default="", metadata={"help": "directory for summary.json, table.md, amortize.png"})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})


def _errors(log_est: torch.Tensor, log_exact: torch.Tensor) -> dict:
    e = relative_error(log_est, log_exact)
    return {"rel_err_mean": float(e.mean()), "rel_err_median": float(e.median()),
            "rel_err_p90": float(e.quantile(0.9)), "log_err_mean": float((log_est - log_exact).abs().mean())}


def _time_side_by_side(fns: dict, repeats: int) -> dict:
    """Median wall time of each callable, interleaved round by round so that load on the machine
    falls on every method alike; one untimed warm-up call each first."""
    for f in fns.values():
        f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


def _interp_loglog(xs: list[float], ys: list[float], x: float) -> float | None:
    """y at x by linear interpolation in log-log coordinates; None outside [min xs, max xs]."""
    pts = sorted(zip(xs, ys))
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
        if x0 <= x <= x1 and y0 > 0 and y1 > 0:
            if x1 == x0:
                return y0
            w = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return math.exp(math.log(y0) + w * (math.log(y1) - math.log(y0)))
    return None


def run_demo(config: DemoConfig | None = None, regressor: RegressorConfig | None = None) -> dict:
    """Amortized Ŝ(x) against Monte Carlo on the Bernoulli-exp problem: errors against the exact
    S(x) on held-out x, time per query of both measured side by side in one run, MC across K and the
    regressor across training-set sizes. Writes summary.json, table.md and amortize.png into
    config.out (when set) and returns the summary."""
    cfg = config if config is not None else DemoConfig()
    rcfg = regressor if regressor is not None else RegressorConfig()
    if not cfg.mc_samples or not cfg.train_sizes:
        raise ValueError("mc_samples and train_sizes must be non-empty")
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _run_demo(cfg, rcfg)
    finally:
        torch.set_num_threads(old_threads)


def _run_demo(cfg: DemoConfig, rcfg: RegressorConfig) -> dict:
    prob = BernoulliExpProblem(cfg.x_dim, cfg.n, cfg.scale, cfg.problem_seed)
    gen = torch.Generator().manual_seed(cfg.data_seed)
    x_test = prob.sample_x(cfg.n_test, gen)
    x_pool = prob.sample_x(max(max(cfg.train_sizes), cfg.n_train), gen)  # nested training sets
    log_s = prob.log_s(x_test)
    summary: dict = {"config": dataclasses.asdict(cfg), "regressor": dataclasses.asdict(rcfg),
                     "threads": torch.get_num_threads()}
    if cfg.n <= 12:
        summary["max_abs_log_s_closed_form_vs_enumeration"] = float((prob.log_s_enumerate(x_test) - log_s).abs().max())
    summary["log_s_range"] = [float(log_s.min()), float(log_s.max())]
    summary["jensen_gap_mean"] = float((log_s - prob.log_s_geometric(x_test)).mean())

    def train(N: int, criterion: str, steps: int | None = None) -> tuple[ExpectationRegressor, dict]:
        rc = dataclasses.replace(rcfg, criterion=criterion, steps=rcfg.steps if steps is None else steps)
        reg = ExpectationRegressor(cfg.x_dim, rc)
        t = time.perf_counter()
        reg.fit(x_pool[:N], prob.sample_y, prob.log_reward, validation=(x_test, log_s), progress=cfg.progress)
        row = {"criterion": criterion, "n_train": N, "steps": rc.steps, "train_seconds": time.perf_counter() - t,
               "reward_evaluations": rc.steps * rc.batch_size * rc.y_per_x}
        row.update(_errors(reg.log_expectation(x_test), log_s))
        seen = x_pool[:min(N, cfg.n_test)]
        row["rel_err_mean_seen_x"] = float(relative_error(reg.log_expectation(seen), prob.log_s(seen)).mean())
        return reg, row

    # the criteria at one training-set size, then the main criterion across sizes
    regs, crit_rows = {}, []
    for crit in (CRITERIA if cfg.compare_criteria else (rcfg.criterion,)):
        regs[crit], row = train(cfg.n_train, crit)
        row["rel_err_vs_geometric_mean"] = float(relative_error(regs[crit].log_expectation(x_test),
                                                                prob.log_s_geometric(x_test)).mean())
        crit_rows.append(row)
    size_rows = []
    for N in cfg.train_sizes:
        if N == cfg.n_train and rcfg.criterion in regs:
            size_rows.append(next(r for r in crit_rows if r["criterion"] == rcfg.criterion))
        else:
            size_rows.append(train(N, rcfg.criterion)[1])
    main = regs[rcfg.criterion]
    main_row = next(r for r in crit_rows if r["criterion"] == rcfg.criterion)
    step_rows = [main_row if T == rcfg.steps else train(cfg.n_train, rcfg.criterion, T)[1] for T in cfg.train_steps]

    # Monte Carlo errors (one seeded run per K), then all timings interleaved in one loop
    mc_rows = []
    for K in cfg.mc_samples:
        est = monte_carlo(x_test, prob.sample_y, prob.log_reward, K, gen)
        mc_rows.append({"K": K, **_errors(est.log_s, log_s)})
    tgen = torch.Generator().manual_seed(cfg.data_seed + 7)
    fns = {"amortized": lambda: main.log_expectation(x_test, check=False)}
    for K in cfg.mc_samples:
        fns[f"mc{K}"] = (lambda K=K: monte_carlo(x_test, prob.sample_y, prob.log_reward, K, tgen, check=False))
    batch_t = _time_side_by_side(fns, cfg.timing_repeats)
    # one query per call: what a caller pays when queries arrive one at a time
    lat_x = [x_test[i:i + 1] for i in range(min(cfg.latency_queries, cfg.n_test))]
    lat_fns = {"amortized": lambda: [main.log_expectation(q, check=False) for q in lat_x]}
    for K in cfg.mc_samples:
        lat_fns[f"mc{K}"] = (lambda K=K: [monte_carlo(q, prob.sample_y, prob.log_reward, K, tgen, check=False)
                                           for q in lat_x])
    lat_t = _time_side_by_side(lat_fns, max(3, cfg.timing_repeats // 2))
    per_q = {k: v / cfg.n_test for k, v in batch_t.items()}
    lat = {k: v / len(lat_x) for k, v in lat_t.items()}
    for r in mc_rows:
        r["us_per_query_batched"] = 1e6 * per_q[f"mc{r['K']}"]
        r["us_per_query_single"] = 1e6 * lat[f"mc{r['K']}"]
    amort = dict(next(r for r in crit_rows if r["criterion"] == rcfg.criterion))
    amort["us_per_query_batched"] = 1e6 * per_q["amortized"]
    amort["us_per_query_single"] = 1e6 * lat["amortized"]
    summary.update(criteria=crit_rows, train_sizes=size_rows, train_steps=step_rows, monte_carlo=mc_rows,
                   amortized=amort)

    # equal query time: MC's K and error at the amortized query's time (log-log interpolation over
    # the measured K), and the K that MC would need to match the amortized error (error ∝ 1/sqrt K)
    Ks = [r["K"] for r in mc_rows]
    eq = {}
    for mode in ("batched", "single"):
        ts = [r[f"us_per_query_{mode}"] for r in mc_rows]
        errs = [r["rel_err_mean"] for r in mc_rows]
        ta = amort[f"us_per_query_{mode}"]
        k_eq = _interp_loglog(ts, Ks, ta)
        eq[mode] = {"amortized_us": ta, "K_at_equal_time": k_eq,
                    "mc_rel_err_at_equal_time": _interp_loglog(Ks, errs, k_eq) if k_eq else None,
                    # the cheapest MC measured (K = min(Ks), not necessarily 1) against the amortized query
                    "mc_smallest_K": min(Ks), "mc1_over_amortized_time": ts[Ks.index(min(Ks))] / ta}
    big = max(mc_rows, key=lambda r: r["K"])
    k_match = big["K"] * (big["rel_err_mean"] / amort["rel_err_mean"]) ** 2
    eq["K_to_match_amortized_error"] = k_match
    eq["mc_us_to_match_batched"] = big["us_per_query_batched"] * k_match / big["K"]
    saved = eq["mc_us_to_match_batched"] - amort["us_per_query_batched"]
    eq["queries_to_repay_training"] = amort["train_seconds"] * 1e6 / saved if saved > 0 else None
    summary["equal_time"] = eq
    summary["table"] = format_tables(summary)
    if cfg.out:
        os.makedirs(cfg.out, exist_ok=True)
        with open(os.path.join(cfg.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        with open(os.path.join(cfg.out, "table.md"), "w") as f:
            f.write(summary["table"])
        summary["plot"] = plot_demo(summary, os.path.join(cfg.out, "amortize.png"))
    return summary
