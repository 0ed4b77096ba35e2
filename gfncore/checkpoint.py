"""Checkpoints of a training run: self-describing (environment config, TrainConfig, policy
hyperparameters, versions), written atomically, and loadable with torch.load(weights_only=True),
so that reading someone else's checkpoint cannot run code.

    env, policy, trainer = gfncore.load("runs/hypergrid/checkpoint.pt")
"""
from __future__ import annotations

import hashlib
import io
import math
import os
from dataclasses import asdict, fields

import torch

from .runfolder import atomic_write, write_bytes  # noqa: F401  (atomic_write: its historical home)

FORMAT = "gfncore-checkpoint"
VERSION = 2  # 2: a sha256 of the payload ("checksum"), verified on load


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
        ck["checksum"] = checksum(ck)
        # serialised in memory first: a full disk is then a plain OSError from the file write,
        # never torch's "enforce fail at inline_container.cc", and the old checkpoint stays
        buf = io.BytesIO()
        torch.save(ck, buf)
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
    if not isinstance(version, int) or isinstance(version, bool):
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


def check_same_env(path: str, saved_env, env) -> None:
    """Raises ValueError when the checkpoint's environment config differs from env's own (an R0 =
    0.1 run must not continue in an R0 = 0.9 trainer). Environments without a config pass."""
    if saved_env is None:
        return
    try:
        mine = env.to_config()
    except NotImplementedError:
        return
    if mine is not None and not _same_config(mine, saved_env):
        raise ValueError(f"{path} was trained on {_show(saved_env)}, not on the given {_show(mine)}")


def _show(cfg) -> str:
    try:
        params = ", ".join(f"{k}={v!r}" for k, v in cfg.get("params", {}).items() if not isinstance(v, torch.Tensor))
        return f"{cfg.get('class', '?')}({params})"
    except AttributeError:
        return repr(cfg)


def load(path: str, env=None, policy=None, device: str = "cpu"):
    """Rebuilds a run from its checkpoint: returns (env, policy, trainer), the trainer at the
    saved step with its optimizer, random stream, replay buffer and history, so trainer.fit
    continues the run bit for bit (same thread count and device).

    env: an environment, or an environment class to rebuild from the checkpoint's config. Needed
    for any environment that is not one of gfncore's own: a class named inside the file is never
    imported (gfncore.envs.resolve). An environment given for a checkpoint that has a config must
    match it. policy: needed for a policy other
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
        try:
            env = from_config(saved_env)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: {e}") from None
    elif isinstance(env, type):
        if saved_env is None:
            raise ValueError(f"{path}: its environment ({ck.get('env_repr')}) has no config to build "
                             f"{env.__name__} from; pass the environment itself: gfncore.load(path, env=...)")
        env = from_config(saved_env, cls=env)
    else:
        check_same_env(path, saved_env, env)
    desc = ck.get("policy")
    if policy is None:
        if desc is None:
            raise ValueError(f"{path}: its policy is not an MLPPolicy; pass it: gfncore.load(path, policy=...)")
        C = desc.get("context_dim", 0) if isinstance(desc, dict) else 0
        # (checkpoints written before the description named it hold its buffers all the same)
        scaler = (isinstance(desc, dict) and desc.get("context_encoder") == "ContextScaler") \
            or "context_encoder.centre" in ck["state"]["policy"]
        try:
            enc = ContextScaler(0.0, 1.0, C) if scaler else None
            policy = MLPPolicy(env, hidden=desc["hidden"], layers=desc["layers"], pb=desc["pb"], flow=desc["flow"],
                               context_dim=C, conditioning=desc.get("conditioning", "concat"),
                               log_z_hidden=desc.get("log_z_hidden", 64), context_encoder=enc)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"{path} is a damaged gfncore checkpoint: its policy description {desc!r} does not "
                             f"build an MLPPolicy ({type(e).__name__}: {e})") from None
    known = {f.name for f in fields(TrainConfig)}
    try:
        cfg = TrainConfig(**{**{k: v for k, v in ck["config"].items() if k in known}, "device": device})
    except TypeError as e:
        raise ValueError(f"{path} is a damaged gfncore checkpoint: its config does not fit TrainConfig ({e})") from None
    # a conditional run's training distribution of contexts is not in the checkpoint: the loaded
    # trainer samples and evaluates at given contexts, and says what to pass to train further
    trainer = Trainer.from_config(env, policy, cfg, context_sampler=_no_training_contexts if env.context_dim else None)
    try:
        trainer.load_state_dict(ck["state"])
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
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


def load_modules_state(module, sd, what: str) -> None:
    """module.load_state_dict(sd) with a one-line ValueError when the saved tensors do not fit the
    rebuilt module (missing or extra keys, another shape), instead of torch's multi-line report."""
    mine = module.state_dict()
    missing = [k for k in mine if k not in sd]
    extra = [k for k in sd if k not in mine]
    if missing or extra:
        raise ValueError(f"the saved {what} does not fit this one: " + "; ".join(
            p for p in (f"missing {missing[:3]}" if missing else "", f"unexpected {extra[:3]}" if extra else "") if p))
    for k, v in mine.items():
        w = sd[k]
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != tuple(v.shape):
            got = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            raise ValueError(f"the saved {what} does not fit this one: {k} is {got} in the checkpoint, "
                             f"{tuple(v.shape)} here (another environment size or --hidden/--layers?)")
    module.load_state_dict(sd)
