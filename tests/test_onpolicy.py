"""On-policy training through the rollout's own forwards (gfncore.onpolicy) against the
recomputing path: same samples, same losses and gradients, the path chosen automatically."""
from __future__ import annotations

import pytest
import torch

import gfncore as gfn
from gfncore import onpolicy
from gfncore.losses import get_loss
from gfncore.trajectories import Trajectories

OBJECTIVES = [("tb", {}), ("db", {"flow": True}), ("subtb", {"flow": True}), ("zvar", {}), ("mdb", {}),
              ("tb", {"pb": "shared"}), ("db", {"pb": "learned", "flow": True})]


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    gfn.set_num_threads(1)
    yield
    gfn.set_num_threads(before)


def _plain(traj: Trajectories, dtype) -> Trajectories:
    """The same batch without the rollout's record (so the loss recomputes), features in dtype."""
    return Trajectories(traj.states, traj.actions, traj.offsets, traj.log_reward, traj.mask, traj.features.to(dtype),
                        traj.log_prob, traj.context)


def _grads(env, policy, obj, traj):
    loss = obj(env, policy, traj)
    params = list(policy.parameters())
    g = torch.autograd.grad(loss, params, allow_unused=True)
    return loss.detach(), [torch.zeros_like(p) if x is None else x for p, x in zip(params, g)]


@pytest.mark.parametrize("loss,kw", OBJECTIVES, ids=[f"{l}-{'-'.join(f'{k}={v}' for k, v in kw.items())}"
                                                      for l, kw in OBJECTIVES])
def test_gradients_equal_the_recomputing_path_float64(loss, kw, one_thread):
    env = gfn.envs.HyperGrid(ndim=3, height=5, R0=0.1)
    torch.manual_seed(0)
    policy = gfn.nn.MLPPolicy(env, hidden=32, layers=3, **kw).double()
    traj = gfn.Sampler(env, policy).sample(37, seed=11, keep_activations=True)
    obj = get_loss(loss)
    l_on, g_on = _grads(env, policy, obj, traj)
    assert onpolicy.path_of(traj) == onpolicy.ROLLOUT
    plain = _plain(traj, torch.float64)
    l_re, g_re = _grads(env, policy, obj, plain)
    assert onpolicy.path_of(plain) == onpolicy.RECOMPUTE
    torch.testing.assert_close(l_on, l_re, rtol=1e-12, atol=1e-12)
    assert any(g.abs().sum() > 0 for g in g_on)
    for a, b in zip(g_on, g_re):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_float32_samples_and_gradients_match(one_thread):
    env = gfn.envs.HyperGrid(ndim=4, height=8, R0=0.1)
    torch.manual_seed(1)
    policy = gfn.nn.MLPPolicy(env, hidden=64, layers=2)
    s = gfn.Sampler(env, policy)
    a = s.sample(50, seed=3, keep_activations=True)
    b = gfn.Sampler(env, policy).sample(50, seed=3)
    for name in ("states", "actions", "offsets", "mask", "features", "log_prob", "log_reward"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    obj = get_loss("tb")
    (la, ga), (lb, gb) = _grads(env, policy, obj, a), _grads(env, policy, obj, b)
    torch.testing.assert_close(la, lb, rtol=1e-5, atol=1e-6)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)


def test_stale_records_recompute_and_overwritten_graphs_raise(one_thread):
    env = gfn.envs.HyperGrid(ndim=2, height=6, R0=0.1)
    torch.manual_seed(2)
    policy = gfn.nn.MLPPolicy(env, hidden=16, layers=2)
    s, obj = gfn.Sampler(env, policy), get_loss("tb")
    a = s.sample(20, seed=1, keep_activations=True)
    ref = obj(env, policy, _plain(a, torch.float32)).detach()
    loss_a = obj(env, policy, a)  # through a's record
    s.sample(20, seed=2, keep_activations=True)  # overwrites the buffers a's record points at
    with pytest.raises(RuntimeError, match="inplace"):
        loss_a.backward()
    a.__dict__["_activations"].used = False
    again = obj(env, policy, a)  # the record is stale now: the loss recomputes, and is right
    assert onpolicy.path_of(a) == onpolicy.RECOMPUTE
    torch.testing.assert_close(again.detach(), ref)
    c = s.sample(20, seed=3, keep_activations=True)
    with torch.no_grad():
        policy.pf_head.bias.add_(0.5)  # parameters changed since the rollout: recompute
    obj(env, policy, c)
    assert onpolicy.path_of(c) == onpolicy.RECOMPUTE


@pytest.mark.parametrize("setting,path", [
    ({}, onpolicy.ROLLOUT),
    ({"loss": "db"}, onpolicy.ROLLOUT),
    ({"epsilon": 0.1}, onpolicy.RECOMPUTE),
    ({"temperature": 2.0}, onpolicy.RECOMPUTE),
    ({"loss_options": {"importance_weights": True}}, onpolicy.RECOMPUTE),
    ({"loss": "fm"}, onpolicy.RECOMPUTE),
])
def test_trainer_chooses_the_path(setting, path, one_thread):
    env = gfn.envs.HyperGrid(ndim=2, height=6, R0=0.1)
    torch.manual_seed(0)
    policy = gfn.nn.MLPPolicy(env, hidden=16, layers=2, flow=setting.get("loss") == "db")
    t = gfn.Trainer(env, policy, batch_size=8, seed=0, **setting)
    assert t.train_step()["forward"] == path == t.forward_path


def test_replayed_batches_recompute(one_thread):
    env = gfn.envs.HyperGrid(ndim=2, height=6, R0=0.1)
    torch.manual_seed(0)
    t = gfn.Trainer(env, gfn.nn.MLPPolicy(env, hidden=16, layers=2), batch_size=8, seed=0,
                    replay=gfn.replay.ReplayBuffer(env, 64))
    assert t.train_step()["forward"] == onpolicy.ROLLOUT  # the buffer is empty: a fresh batch
    assert t.train_step()["forward"] == onpolicy.RECOMPUTE


def test_training_matches_the_recomputing_trainer(one_thread):
    env = gfn.envs.HyperGrid(ndim=3, height=5, R0=0.1)
    runs = []
    for recompute in (False, True):
        torch.manual_seed(0)
        t = gfn.Trainer(env, gfn.nn.MLPPolicy(env, hidden=32, layers=2), batch_size=16, seed=4)
        if recompute:
            t.objective.rollout_forward = False
        paths = {t.train_step()["forward"] for _ in range(5)}
        runs.append((paths, [p.detach().clone() for p in t.policy.parameters()]))
    assert runs[0][0] == {onpolicy.ROLLOUT} and runs[1][0] == {onpolicy.RECOMPUTE}
    for a, b in zip(runs[0][1], runs[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
