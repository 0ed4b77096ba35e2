"""The conditional-GFlowNet library: context ranges, the conditional run and its evaluation against
exact log S(c). The package docstring (gfncore.conditional) describes the experiment."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass

import torch

from ..config import option, validate
from ..nn import ContextScaler
from ..train import Evaluate, LRSchedule, initialise_log_z
from .report import format_table, plot_curve

# the conditional version of each `gfncore train` environment: its context's name, the
# conditional environment, the unconditional one at a fixed context (a per-context sampler), and
# the smallest context the evaluation curve may extend to given the training range's low end
_CONDITIONAL = {
    "ising": ("beta", lambda c: _envs().IsingBeta(c.n, J=c.J, h=c.h),
              lambda c, v: _envs().Ising(c.n, J=c.J, h=c.h, beta=v), lambda low: 0.0),
    "hypergrid": ("R0", lambda c: _envs().HyperGridR0(c.ndim, c.height, R1=c.R1, R2=c.R2),
                  lambda c, v: _envs().HyperGrid(c.ndim, c.height, v, c.R1, c.R2), lambda low: low / 2),
}


CONDITIONAL_ENVS = tuple(_CONDITIONAL)


def _envs():
    from .. import envs

    return envs


@dataclass
class ConditionalConfig:
    """Settings of a conditional run (an amortized sum S(c) over a range of contexts); the flags of
    `gfncore train <env> --conditional ...` come from these fields."""

    conditional: str = option("", "NAME=LOW:HIGH: train one sampler for every context in [LOW, HIGH] "
                                   "(ising: beta, hypergrid: R0)")
    held_out: str = option("", "comma-separated contexts kept out of training and evaluated "
                               "(default: 4 points inside the range)")
    held_out_gap: float = option(0.04, "training never draws contexts within this fraction of the range of a "
                                       "held-out context", min=0, lt=0.5)
    trajectories_per_context: int = option(4, "trajectories per training context", min=1)
    conditioning: str = option("concat", "how the policy sees c", choices=("concat", "film"))
    lr_schedule: str = option("cosine", "cosine (decay to lr * lr_final) or constant", choices=("cosine", "constant"))
    lr_final: float = option(0.02, "final learning rate as a fraction of lr (cosine)", gt=0, max=1)
    curve_points: int = option(19, "contexts at which log S-hat(c) is compared with exact", min=1)
    extrapolate: float = option(0.2, "the curve also covers this fraction of the range beyond each end "
                                     "(never seen in training)", min=0, max=1)
    compare_contexts: int = option(0, "train a separate sampler at this many held-out contexts and compare costs",
                                   min=0)
    compare_max_steps: int = option(6000, "step limit of each per-context sampler", min=0)
    eval_samples: int = option(4096, "samples per context for the mean log R check", min=0)

    def __post_init__(self):
        validate(self)


@dataclass(frozen=True)
class ContextRange:
    """A scalar context c and its training range [low, high], parsed from "NAME=LOW:HIGH"."""

    name: str
    low: float
    high: float

    @classmethod
    def parse(cls, spec: str, expected: str | None = None) -> "ContextRange":
        if not isinstance(spec, str) or spec.count("=") != 1 or spec.split("=")[1].count(":") != 1:
            raise ValueError(f"--conditional must look like NAME=LOW:HIGH (e.g. beta=0.1:1.0), got {spec!r}")
        name, rng = (t.strip() for t in spec.split("="))
        if expected is not None and name != expected:
            raise ValueError(f"this environment's context is {expected!r}, got {name!r} in --conditional {spec!r}")
        try:
            low, high = (float(t) for t in rng.split(":"))
        except ValueError:
            raise ValueError(f"--conditional {spec!r}: LOW and HIGH must be numbers") from None
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"--conditional {spec!r}: need finite LOW < HIGH")
        return cls(name, low, high)

    @property
    def width(self) -> float:
        return self.high - self.low


def banded_contexts(low: float, high: float, exclude: list[tuple[float, float]] = ()):
    """A context sampler (n, generator) -> [n, 1] drawing c uniformly from [low, high] minus the
    given bands (a, b): the training distribution of a conditional GFlowNet whose held-out
    contexts it must never see."""
    cuts = sorted((max(a, low), min(b, high)) for a, b in exclude if b > low and a < high)
    pieces, at = [], low
    for a, b in cuts:
        if a > at:
            pieces.append((at, a))
        at = max(at, b)
    if at < high:
        pieces.append((at, high))
    if not pieces:
        raise ValueError(f"the excluded bands cover all of [{low}, {high}]: nothing left to train on")
    lo = torch.tensor([p[0] for p in pieces], dtype=torch.float64)
    lengths = torch.tensor([p[1] - p[0] for p in pieces], dtype=torch.float64)
    cum = torch.cat([torch.zeros(1, dtype=torch.float64), lengths.cumsum(0)])

    def sample(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        # one uniform draw on the total allowed length, mapped into its piece
        u = torch.rand(n, generator=generator, dtype=torch.float64) * cum[-1]
        k = (torch.searchsorted(cum, u, right=True) - 1).clamp(0, len(pieces) - 1)
        return (lo[k] + (u - cum[k])).unsqueeze(1)

    sample.pieces = pieces
    return sample


def held_out_contexts(rng: ContextRange, spec: str) -> list[float]:
    """The held-out contexts: parsed from "a,b,..." or, by default, 4 points inside the range
    (at 1/8, 3/8, 5/8 and 7/8 of it)."""
    if spec.strip():
        try:
            vals = [float(t) for t in spec.split(",") if t.strip()]
        except ValueError:
            raise ValueError(f"--held-out must be comma-separated numbers, got {spec!r}") from None
    else:
        vals = [rng.low + rng.width * f for f in (0.125, 0.375, 0.625, 0.875)]
    for v in vals:
        if not rng.low <= v <= rng.high:
            raise ValueError(f"held-out context {v} is outside the training range [{rng.low}, {rng.high}]")
    return vals




def evaluate_at(env, trainer, c: float, samples: int = 0, enumerable: bool = True) -> dict:
    """Exact log S(c) against the sampler's log Ŝ(c); the exact L1 of π̂(·|c) when the state space can
    be enumerated; with samples, the mean log R(c, x) of samples against its exact value (a check of
    π̂ that needs only the objects enumerated, not the states)."""
    from ..metrics import evaluate

    ctx = torch.tensor([[c]], dtype=torch.float64)
    log_s = trainer.log_z_at([c])
    if enumerable:
        row = evaluate(env, trainer.policy, log_s, context=ctx)
        row = {"l1": row["l1"], "log_z": log_s, "true_log_z": row["true_log_z"], "log_z_error": row["log_z_error"]}
    else:
        true = env.true_log_z(ctx)
        row = {"log_z": log_s, "true_log_z": true, "log_z_error": abs(log_s - true)}
    if samples:
        from ..metrics import importance_log_z

        est = importance_log_z(env, trainer.policy, samples, context=ctx, generator=trainer.generator)
        row["log_z_is"], row["log_z_is_error"], row["log_z_is_ess"] = est["log_z"], abs(est["log_z"] - row[
            "true_log_z"]), est["ess"]
        x = trainer.sample(samples, context=[c])
        lr = env.log_reward(x, ctx.expand(x.shape[0], -1))
        xs = env.all_terminal_states()
        lr_all = env.log_reward(xs, ctx.expand(xs.shape[0], -1))
        row["mean_log_r"] = float(lr.mean())
        row["mean_log_r_se"] = float(lr.std() / math.sqrt(x.shape[0])) if x.shape[0] > 1 else math.nan
        row["true_mean_log_r"] = float((torch.softmax(lr_all, 0) * lr_all).sum())
    return {"context": c, **row}


def _enumerable_states(env) -> bool:
    try:
        return env.all_states().shape[0] <= 200_000
    except (NotImplementedError, ValueError):
        return False


def check_conditional(env_name: str, ccfg: ConditionalConfig, cfg) -> tuple[ContextRange, list[float]]:
    """The context range and the held-out contexts of a conditional run, or ValueError naming the
    flag: what `gfncore train` checks before it writes anything."""
    if env_name not in _CONDITIONAL:
        raise ValueError(f"no conditional version of {env_name!r}; conditional: {sorted(_CONDITIONAL)}")
    rng = ContextRange.parse(ccfg.conditional, _CONDITIONAL[env_name][0])
    if env_name == "hypergrid" and rng.low <= 0:
        raise ValueError(f"--conditional {ccfg.conditional!r}: R0 must be > 0 over the whole range")
    if env_name == "ising" and rng.low < 0:
        raise ValueError(f"--conditional {ccfg.conditional!r}: beta (an inverse temperature) must be >= 0")
    if cfg.batch_size % ccfg.trajectories_per_context:
        raise ValueError(f"--trajectories-per-context ({ccfg.trajectories_per_context}) must divide --batch-size "
                         f"({cfg.batch_size})")
    return rng, held_out_contexts(rng, ccfg.held_out)


def train_conditional(env_name: str, env_cfg, cfg, run, ccfg: ConditionalConfig) -> dict:
    """Train one conditional sampler for every context in a range and evaluate it on held-out and
    extrapolated contexts against exact answers; writes summary.json, table.md, log_z_curve.png,
    metrics.jsonl and checkpoint.pt into run.out (default runs/<env>_conditional). Returns the
    summary. `env_cfg`, `cfg` (TrainConfig) and `run` (RunConfig) are `gfncore train`'s."""
    from ..nn import MLPPolicy
    from ..runtime import pinned_threads
    from ..train import Trainer

    rng, held = check_conditional(env_name, ccfg, cfg)
    _, make_cond, make_fixed, floor = _CONDITIONAL[env_name]
    with pinned_threads(max(getattr(cfg, "threads", 0), 0)):
        return _train_conditional(env_name, env_cfg, cfg, run, ccfg, rng, held, make_cond, make_fixed,
                                  max(floor(rng.low), rng.low - ccfg.extrapolate * rng.width), MLPPolicy, Trainer)


def _train_conditional(env_name, env_cfg, cfg, run, ccfg, rng, held, make_cond, make_fixed, lo, MLPPolicy, Trainer):
    env = make_cond(env_cfg)
    gap = ccfg.held_out_gap * rng.width
    contexts = banded_contexts(rng.low, rng.high, [(c - gap, c + gap) for c in held])
    torch.manual_seed(cfg.seed)
    policy = MLPPolicy(env, hidden=cfg.hidden, layers=cfg.layers, pb=cfg.pb, flow=cfg.loss in ("db", "subtb"),
                       conditioning=ccfg.conditioning, context_encoder=ContextScaler(rng.low, rng.high))
    k = ccfg.trajectories_per_context
    opts = {"lam": cfg.lam} if cfg.loss == "subtb" else {}
    trainer = Trainer(env, policy, loss=cfg.loss, batch_size=cfg.batch_size, lr=cfg.lr, lr_log_z=cfg.lr_log_z,
                      temperature=cfg.temperature, epsilon=cfg.epsilon, seed=cfg.seed, loss_options=opts,
                      context_sampler=contexts, trajectories_per_context=k)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    if cfg.loss == "tb":
        initialise_log_z(env, policy, contexts(8, gen), generator=gen)
    enumerable = _enumerable_states(env)
    out = run.out or os.path.join("runs", f"{env_name}_conditional")
    os.makedirs(out, exist_ok=True)
    metrics_path = os.path.join(out, "metrics.jsonl")
    open(metrics_path, "w").close()  # a new run's log
    eval_every = cfg.eval_every or max(cfg.steps // 10, 1)

    def held_out_eval() -> list[dict]:
        return [evaluate_at(env, trainer, c, enumerable=enumerable) for c in held]

    def held_out_record(trainer) -> dict:
        evs = held_out_eval()
        return {"held_out": evs, "max_log_z_error": max(e["log_z_error"] for e in evs)}

    before = held_out_eval()
    t0 = time.perf_counter()
    hooks = [LRSchedule.cosine(ccfg.lr_final, cfg.steps)] if ccfg.lr_schedule == "cosine" else []
    hooks.append(Evaluate(eval_every, held_out_record, [], metrics_path, show=("max_log_z_error",),
                          extra=lambda t, rec: {"step": t.step_count, "loss": rec["loss"],
                                                "seconds": time.perf_counter() - t0}))
    trainer.fit(cfg.steps, progress=run.progress, hooks=hooks,
                desc=f"{env_name} | {rng.name} in [{rng.low}, {rng.high}]")

    # the curve: held-out contexts plus an even spread across and beyond the training range
    hi = rng.high + ccfg.extrapolate * rng.width
    n = ccfg.curve_points
    spread = [lo + (hi - lo) * i / (n - 1) for i in range(n)] if n > 1 else [0.5 * (lo + hi)]
    held_set = {round(c, 12) for c in held}
    rows = []
    for c in sorted(set(spread) | set(held)):
        r = evaluate_at(env, trainer, c, ccfg.eval_samples, enumerable)
        r["kind"] = ("held-out" if round(c, 12) in held_set else
                     "extrapolated" if not rng.low <= c <= rng.high else
                     "excluded band" if any(abs(c - h) < gap for h in held) else "in range")
        rows.append(r)
    held_rows = [r for r in rows if r["kind"] == "held-out"]
    summary = {
        "env": _env_label(env), "context": rng.name, "range": [rng.low, rng.high], "held_out": held,
        "held_out_gap": gap, "training_pieces": contexts.pieces, "loss": cfg.loss, "steps": trainer.step_count,
        "train_s": trainer.train_seconds, "iters_per_s": trainer.step_count / max(trainer.train_seconds, 1e-9),
        "threads": torch.get_num_threads(), "enumerable": enumerable, "eval_samples": ccfg.eval_samples,
        "before_training": before, "curve": rows,
        "max_log_z_error_held_out": max(r["log_z_error"] for r in held_rows),
        "max_log_z_is_error_held_out": max((r["log_z_is_error"] for r in held_rows), default=None),
        "max_log_z_is_error": max((r["log_z_is_error"] for r in rows), default=None),
        "max_log_z_error_in_range": max(r["log_z_error"] for r in rows if r["kind"] != "extrapolated"),
        "max_log_z_error_extrapolated": max((r["log_z_error"] for r in rows if r["kind"] == "extrapolated"),
                                            default=None),
        "config": {**dataclasses.asdict(env_cfg), **dataclasses.asdict(cfg), **dataclasses.asdict(ccfg)},
    }
    if enumerable:
        summary["max_l1_held_out"] = max(r["l1"] for r in held_rows)
    summary["query"] = _query_cost(env, trainer, held[0], ccfg.eval_samples)
    if ccfg.compare_contexts:
        summary["per_context"] = _per_context(env_name, env_cfg, cfg, ccfg, held_rows, make_fixed, enumerable,
                                              MLPPolicy, Trainer)
        _amortization_gain(summary)
    summary["table"] = format_table(summary)
    trainer.save(os.path.join(out, "checkpoint.pt"))
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(summary["table"])
    path = os.path.join(out, "summary.json")
    with open(path, "w") as f:
        json.dump(summary, f, indent=1)
    # the plot last, so that without matplotlib every result is already on disk
    summary["plot"] = plot_curve(summary, os.path.join(out, "log_z_curve.png"))
    if summary["plot"]:
        with open(path, "w") as f:
            json.dump(summary, f, indent=1)
    summary["out"] = out
    return summary


def _query_cost(env, trainer, c: float, is_samples: int, repeats: int = 200) -> dict:
    """Seconds for one amortized query of log Ŝ(c): one forward of the log Z(c) head, and the
    importance-sampling estimate from is_samples trajectories; and per object for 1,000 samples
    of π̂(·|c). Medians of interleaved repeats."""
    import statistics

    from ..metrics import importance_log_z

    ctx = torch.tensor([[c]], dtype=torch.get_default_dtype())
    policy = trainer.policy
    tq, ts, ti = [], [], []
    for i in range(repeats):
        t = time.perf_counter()
        with torch.no_grad():
            float(policy.log_z_of(ctx)[0])
        tq.append(time.perf_counter() - t)
        if i % 20 == 0:
            t = time.perf_counter()
            trainer.sample(1000, context=[c])
            ts.append((time.perf_counter() - t) / 1000)
            if is_samples:
                t = time.perf_counter()
                importance_log_z(env, policy, is_samples, context=ctx, generator=trainer.generator)
                ti.append(time.perf_counter() - t)
    return {"log_z_query_s": statistics.median(tq), "sample_s_per_object": statistics.median(ts),
            "log_z_is_query_s": statistics.median(ti) if ti else None}


def _per_context(env_name, env_cfg, cfg, ccfg, held_rows, make_fixed, enumerable, MLPPolicy, Trainer) -> list[dict]:
    """At the first k held-out contexts, a separate (unconditional) sampler with the same network
    and settings, trained until it is as accurate there as the amortized one (|log Z error| and,
    where enumerable, exact L1 no worse), checked every 50 steps; its training time is the cost of
    answering that one context without amortization."""
    from ..metrics import evaluate

    rows = []
    for r in held_rows[:ccfg.compare_contexts]:
        c = r["context"]
        env = make_fixed(env_cfg, c)
        torch.manual_seed(cfg.seed)
        policy = MLPPolicy(env, hidden=cfg.hidden, layers=cfg.layers, pb=cfg.pb, flow=cfg.loss in ("db", "subtb"))
        opts = {"lam": cfg.lam} if cfg.loss == "subtb" else {}
        tr = Trainer(env, policy, loss=cfg.loss, batch_size=cfg.batch_size, lr=cfg.lr, lr_log_z=cfg.lr_log_z,
                     seed=cfg.seed, loss_options=opts)
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        if cfg.loss == "tb":
            initialise_log_z(env, policy, None, generator=gen)
        steps = ccfg.compare_max_steps
        reached, last = None, {}

        def check(trainer, r=r, env=env, policy=policy) -> None:
            nonlocal reached
            if enumerable:
                ev = evaluate(env, policy, trainer.log_z)
            else:
                ev = {"log_z_error": abs(trainer.log_z - env.true_log_z())}
            last["ev"] = ev
            if ev["log_z_error"] <= r["log_z_error"] and (not enumerable or ev["l1"] <= r["l1"]):
                reached = trainer.step_count
                trainer.should_stop = True

        hooks = [LRSchedule.cosine(ccfg.lr_final, steps)] if ccfg.lr_schedule == "cosine" else []
        hooks.append(Evaluate(50, check, at_end=False))
        tr.fit(steps, progress=False, hooks=hooks)
        ev = last.get("ev")
        rows.append({"context": c, "amortized_log_z_error": r["log_z_error"], "amortized_l1": r.get("l1"),
                     "steps_to_match": reached, "steps_run": tr.step_count, "train_s": tr.train_seconds,
                     "final": ev})
    return rows


def _env_label(env) -> str:
    # repr of a compiled env shows a handle address; the parameters say which environment it was
    return f"{type(env).__name__}({', '.join(f'{k}={v}' for k, v in env.config().items())})"


def _amortization_gain(s: dict) -> None:
    pc = [r for r in s["per_context"] if r["steps_to_match"] is not None]
    s["amortization"] = {
        "per_context_train_s_mean": (sum(r["train_s"] for r in pc) / len(pc)) if pc else None,
        "matched": len(pc), "tried": len(s["per_context"]),
        "amortized_train_s": s["train_s"], "amortized_query_s": s["query"]["log_z_query_s"],
    }
    a = s["amortization"]
    if pc:
        a["query_speedup"] = a["per_context_train_s_mean"] / a["amortized_query_s"]
        a["break_even_contexts"] = a["amortized_train_s"] / a["per_context_train_s_mean"]
