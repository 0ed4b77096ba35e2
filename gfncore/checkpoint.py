"""Checkpoint files, as plain input and output: written atomically, and read with
torch.load(weights_only=True), so that reading someone else's checkpoint cannot run code.

What a checkpoint holds (environment config, TrainConfig, policy hyperparameters, versions, the
trainer's state) is the training layer's business: Trainer.checkpoint() builds it and
gfncore.train.load rebuilds a run from it.

    env, policy, trainer = gfncore.load("runs/hypergrid/checkpoint.pt")
"""
from __future__ import annotations

import os

import torch

FORMAT = "gfncore-checkpoint"
VERSION = 1


def atomic_write(path: str, write) -> None:
    """Calls write(f) on a temporary file in path's folder, fsyncs it and renames it over path,
    so a reader (or a crash) sees either the old file or the whole new one, never a torn one."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    try:  # the rename itself survives a power cut only once the folder is synced
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write(path: str, checkpoint: dict) -> None:
    """Writes a checkpoint (a dict of tensors and plain containers) atomically."""
    atomic_write(path, lambda f: torch.save(checkpoint, f))


def read(path: str) -> dict:
    """A checkpoint's contents, loaded with weights_only=True (tensors and plain containers only)."""
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
    if ck.get("version", 0) > VERSION:
        raise ValueError(f"{path} was written by a newer gfncore (checkpoint version {ck['version']}, this one "
                         f"reads up to {VERSION}); versions: {ck.get('versions')}")
    return ck
