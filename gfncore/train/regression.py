"""The training loops of networks that are not GFlowNets: a regression net (Adam along the cosine
schedule, a running loss) and a one-shot L-BFGS fit. The applications give the loss of one step;
the optimiser steps here, as a GFlowNet's do in Trainer.fit."""
from __future__ import annotations

from typing import Callable

import torch

from .schedules import cosine_schedule


def fit_regression(parameters, step_loss: Callable[[int], torch.Tensor], steps: int, lr: float, lr_final: float, *,
                   progress: bool = False, desc: str = "", record: Callable | None = None, every: int = 0,
                   ema: tuple[float, float] = (0.95, 0.05)) -> float | None:
    """Adam at lr, decayed to lr * lr_final along the cosine schedule over `steps` steps; each
    step minimises step_loss(i). The running loss is ema[0] * running + ema[1] * loss. With
    record, record(step, running) -> progress-bar entries is called after step i + 1 whenever
    i % every == 0 (before the last step) and once after the last. Returns the running loss."""
    from tqdm.auto import tqdm

    opt = torch.optim.Adam(parameters, lr=lr)
    sched = cosine_schedule(opt, steps, lr_final)
    running = None
    bar = tqdm(total=steps, disable=not progress, desc=desc, dynamic_ncols=True)
    try:
        for i in range(steps):
            loss = step_loss(i)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            v = float(loss.detach())
            running = v if running is None else ema[0] * running + ema[1] * v
            if record is not None and every and i % every == 0 and i < steps - 1:
                bar.set_postfix(record(i + 1, running), refresh=False)
            bar.update(1)
        if record is not None and steps:
            bar.set_postfix(record(steps, running), refresh=False)
    finally:
        bar.close()
    return running


def minimize_lbfgs(params: list, loss_fn: Callable[[], torch.Tensor], max_iter: int = 100) -> None:
    """Minimises loss_fn() over params in place by L-BFGS with a strong-Wolfe line search (a
    one-shot fit, such as a MAP point; tight tolerances, so max_iter bounds the work)."""
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    opt.step(closure)
