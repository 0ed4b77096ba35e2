"""A run folder has one writer, every command that writes one exits 2 on bad input, and a write
that fails (full disk, read-only folder) is one line naming the path and the OS error, leaving the
last good files whole (issue 15)."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import pytest
import torch

import gfncore
from gfncore import cli
from gfncore.runfolder import LOCK_NAME, RunFolder, atomic_open, holder, remove_stale_temporaries

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = ["train", "hypergrid", "--ndim", "2", "--height", "4", "--steps", "6", "--batch-size", "8", "--hidden", "16",
         "--threads", "1", "--no-progress"]
BAYES = ["bayes", "--model", "linear", "--n-weights", "2", "--K", "3", "--n-examples", "20", "--n-test", "10",
         "--steps", "5", "--samples", "50", "--evidence-samples", "0", "--threads", "1", "--no-progress"]
CAUSAL = ["causal", "--synthetic", "d=3,n=30,seed=0", "--steps", "4", "--batch-size", "8", "--hidden", "16",
          "--samples", "20", "--threads", "1", "--no-progress"]
DESIGN = ["design", "--synthetic", "d=3,n=30,seed=0", "--budget", "1", "--posterior", "exact", "--no-progress"]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("argv", [TRAIN, BAYES, CAUSAL, DESIGN], ids=["train", "bayes", "causal", "design"])
def test_a_second_writer_is_refused_naming_the_holder(tmp_path, capsys, argv):
    out = str(tmp_path / "run")
    with RunFolder().acquire(out):
        assert holder(out) == os.getpid()
        assert cli.main([*argv, "--out", out]) == 2
        line = _one_line(capsys)
        assert f"process {os.getpid()}" in line and "--out" in line
        assert cli.main([*argv, "--out", out, "--overwrite"]) == 2  # --overwrite cannot take it either
        assert f"process {os.getpid()}" in _one_line(capsys)
    assert holder(out) is None  # released


def test_the_lock_is_across_processes_and_released_when_the_holder_dies(tmp_path, capsys):
    out = str(tmp_path / "run")
    code = (f"import sys, time; sys.path.insert(0, {ROOT!r}); from gfncore.runfolder import RunFolder; "
            f"RunFolder().acquire({out!r}); print('locked', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        assert holder(out) == p.pid
        assert cli.main([*TRAIN, "--out", out]) == 2
        assert f"process {p.pid}" in _one_line(capsys)
    finally:
        p.kill()
        p.wait()
    assert holder(out) is None  # the kernel dropped it with the process
    assert cli.main([*TRAIN, "--out", out]) == 0


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "run"
    out.mkdir()
    stale = out / f".checkpoint.pt.tmp-{dead.pid}"
    live = out / f".checkpoint.pt.tmp-{os.getppid()}"  # a running process's file is left alone
    stale.write_bytes(b"half a checkpoint")
    live.write_bytes(b"someone's")
    assert cli.main([*TRAIN, "--out", str(out)]) == 0
    assert not stale.exists() and live.exists()
    assert remove_stale_temporaries(str(out)) == []


def test_atomic_open_keeps_the_old_file_on_an_error(tmp_path):
    path = tmp_path / "t.csv"
    with atomic_open(str(path), "w", newline="") as f:
        f.write("a,b\n1,2\n")
    with pytest.raises(RuntimeError):
        with atomic_open(str(path)) as f:
            f.write("torn")
            raise RuntimeError("stop")
    assert path.read_text() == "a,b\n1,2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]


def _limited(args, cwd, fsize):
    """A gfncore command run with `ulimit -f` (bytes): a disk that fills up."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "gfncore", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, preexec_fn=limit)


def test_a_full_disk_keeps_the_last_good_checkpoint(tmp_path):
    out = str(tmp_path / "run")
    assert cli.main([*TRAIN, "--out", out, "--hidden", "64"]) == 0
    ckpt = os.path.join(out, "checkpoint.pt")
    before = open(ckpt, "rb").read()
    r = _limited([*TRAIN, "--hidden", "64", "--out", out, "--resume", "--steps", "12"], tmp_path,
                 fsize=len(before) // 2)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "checkpoint.pt" in err[0] and "File too large" in err[0], r.stderr
    assert open(ckpt, "rb").read() == before
    assert gfncore.load(ckpt)[2].step_count == 6
    assert not [f for f in os.listdir(out) if ".tmp-" in f]


def test_bayes_on_a_full_disk_leaves_no_torn_csv(tmp_path):
    out = tmp_path / "b"
    r = _limited([*BAYES, "--n-test", "3000", "--out", str(out)], tmp_path, fsize=20_000)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "File too large" in err[0] and str(out) in err[0], r.stderr
    pred = out / "predictive.csv"
    assert not pred.exists() or len(pred.read_text().splitlines()) == 3001


def test_a_read_only_folder_is_one_line(tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "run")
    real = os.replace

    def refuse(src, dst, *a, **k):  # root ignores chmod, so the folder refuses the rename itself
        if str(dst).startswith(out):
            raise PermissionError(13, "Permission denied", src)
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", refuse)
    for argv in (TRAIN, BAYES):
        assert cli.main([*argv, "--out", out, "--overwrite"]) == 2
        line = _one_line(capsys)
        assert "Permission denied" in line and out in line
        assert not [f for f in os.listdir(out) if ".tmp-" in f]


def test_bayes_refuses_to_overwrite_and_stops_cleanly(tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "b")
    assert cli.main([*BAYES, "--out", out]) == 0
    capsys.readouterr()
    assert cli.main([*BAYES, "--out", out]) == 2
    assert "--overwrite" in _one_line(capsys)
    assert cli.main([*BAYES, "--out", out, "--overwrite"]) == 0
    capsys.readouterr()
    for bad in (["--shuffle", "foo"], ["--shuffle", "foo", "--minibatch", "5"]):
        assert cli.main([*BAYES, "--out", str(tmp_path / "c"), *bad]) == 2
        assert "shuffle" in _one_line(capsys)
    from gfncore.bayes.posterior import PosteriorSampler

    def interrupted(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(PosteriorSampler, "fit", interrupted)
    assert cli.main([*BAYES, "--out", str(tmp_path / "d")]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "interrupted" in err


def test_causal_resume_refuses_changed_training_flags(tmp_path, capsys):
    out = str(tmp_path / "c")
    assert cli.main([*CAUSAL, "--out", out]) == 0
    capsys.readouterr()
    assert cli.main([*CAUSAL, "--out", out, "--resume", "--steps", "8", "--lr-final", "0.5"]) == 2
    assert "lr_final" in _one_line(capsys)
    assert cli.main([*CAUSAL, "--out", out, "--resume", "--steps", "8"]) == 0
    with open(os.path.join(out, "summary.json")) as f:
        assert json.load(f)["metrics"]["steps"] == 8
    assert os.path.exists(os.path.join(out, LOCK_NAME))
