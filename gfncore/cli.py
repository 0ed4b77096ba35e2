"""Command line: `gfncore train hypergrid [flags]`. Flags come from the config dataclasses, so the
CLI and the Python API never drift apart."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field

import torch


@dataclass
class HyperGridConfig:
    ndim: int = field(default=2, metadata={"help": "grid dimensions"})
    height: int = field(default=8, metadata={"help": "points per dimension"})
    R0: float = field(default=0.1, metadata={"help": "base reward"})
    R1: float = field(default=0.5, metadata={"help": "outer-region bonus"})
    R2: float = field(default=2.0, metadata={"help": "mode-ring bonus"})


@dataclass
class IsingConfig:
    n: int = field(default=3, metadata={"help": "lattice side (n x n spins)"})
    J: float = field(default=0.2, metadata={"help": "nearest-neighbour coupling"})
    h: float = field(default=0.0, metadata={"help": "external field"})
    beta: float = field(default=1.0, metadata={"help": "inverse temperature"})


@dataclass
class RunConfig:
    out: str = field(default="", metadata={"help": "output directory (default: runs/<env>)"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})


def _make_hypergrid(c: HyperGridConfig):
    from .envs import HyperGrid

    return HyperGrid(c.ndim, c.height, c.R0, c.R1, c.R2)


def _make_ising(c: IsingConfig):
    from .envs import Ising

    return Ising(c.n, J=c.J, h=c.h, beta=c.beta)


# name -> (config dataclass, constructor, help, TrainConfig overrides for the default run)
ENVS = {
    "hypergrid": (HyperGridConfig, _make_hypergrid, "HyperGrid (Bengio et al. 2021)", {"steps": 1000}),
    "ising": (IsingConfig, _make_ising, "Ising model on an n x n torus (energy-based model)", {"steps": 2000}),
}


def add_dataclass_args(parser: argparse.ArgumentParser, cls, overrides: dict | None = None) -> None:
    for f in dataclasses.fields(cls):
        default = (overrides or {}).get(f.name, f.default)
        flag = "--" + f.name.replace("_", "-")
        help_ = f"{f.metadata.get('help', '')} (default: {default})"
        if f.type in (bool, "bool"):
            parser.add_argument(flag, dest=f.name, default=default, action=argparse.BooleanOptionalAction, help=help_)
        else:
            typ = {"int": int, "float": float, "str": str}.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
            parser.add_argument(flag, dest=f.name, type=typ, default=default, help=help_)


def from_args(cls, ns: argparse.Namespace):
    return cls(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)})


def build_parser() -> argparse.ArgumentParser:
    from .train import TrainConfig

    p = argparse.ArgumentParser(prog="gfncore", description="GFlowNets with a compiled core")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a sampler")
    envs = t.add_subparsers(dest="env", required=True)
    for name, (cfg_cls, _, help_, overrides) in ENVS.items():
        e = envs.add_parser(name, help=help_, description=help_)
        add_dataclass_args(e, cfg_cls)
        add_dataclass_args(e, TrainConfig, overrides)
        add_dataclass_args(e, RunConfig)
    return p


def _version() -> str:
    from . import __version__

    return __version__


def train(env_name: str, env_cfg, cfg, run: RunConfig) -> dict:
    """Train a sampler on one environment; write metrics.jsonl, summary.json, checkpoint.pt and,
    for 2-D HyperGrids, distribution.png into run.out. Returns the summary."""
    from . import _C
    from .metrics import empirical_l1, exact_terminal_distribution
    from .train import Trainer, config_dict, policy_for

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
        _C.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    env = ENVS[env_name][1](env_cfg)
    policy = policy_for(env, cfg)
    trainer = Trainer.from_config(env, policy, cfg)
    out = run.out or os.path.join("runs", env_name)
    os.makedirs(out, exist_ok=True)
    metrics_path = os.path.join(out, "metrics.jsonl")
    if os.path.exists(metrics_path):
        os.remove(metrics_path)
    eval_every = cfg.eval_every or max(cfg.steps // 10, 1)
    trainer.fit(cfg.steps, progress=run.progress, eval_every=eval_every, log_path=metrics_path)
    final = trainer.history[-1] if trainer.history else trainer.evaluate()
    true_log_z = env.true_log_z()
    summary = {
        "env": repr(env), "loss": cfg.loss, "steps": trainer.step_count,
        "l1": final["l1"], "jsd": final["jsd"], "log_z": trainer.log_z, "true_log_z": true_log_z,
        "log_z_error": abs(trainer.log_z - true_log_z),
        "modes_found": trainer.modes_found, "has_modes": hasattr(env, "mode_mask"), "train_s": trainer.train_seconds,
        "iters_per_s": trainer.step_count / max(trainer.train_seconds, 1e-9),
        "config": config_dict(env_cfg, cfg),
    }
    x = trainer.sample(10_000)
    summary["empirical_l1_10k"] = empirical_l1(env, x)
    trainer.save(os.path.join(out, "checkpoint.pt"))
    if env_name == "hypergrid" and env.ndim == 2:
        from .plotting import plot_distribution

        plot_distribution(env, exact_terminal_distribution(env, policy), os.path.join(out, "distribution.png"),
                          title=f"{env!r}, {cfg.loss}, {trainer.step_count} steps: L1 = {summary['l1']:.4f}")
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    summary["out"] = out
    return summary


def main(argv: list[str] | None = None) -> int:
    from .train import TrainConfig

    ns = build_parser().parse_args(argv)
    if ns.command == "train":
        cfg_cls = ENVS[ns.env][0]
        s = train(ns.env, from_args(cfg_cls, ns), from_args(TrainConfig, ns), from_args(RunConfig, ns))
        print(f"{s['env']}  loss={s['loss']}  steps={s['steps']}  ({s['iters_per_s']:.1f} it/s, {s['train_s']:.1f} s training)")
        print(f"exact L1 = {s['l1']:.4f}   JSD = {s['jsd']:.5f}   empirical L1 (10k samples) = {s['empirical_l1_10k']:.4f}")
        print(f"log Z = {s['log_z']:.4f}   true log Z = {s['true_log_z']:.4f}   |error| = {s['log_z_error']:.4f}")
        modes = f"modes found = {s['modes_found']}   " if s.get("has_modes") else ""
        print(f"{modes}outputs in {s['out']}/")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
