"""Non-finite values stop training with a diagnosis: at the first non-finite reward, log Z, loss or
gradient the update is not applied, and NonFiniteError names the quantity, the step, the
offending objects (for rewards) and the last good checkpoint."""
from __future__ import annotations

import json
import math

import pytest
import torch

import gfncore
from gfncore import cli
from gfncore.envs import HyperGrid
from gfncore.nn import MLPPolicy


def _trainer(env=None, **kw):
    env = env or HyperGrid(2, 5)
    torch.manual_seed(0)
    return gfncore.Trainer(env, MLPPolicy(env, hidden=16), batch_size=16, seed=1, **kw)


def _snapshot(t):
    return ({k: v.clone() for k, v in t.policy.state_dict().items()}, t.generator.get_state(), t.step_count,
            {i: {k: v.clone() for k, v in s.items()} for i, s in t.optimizer.state_dict()["state"].items()})


def _assert_unchanged(t, snap):
    params, gen, step, opt = snap
    for k, v in t.policy.state_dict().items():
        assert torch.equal(v, params[k]), k
    assert torch.equal(t.generator.get_state(), gen) and t.step_count == step
    now = t.optimizer.state_dict()["state"]
    assert now.keys() == opt.keys()
    for i in opt:
        for k in opt[i]:
            assert torch.equal(now[i][k], opt[i][k])


def _poison_rewards(t, value, where):
    """Rewards of the objects `where(x)` selects become `value` (as if the reward function returned it)."""
    sample = t.sampler.sample

    def poisoned(*a, **k):
        traj = sample(*a, **k)
        x = traj.terminal_states
        lr = traj.log_reward.clone()
        lr[where(x)] = value
        return traj.with_log_reward(lr)

    t.sampler.sample = poisoned


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_reward_names_the_objects_and_applies_nothing(tmp_path, value):
    t = _trainer()
    t.fit(3, progress=False)
    ck = t.save(str(tmp_path / "good.pt"))
    snap = _snapshot(t)
    _poison_rewards(t, value, lambda x: x[:, 0] == x[:, 1])  # the diagonal x0 == x1 (s0 included)
    with pytest.raises(gfncore.NonFiniteError) as e:
        t.fit(5, progress=False)
    err = e.value
    assert isinstance(err, FloatingPointError)
    assert err.quantity == "reward" and err.step == 4 and err.checkpoint == ck
    assert err.objects is not None and bool((err.objects[:, 0] == err.objects[:, 1]).all())
    msg = str(err)
    assert "step 4" in msg and ck in msg and "log R" in msg and str(err.objects[0].tolist()) in msg
    _assert_unchanged(t, snap)  # the failing step left no trace, random stream included


def test_non_finite_log_z():
    t = _trainer()
    with torch.no_grad():
        t.policy.log_z.fill_(math.inf)
    snap = _snapshot(t)
    with pytest.raises(gfncore.NonFiniteError, match="log Z") as e:
        t.train_step()
    assert e.value.quantity == "log Z" and e.value.step == 1 and e.value.checkpoint is None
    assert "no checkpoint" in str(e.value)
    _assert_unchanged(t, snap)


def test_non_finite_gradient_with_a_finite_loss():
    t = _trainer()
    # a hook that corrupts one gradient while the loss stays finite
    t.policy.pf_head.weight.register_hook(lambda g: g * math.nan)
    snap = _snapshot(t)
    with pytest.raises(gfncore.NonFiniteError, match="pf_head.weight") as e:
        t.train_step()
    assert e.value.quantity == "gradient"
    _assert_unchanged(t, snap)


def test_exploding_learning_rate_is_diagnosed_not_blamed_on_the_sampler():
    t = _trainer(lr=1e30)
    with pytest.raises(gfncore.NonFiniteError, match="learning rate") as e:
        t.fit(20, progress=False)
    assert e.value.quantity in ("logits", "loss", "gradient")
    assert e.value.step == t.step_count + 1


def test_cli_non_finite_run_writes_its_checkpoint_and_summary(tmp_path, capsys):
    out = tmp_path / "nan"
    rc = cli.main(["train", "hypergrid", "--lr", "1e30", "--steps", "50", "--hidden", "16", "--batch-size", "8",
                   "--out", str(out), "--no-progress", "--checkpoint-every", "1"])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "non-finite" in err[0] and "checkpoint" in err[0]
    s = json.loads((out / "summary.json").read_text())
    assert s["partial"] is True and s["stopped_by"].startswith("non-finite")
    _, policy, t = gfncore.load(str(out / "checkpoint.pt"))
    assert t.step_count == s["steps"]


@pytest.mark.parametrize("kw", [dict(R0=math.inf), dict(R1=math.inf), dict(R2=math.inf)])
def test_hypergrid_rejects_infinite_parameters(kw):
    with pytest.raises(ValueError):
        HyperGrid(2, 8, **kw)


@pytest.mark.parametrize("kw", [dict(R0=math.nan), dict(R0=-math.inf), dict(R1=math.nan), dict(R2=-math.inf)])
def test_hypergrid_rejects_nan_and_negative_infinite_parameters(kw):
    with pytest.raises(ValueError):
        HyperGrid(2, 8, **kw)


@pytest.mark.parametrize("kw", [dict(J=math.inf), dict(h=math.nan), dict(beta=math.inf)])
def test_ising_rejects_non_finite_parameters(kw):
    with pytest.raises(ValueError):
        gfncore.envs.Ising(3, **kw)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_reward_function_returning_nan_stops_training_with_the_objects(tmp_path, value):
    # the reward is the environment's (here a callable given to a built-in), read by every sampler
    env = HyperGrid(2, 4, log_reward=lambda x: torch.where(x[:, 0] == x[:, 1], value, 0.0).double())
    torch.manual_seed(0)
    t = gfncore.Trainer(env, gfncore.nn.MLPPolicy(env, hidden=16), batch_size=32, seed=0)
    snap = _snapshot(t)
    with pytest.raises(gfncore.NonFiniteError) as e:
        t.fit(3, progress=False)
    assert e.value.quantity == "reward" and e.value.step == 1
    assert bool((e.value.objects[:, 0] == e.value.objects[:, 1]).all())
    assert "log R=" in str(e.value) and "no checkpoint" in str(e.value)
    _assert_unchanged(t, snap)
