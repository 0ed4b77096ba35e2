"""Checkpoints of a training run: self-describing (environment config, TrainConfig, policy
hyperparameters, versions), written atomically, and loadable with torch.load(weights_only=True),
so that reading someone else's checkpoint cannot run code.

    env, policy, trainer = gfncore.load("runs/hypergrid/checkpoint.pt")
"""
from __future__ import annotations

import os
from dataclasses import asdict, fields

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


def describe(trainer) -> dict:
    """The checkpoint of a trainer: how to rebuild it, and its state."""
    from . import __version__
    from .train import describe_policy

    try:
        env = trainer.env.to_config()
    except NotImplementedError:
        env = None  # gfncore.load(path, env=...) then takes the environment
    return {"format": FORMAT, "version": VERSION,
            "versions": {"gfncore": str(__version__), "torch": str(torch.__version__)},
            # what the run ran with: a resume at the same thread count continues it bit for bit
            "runtime": {"threads": torch.get_num_threads(), "device": str(trainer.device),
                        "world_size": trainer.topology.world_size},
            "env": env, "env_repr": repr(trainer.env), "policy": describe_policy(trainer.policy),
            "config": asdict(trainer.config), "state": trainer.state_dict()}


def save(trainer, path: str) -> None:
    """Writes the checkpoint; in data-parallel training every rank calls it (it gathers the
    ranks' replay buffers) and rank 0 alone writes."""
    ck = describe(trainer)
    if trainer.is_main:
        atomic_write(path, lambda f: torch.save(ck, f))


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
    if ck.get("version", 0) > VERSION:
        raise ValueError(f"{path} was written by a newer gfncore (checkpoint version {ck['version']}, this one "
                         f"reads up to {VERSION}); versions: {ck.get('versions')}")
    return ck


def load(path: str, env=None, policy=None, device: str = "cpu"):
    """Rebuilds a run from its checkpoint: returns (env, policy, trainer), the trainer at the
    saved step with its optimizer, random stream, replay buffer and history, so trainer.fit
    continues the run bit for bit (same thread count and device).

    env: needed when the checkpoint's environment cannot be rebuilt from its config (a user
    environment); when given for one that can, it must match. policy: needed for a policy other
    than MLPPolicy. device: where the policy goes (the saved tensors are loaded onto the CPU first).
    """
    from .envs import from_config
    from .nn import ContextScaler, MLPPolicy
    from .train import TrainConfig, Trainer

    ck = read(path)
    saved_env = ck.get("env")
    if env is None:
        if saved_env is None:
            raise ValueError(f"{path}: its environment ({ck.get('env_repr')}) cannot be rebuilt from a config; "
                             f"pass it: gfncore.load(path, env=...)")
        env = from_config(saved_env)
    elif saved_env is not None:
        try:
            mine = env.to_config()
        except NotImplementedError:
            mine = None
        if mine is not None and not _same_config(mine, saved_env):
            raise ValueError(f"{path} was trained on {saved_env}, not on the given {mine}")
    desc = ck.get("policy")
    if policy is None:
        if desc is None:
            raise ValueError(f"{path}: its policy is not an MLPPolicy; pass it: gfncore.load(path, policy=...)")
        C = desc.get("context_dim", 0)
        # (checkpoints written before the description named it hold its buffers all the same)
        scaler = desc.get("context_encoder") == "ContextScaler" or "context_encoder.centre" in ck["state"]["policy"]
        enc = ContextScaler(0.0, 1.0, C) if scaler else None
        policy = MLPPolicy(env, hidden=desc["hidden"], layers=desc["layers"], pb=desc["pb"], flow=desc["flow"],
                           context_dim=C, conditioning=desc.get("conditioning", "concat"),
                           log_z_hidden=desc.get("log_z_hidden", 64), context_encoder=enc)
    known = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{**{k: v for k, v in ck["config"].items() if k in known}, "device": device})
    # a conditional run's training distribution of contexts is not in the checkpoint: the loaded
    # trainer samples and evaluates at given contexts, and says what to pass to train further
    trainer = Trainer.from_config(env, policy, cfg, context_sampler=_no_training_contexts if env.context_dim else None)
    trainer.load_state_dict(ck["state"])
    trainer.last_checkpoint = (str(path), trainer.step_count)
    return env, policy, trainer


def _no_training_contexts(n, generator=None):
    raise ValueError("this conditional trainer was loaded from a checkpoint, which does not hold its training "
                     "distribution of contexts: set trainer.sampler.context_sampler = fn(n, generator) -> [n, C] "
                     "to train it further (sampling and evaluating at a context need none)")


def _same_config(a, b) -> bool:
    """Equality of environment configs that may hold tensors (data matrices, reward tables)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_config(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_config(x, y) for x, y in zip(a, b))
    return a == b
