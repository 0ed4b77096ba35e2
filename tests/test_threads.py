"""Thread defaults: one count per run, chosen from the cores this process may use and the
machine's load, recorded in the checkpoint and reused by --resume (torch's float results depend
on the thread count, so a resume at another count would not continue the run bit for bit)."""
from __future__ import annotations

import json
import os

import pytest
import torch

import gfncore
from gfncore import cli


@pytest.mark.parametrize("cores,load,expected", [(2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 6.0, 1), (1, 0.0, 1),
                                                 (16, 0.0, gfncore.THREAD_CAP), (16, 14.2, 2), (16, 40.0, 1)])
def test_default_threads_leave_busy_cores_alone(monkeypatch, cores, load, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert gfncore.default_threads() == expected


def test_set_num_threads_checks_its_argument(kernel_threads):
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads"):
            gfncore.set_num_threads(bad)
    gfncore.set_num_threads(1)
    assert torch.get_num_threads() == 1 and gfncore._C.num_threads() == 1


def test_openmp_spin_default_is_set_before_torch_loads():
    # set by gfncore/__init__ unless the user chose a wait policy (or imported torch first)
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    # run where the installed package is found first: the source tree (no _C) must not shadow it
    here = str(Path(gfncore.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = here
    code = "import os, gfncore; print(os.environ.get('GOMP_SPINCOUNT'))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, cwd=here)
    assert r.stdout.strip() == "10000", r.stderr
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(env, OMP_WAIT_POLICY="active"), cwd=here)
    assert r.stdout.strip() == "None", r.stderr
    r = subprocess.run([sys.executable, "-c", "import torch; " + code], capture_output=True, text=True, env=env,
                       timeout=120, cwd=here)
    assert r.stdout.strip() == "None", r.stderr


def test_resume_keeps_the_runs_thread_count(tmp_path, kernel_threads):
    out = tmp_path / "run"
    base = ["train", "hypergrid", "--height", "4", "--hidden", "8", "--batch-size", "4", "--no-progress", "--out",
            str(out)]
    assert cli.main(base + ["--steps", "2", "--threads", "2"]) == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["runtime"]["threads"] == 2
    gfncore.set_num_threads(1)
    assert cli.main(base + ["--steps", "4", "--resume"]) == 0
    assert torch.get_num_threads() == 2
    assert json.loads((out / "summary.json").read_text())["threads"] == 2
