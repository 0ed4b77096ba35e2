"""Training: an on-policy TB run learns R/Z exactly on a small grid; checkpoints resume bit-for-bit."""
from __future__ import annotations

import pytest
import torch

import gfncore
from gfncore.envs import HyperGrid
from conftest import cpu_and_cuda
from gfncore.nn import MLPPolicy


@pytest.mark.slow
def test_tb_learns_hypergrid_8x8():
    torch.manual_seed(0)
    env = HyperGrid(2, 8)
    # a narrower net with a larger step converges in fewer CPU seconds than the 256-wide default
    trainer = gfncore.Trainer(env, MLPPolicy(env, hidden=64), loss="tb", batch_size=64, lr=3e-3, seed=0)
    before = trainer.evaluate()
    assert before["l1"] > 0.3  # an untrained sampler is far from R/Z, so the check below means something
    trainer.fit(steps=250, progress=False)
    ev = trainer.evaluate()
    assert trainer.step_count == 250
    assert ev["l1"] < 0.05, ev
    assert abs(trainer.log_z - env.true_log_z()) < 0.05, ev
    # i.i.d. samples from the trained sampler find every mode
    x = trainer.sample(4000)
    assert gfncore.metrics.modes_found(env, x) == gfncore.metrics.n_modes(env) == 4


def _params(policy):
    return {k: v.detach().clone() for k, v in policy.state_dict().items()}


def _small_trainer(env, init_seed):
    torch.manual_seed(init_seed)
    return gfncore.Trainer(env, MLPPolicy(env, hidden=32, layers=2), loss="tb", batch_size=16, seed=5, epsilon=0.1)


def test_checkpoint_resume_continues_identically(tmp_path):
    env = HyperGrid(2, 5)
    a = _small_trainer(env, init_seed=0)
    a.fit(steps=4, progress=False)
    path = str(tmp_path / "ckpt" / "a.pt")
    a.save(path)
    a.fit(steps=5, progress=False)
    b = _small_trainer(env, init_seed=123)  # different init: everything must come from the checkpoint
    assert not all(torch.equal(x, y) for x, y in zip(_params(a.policy).values(), _params(b.policy).values()))
    b.resume(path)
    assert b.step_count == 4
    b.fit(steps=5, progress=False)
    assert b.step_count == a.step_count == 9
    pa, pb = _params(a.policy), _params(b.policy)
    assert pa.keys() == pb.keys()
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k
    # and the next batch is the same too (the generator state was restored)
    ta, tb = a.sample_trajectories(), b.sample_trajectories()
    assert torch.equal(ta.states, tb.states) and torch.equal(ta.offsets, tb.offsets)


def test_training_is_reproducible_from_its_seed():
    env = HyperGrid(2, 4)
    runs = []
    for _ in range(2):
        t = _small_trainer(env, init_seed=1)
        t.fit(steps=3, progress=False)
        runs.append(_params(t.policy))
    for k in runs[0]:
        assert torch.equal(runs[0][k], runs[1][k]), k


def test_fit_logs_exact_evaluations(tmp_path):
    env = HyperGrid(2, 4)
    t = _small_trainer(env, init_seed=2)
    log = tmp_path / "m.jsonl"
    hist = t.fit(steps=6, progress=False, eval_every=3, log_path=str(log))
    assert [h["step"] for h in hist] == [3, 6]
    lines = log.read_text().splitlines()
    assert len(lines) == 2
    import json

    rec = json.loads(lines[-1])
    for key in ("l1", "jsd", "log_z", "true_log_z", "log_z_error", "loss", "step"):
        assert key in rec
    assert rec["true_log_z"] == pytest.approx(env.true_log_z())


def test_trainer_bad_arguments():
    env = HyperGrid(2, 4)
    with pytest.raises(ValueError, match="batch_size"):
        gfncore.Trainer(env, MLPPolicy(env, hidden=8), batch_size=0)
    with pytest.raises(ValueError, match="unknown loss"):
        gfncore.Trainer(env, MLPPolicy(env, hidden=8), loss="nope")
    with pytest.raises(ValueError, match="pb"):
        MLPPolicy(env, pb="sideways")


# The Python API checks the same declared bounds as the CLI (gfncore.config), naming the argument.
BAD_TRAINER = [
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=2.5), TypeError, "batch_size"),
    (dict(temperature=0.0), ValueError, "temperature"),
    (dict(epsilon=1.5), ValueError, "epsilon"),
    (dict(lr=float("nan")), ValueError, "lr"),
    (dict(lr_log_z=-1.0), ValueError, "lr_log_z"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(replay_fraction=1.0), ValueError, "replay_fraction"),
    (dict(loss="subtb", loss_options={"lam": 0.0}), ValueError, "lam"),
    (dict(device="tpu"), ValueError, "device"),
]


@pytest.mark.parametrize("kw,exc,name", BAD_TRAINER, ids=[n for _, _, n in BAD_TRAINER])
def test_trainer_checks_arguments_like_the_cli(kw, exc, name):
    env = HyperGrid(2, 4)
    with pytest.raises(exc, match=name):
        gfncore.Trainer(env, MLPPolicy(env, hidden=8, flow=kw.get("loss") == "subtb"), **kw)


def test_train_config_and_fit_check_their_values():
    with pytest.raises(ValueError, match="steps"):
        gfncore.TrainConfig(steps=-5)
    with pytest.raises(ValueError, match="pb"):
        gfncore.TrainConfig(pb="nope")
    with pytest.raises(TypeError, match="importance_weights"):
        gfncore.TrainConfig(importance_weights="yes")
    env = HyperGrid(2, 4)
    t = gfncore.Trainer(env, MLPPolicy(env, hidden=8))
    with pytest.raises(ValueError, match="steps"):
        t.fit(-1, progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_trainer_device_cuda_without_cuda():
    env = HyperGrid(2, 4)
    with pytest.raises(ValueError, match="device.*CUDA"):
        gfncore.Trainer(env, MLPPolicy(env, hidden=8), device="cuda")


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_trainer_device_moves_policy_rollouts_and_losses(device):
    env = HyperGrid(2, 4)
    torch.manual_seed(0)
    t = gfncore.Trainer(env, MLPPolicy(env, hidden=8), device=device, batch_size=8)
    assert t.device.type == device and all(p.device.type == device for p in t.policy.parameters())
    assert t.config.device.startswith(device)
    traj = t.sample_trajectories()
    assert traj.states.device.type == device
    t.fit(3, progress=False)
    ev = t.evaluate(200)
    assert 0 <= ev["l1"] <= 2 and t.step_count == 3


@pytest.mark.parametrize("batch_size,fraction,split", [(3, 0.9, (1, 2)), (1, 0.5, (1, 0)), (10, 0.25, (8, 2)),
                                                       (64, 0.5, (32, 32)), (5, 0.0, (5, 0))])
def test_replay_share_never_makes_a_batch_exceed_batch_size(batch_size, fraction, split):
    env = HyperGrid(2, 4)
    torch.manual_seed(0)
    t = gfncore.Trainer(env, MLPPolicy(env, hidden=8), batch_size=batch_size,
                        replay=gfncore.ReplayBuffer(env, 100), replay_fraction=fraction)
    assert t.replay_split() == (batch_size, 0)  # empty buffer: all fresh
    t.train_step()
    assert t.replay_split() == split and sum(split) == batch_size
    for _ in range(3):
        assert t._batch().n == batch_size
        t.train_step()


def test_tb_loss_matches_reference_computation():
    # the loss is the batch mean of (log Z + sum log P_F - log R - sum log P_B)^2, with log P_F
    # from the policy and uniform P_B = 1 / #parents, recomputed here with plain torch
    import math

    env = HyperGrid(2, 5)
    torch.manual_seed(0)
    policy = MLPPolicy(env, hidden=16, log_z_init=0.7)
    traj = gfncore.Sampler(env, policy).sample(20, seed=4)
    loss = gfncore.trajectory_balance_loss(env, policy, traj)
    logits = policy.forward_logits(env.encode(traj.states)).detach().double()
    lp = torch.log_softmax(logits.masked_fill(~env.forward_mask(traj.states), -math.inf), -1)
    lpf = lp.gather(1, traj.actions[:, None]).squeeze(1)
    total = 0.0
    for i in range(traj.n):
        o0, o1 = int(traj.offsets[i]), int(traj.offsets[i + 1])
        pb = sum(-math.log(int(env.n_parents(traj.states[t + 1:t + 2])[0])) for t in range(o0, o1 - 1))
        x = traj.states[o1 - 1:o1]
        r = 0.7 + float(lpf[o0:o1].sum()) - float(env.log_reward(x)[0]) - pb
        total += r * r
    assert float(loss.detach()) == pytest.approx(total / traj.n, rel=1e-4)
