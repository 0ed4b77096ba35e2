"""Parent enumeration: consistent with forward steps, compiled == reference, bad input raises."""
import pytest
import torch

import gfncore as gfn
from gfncore.ops import reference

ENVS = [
    gfn.envs.HyperGrid(ndim=3, height=5),
    gfn.envs.HyperGrid(ndim=1, height=3),
    gfn.envs.Ising(3, J=0.5, h=0.1),
    gfn.envs.Ising(2),
    gfn.envs.Ising(1),
]


def random_states(env, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    if isinstance(env, gfn.envs.HyperGrid):
        return torch.randint(0, env.height, (n, env.state_dim), generator=g, dtype=torch.int32)
    return torch.randint(-1, 2, (n, env.state_dim), generator=g, dtype=torch.int32)


@pytest.mark.parametrize("env", ENVS, ids=repr)
def test_parents_step_back_to_the_state(env):
    s = random_states(env, 300)
    s[0] = env.initial_states(1)[0]  # s0: no parents
    ps, pa, counts = gfn.ops.parents(env, s)
    n, P, D = s.shape[0], env.max_parents, env.state_dim
    assert ps.shape == (n, P, D) and ps.dtype == torch.int32
    assert pa.shape == (n, P) and pa.dtype == torch.int64
    assert counts.shape == (n,) and counts.dtype == torch.int64
    assert torch.equal(counts, env.backward_mask(s).sum(-1))
    assert torch.equal(counts, env.n_parents(s))
    assert int(counts[0]) == 0
    used = torch.arange(P) < counts.unsqueeze(-1)
    rows, slots = used.nonzero(as_tuple=True)
    assert rows.numel() > 0
    # every enumerated parent steps forward to the state, by a move (never stop)
    assert bool((pa[rows, slots] != env.stop_action).all())
    assert torch.equal(env.step(ps[rows, slots], pa[rows, slots]), s[rows])
    # parents of one state are distinct
    keys = torch.cat([rows.unsqueeze(-1).to(torch.int32), ps[rows, slots]], -1)
    assert torch.unique(keys, dim=0).shape[0] == keys.shape[0]
    # padding: 0-filled states and action -1
    assert bool((ps[~used] == 0).all()) and bool((pa[~used] == -1).all())


@pytest.mark.parametrize("env", ENVS, ids=repr)
def test_backward_step_then_step_is_identity(env):
    s = random_states(env, 400, seed=1)
    bmask = env.backward_mask(s)
    keep = bmask.any(-1)
    s, bmask = s[keep], bmask[keep]
    g = torch.Generator().manual_seed(2)
    b = torch.multinomial(bmask.double(), 1, generator=g).squeeze(-1)
    parent = env.backward_step(s, b)
    assert torch.equal(env.step(parent, env.backward_action(b)), s)
    if isinstance(env, gfn.envs.Ising):  # one site fewer set, so one parent fewer
        assert torch.equal(env.n_parents(parent), env.n_parents(s) - 1)


@pytest.mark.parametrize("env", ENVS, ids=repr)
def test_compiled_matches_reference(env):
    s = random_states(env, 257, seed=3)
    got = gfn.ops.parents(env, s)
    want = reference.parents(env.reference(), s, env.max_parents)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype
        assert torch.equal(a, b)


def test_all_states_parents_match_reference():
    env = gfn.envs.Ising(2, J=0.3)
    s = env.all_states()
    for a, b in zip(gfn.ops.parents(env, s), reference.parents(env.reference(), s, env.max_parents)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("env", ENVS[:1] + ENVS[2:3], ids=repr)
def test_empty_batch_and_non_contiguous(env):
    ps, pa, counts = gfn.ops.parents(env, torch.zeros(0, env.state_dim, dtype=torch.int32))
    assert ps.shape == (0, env.max_parents, env.state_dim) and pa.shape == (0, env.max_parents) and counts.shape == (0,)
    s = random_states(env, 20, seed=4)
    wide = torch.zeros(20, 2 * env.state_dim, dtype=torch.int32)
    wide[:, ::2] = s
    for a, b in zip(gfn.ops.parents(env, wide[:, ::2]), gfn.ops.parents(env, s)):
        assert torch.equal(a, b)


def test_one_state_ising_parents_are_its_set_sites():
    env = gfn.envs.Ising(2)
    ps, pa, counts = gfn.ops.parents(env, torch.tensor([[1, 0, -1, 0]], dtype=torch.int32))
    assert int(counts[0]) == 2
    # increasing backward action: b = 2 (unset the -1 at site 2), then b = 4 + 0 (unset the +1 at site 0)
    assert pa[0].tolist() == [2, 4, -1, -1]
    assert ps[0, :2].tolist() == [[1, 0, 0, 0], [0, 0, -1, 0]]


def test_bad_state_raises():
    hg = gfn.envs.HyperGrid(ndim=2, height=4)
    with pytest.raises(ValueError, match="row 1: states holds a row that is not in the environment's state space"):
        gfn.ops.parents(hg, torch.tensor([[1, 1], [4, 0]], dtype=torch.int32))
    with pytest.raises(ValueError, match="state space"):
        gfn.ops.parents(hg, torch.tensor([[-1, 0]], dtype=torch.int32))
    with pytest.raises(ValueError, match="state space"):
        reference.parents(hg.reference(), torch.tensor([[4, 0]], dtype=torch.int32), hg.max_parents)
    ising = gfn.envs.Ising(2)
    with pytest.raises(ValueError, match="row 0: states holds a row"):
        gfn.ops.parents(ising, torch.tensor([[2, 0, 0, 0]], dtype=torch.int32))
    with pytest.raises(ValueError, match="state space"):
        reference.parents(ising.reference(), torch.tensor([[0, 0, -2, 0]], dtype=torch.int32), ising.max_parents)


def test_bad_arguments_raise():
    env = gfn.envs.Ising(2)
    with pytest.raises(ValueError, match="shape"):
        gfn.ops.parents(env, torch.zeros(3, 5, dtype=torch.int32))
    with pytest.raises(TypeError, match="integer"):
        gfn.ops.parents(env, torch.zeros(3, 4))
    with pytest.raises(TypeError, match="torch.Tensor"):
        gfn.ops.parents(env, [[0, 0, 0, 0]])
    # the binding validates the buffers it is handed
    s = torch.zeros(2, 4, dtype=torch.int32)
    with pytest.raises(ValueError, match="parent_states"):
        gfn._C.parents(env._handle, s, torch.empty(2, 3, 4, dtype=torch.int32), torch.empty(2, 4, dtype=torch.int64),
                       torch.empty(2, dtype=torch.int64))
    with pytest.raises(TypeError, match="parent_actions must be int64"):
        gfn._C.parents(env._handle, s, torch.empty(2, 4, 4, dtype=torch.int32), torch.empty(2, 4, dtype=torch.int32),
                       torch.empty(2, dtype=torch.int64))


def test_opcheck():
    env = gfn.envs.Ising(2)
    s = random_states(env, 8, seed=5)
    torch.library.opcheck(torch.ops.gfncore.parents.default, (gfn.ops._env_table.env_id(env), s, env.max_parents),
                          test_utils=("test_schema", "test_faketensor"))


@pytest.mark.skipif(not (torch.cuda.is_available() and gfn.build_info()["with_cuda"]), reason="needs a CUDA build and GPU")
@pytest.mark.parametrize("env", ENVS, ids=repr)
def test_cuda_matches_cpu(env):
    s = random_states(env, 513, seed=6)
    for a, b in zip(gfn.ops.parents(env, s.cuda()), gfn.ops.parents(env, s)):
        assert torch.equal(a.cpu(), b)
    bad = s.clone()
    bad[7, 0] = 9
    with pytest.raises(ValueError, match="row 7"):
        gfn.ops.parents(env, bad.cuda())
