"""Checkpoint files, as plain input and output: written atomically with a sha256 of their payload,
and read with torch.load(weights_only=True) and that checksum verified, so that reading someone
else's checkpoint cannot run code and a changed bit never loads silently.

What a checkpoint holds (environment config, TrainConfig, policy hyperparameters, versions, the
trainer's state) is the training layer's business: Trainer.checkpoint() builds it and
gfncore.train.load rebuilds a run from it.

    env, policy, trainer = gfncore.load("runs/hypergrid/checkpoint.pt")
"""
from __future__ import annotations

import hashlib
import io
import math

import torch

from .runfolder import atomic_write, write_bytes  # noqa: F401  (atomic_write: its historical home)

FORMAT = "gfncore-checkpoint"
VERSION = 2  # 2: a sha256 of the payload ("checksum"), verified on load


def write(path: str, checkpoint: dict) -> None:
    """Writes a checkpoint (a dict of tensors and plain containers) atomically, with its checksum."""
    checkpoint = {**checkpoint, "checksum": checksum(checkpoint)}
    # serialised in memory first: a full disk is then a plain OSError from the file write, never
    # torch's "enforce fail at inline_container.cc", and the old checkpoint stays
    buf = io.BytesIO()
    torch.save(checkpoint, buf)
    write_bytes(path, buf.getvalue())


def read(path: str) -> dict:
    """A checkpoint's contents, loaded with weights_only=True (tensors and plain containers only)."""
    with open(path, "rb") as f:
        head = f.read(2)
    if head != b"PK" and head[:1] != b"\x80":  # torch.save writes a zip archive (before torch 1.6: a pickle)
        raise ValueError(f"{path} is not a checkpoint (a gfncore checkpoint is the checkpoint.pt that gfncore train, "
                         f"Trainer.save or an application writes)")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 (torch raises UnpicklingError, RuntimeError, EOFError, ...)
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [""]
        why = next((ln for ln in lines if "WeightsUnpickler error" in ln), lines[0])
        raise ValueError(f"{path} is not a readable gfncore checkpoint ({type(e).__name__}: {why})") from e
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise ValueError(f"{path} is not a gfncore checkpoint (written by Trainer.save or gfncore train)")
    version = ck.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{path} is a damaged gfncore checkpoint (version {version!r})")
    if version > VERSION:
        raise ValueError(f"{path} was written by a newer gfncore (checkpoint version {ck['version']}, this one "
                         f"reads up to {VERSION}); versions: {ck.get('versions')}")
    if version >= 2:  # version 1 had no checksum
        if ck.get("checksum") != checksum(ck):
            raise ValueError(f"{path} is damaged: its contents do not match the checksum written with them "
                             f"(a changed bit in a weight or a state); use an earlier copy")
    _check_structure(ck, path)
    return ck


def checksum(ck: dict) -> str:
    """sha256 of everything in a checkpoint but its "checksum" entry: tensors by dtype, shape and
    bytes, containers in order (dict keys sorted), numbers and strings by repr."""
    h = hashlib.sha256()
    _digest(h, {k: v for k, v in ck.items() if k != "checksum"})
    return h.hexdigest()


def _digest(h, x) -> None:
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(x, dict):
        h.update(f"D{len(x)}|".encode())
        for k in sorted(x, key=repr):
            _digest(h, k)
            _digest(h, x[k])
    elif isinstance(x, (list, tuple)):
        h.update(f"{'L' if isinstance(x, list) else 'U'}{len(x)}|".encode())
        for v in x:
            _digest(h, v)
    else:
        h.update(f"{type(x).__name__}:{x!r}|".encode())


def _check_structure(ck: dict, path: str) -> None:
    """The keys and types load() and Trainer.resume() use, checked before anything is built, so a
    damaged or hand-edited checkpoint is one line, never a KeyError deep in a load."""
    def bad(what: str):
        raise ValueError(f"{path} is a damaged gfncore checkpoint: {what}")

    st = ck.get("state")
    if not isinstance(st, dict):
        bad("it has no 'state'")
    for key in ("policy", "optimizer", "generator", "step"):
        if key not in st:
            bad(f"its state has no {key!r}")
    if not isinstance(st["policy"], dict) or not all(isinstance(v, torch.Tensor) for v in st["policy"].values()):
        bad("its 'policy' is not a dict of tensors")
    if not isinstance(st["optimizer"], dict) or "state" not in st["optimizer"] or "param_groups" not in st["optimizer"]:
        bad("its 'optimizer' is not an optimizer state (state, param_groups)")
    if not isinstance(st["generator"], torch.Tensor) or st["generator"].dtype != torch.uint8:
        bad("its 'generator' is not a random generator's state")
    step = st["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        bad(f"its step count is {step!r} (an integer >= 0 was expected)")
    secs = st.get("train_seconds", 0.0)
    if not isinstance(secs, (int, float)) or isinstance(secs, bool) or not math.isfinite(secs) or secs < 0:
        bad(f"its train_seconds is {secs!r}")
    if not isinstance(ck.get("config"), dict):
        bad("it has no training 'config'")
    env = ck.get("env")
    if env is not None and (not isinstance(env, dict) or not isinstance(env.get("params", {}), dict)):
        bad("its 'env' is not an environment config")
