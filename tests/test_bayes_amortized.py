"""A posterior amortized over data sets: the set encoder (permutation invariance, one encoding per
distinct context), the conditional policy with a context encoder, the data-set environment's
reward against enumeration, bad input, and (slow) generalisation to unseen data sets."""
from __future__ import annotations

import pytest
import torch

import gfncore as gfn
from gfncore.bayes import LinearRegression, ParameterGrid, exact_posterior
from gfncore.bayes.amortized import (AmortizedConfig, AmortizedPosterior, DatasetPosteriorEnv, held_out_datasets,
                                     prior_datasets)
from gfncore.nn import MLPPolicy, SetAttentionEncoder, SetEncoder


@pytest.fixture(scope="module")
def model():
    return LinearRegression(ParameterGrid.linspace(-1, 1, 3, 2), noise_std=1.0)


@pytest.mark.parametrize("moments,attention", [(0, False), (1, False), (2, False), (0, True), (2, True)])
def test_set_encoder_is_permutation_invariant(moments, attention):
    torch.manual_seed(0)
    enc = (SetAttentionEncoder(3, 7, hidden=16, out_dim=5, moments=moments) if attention
           else SetEncoder(3, 7, hidden=16, out_dim=5, moments=moments))
    c = torch.randn(4, 21)
    perm = torch.randperm(7)
    shuffled = c.reshape(4, 7, 3)[:, perm].reshape(4, 21)
    torch.testing.assert_close(enc(shuffled), enc(c))
    # but it does see the elements: moving one value across elements changes the embedding
    other = c.clone()
    other[0, 0], other[0, 3] = c[0, 3] + 1.0, c[0, 0] - 1.0
    assert not torch.allclose(enc(other)[0], enc(c)[0])


def test_set_encoder_encodes_each_distinct_context_once_with_the_same_result():
    torch.manual_seed(0)
    enc = SetEncoder(2, 5, hidden=8, out_dim=4)
    c = torch.randn(3, 10, dtype=torch.float64).float()
    rows = c[torch.tensor([0, 1, 0, 2, 2, 2, 1])]
    calls = []
    enc.rho.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    e = enc(rows)
    assert calls == [3]
    torch.testing.assert_close(e, enc._embed(rows))
    e.sum().backward()  # gradients reach the encoder through the de-duplication
    assert enc.phi[0].weight.grad is not None and bool(enc.phi[0].weight.grad.abs().sum() > 0)


def test_zvar_with_a_head_trains_log_z_on_each_contexts_mean(model):
    """loss zvar with head=True: the policy's part is ZVar's within each data set, and the log Z(D)
    head's part is (log Z(D) − mean ζ over D's trajectories)², so its gradient moves the head to that mean."""
    from gfncore.losses import get_loss, log_probs
    from gfncore.ops.reference import segment_sum

    am = AmortizedPosterior(model, AmortizedConfig(set_size=6, steps=1, batch_size=8, trajectories_per_dataset=4,
                                                   loss="zvar"))
    traj = am.trainer.sample_trajectories()
    obj = get_loss("zvar", head=True)
    loss = obj(am.env, am.policy, traj)
    log_pf, log_pb, _ = log_probs(am.env, am.policy, traj)
    zeta = traj.log_reward.to(log_pf.dtype) + segment_sum(log_pb - log_pf, traj.offsets)
    uniq, group = torch.unique(traj.context, dim=0, return_inverse=True)
    mean = torch.stack([zeta[group == u].mean() for u in range(uniq.shape[0])])
    want = ((zeta - mean[group]) ** 2).mean() + ((am.policy.log_z_of(uniq) - mean.detach()) ** 2).mean()
    torch.testing.assert_close(loss, want)
    head = float(am.policy.log_z_of(traj.context[:1]).detach())
    assert obj.log_z(am.env, am.policy, traj.context[0]) == pytest.approx(head)
    one = AmortizedPosterior(model, AmortizedConfig(set_size=6, steps=1, batch_size=4, trajectories_per_dataset=1))
    with pytest.raises(ValueError, match="several trajectories per context"):
        obj(one.env, one.policy, one.trainer.sample_trajectories())


def test_set_encoder_rejects_bad_arguments():
    with pytest.raises(ValueError, match="set_size"):
        SetEncoder(2, 0)
    with pytest.raises(ValueError, match="moments"):
        SetEncoder(2, 3, moments=3)
    with pytest.raises(ValueError, match=r"shape \[n, 6\]"):
        SetEncoder(2, 3)(torch.zeros(4, 5))


def test_policy_with_a_context_encoder(model):
    env = DatasetPosteriorEnv(model, set_size=6)
    torch.manual_seed(0)
    enc = SetEncoder(env.element_dim, 6, hidden=8, out_dim=4)
    for conditioning in ("concat", "film"):
        policy = MLPPolicy(env, hidden=16, layers=2, context_encoder=enc, conditioning=conditioning)
        c = prior_datasets(model, 6)(3, torch.Generator().manual_seed(1))
        f = env.encode(env.initial_states(3))
        out = policy(f, c)
        assert out.pf_logits.shape == (3, env.n_actions)
        torch.testing.assert_close(policy.forward_logits(f, c), out.pf_logits)
        assert policy.log_z_of(c).shape == (3,)
        with pytest.raises(ValueError, match="context must have shape"):
            policy(f, c[:, :-1])
        with pytest.raises(ValueError, match="context must have shape"):
            policy.log_z_of(c[:, :-1])
    with pytest.raises(ValueError, match="out_dim"):
        MLPPolicy(env, context_encoder=torch.nn.Linear(env.context_dim, 4))
    with pytest.raises(ValueError, match="conditional"):
        MLPPolicy(gfn.envs.HyperGrid(2, 4), context_encoder=enc)


def test_dataset_env_reward_is_the_log_joint(model):
    env = DatasetPosteriorEnv(model, set_size=6)
    gen = torch.Generator().manual_seed(0)
    c = prior_datasets(model, 6)(2, gen)
    x = env.all_terminal_states()
    for i in range(2):
        X, y = env.unpack(c[i:i + 1])
        post = exact_posterior(model.log_prior, model.log_likelihood, model.grid, (X[0], y[0]))
        torch.testing.assert_close(env.log_reward(x, c[i:i + 1].expand(x.shape[0], -1)), post.log_joint)
        assert env.true_log_z(c[i:i + 1]) == pytest.approx(post.log_evidence)
    # rows with different data sets in one call: each scored against its own
    mixed = c[torch.tensor([0, 1, 1, 0])]
    xs = x[:4]
    want = torch.stack([env.log_reward(xs[j:j + 1], mixed[j:j + 1])[0] for j in range(4)])
    torch.testing.assert_close(env.log_reward(xs, mixed), want)


def test_dataset_env_bad_input(model):
    env = DatasetPosteriorEnv(model, set_size=6)
    x = env.all_terminal_states()[:2]
    with pytest.raises(ValueError, match=r"context must have shape \[2, 18\]"):
        env.log_reward(x, torch.zeros(2, 17))
    with pytest.raises(ValueError, match="not finite"):
        env.log_reward(x, torch.full((2, 18), float("nan")))
    with pytest.raises(ValueError, match=r"X must have shape \[6, 2\]"):
        env.pack(torch.zeros(5, 2), torch.zeros(5))
    with pytest.raises(ValueError, match="set_size"):
        DatasetPosteriorEnv(model, 0)
    with pytest.raises(TypeError, match="ParameterGrid"):
        DatasetPosteriorEnv(object(), 4)
    am = AmortizedPosterior(model, AmortizedConfig(set_size=6, steps=1, batch_size=8, trajectories_per_dataset=4))
    X, y = held_out_datasets(model, 6, 1)[0]
    with pytest.raises(ValueError, match="X must have shape"):
        am.log_evidence(X[:5], y[:5])  # a data set of the wrong size: a context of the wrong width


@pytest.mark.slow
def test_amortized_posterior_generalises_to_unseen_datasets(kernel_threads):
    """2 weights x 3 values, noise sd 2, data sets of 6 examples: trained on data sets drawn fresh
    every step (16 trajectories each), then on 8 data sets it never saw: exact L1 of Q(θ|D) and the
    error of log Z(D) far below the untrained sampler's, and the importance-sampling evidence from
    the amortized sampler within 0.05 of log P(D)."""
    torch.set_num_threads(1)
    gfn._C.set_num_threads(1)
    model = LinearRegression(ParameterGrid.linspace(-1, 1, 3, 2), noise_std=2.0)
    am = AmortizedPosterior(model, AmortizedConfig(set_size=6, steps=1100, batch_size=64, trajectories_per_dataset=16,
                                                   hidden=64, encoder_hidden=32, encoder_dim=32))
    val = held_out_datasets(model, 6, 8)
    before = am.evaluate(val, is_samples=0)
    am.fit(progress=False)
    after = am.evaluate(val, is_samples=512)
    mean = lambda rows, k: sum(r[k] for r in rows) / len(rows)  # noqa: E731
    assert mean(before, "l1") > 0.5 and mean(before, "log_z_error") > 0.5, before
    assert mean(after, "l1") < 0.25, after
    assert mean(after, "log_z_error") < 0.1, after
    assert max(r["log_z_is_error"] for r in after) < 0.05, after
