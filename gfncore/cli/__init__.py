"""The `gfncore` command: `gfncore train ENV`, `gfncore sample`, `gfncore eval` (gfncore.cli.commands)
and the applications' commands `gfncore bayes|causal|design` (each application's own cli module).
The generic machinery they share (flags from dataclasses, errors, exit codes, run folders,
signals) is gfncore.cli.common; this module only assembles the commands and dispatches to them."""
from __future__ import annotations

import sys

from ..runfolder import FolderBusy, one_line
from . import commands
from .common import (FAILED, INTERRUPTED, RUN_FILES, USAGE, Parser, RunConfig, RunFailed, UsageError,  # noqa: F401
                     add_dataclass_args, from_args)
from .commands import CLI_DEFAULTS, ENVS, RESUMABLE, eval_command, sample_command, train_run  # noqa: F401


def _applications() -> dict:
    """The applications' commands: name -> the module that owns it (add_parser(sub), run(ns)), in
    help order. The applications load only here, when the command line is built."""
    from ..bayes import cli as bayes
    from ..causal import cli as causal
    from ..design import cli as design

    return {"bayes": bayes, "causal": causal, "design": design}


def build_parser(suppress: bool = False) -> Parser:
    p = Parser(prog="gfncore", description="GFlowNets with a compiled core")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True)
    commands.add_parser(sub, suppress=suppress)
    for app in _applications().values():
        app.add_parser(sub)
    return p


def _version() -> str:
    from ..runtime import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if commands.env_spec(argv) is not None:  # `gfncore train --env MODULE:CLASS`: its flags are the class's
            return commands.train_user_env(argv)
        ns = build_parser().parse_args(argv)
        apps = _applications()
        return apps[ns.command].run(ns) if ns.command in apps else commands.run(ns, argv)
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return USAGE
    except (FolderBusy, OSError) as e:  # a busy --out, a full disk, a read-only folder: the old files are intact
        print(f"gfncore{' ' + argv[0] if argv else ''}: error: {one_line(e)}", file=sys.stderr)
        return USAGE


if __name__ == "__main__":
    sys.exit(main())
