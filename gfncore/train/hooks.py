"""Hooks of Trainer.fit: what an application adds to the one training loop instead of writing its
own (as Lightning's callbacks or Hugging Face's TrainerCallback): a learning-rate schedule,
periodic evaluation, checkpoints every so many steps or seconds, extra logged metrics.

    sched = LRSchedule.cosine(steps=2000, final=0.01)
    evals = Evaluate(200, lambda trainer: {"l1": ...}, log_path="metrics.jsonl")
    trainer.fit(2000, hooks=[sched, evals, Checkpoints("ck.pt", seconds=60)])

Each hook sees the trainer before the first step (start), around every step (before_step,
after_step) and when fit returns or raises (end). after_step may return a dict of progress-bar
entries, and may set trainer.should_stop = True to end fit after that step.

In data-parallel training every rank runs the hooks: a hook that stops fit must decide alike on
every rank (or call trainer.request_stop(), which the ranks agree on at the next step), and one
that writes should check trainer.is_main."""
from __future__ import annotations

import json
import time
from typing import Callable

from .schedules import cosine_factor


class Hook:
    """A callback of Trainer.fit; every method is optional."""

    def start(self, trainer, steps: int) -> None:
        """Before the first of `steps` steps of this fit."""

    def before_step(self, trainer) -> None:
        """Before each step (trainer.step_count is the index of the step about to run)."""

    def after_step(self, trainer, i: int, steps: int, rec: dict) -> dict | None:
        """After step i (0-based, of `steps` in this fit) whose record is rec."""

    def end(self, trainer, error: BaseException | None) -> None:
        """When fit returns (error None) or raises (error)."""


class LRSchedule(Hook):
    """Every parameter group's learning rate is its initial one times factor(step), set before
    each step from the trainer's step count, so a resumed run continues the schedule where it
    stopped. `steps` (the schedule's length) defaults to the first fit's steps: later fits go on
    along the same schedule, as planned then."""

    def __init__(self, factor: Callable[[int, int], float], steps: int | None = None):
        self.factor, self.steps = factor, steps
        self._base: list[float] | None = None

    @classmethod
    def cosine(cls, final: float, steps: int | None = None) -> "LRSchedule":
        """Decay from lr to final x lr along a half cosine over `steps` steps."""
        return cls(lambda step, n: cosine_factor(step, n, final), steps)

    def start(self, trainer, steps: int) -> None:
        if self.steps is None:
            self.steps = trainer.step_count + steps
        if self._base is None:
            groups = trainer.optimizer.param_groups
            for g in groups:
                g.setdefault("initial_lr", g["lr"])
            self._base = [g["initial_lr"] for g in groups]

    def before_step(self, trainer) -> None:
        f = self.factor(trainer.step_count, self.steps)
        for g, b in zip(trainer.optimizer.param_groups, self._base):
            g["lr"] = b * f


class Evaluate(Hook):
    """Calls fn(trainer) every `every` steps of this fit and, with at_end, after its last step
    (with global_steps, every `every` steps of the trainer's step count instead); a dict it returns,
    completed by `extra(trainer, rec)` (default: step, loss and training seconds), is appended to
    `history` and, as one JSON line, to log_path. The keys named in `show` go to the progress bar."""

    def __init__(self, every: int, fn: Callable, history: list | None = None, log_path: str | None = None,
                 show: tuple = ("l1",), extra: Callable | None = None, global_steps: bool = False,
                 at_end: bool = True):
        self.every, self.fn, self.log_path, self.show, self.at_end = every, fn, log_path, show, at_end
        self.history = history if history is not None else []
        self.extra = extra if extra is not None else _step_record
        self.global_steps = global_steps
        self._log = None

    def start(self, trainer, steps: int) -> None:
        if self.log_path:
            self._log = open(self.log_path, "a")

    def after_step(self, trainer, i: int, steps: int, rec: dict) -> dict | None:
        if not self.every:
            return None
        n = trainer.step_count if self.global_steps else i + 1
        if n % self.every and not (self.at_end and i == steps - 1):
            return None
        ev = self.fn(trainer)
        if ev is None:
            return None
        ev.update(self.extra(trainer, rec))
        self.history.append(ev)
        if self._log:
            self._log.write(json.dumps(ev) + "\n")
            self._log.flush()
        return {k: f"{ev[k]:.3f}" for k in self.show if k in ev}

    def end(self, trainer, error) -> None:
        if self._log:
            self._log.close()
            self._log = None


def _step_record(trainer, rec: dict) -> dict:
    return {"step": trainer.step_count, "loss": rec["loss"], "train_s": trainer.train_seconds}


class Checkpoints(Hook):
    """Saves the trainer to `path` every `steps` steps (of its step count) and/or every `seconds`
    seconds, and with at_end when fit returns or is interrupted (KeyboardInterrupt), so a run
    resumes where it stopped. on_save() runs after each save. A save is a collective in data-parallel
    training, so there use steps (every rank counts the same), not seconds."""

    def __init__(self, path: str, steps: int = 0, seconds: float = 0.0, at_end: bool = False,
                 on_save: Callable | None = None):
        if not path:
            raise ValueError("Checkpoints needs a path")
        self.path, self.steps, self.seconds, self.at_end, self.on_save = path, steps, seconds, at_end, on_save
        self._last = 0.0

    def start(self, trainer, steps: int) -> None:
        self._last = time.perf_counter()

    def save(self, trainer) -> None:
        trainer.save(self.path)  # a collective in data-parallel training: every rank calls it, rank 0 writes
        if self.on_save is not None:
            self.on_save()

    def after_step(self, trainer, i: int, steps: int, rec: dict) -> None:
        if (self.steps and trainer.step_count % self.steps == 0) or (
                self.seconds and time.perf_counter() - self._last > self.seconds):
            self.save(trainer)
            self._last = time.perf_counter()

    def end(self, trainer, error) -> None:
        if self.at_end and (error is None or isinstance(error, KeyboardInterrupt)):
            self.save(trainer)


class Metrics(Hook):
    """Extra logged metrics: fn(trainer, rec) -> dict is merged into every step's record (which
    the Evaluate hooks after it and the trainer's own evaluations log) and shown on the bar."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def after_step(self, trainer, i: int, steps: int, rec: dict) -> dict | None:
        extra = self.fn(trainer, rec) or {}
        rec.update(extra)
        return {k: f"{v:.3g}" if isinstance(v, float) else v for k, v in extra.items()}
