"""Conditional GFlowNets as amortized intractable sums: one forward policy π̂(y|c) and one head
log Ŝ(c) trained over a range of contexts, with π̂(y|c)·Ŝ(c) = R(c, y) (the seed's equation 1), so
that S(c) = Σ_y R(c, y) at a context never seen in training costs one forward pass instead of
training a sampler.

    gfncore train ising --n 3 --J 0.5 --conditional beta=0.1:1.0 --out runs/ising_beta

trains on β drawn uniformly from [0.1, 1.0] except narrow bands around the held-out contexts
(`--held-out`, default four points inside the range), then writes, for contexts across and
beyond the training range, log Ŝ(c) against the exact log S(c) (and the exact L1 of π̂(·|c) where
the state space can be enumerated) as a table (table.md), a plot (log_z_curve.png) and
summary.json. With `--compare-contexts k` it also trains a separate sampler at k of the held-out
contexts until it is as accurate there as the amortized one, and reports both costs.

`train_conditional` is the entry point; the flags of `gfncore train <env>` include
ConditionalConfig's (`python -m gfncore.conditional <env> ...` is `gfncore train <env> ...`).
Its tables and plots are in gfncore.conditional.report, its command line in gfncore.conditional.cli.
"""
from ..train import cosine_schedule, initialise_log_z  # noqa: F401  (imported from here before the training layer had them)
from .library import (CONDITIONAL_ENVS, ConditionalConfig, ContextRange, ContextScaler, banded_contexts,
                      check_conditional, evaluate_at, held_out_contexts, train_conditional)
from .report import format_table, plot_curve, print_summary

__all__ = ["CONDITIONAL_ENVS", "ConditionalConfig", "ContextRange", "ContextScaler", "banded_contexts",
           "check_conditional", "evaluate_at", "format_table", "held_out_contexts", "plot_curve", "print_summary",
           "train_conditional"]
