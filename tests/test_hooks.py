"""Trainer.fit's hooks (gfncore.train.hooks): the learning-rate schedule, periodic evaluation,
checkpoint cadence, extra metrics and stopping, on a small HyperGrid."""
from __future__ import annotations

import json

import pytest
import torch

import gfncore as gfn
from gfncore.train import Checkpoints, Evaluate, Hook, LRSchedule, Metrics, cosine_factor, cosine_schedule


def _trainer(seed: int = 0) -> gfn.Trainer:
    torch.manual_seed(seed)
    env = gfn.envs.HyperGrid(ndim=2, height=4)
    policy = gfn.nn.MLPPolicy(env, hidden=16, layers=1)
    return gfn.Trainer(env, policy, loss="tb", batch_size=8, lr=1e-2, seed=seed)


def test_the_cosine_hook_is_the_cosine_scheduler_of_a_hand_loop():
    a, b = _trainer(), _trainer()
    a.fit(12, progress=False, hooks=[LRSchedule.cosine(0.1, 12)])
    sched = cosine_schedule(b.optimizer, 12, 0.1)
    for _ in range(12):
        b.train_step()
        sched.step()
    for pa, pb in zip(a.policy.parameters(), b.policy.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-7)
    # and it did decay: the last step ran at lr * factor(11), not at lr
    lr0 = a.optimizer.param_groups[0]["initial_lr"]
    assert a.optimizer.param_groups[0]["lr"] == pytest.approx(lr0 * cosine_factor(11, 12, 0.1))
    assert cosine_factor(11, 12, 0.1) < 0.2


def test_a_schedule_spans_several_fits_and_a_resume():
    """Planned over the first fit's steps; a second fit continues along it, as one fit would."""
    a, b = _trainer(), _trainer()
    sched = LRSchedule.cosine(0.05)
    a.fit(5, progress=False, hooks=[sched])
    a.fit(5, progress=False, hooks=[sched])
    b.fit(10, progress=False, hooks=[LRSchedule.cosine(0.05, 5)])
    for pa, pb in zip(a.policy.parameters(), b.policy.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-7)
    assert sched.steps == 5


def test_evaluate_every_and_at_the_end(tmp_path):
    t = _trainer()
    log = tmp_path / "m.jsonl"
    hist: list = []
    ev = Evaluate(4, lambda tr: {"l1": tr.evaluate()["l1"]}, hist, str(log))
    t.fit(10, progress=False, hooks=[ev])
    assert [h["step"] for h in hist] == [4, 8, 10]
    assert all(set(h) >= {"l1", "loss", "train_s"} for h in hist)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [4, 8, 10]
    hist2: list = []
    t.fit(10, progress=False, hooks=[Evaluate(4, lambda tr: {}, hist2, at_end=False, global_steps=True)])
    assert [h["step"] for h in hist2] == [12, 16, 20]


def test_checkpoints_by_steps_and_at_the_end_of_an_interrupted_fit(tmp_path, monkeypatch):
    t = _trainer()
    path = str(tmp_path / "ck.pt")
    saves = []
    t.fit(6, progress=False, hooks=[Checkpoints(path, steps=4, on_save=lambda: saves.append(t.step_count))])
    assert saves == [4]
    step = gfn.Trainer.train_step

    def interrupted(self):
        if self.step_count == 9:
            raise KeyboardInterrupt
        return step(self)

    monkeypatch.setattr(gfn.Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        t.fit(10, progress=False, hooks=[Checkpoints(path, at_end=True, on_save=lambda: saves.append(t.step_count))])
    assert saves == [4, 9]
    assert gfn.load(path)[2].step_count == 9


def test_a_hook_stops_fit_after_the_step_and_metrics_join_the_record():
    class StopAt(Hook):
        def after_step(self, trainer, i, steps, rec):
            if trainer.step_count == 3:
                trainer.should_stop = True

    seen = []
    t = _trainer()
    t.fit(10, progress=False, hooks=[Metrics(lambda tr, rec: {"twice": 2 * rec["loss"]}),
                                     Evaluate(1, lambda tr: {}, seen, extra=lambda tr, rec: dict(rec)), StopAt()])
    assert t.step_count == 3 and not t.should_stop
    assert all(r["twice"] == pytest.approx(2 * r["loss"]) for r in seen)
    t.fit(2, progress=False)  # the stop request ended with that fit
    assert t.step_count == 5
