"""The command line: `gfncore train hypergrid ...` writes metrics.jsonl, summary.json and, in 2-D,
distribution.png."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gfncore
from gfncore import cli

SUMMARY_KEYS = {"l1", "jsd", "log_z", "true_log_z", "steps", "iters_per_s"}


def _check_outputs(out: Path, steps: int, ndim: int, eval_every: int):
    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= summary.keys()
    assert summary["steps"] == steps
    assert 0.0 <= summary["l1"] <= 2.0 and 0.0 <= summary["jsd"] <= 0.7
    assert summary["iters_per_s"] > 0
    env = gfncore.envs.HyperGrid(ndim, summary["config"]["height"])
    assert summary["true_log_z"] == pytest.approx(env.true_log_z())
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(eval_every, steps + 1, eval_every))
    assert lines[-1]["l1"] == pytest.approx(summary["l1"])
    assert (out / "checkpoint.pt").is_file()
    png = out / "distribution.png"
    if ndim == 2:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert not png.exists()
    return summary


def test_cli_in_process_2d(tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli.main(["train", "hypergrid", "--steps", "30", "--hidden", "32", "--batch-size", "16", "--out", str(out),
                   "--no-progress"])
    assert rc == 0
    _check_outputs(out, steps=30, ndim=2, eval_every=3)
    printed = capsys.readouterr().out
    assert "exact L1" in printed and "log Z" in printed


def test_cli_in_process_3d_has_no_picture(tmp_path):
    out = tmp_path / "run3"
    rc = cli.main(["train", "hypergrid", "--ndim", "3", "--height", "4", "--steps", "8", "--eval-every", "4",
                   "--hidden", "16", "--batch-size", "8", "--out", str(out), "--no-progress"])
    assert rc == 0
    s = _check_outputs(out, steps=8, ndim=3, eval_every=4)
    assert s["config"]["ndim"] == 3 and s["config"]["hidden"] == 16


def test_cli_rerun_replaces_metrics(tmp_path):
    out = tmp_path / "again"
    args = ["train", "hypergrid", "--steps", "4", "--eval-every", "2", "--hidden", "8", "--batch-size", "4",
            "--out", str(out), "--no-progress"]
    cli.main(args)
    cli.main(args)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_cli_flags_come_from_the_config_dataclasses():
    from dataclasses import fields

    from gfncore.train import TrainConfig

    ns = cli.build_parser().parse_args(["train", "hypergrid"])
    for f in fields(TrainConfig):
        assert hasattr(ns, f.name), f.name
    assert ns.steps == 1000 and ns.loss == "tb" and ns.ndim == 2 and ns.height == 8


def test_cli_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["train", "nosuchenv"])
    with pytest.raises(SystemExit):
        cli.main(["train", "hypergrid", "--steps", "many"])
    with pytest.raises(ValueError, match="height"):
        cli.main(["train", "hypergrid", "--height", "1", "--steps", "1", "--out", str(tmp_path / "x"), "--no-progress"])
    with pytest.raises(ValueError, match="unknown loss"):
        cli.main(["train", "hypergrid", "--loss", "nope", "--steps", "1", "--out", str(tmp_path / "y"), "--no-progress"])


def test_cli_subprocess_smoke(tmp_path):
    out = tmp_path / "sub"
    env = dict(os.environ)
    # the package's parent directory, so the subprocess imports this same gfncore (installed or not)
    pkg_parent = str(Path(gfncore.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [sys.executable, "-m", "gfncore", "train", "hypergrid", "--steps", "200", "--hidden", "32",
           "--out", str(out), "--no-progress", "--threads", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "exact L1" in r.stdout
    _check_outputs(out, steps=200, ndim=2, eval_every=20)
    v = subprocess.run([sys.executable, "-m", "gfncore", "--version"], capture_output=True, text=True, env=env,
                       timeout=120, cwd=str(tmp_path))
    assert v.returncode == 0 and gfncore.__version__ in v.stdout
