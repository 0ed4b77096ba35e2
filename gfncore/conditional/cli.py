"""`gfncore train ENV --conditional NAME=LOW:HIGH` (its flags are ConditionalConfig's, added to
`gfncore train` by gfncore.cli.commands), and `python -m gfncore.conditional ENV ...`."""
from __future__ import annotations

import dataclasses
import os
import sys

from ..cli.common import INTERRUPTED, RunConfig, UsageError, check_out, from_args
from .library import ConditionalConfig, check_conditional, train_conditional
from .report import print_summary


def conditional_command(ns, env_cfg, cfg, run: RunConfig, prog: str) -> int:
    """`gfncore train ENV --conditional NAME=LOW:HIGH`: one sampler over a range of contexts,
    evaluated against exact log S(c) (gfncore.conditional). Its runs are not resumable."""
    from .. import distributed
    from ..runtime import default_threads, set_num_threads
    from ..train import TrainConfig

    ccfg = from_args(ConditionalConfig, ns, prog)
    if run.resume:
        raise UsageError(f"{prog}: error: --resume is not available for --conditional runs")
    if distributed.launched_by_torchrun():
        raise UsageError(f"{prog}: error: --conditional runs in one process (not under torchrun)")
    # settings a conditional run does not use: refused rather than silently ignored
    defaults = TrainConfig()
    unused = [n for n in ("importance_weights", "replay_capacity", "replay_fraction", "prioritized", "device")
              if getattr(cfg, n) != getattr(defaults, n)]
    unused += ["checkpoint_every"] if run.checkpoint_every else []
    if unused:
        flags = ", ".join("--" + n.replace("_", "-") for n in unused)
        raise UsageError(f"{prog}: error: {flags} not available for --conditional runs (CPU, on-policy, one "
                         f"checkpoint at the end)")
    try:
        check_conditional(ns.env, ccfg, cfg)
    except (ValueError, TypeError) as e:
        raise UsageError(f"{prog}: error: {e}") from None
    run = dataclasses.replace(run, out=run.out or os.path.join("runs", f"{ns.env}_conditional"))
    check_out(run.out, run)
    set_num_threads(cfg.threads or default_threads())
    try:
        s = train_conditional(ns.env, env_cfg, cfg, run, ccfg)
    except KeyboardInterrupt:
        print(f"\n{prog}: stopped by a signal; conditional runs write their results only at the end", file=sys.stderr)
        return INTERRUPTED
    print_summary(s)
    return 0
