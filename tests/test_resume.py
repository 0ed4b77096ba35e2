"""Runs never lose work: an interrupted run plus its resume ends bitwise where the uninterrupted run
ends (policy, optimizer, random stream, step count, replay buffer, modes, history); checkpoints
are atomic, self-describing and load with weights_only=True; SIGINT / SIGTERM stop a CLI run
after its current step with a checkpoint, a partial summary and exit code 130.

Bitwise equality is legitimate here: both runs execute the same code path on the same batch
shapes at the same thread count, so every float operation is the same."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import gfncore
from gfncore.envs import HyperGrid
from gfncore.nn import MLPPolicy

CASES = {
    # replay (prioritized) + exploration: the buffer and the random stream must both come back
    "tb-replay": dict(loss="tb", pb="uniform", kw=dict(epsilon=0.1, replay_fraction=0.5), replay=True),
    # learned P_B and a flow head; SubTB's lambda from the config
    "subtb-learned-pb": dict(loss="subtb", pb="learned", kw=dict(loss_options={"lam": 0.8}), replay=False),
    # the objective's running state (ZVar's batch log Z)
    "zvar": dict(loss="zvar", pb="uniform", kw=dict(temperature=1.5), replay=False),
}


def _trainer(env, case, init_seed=0):
    c = CASES[case]
    torch.manual_seed(init_seed)
    policy = MLPPolicy(env, hidden=32, layers=2, pb=c["pb"], flow=c["loss"] in ("db", "subtb"))
    replay = gfncore.ReplayBuffer(env, 40, prioritized=True) if c["replay"] else None
    return gfncore.Trainer(env, policy, loss=c["loss"], batch_size=12, seed=7, replay=replay, **c["kw"])


def _assert_same_run(a, b):
    sa, sb = a.policy.state_dict(), b.policy.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"policy {k} differs"
    oa, ob = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    for i in oa:
        for k in oa[i]:
            assert torch.equal(oa[i][k], ob[i][k]), f"optimizer state {i}/{k} differs"
    assert torch.equal(a.generator.get_state(), b.generator.get_state())
    assert a.step_count == b.step_count
    assert a.modes_found == b.modes_found and a._modes == b._modes
    if a.replay is not None:
        assert torch.equal(a.replay.x, b.replay.x) and torch.equal(a.replay.log_reward, b.replay.log_reward)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in a.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in b.history]
    assert a.log_z == b.log_z


@pytest.mark.parametrize("case", list(CASES))
def test_interrupted_run_plus_resume_equals_uninterrupted_run(tmp_path, case):
    env = HyperGrid(2, 5)
    full = _trainer(env, case)
    full.fit(14, progress=False, eval_every=4)

    first = _trainer(env, case)
    path = tmp_path / "run" / "checkpoint.pt"
    step = first.train_step

    def step_then_stop():  # what a SIGINT during step 6 does: stop after it
        rec = step()
        if first.step_count == 6:
            first.request_stop()
        return rec

    first.train_step = step_then_stop
    first.fit(14, progress=False, eval_every=4, checkpoint_every=4, checkpoint_path=str(path))
    assert first.step_count == 6 and torch.load(path, weights_only=True)["state"]["step"] == 4
    first.save(str(path))
    del first
    # a fresh process would see only the file: rebuild everything from it
    env2, policy2, resumed = gfncore.load(str(path))
    assert env2.to_config() == env.to_config() and resumed.step_count == 6
    resumed.fit(8, progress=False, eval_every=4)
    _assert_same_run(full, resumed)
    # and the runs continue identically from here
    ta, tb = full.sample_trajectories(), resumed.sample_trajectories()
    assert torch.equal(ta.states, tb.states) and torch.equal(ta.offsets, tb.offsets)


def test_checkpoint_describes_itself_and_loads_weights_only(tmp_path):
    env = HyperGrid(3, 4, R0=0.05)
    t = _trainer(env, "tb-replay")
    t.fit(3, progress=False)
    path = t.save(str(tmp_path / "c.pt"))
    ck = torch.load(path, weights_only=True)  # raises if anything but tensors / plain containers is inside
    assert ck["env"] == {"class": "gfncore.envs.hypergrid:HyperGrid", "name": "hypergrid",
                         "params": {"ndim": 3, "height": 4, "R0": 0.05, "R1": 0.5, "R2": 2.0}}
    assert ck["config"]["loss"] == "tb" and ck["config"]["batch_size"] == 12 and ck["config"]["epsilon"] == 0.1
    assert ck["config"]["replay_capacity"] == 40 and ck["config"]["prioritized"] is True
    assert ck["policy"] == {"class": "MLPPolicy", "hidden": 32, "layers": 2, "pb": "uniform", "flow": False,
                            "context_dim": 0, "conditioning": "concat"}
    assert ck["versions"] == {"gfncore": gfncore.__version__, "torch": str(torch.__version__)}
    assert ck["state"]["step"] == 3 and ck["state"]["replay"]["x"].shape[1] == 3
    env2, policy2, t2 = gfncore.load(path)
    assert isinstance(env2, HyperGrid) and (env2.ndim, env2.height, env2.R0) == (3, 4, 0.05)
    assert t2.config == t.config and t2.step_count == 3
    # a user environment that cannot be rebuilt from a config is passed in; a different one is refused
    _, _, t3 = gfncore.load(path, env=env)
    assert t3.env is env
    with pytest.raises(ValueError, match="trained on"):
        gfncore.load(path, env=HyperGrid(3, 5))


def test_checkpoint_of_a_user_environment_needs_the_environment(tmp_path):
    class Mine(HyperGrid):  # a user subclass: its config cannot say what it changed
        def log_reward(self, states):
            return super().log_reward(states) * 2

    env = Mine(2, 4)
    t = _trainer(env, "zvar")
    t.fit(2, progress=False)
    path = t.save(str(tmp_path / "m.pt"))
    assert torch.load(path, weights_only=True)["env"] is None
    with pytest.raises(ValueError, match="env=") as e:
        gfncore.load(path)
    assert "Mine(ndim=2" in str(e.value)  # names the environment it needs
    _, _, t2 = gfncore.load(path, env=env)
    assert t2.step_count == 2


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    env = HyperGrid(2, 4)
    t = _trainer(env, "tb-replay")
    t.fit(2, progress=False)
    path = tmp_path / "c.pt"
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append(("replace", os.path.dirname(a))), real_replace(a, b))[1])
    t.save(str(path))
    assert calls[0] == "fsync" and calls[1] == ("replace", str(tmp_path))  # synced, then renamed in place
    good = path.read_bytes()

    def torn(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn)
    t.fit(1, progress=False)
    with pytest.raises(OSError, match="disk full"):
        t.save(str(path))
    assert path.read_bytes() == good  # the previous checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # and no temporary file is left


def test_resume_refuses_a_checkpoint_of_another_objective(tmp_path):
    env = HyperGrid(2, 4)
    t = _trainer(env, "zvar")
    t.fit(1, progress=False)
    t.save(str(tmp_path / "z.pt"))
    other = _trainer(env, "tb-replay")
    with pytest.raises(ValueError, match="zvar"):
        other.resume(str(tmp_path / "z.pt"))


# -- the command line: signals, partial summaries and --resume ----------------------------------
def _env():
    env = dict(os.environ)
    pkg_parent = str(Path(gfncore.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


ARGS = ["--height", "5", "--hidden", "32", "--batch-size", "16", "--epsilon", "0.05", "--replay-capacity", "64",
        "--no-progress", "--threads", "1", "--checkpoint-every", "5"]


def _run(tmp_path, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "gfncore", "train", "hypergrid", *args], capture_output=True,
                          text=True, env=_env(), timeout=timeout, cwd=str(tmp_path))


def _interrupt(tmp_path, out: Path, sig: int) -> subprocess.CompletedProcess:
    """Starts a long run, sends `sig` once it has written its first checkpoint, waits for it."""
    p = subprocess.Popen([sys.executable, "-m", "gfncore", "train", "hypergrid", *ARGS, "--steps", "100000",
                          "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                         cwd=str(tmp_path))
    deadline = time.time() + 240
    while not (out / "checkpoint.pt").exists():
        assert p.poll() is None, p.communicate()[1][-3000:]
        assert time.time() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)
    p.send_signal(sig)
    so, se = p.communicate(timeout=240)
    return subprocess.CompletedProcess(p.args, p.returncode, so, se)


def test_sigint_checkpoints_and_resume_continues_bitwise(tmp_path):
    out = tmp_path / "interrupted"
    r = _interrupt(tmp_path, out, signal.SIGINT)
    assert r.returncode == 130, r.stderr[-3000:]
    assert "SIGINT" in r.stderr and "--resume" in r.stderr and "Traceback" not in r.stderr
    s = json.loads((out / "summary.json").read_text())
    k = s["steps"]
    assert s["partial"] is True and s["stopped_by"] == "SIGINT" and 5 <= k < 100000
    assert torch.load(out / "checkpoint.pt", weights_only=True)["state"]["step"] == k
    # resume to k + 12 steps, and compare with a run that was never interrupted
    total = str(k + 12)
    r2 = _run(tmp_path, *ARGS, "--steps", total, "--out", str(out), "--resume")
    assert r2.returncode == 0, r2.stderr[-3000:]
    r3 = _run(tmp_path, *ARGS, "--steps", total, "--out", str(tmp_path / "straight"))
    assert r3.returncode == 0, r3.stderr[-3000:]
    a = torch.load(out / "checkpoint.pt", weights_only=True)["state"]
    b = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["state"]
    assert a["step"] == b["step"] == k + 12
    for name in b["policy"]:
        assert torch.equal(a["policy"][name], b["policy"][name]), name
    assert torch.equal(a["generator"], b["generator"])
    assert torch.equal(a["replay"]["x"], b["replay"]["x"])
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (out, tmp_path / "straight"))
    assert sa["partial"] is False and sa["l1"] == sb["l1"] and sa["log_z"] == sb["log_z"]
    # a resume may not change what the steps compute
    r4 = _run(tmp_path, *ARGS, "--steps", total, "--out", str(out), "--resume", "--lr", "0.5")
    assert r4.returncode == 2 and "--lr" in r4.stderr and len(r4.stderr.strip().splitlines()) == 1


def test_sigterm_checkpoints_and_exits_130(tmp_path):
    out = tmp_path / "terminated"
    r = _interrupt(tmp_path, out, signal.SIGTERM)
    assert r.returncode == 130, r.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["partial"] is True and s["stopped_by"] == "SIGTERM"
    _, _, t = gfncore.load(str(out / "checkpoint.pt"))
    assert t.step_count == s["steps"] >= 5
