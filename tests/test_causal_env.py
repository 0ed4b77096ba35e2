"""The DAG environment (csrc/envs/dag.h): closure and masks under random edits, the in-degree
cap, exact DAG counts, the environment contract, the plain-PyTorch twin, rewards against the
numpy score, delta rewards, interventions, serialisation and bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import gfncore as gfn
from gfncore.causal import CausalScore, Intervention, ReferenceScore, all_dags, is_dag, sample_erdos_renyi_sem
from gfncore.causal.enumerate import count_dags
from gfncore.causal.reference_env import PyDAG
from gfncore.envs import DAG
from gfncore.envs.base import Env
from gfncore.envs.dag import transitive_closure
from gfncore.losses import _relative_state_rewards


def data(d: int, n: int = 60, seed: int = 0, **kw):
    return sample_erdos_renyi_sem(d, n, seed=seed, **kw)


def closure_from_scratch(adj: torch.Tensor) -> torch.Tensor:
    """Reachability by breadth-first search from every node (no shared code with the env)."""
    a = adj.bool().numpy()
    d = a.shape[0]
    out = np.zeros((d, d), dtype=bool)
    for u in range(d):
        frontier = list(np.flatnonzero(a[u]))
        while frontier:
            v = frontier.pop()
            if not out[u, v]:
                out[u, v] = True
                frontier.extend(np.flatnonzero(a[v]))
    return torch.from_numpy(out)


def random_walk(env: DAG, n_steps: int, seed: int, p_remove: float = 0.35):
    """A random sequence of edge additions and removals from s0; yields (state, adjacency kept
    independently of the env)."""
    gen = torch.Generator().manual_seed(seed)
    s = env.initial_states(1)
    adj = torch.zeros(env.d, env.d, dtype=torch.bool)
    for _ in range(n_steps):
        bm = env.backward_mask(s)[0]
        fm = env.forward_mask(s)[0, :-1]
        if bm.any() and (not fm.any() or float(torch.rand(1, generator=gen)) < p_remove):
            b = int(torch.multinomial(bm.double(), 1, generator=gen))
            s = env.backward_step(s, torch.tensor([b]))
            adj[b // env.d, b % env.d] = False
        elif fm.any():
            a = int(torch.multinomial(fm.double(), 1, generator=gen))
            assert not adj[a // env.d, a % env.d]
            s = env.step(s, torch.tensor([a]))
            adj[a // env.d, a % env.d] = True
        yield s, adj.clone()


# ------------------------------------------------------------------------------ closure and masks


@pytest.mark.parametrize("d,multiword", [(6, False), (33, False), (64, False), (70, True)])
def test_closure_matches_scratch_under_random_edits(d, multiword):
    env = DAG(d, multiword=multiword)
    W = (d + 31) // 32
    for t, (s, adj) in enumerate(random_walk(env, 150 if d < 64 else 80, seed=d)):
        assert torch.equal(env.adjacency(s)[0], adj)
        reach = unpack_reach(s, d, W)
        assert torch.equal(reach, closure_from_scratch(adj)), f"closure wrong after step {t}"
        assert int(env.n_parents(s)) == int(adj.sum())


def unpack_reach(s: torch.Tensor, d: int, W: int) -> torch.Tensor:
    from gfncore.envs.dag import unpack_bits

    return unpack_bits(s[0, d * W:].reshape(d, W), d)


@pytest.mark.parametrize("d,cap", [(5, None), (7, 2), (40, None), (40, 1)])
def test_masks_never_allow_cycle_self_loop_or_duplicate(d, cap):
    env = DAG(d, max_parents=cap)
    states = torch.cat([s for s, _ in random_walk(env, 60, seed=3 + d)])
    adj = env.adjacency(states)
    mask = env.forward_mask(states)
    assert bool(mask[:, -1].all()), "every DAG may stop"
    legal = mask[:, :-1].reshape(-1, d, d)
    reach = transitive_closure(adj)
    eye = torch.eye(d, dtype=torch.bool)
    indeg_ok = adj.sum(1) < (d - 1 if cap is None else cap)
    # exactly the edges that are absent, not self-loops, do not close a cycle and respect the cap
    expect = ~adj & ~eye & ~reach.transpose(1, 2) & indeg_ok.unsqueeze(1)
    assert torch.equal(legal, expect)
    # and every legal edge, added, gives a DAG with one more edge
    r, a = mask[:, :-1].nonzero(as_tuple=True)
    keep = torch.randperm(r.numel(), generator=torch.Generator().manual_seed(0))[:400]
    child = env.adjacency(env.step(states[r[keep]], a[keep]))
    assert bool(is_dag(child).all())
    assert torch.equal(child.flatten(1).sum(1), adj[r[keep]].flatten(1).sum(1) + 1)


def test_illegal_steps_raise():
    env = DAG(3)
    s = env.step(env.initial_states(1), torch.tensor([0 * 3 + 1]))  # 0 -> 1
    for a, why in ((0 * 3 + 1, "duplicate"), (1 * 3 + 0, "2-cycle"), (2 * 3 + 2, "self-loop"), (10, "out of range")):
        with pytest.raises(ValueError):
            env.step(s, torch.tensor([a]))
    s = env.step(s, torch.tensor([1 * 3 + 2]))  # 0 -> 1 -> 2
    with pytest.raises(ValueError):
        env.step(s, torch.tensor([2 * 3 + 0]))  # 2 -> 0 closes a 3-cycle
    with pytest.raises(ValueError):
        env.backward_step(s, torch.tensor([2 * 3 + 0]))  # not an edge


def test_max_parents_respected():
    d, cap = 5, 2
    env = DAG(d, max_parents=cap)
    graphs = all_dags(d)
    allowed = graphs[(graphs.sum(1) <= cap).all(-1)]
    x = env.all_states()
    assert x.shape[0] == allowed.shape[0] < graphs.shape[0]
    assert int(env.adjacency(x).sum(1).max()) == cap
    # the breadth-first expansion of the masks reaches exactly these graphs
    bfs = Env.all_states(env)
    assert {tuple(r) for r in bfs.tolist()} == {tuple(r) for r in x.tolist()}
    assert env.max_parents == sum(min(k, cap) for k in range(d))  # most edges: the state graph's parents
    gfn.envs.check_env(env)
    with pytest.raises(ValueError, match="max_parents"):
        env.states_from_adjacency(graphs[(graphs.sum(1) > cap).any(-1)][:1])


# ------------------------------------------------------------------------------ enumeration, contract


@pytest.mark.parametrize("d,count", [(1, 1), (2, 3), (3, 25), (4, 543), (5, 29281)])
def test_dag_counts(d, count):
    env = DAG(d)
    x = env.all_states()
    assert x.shape[0] == count == count_dags(d)
    assert torch.unique(x, dim=0).shape[0] == count
    assert torch.equal(env.adjacency(x), all_dags(d))  # aligned with the exact posterior's order
    if d <= 4:  # the masks' breadth-first expansion finds the same graphs
        assert {tuple(r) for r in Env.all_states(env).tolist()} == {tuple(r) for r in x.tolist()}


def test_too_many_to_enumerate():
    with pytest.raises(ValueError, match="too many"):
        DAG(6).all_states()


@pytest.mark.parametrize("d", [3, 4])
def test_check_env_complete(d):
    out = gfn.envs.check_env(DAG(data=data(d)))
    assert out["complete"] and out["objects"] == count_dags(d)


def test_check_env_large_and_lingauss():
    gfn.envs.check_env(DAG(data=data(20, 100), score="lingauss", max_parents=3), max_states=500)
    gfn.envs.check_env(DAG(data=data(5)), max_states=1500)


# ------------------------------------------------------------------------------ the PyTorch twin


@pytest.mark.parametrize("d,cap,multiword", [(4, None, False), (4, 1, False), (33, 3, False), (66, None, True)])
def test_compiled_matches_python_twin(d, cap, multiword):
    cd = data(d, 50, seed=d)
    env = DAG(data=cd, max_parents=cap, multiword=multiword)
    py = PyDAG(d, CausalScore(cd, multiword=multiword), max_parents=cap)
    if d <= 4:
        x = env.all_states()
    else:
        x = torch.cat([s for s, _ in random_walk(env, 20, seed=1)])
    for m in ("forward_mask", "backward_mask", "encode", "n_parents", "is_initial"):
        assert torch.equal(getattr(env, m)(x), getattr(py, m)(x)), m
    assert torch.allclose(env.log_reward(x), py.log_reward(x), rtol=1e-12, atol=1e-9)
    gen = torch.Generator().manual_seed(0)
    r, a = env.forward_mask(x).nonzero(as_tuple=True)
    pick = torch.randperm(r.numel(), generator=gen)[:600]  # the twin's closures are dense [n, d, d]
    r, a = r[pick], a[pick]
    mv = a != env.stop_action
    assert torch.equal(env.step(x[r[mv]], a[mv]), py.step(x[r[mv]], a[mv]))
    assert torch.allclose(env.log_reward_delta(x[r], a), py.log_reward_delta(x[r], a), rtol=1e-12, atol=1e-9)
    r, b = env.backward_mask(x).nonzero(as_tuple=True)
    pick = torch.randperm(r.numel(), generator=gen)[:600]
    assert torch.equal(env.backward_step(x[r[pick]], b[pick]), py.backward_step(x[r[pick]], b[pick]))
    if d <= 4:  # (larger: every legal move of the visited states, dense, is too big for a test)
        gfn.envs.check_env(py)


def test_invalid_rows_raise():
    env = DAG(4)
    good = env.states_from_adjacency(torch.tensor([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]))
    bad_closure = good.clone()
    bad_closure[0, 4:] = 0  # adjacency with the closure wiped
    cycle = good.clone()
    cycle[0, 0] |= 1 << 2  # 2 -> 0 as well: a cycle
    beyond = good.clone()
    beyond[0, 1] |= 1 << 7  # a parent bit beyond d
    for row in (bad_closure, cycle, beyond):
        with pytest.raises(ValueError, match="not in the environment's state space|invalid"):
            env.forward_mask(row)


# ------------------------------------------------------------------------------ rewards


@pytest.mark.parametrize("kind,prior,kw", [("bge", "uniform", {}), ("lingauss", "erdos_renyi", {"edge_prob": 0.3}),
                                           ("bge", "edge", {"edge_penalty": 2.0})])
def test_reward_matches_numpy_score(kind, prior, kw):
    cd = data(4, 40, seed=2, interventions=[Intervention(nodes=1, n=15)])
    env = DAG(data=cd, score=kind, prior=prior, **kw)
    ref = ReferenceScore(cd, kind, prior=prior, **kw)
    x = env.all_states()
    assert torch.allclose(env.log_reward(x), ref.log_score(env.adjacency(x)), rtol=1e-9, atol=1e-7)


def test_reward_without_data_is_the_prior():
    from gfncore.causal.scores import log_prior_reference

    env = DAG(4, prior="erdos_renyi", edge_prob=0.2)
    x = env.all_states()
    expect = torch.tensor([log_prior_reference(g, "erdos_renyi", edge_prob=0.2) for g in env.adjacency(x)],
                          dtype=torch.float64)
    assert torch.allclose(env.log_reward(x), expect, atol=1e-12)
    assert torch.equal(DAG(3).log_reward(DAG(3).all_states()), torch.zeros(25, dtype=torch.float64))


@pytest.mark.parametrize("kind", ["bge", "lingauss"])
def test_delta_reward_is_difference_of_full_rewards(kind):
    env = DAG(data=data(5, 80, seed=4), score=kind, max_parents=3)
    x = env.all_states()
    r, a = env.forward_mask(x).nonzero(as_tuple=True)
    nxt = x[r].clone()
    mv = a != env.stop_action
    nxt[mv] = env.step(x[r[mv]], a[mv])
    full = env.log_reward(nxt) - env.log_reward(x[r])
    delta = env.log_reward_delta(x[r], a)
    assert torch.allclose(delta, full, rtol=1e-10, atol=1e-8)
    assert bool((delta[a == env.stop_action] == 0).all())


def test_mdb_relative_rewards_from_deltas_equal_full_rewards():
    cd = data(6, 80, seed=5)
    env = DAG(data=cd)
    same = DAG(data=cd, log_reward=lambda x: env.log_reward(x))  # a custom reward: no delta path
    assert same.log_reward_delta(env.initial_states(1), torch.tensor([1])) is None
    policy = gfn.nn.MLPPolicy(env, hidden=16)
    traj = gfn.Sampler(env, policy, epsilon=0.5).sample(64, seed=3)
    via_delta = _relative_state_rewards(env, traj)
    via_full = _relative_state_rewards(same, traj)
    assert traj.T > 3 * traj.n
    assert torch.allclose(via_delta, via_full, rtol=1e-9, atol=1e-8)


# ------------------------------------------------------------------------------ interventions


def two_node_data(interventions: bool, n: int = 50, seed: int = 0):
    """X -> Y; optionally with rows where X was set by a perfect intervention."""
    ivs = [Intervention(nodes=0, n=n)] if interventions else []
    gen_seed = seed
    while True:  # a 2-node ER graph with one edge X0 -> X1
        cd = sample_erdos_renyi_sem(2, n, expected_edges=1, seed=gen_seed, interventions=ivs)
        if bool(cd.graph[0, 1]):
            return cd
        gen_seed += 1


def test_interventions_break_markov_equivalence_in_env_rewards():
    obs, itv = two_node_data(False), two_node_data(True)
    for cd, equal in ((obs, True), (itv, False)):
        env = DAG(data=cd)
        x_to_y = env.states_from_adjacency(torch.tensor([[0, 1], [0, 0]]))
        y_to_x = env.states_from_adjacency(torch.tensor([[0, 0], [1, 0]]))
        diff = float(env.log_reward(x_to_y) - env.log_reward(y_to_x))
        if equal:
            assert abs(diff) < 1e-8
        else:
            assert diff > 5.0  # the true direction, by a wide margin (about 30 nats here)


# ------------------------------------------------------------------------------ serialisation


def test_config_round_trip():
    cd = data(4, 30, seed=7, interventions=[Intervention(nodes=(0, 2), n=10)])
    env = DAG(data=cd, score="lingauss", prior="edge", edge_penalty=0.5, max_parents=2, noise_var=0.3)
    cfg = env.to_config()
    again = gfn.envs.from_config(cfg)
    x = env.all_states()
    assert torch.equal(again.log_reward(x), env.log_reward(x))
    assert again.node_names == env.node_names and again.max_in_degree == 2
    from_score = DAG(score=CausalScore(cd, "lingauss", prior="edge", edge_penalty=0.5, noise_var=0.3),
                     max_parents=2)
    assert torch.allclose(from_score.log_reward(x), env.log_reward(x), rtol=1e-12, atol=1e-10)
    assert "DAG(num_nodes=4" in repr(env)


# ------------------------------------------------------------------------------ bad input


def test_bad_input_raises_clearly():
    good = data(3, 20).data
    nan = good.clone()
    nan[4, 1] = math.nan
    with pytest.raises(ValueError, match="dag: .*finite.*row 4, column 1"):
        DAG(data=nan)
    with pytest.raises(ValueError, match="at least 2 rows"):
        DAG(data=good[:1])
    with pytest.raises(ValueError, match="does not exist"):
        DAG(data=good, interventions=[["X7"]] + [[]] * 19)
    with pytest.raises(ValueError, match="does not exist"):
        DAG(data=good, interventions=[[5]] + [[]] * 19)
    with pytest.raises(ValueError, match="multiword"):
        DAG(65)
    with pytest.raises(ValueError, match="multiword"):
        DAG(data=torch.randn(10, 70, dtype=torch.float64))
    with pytest.raises(TypeError, match="data"):
        DAG(data=[["a", "b"], ["c", "d"]])
    with pytest.raises(ValueError, match="shape \\[N, d\\]"):
        DAG(data=torch.randn(10))
    with pytest.raises(ValueError, match="score must be one of"):
        DAG(data=good, score="bic")
    with pytest.raises(ValueError, match="edge_prob"):
        DAG(data=good, prior="erdos_renyi")
    with pytest.raises(ValueError, match="columns"):
        DAG(4, data=good)
    with pytest.raises(ValueError, match="interventions"):
        DAG(3, interventions=torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="interventions must have shape"):
        DAG(data=good, interventions=torch.zeros(5, 3, dtype=torch.bool))
    assert DAG(70, multiword=True).n_actions == 70 * 70 + 1
