"""`python -m gfncore.amortize [flags]`: the demonstration (gfncore.amortize.demo.run_demo) from the
command line, its flags generated from DemoConfig and RegressorConfig."""
from __future__ import annotations

import dataclasses

from .demo import DemoConfig, run_demo
from .library import RegressorConfig


def _parser():
    import argparse

    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m gfncore.amortize",
                                description="Amortized expectations vs Monte Carlo on a problem with an exact answer")
    for cls in (DemoConfig, RegressorConfig):
        for f in dataclasses.fields(cls):
            default = f.default
            flag = "--" + f.name.replace("_", "-")
            help_ = f"{f.metadata.get('help', '')} (default: {default})"
            if f.type == "bool":
                p.add_argument(flag, dest=f.name, default=default, action=argparse.BooleanOptionalAction, help=help_)
            elif str(f.type).startswith("tuple"):
                p.add_argument(flag, dest=f.name, default=default, help=help_,
                               type=lambda v: tuple(int(t) for t in v.split(",") if t.strip()))
            else:
                p.add_argument(flag, dest=f.name, default=default, type={"int": int, "float": float}.get(f.type, str),
                               help=help_)
    return p


def main(argv: list[str] | None = None) -> dict:
    ns = _parser().parse_args(argv)
    pick = lambda cls: cls(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)})  # noqa: E731
    cfg = pick(DemoConfig)
    if not cfg.out:
        cfg = dataclasses.replace(cfg, out="runs/amortize")
    s = run_demo(cfg, pick(RegressorConfig))
    print(s["table"])
    print(f"wrote {cfg.out}/summary.json, table.md" + (", amortize.png" if s.get("plot") else ""))
    return s
