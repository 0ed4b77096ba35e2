"""Rebuilding a training run from its checkpoint file (gfncore.checkpoint reads it)."""
from __future__ import annotations

from dataclasses import fields

import torch

from ..checkpoint import read
from .trainer import TrainConfig, Trainer


def load(path: str, env=None, policy=None, device: str = "cpu"):
    """Rebuilds a run from its checkpoint: returns (env, policy, trainer), the trainer at the
    saved step with its optimizer, random stream, replay buffer and history, so trainer.fit
    continues the run bit for bit (same thread count and device).

    env: needed when the checkpoint's environment cannot be rebuilt from its config (a user
    environment); when given for one that can, it must match. policy: needed for a policy other
    than MLPPolicy. device: where the policy goes (the saved tensors are loaded onto the CPU first).
    """
    from ..envs import from_config
    from ..nn import MLPPolicy

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
        policy = MLPPolicy(env, hidden=desc["hidden"], layers=desc["layers"], pb=desc["pb"], flow=desc["flow"],
                           context_dim=desc.get("context_dim", 0), conditioning=desc.get("conditioning", "concat"))
    known = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{**{k: v for k, v in ck["config"].items() if k in known}, "device": device})
    trainer = Trainer.from_config(env, policy, cfg)
    trainer.load_state_dict(ck["state"])
    trainer.last_checkpoint = (str(path), trainer.step_count)
    return env, policy, trainer


def _same_config(a, b) -> bool:
    """Equality of environment configs that may hold tensors (data matrices, reward tables)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_config(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_config(x, y) for x, y in zip(a, b))
    return a == b
