"""Which environment class a name means, without ever importing what a file names.

A checkpoint records its environment as "module:QualName". Importing that module would run
whatever code it holds (``"this:Zen"`` prints the Zen of Python; a ``helpers.py`` beside the
checkpoint runs when the checkpoint is opened from that folder). So a name read from a file
resolves only to gfncore's own environment classes; any other class is the caller's choice,
given in code (``gfncore.load(path, env=MyEnv)``) or on their own command line
(``--env module:Class``, parsed here by `class_from_spec`, the one parser the CLIs share).
"""
from __future__ import annotations

import importlib
import re

from .base import Env

_PACKAGE = "gfncore"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def class_from_spec(spec: str, flag: str = "--env") -> type:
    """The environment class of a user's own "module:Class" (or "package.module:Outer.Inner"):
    imports that module, because the user named it on their own command line or in their code.
    Raises ValueError in one line naming the flag."""
    module, qualname = _split(spec, flag)
    try:
        obj = _import_users(module)
    except ImportError as e:
        raise ValueError(f"{flag} {spec}: cannot import {module} ({e}); run from the folder that holds it or "
                         f"add that folder to PYTHONPATH") from None
    try:
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ValueError(f"{flag} {spec}: {module} has no {qualname}") from None
    if not (isinstance(obj, type) and issubclass(obj, Env)):
        raise ValueError(f"{flag} {spec} is not a gfncore environment class (a subclass of gfncore.envs.Env)")
    return obj


def trusted_class(name, where: str = "the checkpoint") -> type:
    """The gfncore environment class that `name` ("gfncore.envs.hypergrid:HyperGrid"), read from a
    file, stands for. Only modules of the gfncore package are ever imported (their code is the
    library's own); any other name raises ValueError, in one line, saying how to pass the class."""
    if not isinstance(name, str) or name.count(":") != 1:
        raise ValueError(f"{where} names no environment class (got {name!r})")
    module, qualname = name.split(":")
    parts = module.split(".")
    ours = (parts[0] == _PACKAGE and all(_NAME.fullmatch(p) for p in parts)
            and all(_NAME.fullmatch(q) and not q.startswith("_") for q in qualname.split(".")))
    if not ours:
        short = qualname.rsplit(".", 1)[-1] if qualname else "Env"
        raise ValueError(f"{where} names environment class {name!r}, which is not a gfncore environment; "
                         f"gfncore never imports a module named in a file: pass the class yourself, "
                         f"gfncore.load(path, env={short}) in Python or --env {name} on the command line")
    try:
        obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        raise ValueError(f"{where} names environment class {name!r}, which this gfncore does not have "
                         f"(written by another version?)") from None
    if not (isinstance(obj, type) and issubclass(obj, Env)):
        raise ValueError(f"{where} names {name!r}, which is not a gfncore environment class")
    return obj


def _import_users(module: str):
    """The user's module, found from the current folder too: `gfncore` started as a console script
    has no '' on sys.path, and `--env my_envs:Grid` means the my_envs.py the user is looking at."""
    import os
    import sys

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module.split(".")[0] or os.getcwd() in sys.path or "" in sys.path:
            raise
    sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(os.getcwd())


def _split(spec, flag: str) -> tuple[str, str]:
    module, sep, qualname = str(spec).partition(":")
    if (not sep or not all(_NAME.fullmatch(p) for p in module.split("."))
            or not all(_NAME.fullmatch(q) for q in qualname.split("."))):
        raise ValueError(f"{flag} must be module:Class (e.g. --env my_envs:Grid), got {spec!r}")
    return module, qualname


def from_config(cfg: dict, cls: type | None = None, **overrides) -> Env:
    """Rebuild an environment from Env.to_config() (overrides replace constructor arguments,
    e.g. a log_reward callable that could not be saved). The class is `cls` when the caller gives
    one (their own environment), else one of gfncore's own: a name read from a file is never
    imported (gfncore.envs.resolve)."""
    if not isinstance(cfg, dict) or not isinstance(cfg.get("params", {}), dict):
        raise ValueError(f"not an environment config: {cfg!r}")
    if cls is None:
        obj = trusted_class(cfg.get("class"), "the environment config")
    elif isinstance(cls, type) and issubclass(cls, Env):
        obj = cls
    else:
        raise TypeError(f"cls must be an environment class (a subclass of gfncore.envs.Env), got {cls!r}")
    params = dict(cfg.get("params", {}))
    missing = [k for k in cfg.get("needs", []) if k not in overrides]
    if missing:
        raise ValueError(f"this {cfg.get('name', 'environment')} was built with {', '.join(missing)} that a config "
                         f"cannot hold: pass {', '.join(m + '=...' for m in missing)} to from_config / gfncore.load")
    params.update(overrides)
    try:
        return obj(**params)
    except TypeError as e:  # a config whose parameters this class does not take
        raise ValueError(f"cannot rebuild {obj.__name__} from the config's parameters {sorted(params)}: {e}") from None
