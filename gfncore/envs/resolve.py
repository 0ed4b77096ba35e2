"""A user's environment class named on a command line: `module:Class` (or `path/to/file.py:Class`),
as `gfncore train --env` takes it. Any of the three routes (PythonEnv, NumbaEnv, CompiledEnv)."""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys

from .base import Env


def resolve_env_class(spec: str) -> type:
    """The environment class that `spec` names: "package.module:Class" (importable, or a module
    in the current folder, as `python -m` would find it) or "path/to/file.py:Class"; a dotted
    Class names a nested one. Raises ValueError saying what is wrong (the format, a module that
    does not import, a missing name, a class that is not a gfncore environment)."""
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ValueError(f"--env takes module:Class (e.g. myenvs:Chain, or path/to/myenvs.py:Chain), got {spec!r}")
    module_name, qualname = spec.split(":")
    if module_name.endswith(".py"):
        path = os.path.abspath(module_name)
        if not os.path.isfile(path):
            raise ValueError(f"--env {spec}: no file {module_name}")
        name = os.path.splitext(os.path.basename(path))[0]
        mod = sys.modules.get(name)
        if mod is None or os.path.abspath(getattr(mod, "__file__", "") or "") != path:
            spec_ = importlib.util.spec_from_file_location(name, path)
            mod = importlib.util.module_from_spec(spec_)
            sys.modules[name] = mod  # so that its classes pickle and its config names an importable module
            try:
                spec_.loader.exec_module(mod)
            except Exception:
                del sys.modules[name]
                raise
    else:
        # the current folder first, as `python -m` puts it: the console script `gfncore` does not
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            mod = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name and module_name.startswith(e.name):
                raise ValueError(f"--env {spec}: no module named {e.name!r} (on sys.path or in {os.getcwd()})") from None
            raise
    obj = mod
    for part in qualname.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"--env {spec}: {getattr(obj, '__name__', module_name)} has no attribute {part!r}")
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, Env)):
        raise ValueError(f"--env {spec}: {qualname} is not a gfncore environment class (a subclass of "
                         f"gfncore.envs.PythonEnv, NumbaEnv or CompiledEnv)")
    return obj
