"""The generic command-line machinery every gfncore command uses: flags generated from config
dataclasses and checked against their declared bounds (gfncore.config), one-line usage errors,
exit codes, the run-folder protocol (--out, --resume, --overwrite) and signal handling.

The commands themselves import this module (gfncore.cli.commands, and each application's cli);
it imports none of them back."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass

from ..config import check, option
from ..runfolder import FolderBusy, atomic_write, check_free

# exit codes
USAGE, FAILED, INTERRUPTED = 2, 1, 130

RUN_FILES = ("checkpoint.pt", "summary.json", "metrics.jsonl", "distribution.png")
class UsageError(Exception):
    """Bad command-line input: main() prints the one-line message and returns exit code 2."""


class RunFailed(Exception):
    """A run that stopped on an error after writing what it had: main() prints one line, exit code 1."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (no usage dump) through UsageError, takes no
    abbreviations (`--step 100` is not silently `--steps 100`) and suggests the nearest flag."""

    _innermost = None  # the (sub)command parser that parsed last: the one whose flags a typo missed

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        Parser._innermost = self
        return super().parse_known_args(args, namespace)

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message}{_suggestion(message, Parser._innermost or self)}")


def _suggestion(message: str, parser: argparse.ArgumentParser) -> str:
    """' (--stpes: did you mean --steps?)' for each unrecognized flag close to one the parser knows."""
    import difflib

    if "unrecognized arguments" not in message:
        return ""
    known = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    hints = []
    for word in message.split(":", 1)[1].split():
        flag = word.split("=", 1)[0]
        if flag.startswith("--"):
            close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
            if close:
                hints.append(f"{flag}: did you mean {close[0]}?")
    return " (" + "; ".join(hints) + ")" if hints else ""


@dataclass
class RunConfig:
    out: str = option("", "output folder (default: runs/<env>)")
    progress: bool = option(True, "show a progress bar")
    resume: bool = option(False, "continue the run in --out from its checkpoint, bit for bit (--steps: the total)")
    overwrite: bool = option(False, "replace the run in --out")
    checkpoint_every: int = option(0, "steps between checkpoints (0: at the end and on SIGINT/SIGTERM only)", min=0)


def add_dataclass_args(parser: argparse.ArgumentParser, cls, overrides: dict | None = None,
                       suppress: bool = False) -> None:
    """One flag per field (--field-name; --x/--no-x for bools). suppress=True leaves flags that
    are not given out of the namespace, which tells which ones the user gave."""
    for f in dataclasses.fields(cls):
        default = (overrides or {}).get(f.name, f.default)
        flag = "--" + f.name.replace("_", "-")
        help_ = f.metadata.get("help", "") + _bounds(f.metadata) + (f" (default: {default})" if default != "" else "")
        kw = {"default": argparse.SUPPRESS} if suppress else {"default": default}
        if f.type in (bool, "bool"):
            action = argparse.BooleanOptionalAction if f.default else "store_true"
            parser.add_argument(flag, dest=f.name, action=action, help=help_, **kw)
        else:
            typ = {"int": int64, "float": float, "str": str}.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
            parser.add_argument(flag, dest=f.name, type=typ, help=help_, metavar=f.name.upper(), **kw)


def int64(text: str) -> int:
    """An integer flag's value, refused by argparse (naming the flag) when it does not fit in the
    64 bits torch and the kernels store it in (a seed of 2**64 + 1)."""
    v = int(text)
    if not -(2 ** 63) <= v < 2 ** 63:
        raise argparse.ArgumentTypeError(f"{text} does not fit in 64 bits (|value| < 2**63)")
    return v


def _bounds(m) -> str:
    parts = [f"{op} {m[k]}" for k, op in (("gt", ">"), ("min", ">="), ("lt", "<"), ("max", "<=")) if k in m]
    if "choices" in m:
        parts.append("one of " + ", ".join(map(str, m["choices"])))
    return f" ({'; '.join(parts)})" if parts else ""


def from_args(cls, ns: argparse.Namespace, prog: str = "gfncore"):
    """The dataclass built from parsed flags, each checked against its field's bounds first so
    that the message names the flag (--batch-size) rather than the field."""
    kw = {}
    for f in dataclasses.fields(cls):
        try:
            kw[f.name] = check(cls, f.name, getattr(ns, f.name), flag=True)
        except (ValueError, TypeError) as e:
            raise UsageError(f"{prog}: error: {e}") from None
    return cls(**kw)


def check_out(out: str, run: RunConfig) -> None:
    if run.resume and run.overwrite:
        raise UsageError("gfncore train: error: --resume and --overwrite exclude each other")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"gfncore train: error: --out {out} exists and is not a folder")
    try:
        check_free(out)
    except FolderBusy as e:
        raise UsageError(f"gfncore train: error: {e}") from None
    holds_run = any(os.path.exists(os.path.join(out, f)) for f in RUN_FILES[:3])
    if run.resume and not os.path.isfile(os.path.join(out, "checkpoint.pt")):
        raise UsageError(f"gfncore train: error: --resume: {out} holds no checkpoint.pt to continue from")
    if holds_run and not (run.resume or run.overwrite):
        raise UsageError(f"gfncore train: error: {out} already holds a run; pass --resume to continue it or "
                         f"--overwrite to replace it")


@contextmanager
def stop_on_signals(trainer):
    """SIGINT / SIGTERM ask the trainer to stop after its current step (the run then writes a
    checkpoint and a partial summary); a second signal stops at once."""
    received: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if received:
            raise KeyboardInterrupt(name)
        received.append(name)
        trainer.request_stop()
        print(f"\ngfncore: {name}: finishing step {trainer.step_count + 1}, then writing a checkpoint "
              f"(send it again to stop at once)", file=sys.stderr, flush=True)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def write_json(path: str, d: dict) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(d, indent=2, default=_json_value) + "\n").encode()))


def _json_value(o):
    """Tensors and arrays in a summary (an environment's data: modes, weights) as nested lists."""
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def write_lines(path: str, records: list[dict]) -> None:
    atomic_write(path, lambda f: f.write("".join(json.dumps(r) + "\n" for r in records).encode()))


# the names the commands used while this module was part of gfncore/cli.py
_Parser, _check_out, _stop_on_signals, _write_json, _write_lines = Parser, check_out, stop_on_signals, write_json, write_lines
