"""Structure MCMC (MC^3) against the exact posterior: neighbourhood sizes by brute force, edge
marginals against enumeration (observational and interventional, with and without an in-degree
cap), reproducibility at any thread count, diagnostics that can flag disagreement, bad input."""
from __future__ import annotations

import pytest
import torch

from gfncore.causal import CausalScore, Intervention, all_dags, is_dag, sample_erdos_renyi_sem
from gfncore.causal import metrics as M
from gfncore.causal.mcmc import MCMCConfig, adjacency_to_parents, count_moves, parents_to_adjacency, sample_mcmc, split_rhat


def capped_exact(score, max_parents=None):
    """Edge marginals by enumeration over DAGs under the cap (d <= 5)."""
    d = score.num_nodes
    G = all_dags(d)
    if max_parents is not None:
        G = G[(G.sum(1) <= max_parents).all(-1)]
    log_r = score.log_score(G)
    p = torch.softmax(log_r, 0)
    return (p[:, None, None] * G.double()).sum(0), float(torch.logsumexp(log_r, 0))


def brute_force_moves(a: torch.Tensor, K: int, swaps: bool = False) -> int:
    d = a.shape[0]
    n = 0
    if swaps:  # replace parent i of j by a non-parent k
        for j in range(d):
            for i in a[:, j].nonzero().flatten().tolist():
                for k in range(d):
                    if k != j and not a[k, j]:
                        b = a.clone()
                        b[i, j] = False
                        b[k, j] = True
                        n += bool(is_dag(b))
    for i in range(d):
        for j in range(d):
            if i == j:
                continue
            if a[i, j]:
                n += 1  # delete
                b = a.clone()
                b[i, j] = False
                b[j, i] = True
                n += bool(is_dag(b)) and int(b[:, i].sum()) <= K  # reverse
            elif not a[j, i] or True:
                b = a.clone()
                b[i, j] = True
                n += bool(is_dag(b)) and int(b[:, j].sum()) <= K and not bool(a[i, j])  # add
    return n


@pytest.mark.parametrize("K", [1, 2, 4])
def test_neighbourhood_sizes_match_brute_force(K):
    G = all_dags(4)
    gen = torch.Generator().manual_seed(K)
    idx = torch.randperm(G.shape[0], generator=gen)[:60]
    for a in G[idx]:
        if int(a.sum(0).max()) > K:
            continue
        assert count_moves(a, K) == brute_force_moves(a, K)
        assert count_moves(a, K, swaps=True) == brute_force_moves(a, K, swaps=True)
    assert count_moves(torch.zeros(5, 5, dtype=torch.bool)) == 20  # every ordered pair may be added


def test_bitset_round_trip():
    G = all_dags(4)
    assert torch.equal(parents_to_adjacency(adjacency_to_parents(G), 4), G)


@pytest.mark.parametrize("d,interventions,K,swaps", [(4, False, None, False), (5, False, 2, False), (5, True, None, True),
                                                     (5, False, 2, True)])
def test_mcmc_matches_exact_enumeration(d, interventions, K, swaps):
    ivs = [Intervention(nodes=j, n=8) for j in range(d)] if interventions else []
    cd = sample_erdos_renyi_sem(d, 30, expected_edges=d, seed=d, interventions=ivs)
    score = CausalScore(cd)
    exact, _ = capped_exact(score, K)
    # MC^3 moves between Markov equivalence classes slowly: the error falls as 1 / sqrt(steps)
    # (0.015, 0.006, 0.0017 at 150k, 600k, 2.4M steps on the d = 4 case), so 600k.
    res = sample_mcmc(score, chains=4, steps=600_000, max_parents=-1 if K is None else K, seed=1, swaps=swaps)
    rmse = M.edge_marginal_rmse(res.edge_marginals, exact)
    assert rmse < 0.01, (rmse, res.diagnostics)
    assert res.diagnostics["agree"], res.diagnostics["message"]
    # The estimate is worth something: the exact marginals are far from uniform guessing.
    assert M.edge_marginal_rmse(torch.full_like(exact, float(exact.mean())), exact) > 0.1
    if K is not None:
        assert int(res.samples.sum(1).max()) <= K
    assert bool(is_dag(res.samples).all())
    # The recorded log R are those of the sampled graphs.
    assert torch.allclose(score.log_score(res.samples[:50]), res.sample_log_r.reshape(-1)[:50], atol=1e-8)


def test_interventions_change_the_mcmc_posterior():
    """Observational data leave X -> Y and Y -> X equal; interventions orient them, and MCMC follows."""
    d = 4
    cd = sample_erdos_renyi_sem(d, 40, expected_edges=4, seed=3, interventions=[Intervention(nodes=j, n=10) for j in range(d)])
    obs = CausalScore(cd.data)
    inter = CausalScore(cd)
    eo, _ = capped_exact(obs)
    ei, _ = capped_exact(inter)
    assert M.edge_marginal_rmse(eo, ei) > 0.05
    ri = sample_mcmc(inter, chains=2, steps=150_000, seed=0)
    assert M.edge_marginal_rmse(ri.edge_marginals, ei) < 0.01 < M.edge_marginal_rmse(ri.edge_marginals, eo)


def test_seeded_and_thread_count_independent(kernel_threads):
    import gfncore

    score = CausalScore(sample_erdos_renyi_sem(6, 50, seed=0))
    runs = []
    for threads in (1, 2):
        gfncore.set_num_threads(threads)
        runs.append(sample_mcmc(score, chains=3, steps=5000, samples=300, seed=7))
    a, b = runs
    assert torch.equal(a.samples, b.samples)
    assert torch.allclose(a.edge_marginals, b.edge_marginals, atol=1e-12)
    c = sample_mcmc(score, chains=3, steps=5000, samples=300, seed=8)
    assert not torch.equal(a.samples, c.samples)


def test_diagnostics_flag_disagreeing_chains():
    """Chains started at two different graphs and run for a few moves disagree, and say so."""
    score = CausalScore(sample_erdos_renyi_sem(8, 200, expected_edges=10, seed=0))
    start = torch.zeros(4, 8, 8, dtype=torch.bool)
    start[2:] = torch.triu(torch.ones(8, 8, dtype=torch.bool), 1)  # the complete DAG
    short = sample_mcmc(score, chains=4, steps=200, burn_in=0, samples=200, start=start, seed=0)
    assert not short.diagnostics["agree"] and "disagree" in short.diagnostics["message"]
    assert short.diagnostics["max_chain_diff"] > 0.1
    long = sample_mcmc(score, chains=4, steps=200_000, samples=4000, start=start, seed=0)
    assert long.diagnostics["agree"], long.diagnostics["message"]


def test_split_rhat():
    gen = torch.Generator().manual_seed(0)
    same = torch.randn(4, 1000, generator=gen, dtype=torch.float64)
    assert abs(split_rhat(same) - 1) < 0.01
    shifted = same + torch.arange(4, dtype=torch.float64)[:, None]
    assert split_rhat(shifted) > 1.5


def test_bad_input_raises():
    score = CausalScore(sample_erdos_renyi_sem(4, 30, seed=0))
    cyc = torch.zeros(4, 4, dtype=torch.bool)
    cyc[0, 1] = cyc[1, 2] = cyc[2, 0] = True
    with pytest.raises(ValueError, match="cycle"):
        sample_mcmc(score, chains=2, steps=10, start=cyc)
    dense = torch.triu(torch.ones(4, 4, dtype=torch.bool), 1)
    with pytest.raises(ValueError, match="max_parents"):
        sample_mcmc(score, chains=2, steps=10, start=dense, max_parents=1)
    with pytest.raises(ValueError, match="shape"):
        sample_mcmc(score, chains=2, steps=10, start=torch.zeros(3, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        sample_mcmc(score, chains=2, steps=10, start=torch.zeros(4, 4))
    with pytest.raises(ValueError, match="chains"):
        sample_mcmc(score, chains=0)
    with pytest.raises(ValueError, match="max_parents"):
        sample_mcmc(score, max_parents=-2)
    with pytest.raises(TypeError, match="CausalScore"):
        sample_mcmc("not a score")
    with pytest.raises(TypeError, match="unexpected keyword"):
        sample_mcmc(score, step=10)
    from gfncore import _C

    with pytest.raises(ValueError, match="samples"):
        _C.causal_mcmc(score._c, 2, 0, 10, 1, -1, 0, True, None, torch.empty(2, 9, 4, dtype=torch.int64),
                       torch.empty(2, 10, dtype=torch.float64), torch.empty(2, 4, 4, dtype=torch.float64))
    with pytest.raises(TypeError):
        _C.causal_mcmc(object(), 2, 0, 10, 1, -1, 0, True, None, None, None, None)
    with pytest.raises(ValueError, match="cycle"):
        count_moves(cyc)
    assert MCMCConfig().resolved(20).steps == 800_000


def test_cli_method_mcmc_writes_the_gfn_outputs(tmp_path):
    import json

    from gfncore.causal.cli import main

    out = tmp_path / "run"
    assert main(["--synthetic", "d=4,n=50,seed=0", "--method", "mcmc", "--mcmc-steps", "100000", "--samples", "500",
                 "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    for f in ("edge_marginals.csv", "posterior_samples.csv", "summary.json"):
        assert (out / f).exists(), f
    m = json.loads((out / "summary.json").read_text())["metrics"]
    assert m["method"] == "mcmc" and m["edge_rmse"] < 0.02 and m["mcmc"]["agree"]
    assert main(["--synthetic", "d=4,n=50,seed=0", "--method", "mcmc", "--chains", "0", "--out", str(tmp_path / "x")]) == 2
    assert main(["--synthetic", "d=4,n=50,seed=0", "--method", "mcmc", "--resume", "--out", str(out)]) == 2


def test_bench_causal_quality_fast(tmp_path, monkeypatch):
    """The quality-per-second bench's smoke mode: both methods report at every checkpoint, MC^3
    is close to the exact DP at d = 6, and the plot and json are written."""
    import pathlib

    # bench/ is not installed: it runs from the repository root (`python -m bench.causal_quality`)
    monkeypatch.syspath_prepend(str(pathlib.Path(__file__).resolve().parents[1]))
    from bench.causal_quality import main

    res = main(["--fast", "--out", str(tmp_path)])
    r = res[6]
    assert r["reference"]["kind"] == "exact DP"
    assert len(r["mcmc"]) == len(r["gfn"]) == 3
    assert r["mcmc"][-1]["rmse"] < 0.02
    assert all(x["rmse"] is not None and x["distinct"] >= 1 for x in r["gfn"])
    assert (tmp_path / "causal_quality.json").exists()


def test_replay_seeded_from_mcmc():
    """PosteriorConfig.replay_mcmc fills the replay buffer with distinct MC^3 graphs under the cap,
    with their log R, before the first step."""
    from gfncore.causal.posterior import PosteriorConfig, make_env, make_trainer

    cd = sample_erdos_renyi_sem(5, 50, expected_edges=5, seed=0)
    cfg = PosteriorConfig(max_parents=2, replay_mcmc=5000, hidden=16, batch_size=8)
    env = make_env(cd, cfg)
    trainer = make_trainer(env, cfg)
    buf = trainer.replay
    assert buf is not None and len(buf) > 5
    g = env.adjacency(buf.x)
    assert bool(is_dag(g).all()) and int(g.sum(1).max()) <= 2
    assert torch.allclose(buf.log_reward, env.log_reward(buf.x).double(), atol=1e-3)
    trainer.train_step()  # a replayed batch trains
    assert make_trainer(env, PosteriorConfig(max_parents=2, hidden=16)).replay is None


def test_cli_log_and_standardize(tmp_path):
    import json

    from gfncore.causal.cli import main
    from gfncore.causal.data import save_csv

    cd = sample_erdos_renyi_sem(4, 60, seed=0)
    cd.data = cd.data.exp()  # positive, multiplicative noise: what --log is for
    path = tmp_path / "pos.csv"
    save_csv(cd, path)
    out = tmp_path / "run"
    assert main(["--data", str(path), "--log", "--standardize", "--method", "mcmc", "--mcmc-steps", "20000",
                 "--samples", "100", "--out", str(out), "--threads", "1"]) == 0
    summ = json.loads((out / "summary.json").read_text())
    assert summ["data"]["log"] and summ["data"]["standardize"]
    cd.data[0, 0] = -1.0
    save_csv(cd, path)
    assert main(["--data", str(path), "--log", "--method", "mcmc", "--out", str(tmp_path / "bad")]) == 2
