"""The command line: `gfncore train ...` writes metrics.jsonl, checkpoint.pt, summary.json and, in
2-D, distribution.png; it refuses to overwrite a run, checks every flag up front (one line on
stderr, exit code 2, nothing written), and `gfncore sample` / `gfncore eval` read a checkpoint."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gfncore
from gfncore import cli

SUMMARY_KEYS = {"l1", "jsd", "log_z", "true_log_z", "steps", "iters_per_s"}
SMALL = ["--hidden", "16", "--batch-size", "8", "--no-progress", "--threads", "1"]


def _check_outputs(out: Path, steps: int, ndim: int, eval_every: int):
    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= summary.keys()
    assert summary["steps"] == steps and summary["partial"] is False
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
                   "--out", str(out), *SMALL])
    assert rc == 0
    s = _check_outputs(out, steps=8, ndim=3, eval_every=4)
    assert s["config"]["ndim"] == 3 and s["config"]["hidden"] == 16


def test_cli_refuses_an_existing_run_then_overwrites_it(tmp_path, capsys):
    out = tmp_path / "again"
    args = ["train", "hypergrid", "--steps", "4", "--eval-every", "2", "--out", str(out), *SMALL]
    assert cli.main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--resume" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched
    (out / "notes.txt").write_text("mine")
    assert cli.main(args + ["--overwrite", "--steps", "6"]) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
    assert json.loads((out / "summary.json").read_text())["steps"] == 6
    assert (out / "notes.txt").read_text() == "mine"  # --overwrite replaces the run's files only


def test_cli_flags_come_from_the_config_dataclasses():
    from dataclasses import fields

    from gfncore.train import TrainConfig

    ns = cli.build_parser().parse_args(["train", "hypergrid"])
    for f in fields(TrainConfig):
        assert hasattr(ns, f.name), f.name
    for f in fields(cli.RunConfig):
        assert hasattr(ns, f.name), f.name
    assert ns.steps == 1000 and ns.loss == "tb" and ns.ndim == 2 and ns.height == 8


BAD = [
    (["hypergrid", "--ndim", "0"], "ndim"),
    (["hypergrid", "--ndim", "2.7"], "--ndim"),
    (["hypergrid", "--height", "-3"], "height"),
    (["hypergrid", "--height", "1"], "height"),
    (["hypergrid", "--loss", "nope"], "--loss"),
    (["hypergrid", "--batch-size", "0"], "--batch-size"),
    (["hypergrid", "--pb", "nope"], "--pb"),
    (["hypergrid", "--epsilon", "2"], "--epsilon"),
    (["hypergrid", "--epsilon", "-0.1"], "--epsilon"),
    (["hypergrid", "--temperature", "0"], "--temperature"),
    (["hypergrid", "--steps", "-5"], "--steps"),
    (["hypergrid", "--steps", "many"], "--steps"),
    (["hypergrid", "--lr", "nan"], "--lr"),
    (["hypergrid", "--lr-log-z", "-1"], "--lr-log-z"),
    (["hypergrid", "--lam", "0"], "--lam"),
    (["hypergrid", "--hidden", "0"], "--hidden"),
    (["hypergrid", "--layers", "0"], "--layers"),
    (["hypergrid", "--replay-capacity", "-1"], "--replay-capacity"),
    (["hypergrid", "--replay-fraction", "1"], "--replay-fraction"),
    (["hypergrid", "--seed", "-1"], "--seed"),
    (["hypergrid", "--seed", str(2**64)], "--seed"),
    (["hypergrid", "--threads", "-2"], "--threads"),
    (["hypergrid", "--eval-every", "-1"], "--eval-every"),
    (["hypergrid", "--checkpoint-every", "-1"], "--checkpoint-every"),
    (["hypergrid", "--device", "tpu"], "--device"),
    (["hypergrid", "--R0", "inf"], "R0"),
    (["hypergrid", "--resume"], "--resume"),
    (["hypergrid", "--resume", "--overwrite"], "--overwrite"),
    (["ising", "--n", "0"], "n"),
    (["ising", "--beta", "-1"], "beta"),
    (["nosuchenv"], "nosuchenv"),
]


@pytest.mark.parametrize("args,names", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_cli_bad_arguments_are_one_line_and_write_nothing(tmp_path, capsys, args, names):
    out = tmp_path / "never"
    rc = cli.main(["train", *args, "--out", str(out), "--no-progress"] + ([] if "--steps" in args else ["--steps", "1"]))
    assert rc == 2
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1, cap.err
    assert names in lines[0] and "Traceback" not in cap.err
    assert not out.exists()
    assert cap.out == ""


def test_cli_out_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("keep")
    assert cli.main(["train", "hypergrid", "--out", str(f), "--steps", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a folder" in err[0]
    assert f.read_text() == "keep"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cli_device_cuda_without_cuda(tmp_path, capsys):
    out = tmp_path / "gpu"
    assert cli.main(["train", "hypergrid", "--device", "cuda", "--out", str(out), "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device" in err[0] and "CUDA" in err[0]
    assert not out.exists()


def test_cli_ising_4x4_reports_log_z_without_enumerating_states(tmp_path, capsys):
    # 3^16 states cannot be enumerated, so there is no exact L1; log Z is still checked
    # against true_log_z(), which sums over the 2^16 configurations
    out = tmp_path / "ising4"
    rc = cli.main(["train", "ising", "--n", "4", "--steps", "4", "--eval-every", "2", "--out", str(out), *SMALL])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert "l1" not in s and s["steps"] == 4
    assert s["true_log_z"] == pytest.approx(gfncore.envs.Ising(4, J=0.2).true_log_z())
    assert s["log_z_error"] == pytest.approx(abs(s["log_z"] - s["true_log_z"]))
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4] and all("log_z_error" in r for r in lines)
    printed = capsys.readouterr().out
    assert "true log Z" in printed and "exact L1 =" not in printed


def test_cli_sample_and_eval_read_a_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "hypergrid", "--height", "5", "--steps", "6", "--out", str(out), *SMALL]) == 0
    summary = json.loads((out / "summary.json").read_text())
    capsys.readouterr()
    xs = tmp_path / "x.pt"
    assert cli.main(["sample", "--checkpoint", str(out / "checkpoint.pt"), "-n", "500", "--out", str(xs)]) == 0
    data = torch.load(xs, weights_only=True)
    env = gfncore.envs.HyperGrid(2, 5)
    assert data["x"].shape == (500, 2) and data["x"].dtype == torch.int32
    assert bool(((data["x"] >= 0) & (data["x"] < 5)).all())
    torch.testing.assert_close(data["log_reward"], env.log_reward(data["x"]))
    # the same seed gives the same objects; an existing --out is refused without --overwrite
    assert cli.main(["sample", "--checkpoint", str(out / "checkpoint.pt"), "-n", "500", "--out", str(xs)]) == 2
    xs2 = tmp_path / "x2.pt"
    assert cli.main(["sample", "--checkpoint", str(out / "checkpoint.pt"), "-n", "500", "--out", str(xs2)]) == 0
    assert torch.equal(torch.load(xs2, weights_only=True)["x"], data["x"])
    ej = tmp_path / "eval.json"
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(out / "checkpoint.pt"), "-n", "2000", "--out", str(ej)]) == 0
    ev = json.loads(ej.read_text())
    assert ev["steps"] == 6
    assert ev["l1"] == pytest.approx(summary["l1"], abs=1e-12)  # exact: the same policy
    assert 0 <= ev["empirical_l1"] <= 2
    assert "exact L1" in capsys.readouterr().out
    assert cli.main(["eval", "--checkpoint", str(tmp_path / "nothing.pt")]) == 2
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert cli.main(["eval", "--checkpoint", str(tmp_path / "junk.pt")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 2


def _subprocess_env():
    env = dict(os.environ)
    # the package's parent directory, so the subprocess imports this same gfncore (installed or not)
    pkg_parent = str(Path(gfncore.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def test_cli_subprocess_smoke(tmp_path):
    out = tmp_path / "sub"
    env = _subprocess_env()
    cmd = [sys.executable, "-m", "gfncore", "train", "hypergrid", "--steps", "200", "--hidden", "32",
           "--out", str(out), "--no-progress", "--threads", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "exact L1" in r.stdout
    _check_outputs(out, steps=200, ndim=2, eval_every=20)
    v = subprocess.run([sys.executable, "-m", "gfncore", "--version"], capture_output=True, text=True, env=env,
                       timeout=120, cwd=str(tmp_path))
    assert v.returncode == 0 and gfncore.__version__ in v.stdout
    # a usage error from the real entry point: one line, exit code 2, no traceback
    bad = subprocess.run([sys.executable, "-m", "gfncore", "train", "hypergrid", "--batch-size", "0", "--out",
                          str(tmp_path / "bad")], capture_output=True, text=True, env=env, timeout=120, cwd=str(tmp_path))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert not (tmp_path / "bad").exists()


def test_cli_without_matplotlib_still_writes_its_results(tmp_path, capsys, monkeypatch):
    # matplotlib is a declared dependency; if it is missing all the same, the results are on disk
    # and the picture is skipped with one line saying what to install
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    out = tmp_path / "noplot"
    assert cli.main(["train", "hypergrid", "--steps", "4", "--out", str(out), *SMALL]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["steps"] == 4 and (out / "checkpoint.pt").is_file() and not (out / "distribution.png").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install matplotlib" in err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cli_resume_of_a_cuda_run_without_cuda_is_one_line(tmp_path, capsys):
    out = tmp_path / "gpu_run"
    assert cli.main(["train", "hypergrid", "--height", "4", "--steps", "2", "--out", str(out), *SMALL]) == 0
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    ck["config"]["device"] = "cuda"  # as if it had been trained on a GPU
    from gfncore.checkpoint import checksum

    ck["checksum"] = checksum(ck)  # sealed as a GPU run's own checkpoint would be
    torch.save(ck, out / "checkpoint.pt")
    capsys.readouterr()
    assert cli.main(["train", "hypergrid", "--out", str(out), "--resume", "--steps", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "device" in err[0]
    # the same run continues on the CPU when asked to
    assert cli.main(["train", "hypergrid", "--out", str(out), "--resume", "--steps", "4", "--device", "cpu",
                     "--no-progress"]) == 0


def test_every_builtin_environment_gets_a_train_command_from_its_declarations(tmp_path, capsys):
    from dataclasses import fields

    from gfncore.envs import KINDS

    assert {"hypergrid", "ising", "bit_sequence", "set_addition", "assignment"} <= set(cli.ENVS)
    for kind, (cfg_cls, make, help_, _) in cli.ENVS.items():
        decls = {d["name"]: d for d in KINDS[kind]["params"]}
        assert help_
        for f in fields(cfg_cls):
            if f.name in decls:  # help and default from the C++ declaration (unless the CLI chooses)
                assert f.metadata["help"] == decls[f.name]["help"]
                assert f.default == cli.CLI_DEFAULTS.get(kind, {}).get(f.name, decls[f.name]["default"])
        assert make(cfg_cls()).kind == kind
    # the declared bound reaches the flag: HyperGrid's height is at least 2
    out = tmp_path / "run"
    assert cli.main(["train", "hypergrid", "--height", "1", "--steps", "1", "--no-progress", "--out", str(out)]) == 2
    assert "--height" in capsys.readouterr().err and not out.exists()
    # an environment whose config holds tensors (the target sequences) writes a readable summary
    assert cli.main(["train", "bit_sequence", "--n", "4", "--steps", "2", "--hidden", "8", "--batch-size", "4",
                     "--no-progress", "--out", str(out)]) == 0
    modes = json.loads((out / "summary.json").read_text())["env_config"]["params"]["modes"]
    assert len(modes) == 4 and len(modes[0]) == 4
