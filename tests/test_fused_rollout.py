"""The whole rollout in one compiled call (MLPPolicy on a C++ environment) against the per-step
loop: the same samples bit for bit, the same kept activations, fallbacks, bad input."""
from __future__ import annotations

import pytest
import torch

import gfncore as gfn
from gfncore import _C

FIELDS = ("states", "actions", "offsets", "mask", "features", "log_prob", "log_reward")

pytestmark = pytest.mark.skipif(not _C.has_process_blas(), reason="torch's BLAS (sgemm_) not found in this process")


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    gfn.set_num_threads(1)
    yield
    gfn.set_num_threads(before)


def _pair(env, policy):
    fused, loop = gfn.Sampler(env, policy), gfn.Sampler(env, policy)
    loop.fused_rollout = False
    return fused, loop


@pytest.mark.parametrize("n", [0, 1, 5, 64, 257])
@pytest.mark.parametrize("keep", [False, True])
def test_bit_identical_to_the_per_step_loop(n, keep, one_thread):
    env = gfn.envs.HyperGrid(ndim=3, height=6, R0=0.1)
    torch.manual_seed(n)
    policy = gfn.nn.MLPPolicy(env, hidden=48, layers=3, flow=True)
    fused, loop = _pair(env, policy)
    for seed in (0, 9):
        a = fused.sample(n, seed=seed, keep_activations=keep, first_id=3)
        b = loop.sample(n, seed=seed, keep_activations=keep, first_id=3)
        for name in FIELDS:
            assert torch.equal(getattr(a, name), getattr(b, name)), name
        if keep and n:
            ra, rb = a.__dict__["_activations"], b.__dict__["_activations"]
            assert all(torch.equal(x, y) for x, y in zip(ra.acts, rb.acts)) and torch.equal(ra.perm, rb.perm)


def test_activation_buffers_grow_mid_rollout(one_thread):
    env = gfn.envs.HyperGrid(ndim=4, height=8, R0=0.1)
    torch.manual_seed(0)
    policy = gfn.nn.MLPPolicy(env, hidden=32, layers=2)
    fused, loop = _pair(env, policy)
    fused.__dict__["_rows_per_traj"] = loop.__dict__["_rows_per_traj"] = 0.01  # far too few rows: grow
    a = fused.sample(100, seed=1, keep_activations=True)
    b = loop.sample(100, seed=1, keep_activations=True)
    assert a.T > 120
    ra, rb = a.__dict__["_activations"], b.__dict__["_activations"]
    assert all(torch.equal(x, y) for x, y in zip(ra.acts, rb.acts))
    assert torch.equal(a.states, b.states)


def test_other_policies_fall_back(one_thread):
    env = gfn.envs.HyperGrid(ndim=2, height=5, R0=0.1)
    torch.manual_seed(0)

    class Sub(gfn.nn.MLPPolicy):  # another policy class: its forward_logits may differ
        pass

    for policy in (Sub(env, hidden=8), gfn.nn.MLPPolicy(env, hidden=8).double()):
        assert gfn.Sampler(env, policy)._one_call_layers() is None
    policy = gfn.nn.MLPPolicy(env, hidden=8)
    policy.trunk.register_forward_hook(lambda *a: None)  # a hook must run: the per-step loop calls it
    assert gfn.Sampler(env, policy)._one_call_layers() is None
    assert gfn.Sampler(env, gfn.nn.MLPPolicy(env, hidden=8))._one_call_layers() is not None


def test_run_mlp_rejects_bad_weights():
    env = gfn.envs.HyperGrid(ndim=2, height=5, R0=0.1)
    rec = _C.RolloutRecorder(env._handle, 16)
    rec.start(4, 0, 1.0, 0.0)
    w1, b1 = torch.zeros(8, env.feature_dim), torch.zeros(8)
    head = (torch.zeros(env.n_actions, 8), torch.zeros(env.n_actions))
    with pytest.raises(ValueError, match="previous layer's width"):
        rec.run_mlp([(torch.zeros(8, env.feature_dim + 1), b1), head])
    with pytest.raises(ValueError, match="n_actions"):
        rec.run_mlp([(w1, b1), (torch.zeros(7, 8), torch.zeros(7))])
    with pytest.raises(TypeError):
        rec.run_mlp([(w1.double(), b1.double()), head])
    with pytest.raises(ValueError, match="one buffer per trunk layer"):
        rec.run_mlp([(w1, b1), head], [torch.zeros(16, env.feature_dim)])
    assert rec.run_mlp([(w1, b1), head]) == 0  # valid: uniform logits, the rollout finishes
