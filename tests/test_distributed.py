"""Data-parallel training on torch.distributed (gloo, 2 processes on the CPU): the same
parameters as one process at the same global batch and seed, clean failures."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import gfncore as gfn

sys.path.insert(0, str(Path(__file__).parent))
from dist_worker import make  # noqa: E402

WORKER = str(Path(__file__).parent / "dist_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(spec: dict, world: int = 2, timeout: float = 240):
    """Starts `world` ranks of dist_worker.py with torchrun's env:// variables; returns their
    (returncode, stderr) and the elapsed time."""
    port = _free_port()
    pkg = str(Path(gfn.__file__).resolve().parent.parent)
    procs = []
    t0 = time.perf_counter()
    for r in range(world):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(r), WORLD_SIZE=str(world),
                   LOCAL_RANK=str(r), LOCAL_WORLD_SIZE=str(world), OMP_NUM_THREADS="1",
                   PYTHONPATH=pkg + os.pathsep + os.environ.get("PYTHONPATH", ""))
        procs.append(subprocess.Popen([sys.executable, WORKER, json.dumps(spec)], env=env, stderr=subprocess.PIPE,
                                      stdout=subprocess.DEVNULL, text=True))
    out = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError("a rank hung past the test's timeout")
        out.append((p.returncode, err))
    return out, time.perf_counter() - t0


def _single(loss: str, batch: int, steps: int, l1: bool = False):
    torch.set_num_threads(1)
    env, policy, kw = make(loss, batch)
    trainer = gfn.Trainer(env, policy, **kw)
    for _ in range(steps):
        trainer.train_step()
    return policy.state_dict(), (trainer.evaluate()["l1"] if l1 else None)


@pytest.mark.slow
def test_two_ranks_train_exactly_like_one_process(tmp_path):
    runs = [{"name": f"{loss}-{batch}", "loss": loss, "batch": batch, "steps": 5}
            for loss, batch in [("tb", 16), ("tb", 7), ("db", 16), ("subtb", 16), ("fm", 16), ("zvar", 16),
                                ("mdb", 9)]]
    runs.append({"name": "tb-long", "loss": "tb", "batch": 16, "steps": 300, "l1": True})
    out = str(tmp_path / "rank0.json")
    res, _ = _launch({"out": out, "runs": runs})
    assert all(rc == 0 for rc, _ in res), "\n".join(err[-2000:] for _, err in res)
    got = json.loads(Path(out).read_text())
    for run in runs:
        want, l1 = _single(run["loss"], run["batch"], run["steps"], l1=run.get("l1", False))
        for k, v in want.items():
            # the same update up to float32 reduction order (two partial sums instead of one)
            torch.testing.assert_close(torch.tensor(got[run["name"]][k], dtype=v.dtype), v, rtol=1e-4, atol=2e-5,
                                       msg=f"{run['name']}: {k}")
        if l1 is not None:
            assert abs(got[run["name"] + ":l1"] - l1) < 0.01, (got[run["name"] + ":l1"], l1)
            assert l1 < 0.1


def test_shards_cover_the_batch():
    for B in (1, 7, 16, 33):
        for W in (1, 2, 3, 5):
            if B < W:
                continue
            shares = [gfn.distributed.shard(B, gfn.distributed.Topology(r, W)) for r in range(W)]
            ids = [i for first, n in shares for i in range(first, first + n)]
            assert ids == list(range(B))
            assert max(n for _, n in shares) - min(n for _, n in shares) <= 1


def test_a_dead_rank_stops_the_others_with_a_clear_message(tmp_path):
    spec = {"out": str(tmp_path / "x.json"), "timeout": 30,
            "runs": [{"name": "tb", "loss": "tb", "batch": 16, "steps": 50, "die_at": 2}]}
    res, elapsed = _launch(spec, timeout=120)
    (rc0, err0), (rc1, _) = res
    assert rc1 == 3 and rc0 != 0
    assert "Another rank probably died" in err0, err0[-3000:]
    assert elapsed < 100


def test_ranks_that_disagree_on_the_config_stop_at_start_up(tmp_path):
    spec = {"out": str(tmp_path / "x.json"),
            "runs": [{"name": "tb", "loss": "tb", "batch": 16, "steps": 3, "lr": 1e-3, "lr_rank1": 2e-3}]}
    res, _ = _launch(spec, timeout=120)
    for rc, err in res:
        assert rc != 0
        assert "ranks disagree on their configuration" in err and "lr" in err, err[-3000:]


def test_distributed_true_without_a_launcher_says_how_to_launch(monkeypatch):
    for k in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    env, policy, kw = make("tb", 16)
    with pytest.raises(RuntimeError, match="torchrun"):
        gfn.Trainer(env, policy, distributed=True, **kw)


def _torchrun(args: list[str], cwd, world: int = 2, timeout: float = 240):
    """`torchrun --nproc_per_node world -m gfncore ...` as a user types it."""
    pkg = str(Path(gfn.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=pkg + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(world), "--master_port",
           str(_free_port()), "-m", "gfncore", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


SMALL = ["train", "hypergrid", "--height", "6", "--hidden", "16", "--batch-size", "16", "--no-progress",
         "--threads", "1"]


def test_torchrun_cli_rank_zero_writes_and_resume_rules(tmp_path):
    from gfncore import cli

    # with replay: one summary (rank 0's), world_size recorded; resuming on 1 process is refused
    out = tmp_path / "replay"
    r = _torchrun(SMALL + ["--steps", "12", "--replay-capacity", "500", "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("exact L1 = ") == 1, r.stdout
    assert json.loads((out / "summary.json").read_text())["world_size"] == 2
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["runtime"]["world_size"] == 2 and len(ck["state"]["replay_per_rank"]) == 2
    assert cli.main(SMALL + ["--steps", "20", "--replay-capacity", "500", "--resume", "--out", str(out)]) == cli.USAGE

    # without replay a run moves between world sizes: 2 ranks for 10 steps, then 1 process for 10
    # more, equals 1 process for 20 steps
    half, whole = tmp_path / "half", tmp_path / "whole"
    r = _torchrun(SMALL + ["--steps", "10", "--out", str(half)], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert cli.main(SMALL + ["--steps", "20", "--resume", "--out", str(half)]) == 0
    assert cli.main(SMALL + ["--steps", "20", "--out", str(whole)]) == 0
    a = torch.load(half / "checkpoint.pt", weights_only=True)["state"]["policy"]
    b = torch.load(whole / "checkpoint.pt", weights_only=True)["state"]["policy"]
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
