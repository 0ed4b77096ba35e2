"""The commands of the library itself: `gfncore train ENV [flags]` (with `--conditional
NAME=LOW:HIGH`, one sampler for a range of contexts: gfncore.conditional.cli), `gfncore sample` and
`gfncore eval`. Training flags come from the config dataclasses and are checked against their
declared bounds (gfncore.config), so the CLI and the Python API never drift apart. Bad input is one
line on stderr and exit code 2, before anything is written."""
from __future__ import annotations

import dataclasses
import math
import os
import re
import sys

from ..config import check
from ..runfolder import FolderBusy, RunFolder
from .common import (FAILED, INTERRUPTED, RUN_FILES, Parser, RunConfig, RunFailed, UsageError, add_dataclass_args,
                     check_out, from_args, stop_on_signals, write_json, write_lines)

# TrainConfig fields a resumed run may change: none of them alters what the steps compute
RESUMABLE = {"steps", "eval_every", "threads", "device"}


# Environment subcommands are generated from the environments themselves: a compiled
# environment's C++ declarations (name, type, default, bounds, help) give each flag, and the
# Python class's constructor says which parameters a command line can set (plain numbers and
# switches; data tensors cannot come from a flag). Adding a built-in environment therefore adds
# its `gfncore train <name>` with no edit here. CLI_DEFAULTS holds the few defaults the command
# line chooses differently from the library, with the reason.
CLI_DEFAULTS: dict[str, dict] = {
    "hypergrid": {"steps": 1000},
    # J = 1 at beta = 1 on a 3x3 torus puts almost all mass on the two ground states: a weak
    # coupling makes the default run a sampler of a spread-out distribution
    "ising": {"steps": 2000, "J": 0.2},
}


def _env_entry(cls) -> tuple:
    """(config dataclass, constructor, help, TrainConfig overrides) of one environment class."""
    import inspect

    from ..train import TrainConfig

    kind = cls.kind
    overrides = CLI_DEFAULTS.get(kind, {})
    decls = {d["name"]: d for d in cls._decls}
    extra_help = getattr(cls, "param_help", {})
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    flds = []
    for prm in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if prm.kind not in (prm.POSITIONAL_OR_KEYWORD, prm.KEYWORD_ONLY) or prm.name in train_fields:
            continue
        default = overrides.get(prm.name, prm.default)
        typ = {bool: "bool", int: "int", float: "float"}.get(type(default))
        if typ is None:  # tensors, callables, None: not settable from a flag
            continue
        d = decls.get(prm.name, {})
        meta = {"help": d.get("help") or extra_help.get(prm.name, "")}
        lo, hi = d.get("min"), d.get("max")
        if lo is not None and math.isfinite(lo):
            meta["gt" if d.get("min_exclusive") else "min"] = lo
        if hi is not None and math.isfinite(hi):
            meta["max"] = hi
        flds.append((prm.name, typ, dataclasses.field(default=default, metadata=meta)))
    cfg_cls = dataclasses.make_dataclass(f"{cls.__name__}Config", flds)
    para = " ".join((cls.__doc__ or cls.__name__).strip().split("\n\n")[0].split())
    doc = re.split(r"(?<!\bal)(?<!e\.g)(?<!i\.e)\.\s|;\s", para)[0].rstrip(".:,")  # its first sentence
    return (cfg_cls, lambda c, cls=cls: cls(**dataclasses.asdict(c)), doc,
            {k: v for k, v in overrides.items() if k in train_fields})


def _env_table() -> dict:
    from .. import envs

    classes = [c for c in vars(envs).values() if isinstance(c, type) and issubclass(c, envs.CompiledEnv)
               and vars(c).get("kind") in envs.KINDS and vars(c).get("train_command", True)]
    return {c.kind: _env_entry(c) for c in sorted(classes, key=lambda c: list(envs.KINDS).index(c.kind))}


def _user_env_entry(spec: str) -> tuple:
    """`gfncore train --env module:Class`: the same entry as a built-in's, from the class's
    constructor: one flag per parameter whose default is a number, switch or string (a parameter
    without a default becomes a required flag, typed by its annotation). Raises UsageError."""
    import inspect

    from ..envs.resolve import class_from_spec
    from ..train import TrainConfig

    try:
        cls = class_from_spec(spec)
    except ValueError as e:
        raise UsageError(f"gfncore train: error: {e}") from None
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} | {f.name for f in dataclasses.fields(RunConfig)}
    flds, required = [], []
    kinds = {bool: "bool", int: "int", float: "float", str: "str"}
    for prm in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if prm.kind not in (prm.POSITIONAL_OR_KEYWORD, prm.KEYWORD_ONLY):
            continue
        if prm.name in train_fields or prm.name == "env":
            raise UsageError(f"gfncore train: error: --env {spec}: its parameter {prm.name!r} has the name of a "
                             f"training flag; rename it")
        if prm.default is prm.empty:
            ann = prm.annotation if isinstance(prm.annotation, str) else getattr(prm.annotation, "__name__", "")
            if ann not in kinds.values():
                raise UsageError(f"gfncore train: error: --env {spec}: its parameter {prm.name!r} has no default and "
                                 f"no int/float/bool/str annotation, so no flag can set it")
            required.append(prm.name)
            flds.append((prm.name, ann, dataclasses.field(default=None, metadata={"help": "required"})))
        elif type(prm.default) in kinds:
            flds.append((prm.name, kinds[type(prm.default)], dataclasses.field(default=prm.default,
                                                                              metadata={"help": ""})))
    cfg_cls = dataclasses.make_dataclass(f"{cls.__name__}Config", flds)
    cfg_cls._required = required
    doc = " ".join((cls.__doc__ or cls.__name__).strip().split("\n\n")[0].split())
    return cfg_cls, lambda c, cls=cls: cls(**dataclasses.asdict(c)), doc, {}


def user_env_parser(spec: str, entry: tuple, suppress: bool = False) -> Parser:
    from ..train import TrainConfig

    cfg_cls, _, doc, _ = entry
    p = Parser(prog=f"gfncore train --env {spec}", description=doc)
    p.add_argument("--env", required=True, help="module:Class of your environment (its module importable, from "
                                                "the current folder too)")
    add_dataclass_args(p, cfg_cls, suppress=suppress)
    for a in p._actions:
        if a.dest in cfg_cls._required:
            a.required = True
    add_dataclass_args(p, TrainConfig, suppress=suppress)
    add_dataclass_args(p, RunConfig, suppress=suppress)
    return p


def env_spec(argv: list[str]) -> str | None:
    """The SPEC of `gfncore train --env SPEC ...` (None for a built-in environment's command)."""
    if not argv or argv[0] != "train":
        return None
    for i, a in enumerate(argv[1:], 1):
        if a == "--env":
            return argv[i + 1] if i + 1 < len(argv) else ""
        if a.startswith("--env="):
            return a.split("=", 1)[1]
    return None


def train_user_env(argv: list[str]) -> int:
    """`gfncore train --env MODULE:CLASS [flags]`: a user's environment class, trained as a built-in."""
    from ..train import TrainConfig

    spec = env_spec(argv)
    entry = _user_env_entry(spec)
    ns = user_env_parser(spec, entry).parse_args(argv[1:])
    given = set(vars(user_env_parser(spec, entry, suppress=True).parse_args(argv[1:])))
    prog = f"gfncore train --env {spec}"
    env_cfg = from_args(entry[0], ns, prog)
    cfg = from_args(TrainConfig, ns, prog)
    run = from_args(RunConfig, ns, prog)
    return _run_train(spec, env_cfg, cfg, run, given, make_env=entry[1])


# name -> (config dataclass, constructor, help, TrainConfig overrides for the default run).
# Environment parameters are checked by the environment's constructor (ValueError/TypeError),
# which the CLI turns into its one-line error before it writes anything.
ENVS = _env_table()


def add_parser(sub, suppress: bool = False) -> None:
    """`gfncore train ENV`, `gfncore sample` and `gfncore eval` on the top-level subparsers."""
    from ..conditional import CONDITIONAL_ENVS, ConditionalConfig
    from ..train import TrainConfig

    t = sub.add_parser("train", help="train a sampler", description="Train a sampler on an environment.")
    t.add_argument("--env", dest="env_spec", metavar="MODULE:CLASS",
                   help="your own environment class (any route: PythonEnv, NumbaEnv or CompiledEnv), e.g. "
                        "myenvs:Chain; its constructor's parameters become flags (gfncore train --env MODULE:CLASS "
                        "--help)")
    envs = t.add_subparsers(dest="env", required=True)
    for name, (cfg_cls, _, help_, overrides) in ENVS.items():
        e = envs.add_parser(name, help=help_, description=help_)
        add_dataclass_args(e, cfg_cls, suppress=suppress)
        add_dataclass_args(e, TrainConfig, overrides, suppress=suppress)
        add_dataclass_args(e, RunConfig, suppress=suppress)
        if name in CONDITIONAL_ENVS:
            add_dataclass_args(e, ConditionalConfig, suppress=suppress)
    for cmd, help_ in (("sample", "draw objects x from a trained sampler"),
                       ("eval", "evaluate a trained sampler (exact where the environment is enumerable)")):
        s = sub.add_parser(cmd, help=help_, description=help_)
        s.add_argument("--checkpoint", required=True, help="a checkpoint.pt written by gfncore train")
        s.add_argument("-n", type=int, default=10_000, help="objects to sample (default: 10000)")
        s.add_argument("--out", default="", help="output file (sample: a .pt of x and log R; eval: a .json)"
                                                 + (" (required)" if cmd == "sample" else ""))
        s.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
        s.add_argument("--seed", type=int, default=0, help="seed of the samples (default: 0)")
        s.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default: 1)")
        s.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
        s.add_argument("--threads", type=int, default=0, help="CPU threads (0: gfncore's default)")
        s.add_argument("--context", default="", metavar="VALUE[,VALUE...]",
                       help="a conditional run's context c (e.g. --context 0.35 for HyperGridR0's R0)")
        s.add_argument("--env", default="", metavar="MODULE:CLASS",
                       help="your own environment class, imported from your module and rebuilt from the "
                            "checkpoint's parameters (gfncore never imports a class named inside a checkpoint)")


def _given(argv: list[str] | None) -> set[str]:
    """The fields whose flags appear on the command line."""
    p = Parser(prog="gfncore")
    add_parser(p.add_subparsers(dest="command", required=True), suppress=True)
    try:
        return set(vars(p.parse_args(argv)))
    except UsageError:
        return set()


def run(ns, argv: list[str]) -> int:
    """Runs `gfncore train|sample|eval` from its parsed flags; returns the exit code."""
    from ..train import TrainConfig

    if ns.command == "sample":
        return sample_command(ns)
    if ns.command == "eval":
        return eval_command(ns)
    cfg_cls = ENVS[ns.env][0]
    prog = f"gfncore train {ns.env}"
    env_cfg = from_args(cfg_cls, ns, prog)
    cfg = from_args(TrainConfig, ns, prog)
    run_cfg = from_args(RunConfig, ns, prog)
    if getattr(ns, "conditional", ""):
        from ..conditional.cli import conditional_command

        return conditional_command(ns, env_cfg, cfg, run_cfg, prog)
    return _run_train(ns.env, env_cfg, cfg, run_cfg, _given(argv))


def _run_train(env_name: str, env_cfg, cfg, run_cfg: RunConfig, given: set[str], make_env=None) -> int:
    try:
        s = train_run(env_name, env_cfg, cfg, run_cfg, given=given, make_env=make_env)
    except RunFailed as e:
        print(f"gfncore train: {e}", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:
        print("\ngfncore train: stopped at once by a signal, without a new checkpoint", file=sys.stderr)
        return INTERRUPTED
    if s.get("partial"):
        if "rank" not in s:  # data-parallel: rank 0 reports
            print(f"gfncore train: {s['message']}", file=sys.stderr)
        return INTERRUPTED
    if "rank" not in s:  # data-parallel: rank 0 reports
        _print_summary(s)
    return 0


# -- train ----------------------------------------------------------------------------------------
def _resumed_configs(env_name: str, env_cfg, cfg, saved: dict, given: set[str]):
    """The saved run's env and train configs, with the flags a resume may change taken from the
    command line; any other flag given with a different value is an error."""
    from ..train import TrainConfig

    saved_env = saved.get("env") or {}
    # (--env module:Class: the saved config names the class's own name, or is empty without config())
    if ":" not in env_name and saved_env.get("name") != env_name:
        raise UsageError(f"gfncore train: error: --resume: the checkpoint trained {saved_env.get('name')!r}, "
                         f"not {env_name!r}")
    env_kw = {}
    for f in dataclasses.fields(env_cfg):
        old = saved_env.get("params", {}).get(f.name, getattr(env_cfg, f.name))
        if f.name in given and getattr(env_cfg, f.name) != old:
            raise UsageError(f"gfncore train: error: --resume continues the saved run, whose --{f.name} is {old!r}; "
                             f"start a new run (--out elsewhere) to change it")
        env_kw[f.name] = old
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    train_kw = {k: v for k, v in saved["config"].items() if k in known}
    for name in known:
        if name in RESUMABLE:
            if name in given or name not in train_kw:
                train_kw[name] = getattr(cfg, name)
        elif name in given and getattr(cfg, name) != train_kw.get(name):
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"gfncore train: error: --resume continues the saved run, whose {flag} is "
                             f"{train_kw.get(name)!r}; start a new run (--out elsewhere) to change it")
    try:
        return type(env_cfg)(**env_kw), TrainConfig(**train_kw)
    except (ValueError, TypeError) as e:  # e.g. a run trained on cuda, resumed where there is none
        raise UsageError(f"gfncore train: error: --resume: {e}") from None


def train_run(env_name: str, env_cfg, cfg, run: RunConfig, given: set[str] = frozenset(), make_env=None) -> dict:
    """Train a sampler on one environment; write metrics.jsonl, checkpoint.pt, summary.json and,
    for 2-D HyperGrids, distribution.png into run.out. Returns the summary (with "partial": True
    when a signal stopped it). Raises UsageError before writing anything on bad input. The run
    holds run.out's lock from its first write to its last (gfncore.runfolder)."""
    with RunFolder() as folder:
        return _train(env_name, env_cfg, cfg, run, given, folder, make_env)


def _train(env_name: str, env_cfg, cfg, run: RunConfig, given, folder: RunFolder, make_env=None) -> dict:
    import torch

    from ..runtime import default_threads, set_num_threads
    from .. import distributed as D
    from ..checkpoint import read
    from ..envs import from_config
    from ..train import NonFiniteError, Trainer, config_dict, policy_for

    out = run.out or os.path.join("runs", env_name.split(":")[-1].lower())  # --env module:Class: runs/class
    check_out(out, run)
    # torchrun --nproc_per_node N -m gfncore train ...: every rank trains its share of each batch,
    # rank 0 alone writes (metrics, checkpoints, summary, picture)
    topo = D.init() if D.launched_by_torchrun() else D.Topology()
    main = topo.is_main
    ckpt = os.path.join(out, "checkpoint.pt")
    saved = None
    if run.resume:
        try:
            saved = read(ckpt)
        except ValueError as e:
            raise UsageError(f"gfncore train: error: --resume: {e}") from None
        env_cfg, cfg = _resumed_configs(env_name, env_cfg, cfg, saved, given)
    try:
        # a user's environment (--env module:Class; make_env) is rebuilt from its flags, which a
        # resume has checked against the saved parameters above
        make = make_env or ENVS[env_name][1]
        env = from_config(saved["env"]) if saved and saved.get("env") and not make_env else make(env_cfg)
    except (ValueError, TypeError, OverflowError) as e:
        raise UsageError(f"gfncore train {env_name}: error: {e}") from None

    # One thread count for the whole run (torch's float results depend on it): the flag, else the
    # resumed run's own (so that a resume continues it bit for bit), else the machine's default.
    saved_threads = (saved.get("runtime") or {}).get("threads") if saved else None
    set_num_threads(cfg.threads or saved_threads or default_threads())
    torch.manual_seed(cfg.seed)
    try:
        trainer = Trainer.from_config(env, policy_for(env, cfg), cfg)
    except (ValueError, MemoryError) as e:  # a batch or an environment this machine cannot hold
        raise UsageError(f"gfncore train {env_name}: error: {e}") from None
    if saved:
        try:
            trainer.load_state_dict(saved["state"])
        except ValueError as e:  # e.g. a data-parallel run with replay resumed on another world size
            raise UsageError(f"gfncore train: error: --resume: {e}") from None
        trainer.last_checkpoint = (ckpt, trainer.step_count)

    # Everything is checked: from here on the run writes.
    metrics_path = os.path.join(out, "metrics.jsonl")
    if main:
        try:
            folder.acquire(out)
        except FolderBusy as e:
            raise UsageError(f"gfncore train: error: {e}") from None
        if not (run.resume or run.overwrite) and any(os.path.exists(os.path.join(out, f)) for f in RUN_FILES[:3]):
            # a run that started beside this one wrote first (checked again, under the lock)
            raise UsageError(f"gfncore train: error: {out} already holds a run; pass --resume to continue it or "
                             f"--overwrite to replace it")
        if run.overwrite:
            for f in RUN_FILES:
                if os.path.exists(os.path.join(out, f)):
                    os.remove(os.path.join(out, f))
        # the evaluations up to the checkpoint, as the uninterrupted run wrote them (later lines of
        # an interrupted run are dropped: the resumed run writes them again)
        write_lines(metrics_path, trainer.history if saved else [])
    write_main = write_json if main else (lambda path, d: None)
    eval_every = cfg.eval_every or max(cfg.steps // 10, 1)
    base = {"env": repr(env), "env_config": _env_config(env), "loss": cfg.loss, "target_steps": cfg.steps,
            "threads": torch.get_num_threads(), "device": str(trainer.device), "world_size": topo.world_size,
            "config": config_dict(env_cfg, cfg), "checkpoint": ckpt}
    with stop_on_signals(trainer) as received:
        try:
            trainer.fit(max(cfg.steps - trainer.step_count, 0), progress=run.progress, eval_every=eval_every,
                        log_path=metrics_path, checkpoint_every=run.checkpoint_every, checkpoint_path=ckpt)
        except NonFiniteError as e:
            # the trainer is as it was after its last good step: keep that, and say what happened
            trainer.save(ckpt)
            msg = f"{e.detail}; the run's last good state (step {trainer.step_count}) is in {ckpt}"
            write_main(os.path.join(out, "summary.json"), _partial(trainer, base, f"non-finite {e.quantity}", msg))
            raise RunFailed(msg) from e
        if received or trainer._stop_agreed:  # here, or (data-parallel) on another rank
            why = received[0] if received else "a signal to another rank"
            trainer.save(ckpt)
            s = _partial(trainer, base, why, f"stopped by {why} at step {trainer.step_count}; "
                                                     f"continue with: gfncore train {env_name} --out {out} --resume")
            write_main(os.path.join(out, "summary.json"), s)
            s["out"] = out
            if not main:
                s["rank"] = topo.rank
            return s
        trainer.save(ckpt)

    if not main:  # the summary's evaluations and sampling are rank 0's alone
        return dict(base, partial=False, steps=trainer.step_count, out=out, rank=topo.rank)
    summary = _final_summary(trainer, base, cfg)
    write_json(os.path.join(out, "summary.json"), summary)
    # pictures last: the results above are already on disk whatever happens here
    if env_name == "hypergrid" and env.ndim == 2 and trainer.capabilities()["exact"]:
        from ..metrics import exact_terminal_distribution
        from ..plotting import plot_distribution

        try:
            plot_distribution(env, exact_terminal_distribution(env, trainer.policy), os.path.join(out, "distribution.png"),
                              title=f"{env!r}, {cfg.loss}, {trainer.step_count} steps: L1 = {summary['l1']:.4f}")
        except ImportError as e:
            print(f"gfncore: distribution.png skipped: {e}", file=sys.stderr)
    summary["out"] = out
    return summary


def _env_config(env):
    try:
        return env.to_config()
    except NotImplementedError:
        return None


def _partial(trainer, base: dict, stopped_by: str, message: str) -> dict:
    s = dict(base, partial=True, stopped_by=stopped_by, message=message, steps=trainer.step_count,
             log_z=trainer.log_z, train_s=trainer.train_seconds,
             iters_per_s=trainer.step_count / max(trainer.train_seconds, 1e-9))
    if trainer.history:
        s["last_evaluation"] = trainer.history[-1]
    return s


def _final_summary(trainer, base: dict, cfg) -> dict:
    import torch

    env = trainer.env
    last = trainer.history[-1] if trainer.history else None
    final = last if last is not None and last.get("step") == trainer.step_count else trainer.evaluate()
    s = dict(base, partial=False, steps=trainer.step_count)
    for k in ("l1", "jsd", "true_log_z", "log_z_error"):
        if k in final:
            s[k] = final[k]
    s["log_z"] = trainer.log_z
    s.update(modes_found=trainer.modes_found if hasattr(env, "mode_mask") else None,
             has_modes=hasattr(env, "mode_mask"), train_s=trainer.train_seconds,
             iters_per_s=trainer.step_count / max(trainer.train_seconds, 1e-9))
    # its own random stream, so the summary never moves the training stream a resume continues
    ev = trainer.evaluate(10_000, generator=torch.Generator().manual_seed(cfg.seed + 1))
    if "empirical_l1" in ev:
        s["empirical_l1_10k"] = ev["empirical_l1"]
    return s


def _print_summary(s: dict) -> None:
    w = s.get("world_size", 1)
    procs = f"{w} processes x " if w > 1 else ""  # data-parallel (torchrun): threads are per process
    print(f"{s['env']}  loss={s['loss']}  steps={s['steps']}  ({s['iters_per_s']:.1f} it/s, {s['train_s']:.1f} s training, "
          f"{procs}{s['threads']} thread{'s' if s['threads'] != 1 else ''}, {s['device']})")
    _print_quality(s, s.get("empirical_l1_10k"), 10_000)
    modes = f"modes found = {s['modes_found']}   " if s.get("has_modes") else ""
    print(f"{modes}outputs in {s['out']}/")


def _print_quality(s: dict, empirical: float | None, n: int) -> None:
    emp = f"empirical L1 ({n} samples) = {empirical:.4f}" if empirical is not None else ""
    if "l1" in s:
        print(f"exact L1 = {s['l1']:.4f}   JSD = {s['jsd']:.5f}" + (f"   {emp}" if emp else ""))
    elif emp:
        print(f"{emp}   (no exact L1: the state space is too large to enumerate)")
    if "true_log_z" in s:
        print(f"log Z = {s['log_z']:.4f}   true log Z = {s['true_log_z']:.4f}   |error| = {s['log_z_error']:.4f}")
    else:
        print(f"log Z = {s['log_z']:.4f}   (no true log Z for this environment)")


# -- sample / eval --------------------------------------------------------------------------------
def _load_checkpoint(ns):
    import torch

    from ..envs.resolve import class_from_spec
    from ..runtime import default_threads, set_num_threads
    from ..train import TrainConfig, load

    for name, v in (("device", ns.device), ("threads", ns.threads), ("temperature", ns.temperature),
                    ("seed", ns.seed)):
        try:
            check(TrainConfig, name, v, flag=True)
        except (ValueError, TypeError) as e:
            raise UsageError(f"gfncore {ns.command}: error: {e}") from None
    if ns.n < 0:
        raise UsageError(f"gfncore {ns.command}: error: -n must be >= 0, got {ns.n}")
    if ns.out and os.path.exists(ns.out) and (os.path.isdir(ns.out) or not ns.overwrite):
        what = "is a folder" if os.path.isdir(ns.out) else "exists; pass --overwrite to replace it"
        raise UsageError(f"gfncore {ns.command}: error: --out {ns.out} {what}")
    if not os.path.isfile(ns.checkpoint):
        raise UsageError(f"gfncore {ns.command}: error: --checkpoint {ns.checkpoint} is not a file")
    try:
        env_cls = class_from_spec(ns.env) if ns.env else None
    except ValueError as e:
        raise UsageError(f"gfncore {ns.command}: error: {e}") from None
    set_num_threads(ns.threads or default_threads())
    try:
        env, policy, trainer = load(ns.checkpoint, env=env_cls, device=ns.device)
    except (ValueError, TypeError) as e:
        raise UsageError(f"gfncore {ns.command}: error: {_other_run(ns.checkpoint) or e}") from None
    ns.context_values = _context(ns, env)
    return env, policy, trainer, torch.Generator().manual_seed(ns.seed)


def _context(ns, env) -> list[float] | None:
    """--context VALUE[,VALUE...] as a list of C floats for a conditional run, None otherwise."""
    C = env.context_dim
    if not C:
        if ns.context:
            raise UsageError(f"gfncore {ns.command}: error: --context: {env!r} is not conditional")
        return None
    if not ns.context:
        raise UsageError(f"gfncore {ns.command}: error: {env!r} is conditional: pass its context with --context "
                         f"VALUE{'[,VALUE...]' if C > 1 else ''} ({C} value{'s' if C > 1 else ''})")
    try:
        values = [float(v) for v in ns.context.split(",")]
    except ValueError:
        raise UsageError(f"gfncore {ns.command}: error: --context must be {C} comma-separated numbers, got "
                         f"{ns.context!r}") from None
    if len(values) != C or not all(math.isfinite(v) for v in values):
        raise UsageError(f"gfncore {ns.command}: error: --context must be {C} finite number(s), got {ns.context!r}")
    return values


def _other_run(path: str) -> str | None:
    """What to do with a checkpoint that sample/eval cannot load because another application
    wrote it (None when it is not one of those, or no checkpoint at all: a CSV beside one)."""
    with open(path, "rb") as f:
        if f.read(2) != b"PK":  # torch.save's zip archive
            return None
    folder = os.path.dirname(path) or "."
    for app, files, how in (
            ("causal", ("edge_marginals.csv", "posterior_samples.csv"),
             "its posterior samples are in {f}/posterior_samples.csv and its metrics in {f}/summary.json; "
             "continue training with `gfncore causal ... --out {f} --resume`"),
            ("bayes", ("samples.csv",), "its posterior samples are in {f}/samples.csv and its metrics in "
             "{f}/summary.json")):
        if all(os.path.exists(os.path.join(folder, x)) for x in files):
            return (f"--checkpoint {path} is a `gfncore {app}` run, which `gfncore sample`/`eval` do not read: "
                    + how.format(f=folder))
    return None


def sample_command(ns) -> int:
    import io

    import torch

    from ..runfolder import write_bytes

    if not ns.out:
        raise UsageError("gfncore sample: error: --out is required (a .pt file for the objects)")
    env, _, trainer, g = _load_checkpoint(ns)
    c = ns.context_values
    x = trainer.sample(ns.n, temperature=ns.temperature, generator=g, context=c).cpu()
    if c is None:
        log_r = env.log_reward(x)
    else:
        log_r = env.log_reward(x, torch.tensor(c, dtype=torch.get_default_dtype()).reshape(1, -1).expand(len(x), -1))
    data = {"x": x, "log_reward": log_r, "checkpoint": os.path.abspath(ns.checkpoint),
            "step": trainer.step_count, "seed": ns.seed, "temperature": ns.temperature}
    if c is not None:
        data["context"] = c
    buf = io.BytesIO()  # serialised first: a full disk is then an OSError naming --out, the old file intact
    torch.save(data, buf)
    write_bytes(ns.out, buf.getvalue())
    print(f"{ns.n} objects x from {env!r} (step {trainer.step_count}) -> {ns.out}  "
          f"(torch.load(path, weights_only=True)['x'], int32 [{ns.n}, {env.state_dim}])")
    return 0


def eval_command(ns) -> int:
    env, _, trainer, g = _load_checkpoint(ns)
    ev = trainer.evaluate(ns.n, generator=g, context=ns.context_values)
    at = f"  context {ns.context_values}" if ns.context_values is not None else ""
    print(f"{env!r}{at}  step {trainer.step_count}  ({ns.checkpoint})")
    _print_quality(ev, ev.get("empirical_l1"), ns.n)
    if ns.out:
        write_json(ns.out, {"env": repr(env), "steps": trainer.step_count, "checkpoint": ns.checkpoint,
                            "samples": ns.n, "seed": ns.seed, "context": ns.context_values, **ev})
    return 0
