"""Whether a checkpoint fits what it is loaded into: the same environment, tensors of the same
names and shapes. Each mismatch is one line (ValueError), never torch's multi-line report."""
from __future__ import annotations

import torch


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
