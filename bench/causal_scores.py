"""Throughput of the causal-graph score: local scores and delta scores per second, compiled (cold
cache, warm cache, no cache) against the plain-numpy reference in the same run.

    python -m bench.causal_scores                   # d = 20 and 50, BGe, N = 100, 1 thread
    python -m bench.causal_scores --threads 2 --kind lingauss

Workload: the families a DAG GFlowNet asks for. Graphs are grown from the empty graph by adding
uniformly random legal edges (a uniform-policy rollout, at most `--max-parents` parents per node),
and every step queries the delta score of the edge it adds; the local-score rows are the
(node, parent set) families of those states. Families repeat across trajectories the way they do
in training, so the warm-cache rate is what a training run sees once the cache is populated.

Baselines: "numpy" is gfncore.causal.ReferenceScore (BGe: per-node scatter matrices precomputed,
two slogdets per family, like DAG-GFlowNet's bge_score.py; linear-Gaussian: the dense N x N
density). "numpy + dict" adds a Python dict keyed by (node, parent tuple), the peer's lru_cache.
Delta scores are timed in the form a DAG environment asks them (target, its parent mask, source:
CausalScore::log_score_delta), and once from whole [B, d, d] adjacency tensors, whose column reads
dominate at d = 50. Correctness is checked before anything is timed.
"""
from __future__ import annotations

import argparse
import time

import torch


def rollout_queries(d: int, n_traj: int, max_parents: int, gen: torch.Generator):
    """States and the edge added at each step of n_traj uniform random DAG rollouts."""
    states, src, dst = [], [], []
    for _ in range(n_traj):
        a = torch.zeros(d, d, dtype=torch.bool)
        reach = torch.eye(d, dtype=torch.bool)  # reach[u, v]: u reaches v
        length = int(torch.randint(1, 3 * d, (1,), generator=gen))
        for _ in range(length):
            ok = ~a & ~reach.T & (a.sum(0) < max_parents)[None, :]
            cand = ok.flatten().nonzero().flatten()
            if cand.numel() == 0:
                break
            e = int(cand[torch.randint(cand.numel(), (1,), generator=gen)])
            i, j = divmod(e, d)
            states.append(a.clone())
            src.append(i)
            dst.append(j)
            a[i, j] = True
            reach |= reach[:, i:i + 1] & reach[j:j + 1, :]
    return torch.stack(states), torch.tensor(src), torch.tensor(dst)


def timeit(fn, repeats: int) -> float:
    """Best seconds of fn() over repeats: on a shared machine the minimum is the estimate least
    disturbed by other processes (every implementation is timed the same way)."""
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def run(d: int, kind: str, n_rows: int, n_traj: int, max_parents: int, ref_queries: int, repeats: int) -> list[dict]:
    from gfncore.causal import CausalScore, ReferenceScore, sample_erdos_renyi_sem

    data = sample_erdos_renyi_sem(d, n_rows, seed=0)
    if kind == "lingauss":
        data.data -= data.data.mean(0)
    gen = torch.Generator().manual_seed(0)
    G, I, J = rollout_queries(d, n_traj, max_parents, gen)
    B = G.shape[0]
    nodes, parents = J, G[torch.arange(B), :, J].contiguous()  # the target's family before the edge
    s = CausalScore(data, kind)
    ref = ReferenceScore(data, kind)

    # Correctness first.
    k = min(ref_queries, B)
    want = torch.tensor([ref.delta_score(G[b], int(I[b]), int(J[b])) for b in range(min(k, 50))], dtype=torch.float64)
    got = s.delta_score(G[:want.shape[0]], I[:want.shape[0]], J[:want.shape[0]])
    assert torch.allclose(got, want, rtol=1e-8, atol=1e-8), float((got - want).abs().max())

    rows = []

    def record(what, impl, n, seconds, **extra):
        rows.append(dict(d=d, kind=kind, what=what, impl=impl, n=n, per_s=n / seconds, us=1e6 * seconds / n, **extra))

    def cold_local():
        s.clear_cache()
        s.local_score(nodes, parents)

    def cold_delta():
        s.clear_cache()
        s.delta_score_from_parents(J, parents, I)

    record("local", "compiled, cold cache", B, timeit(cold_local, repeats))
    s.clear_cache()
    s.local_score(nodes, parents)
    record("local", "compiled, warm cache", B, timeit(lambda: s.local_score(nodes, parents), repeats))
    record("local", "compiled, no cache", B, timeit(lambda: s.local_score(nodes, parents, use_cache=False), repeats))
    record("delta", "compiled, cold cache", B, timeit(cold_delta, repeats))
    st_cold = s.cache_stats()
    s.delta_score_from_parents(J, parents, I)
    record("delta", "compiled, warm cache", B, timeit(lambda: s.delta_score_from_parents(J, parents, I), repeats))
    record("delta", "compiled, warm, from [B, d, d] graphs", B, timeit(lambda: s.delta_score(G, I, J), repeats))
    s.clear_cache()
    s.delta_score_from_parents(J, parents, I)
    st = s.cache_stats()
    distinct = st["entries"]

    fam = [(int(nodes[b]), parents[b].nonzero().flatten().tolist()) for b in range(k)]
    record("local", "numpy", k, timeit(lambda: [ref.local_score(j, p) for j, p in fam], 3))
    dels = [(G[b], int(I[b]), int(J[b])) for b in range(k)]
    record("delta", "numpy", k, timeit(lambda: [ref.delta_score(g, i, j) for g, i, j in dels], 3))

    cache: dict = {}

    def dict_local(j, p):
        key = (j, tuple(p))
        v = cache.get(key)
        if v is None:
            v = cache[key] = ref.local_score(j, p)
        return v

    fam_all = [(int(nodes[b]), parents[b].nonzero().flatten().tolist()) for b in range(B)]
    dict_local_all = lambda: [dict_local(j, p) for j, p in fam_all]  # noqa: E731
    dict_local_all()  # warm
    record("local", "numpy + dict, warm", B, timeit(dict_local_all, repeats))
    for r in rows:
        r["distinct_families"] = distinct
        r["queries"] = B
    next(r for r in rows if r["what"] == "delta")["hit_rate_cold"] = (
        st_cold["hits"] / max(st_cold["hits"] + st_cold["misses"], 1))
    return rows


def per_parent_count(d: int, kind: str, n_rows: int, repeats: int, ks=(0, 1, 2, 4, 8, 16), B: int = 20000):
    """ns per local score against the number of parents k: computed (no cache) vs a warm lookup.
    Computing costs O(k^3); a lookup does not grow with k."""
    from gfncore.causal import CausalScore, sample_erdos_renyi_sem

    data = sample_erdos_renyi_sem(d, n_rows, seed=0)
    s = CausalScore(data, kind)
    gen = torch.Generator().manual_seed(1)
    rows = []
    for k in ks:
        if k >= d:
            continue
        nodes = torch.randint(d, (B,), generator=gen)
        score = torch.rand(B, d, generator=gen)
        score[torch.arange(B), nodes] = -1.0  # never its own parent
        par = torch.zeros(B, d, dtype=torch.bool)
        par.scatter_(1, score.topk(k, dim=1).indices, True)
        s.clear_cache()
        s.local_score(nodes, par)
        rows.append((k, 1e9 * timeit(lambda: s.local_score(nodes, par, use_cache=False), repeats) / B,
                     1e9 * timeit(lambda: s.local_score(nodes, par), repeats) / B))
    return rows


def main(argv=None):
    import gfncore

    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[20, 50])
    ap.add_argument("--kind", default="bge", choices=["bge", "lingauss"])
    ap.add_argument("--rows", type=int, default=100, help="samples N in the data")
    ap.add_argument("--trajectories", type=int, default=400)
    ap.add_argument("--max-parents", type=int, default=6)
    ap.add_argument("--ref-queries", type=int, default=2000, help="queries timed for the numpy reference")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    gfncore._C.set_num_threads(a.threads)
    import os

    print(f"torch {torch.__version__}, {a.threads} thread(s), {a.kind}, N = {a.rows}, "
          f"{a.trajectories} uniform rollouts, max {a.max_parents} parents, best of {a.repeats} "
          f"(numpy: best of 3 over {a.ref_queries} queries), load average {os.getloadavg()[0]:.1f}")
    print("| d | query | implementation | queries/s | us/query | vs numpy |")
    print("|---:|---|---|---:|---:|---:|")
    for d in a.dims:
        rows = run(d, a.kind, a.rows, a.trajectories, a.max_parents, a.ref_queries, a.repeats)
        base = {r["what"]: r["per_s"] for r in rows if r["impl"] == "numpy"}
        for r in rows:
            print(f"| {d} | {r['what']} | {r['impl']} | {r['per_s']:,.0f} | {r['us']:.3f} | "
                  f"{r['per_s'] / base[r['what']]:.0f}x |")
        r0 = rows[0]
        cold = next(r for r in rows if r.get("hit_rate_cold") is not None)
        print(f"|   | d = {d}: {r0['queries']} queries over {r0['distinct_families']} distinct families; "
              f"cold-cache delta pass hit rate {cold['hit_rate_cold']:.2f} | | | | |")
    d = max(a.dims)
    print(f"\nLocal score cost against the parent count k (d = {d}, random families, ns per query):")
    print("| k | computed (no cache) | warm cache |")
    print("|---:|---:|---:|")
    for k, t_no, t_warm in per_parent_count(d, a.kind, a.rows, a.repeats):
        print(f"| {k} | {t_no:.0f} | {t_warm:.0f} |")


if __name__ == "__main__":
    main()
