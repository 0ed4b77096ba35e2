"""Rebuilding a training run from its checkpoint file (gfncore.checkpoint reads it)."""
from __future__ import annotations

from dataclasses import fields

from ..checkpoint import read
from .compat import check_same_env
from .trainer import TrainConfig, Trainer


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
    from ..envs import from_config
    from ..nn import ContextScaler, MLPPolicy

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
