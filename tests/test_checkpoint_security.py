"""Opening a checkpoint never imports or runs what it names, and a damaged or unfitting checkpoint
is one clear line, never a traceback or a silent load (issue 15)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import gfncore
from gfncore import cli
from gfncore.checkpoint import checksum
from gfncore.envs import HyperGrid
from gfncore.nn import MLPPolicy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _checkpoint(tmp_path, name="c.pt", R0=0.1) -> str:
    env = HyperGrid(2, 4, R0=R0)
    torch.manual_seed(0)
    t = gfncore.Trainer(env, MLPPolicy(env, hidden=16, layers=1), loss="tb", batch_size=8, seed=1)
    t.fit(2, progress=False)
    return t.save(str(tmp_path / name))


def _edit(path, fn, seal=True) -> None:
    """Rewrites a checkpoint with fn applied to its contents (sealed with a fresh checksum unless
    seal=False: a hand edit by someone who knows the format)."""
    ck = torch.load(path, weights_only=True)
    fn(ck)
    if seal:
        ck["checksum"] = checksum(ck)
    torch.save(ck, path)


def _run(args, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


# -- security -------------------------------------------------------------------------------------
def test_a_checkpoint_naming_this_zen_never_imports_it(tmp_path, capsys):
    path = _checkpoint(tmp_path)
    _edit(path, lambda ck: ck["env"].update({"class": "this:Zen"}))
    had_this = "this" in sys.modules
    with pytest.raises(ValueError) as e:
        gfncore.load(path)
    msg = str(e.value)
    assert "\n" not in msg and "'this:Zen'" in msg and "env=Zen" in msg and "--env this:Zen" in msg
    assert ("this" in sys.modules) == had_this  # nothing was imported
    assert "Beautiful is better" not in capsys.readouterr().out
    # the CLI: exit 2, one line, nothing printed by the module
    r = _run(["-m", "gfncore", "sample", "--checkpoint", path, "--out", str(tmp_path / "x.pt"), "--threads", "1"],
             tmp_path)
    assert r.returncode == 2 and "Beautiful is better" not in r.stdout + r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "this:Zen" in err[0] and "--env" in err[0], r.stderr


def test_a_helpers_module_beside_the_checkpoint_never_runs(tmp_path):
    path = _checkpoint(tmp_path)
    marker = tmp_path / "ran"
    (tmp_path / "helpers.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\nclass Env: pass\n")
    _edit(path, lambda ck: ck["env"].update({"class": "helpers:Env"}))
    r = _run(["-m", "gfncore", "sample", "--checkpoint", "c.pt", "--out", "x.pt", "--threads", "1"], tmp_path)
    assert r.returncode == 2 and not marker.exists()
    assert len(r.stderr.strip().splitlines()) == 1 and "helpers:Env" in r.stderr
    r = _run(["-c", "import gfncore\ntry:\n gfncore.load('c.pt')\nexcept ValueError as e:\n print('refused', e)"],
             tmp_path)
    assert "refused" in r.stdout and not marker.exists(), r.stdout + r.stderr
    # names that are gfncore's in form only resolve inside the package, never to a file
    for name in ("gfncore.__main__:Env", "gfncore.envs:_secret", "os:system"):
        _edit(path, lambda ck, n=name: ck["env"].update({"class": n}))
        with pytest.raises(ValueError, match="not a gfncore environment"):
            gfncore.load(path)


def test_the_caller_passes_their_own_environment_class(tmp_path):
    """--env module:Class and gfncore.load(path, env=Class): the user's own choice is imported."""
    (tmp_path / "my_envs.py").write_text(textwrap.dedent("""
        from gfncore.envs import HyperGrid

        class Grid(HyperGrid):
            pass
    """))
    script = textwrap.dedent("""
        import torch, gfncore
        from my_envs import Grid
        env = Grid(2, 4)
        t = gfncore.Trainer(env, gfncore.nn.MLPPolicy(env, hidden=8, layers=1), batch_size=4, seed=0)
        t.fit(1, progress=False)
        t.save("mine.pt")
        e2, _, t2 = gfncore.load("mine.pt", env=Grid)
        assert type(e2) is Grid and (e2.ndim, e2.height) == (2, 4) and t2.step_count == 1
        print("ok")
    """)
    r = _run(["-c", script], tmp_path)
    assert r.stdout.strip() == "ok", r.stderr
    assert torch.load(tmp_path / "mine.pt", weights_only=True)["env"]["class"] == "my_envs:Grid"
    r = _run(["-m", "gfncore", "sample", "--checkpoint", "mine.pt", "--out", "x.pt", "-n", "5", "--threads", "1"],
             tmp_path)
    assert r.returncode == 2 and "--env my_envs:Grid" in r.stderr
    r = _run(["-m", "gfncore", "sample", "--checkpoint", "mine.pt", "--out", "x.pt", "-n", "5", "--threads", "1",
              "--env", "my_envs:Grid"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert torch.load(tmp_path / "x.pt", weights_only=True)["x"].shape == (5, 2)
    for bad in ("my_envs", "my_envs:Nope", "no_such_module:Grid", "my_envs:Grid;rm"):
        assert cli.main(["sample", "--checkpoint", str(tmp_path / "mine.pt"), "--out", str(tmp_path / "y.pt"),
                         "--env", bad]) == 2


# -- damaged or unfitting checkpoints -------------------------------------------------------------
@pytest.mark.parametrize("damage, words", [
    (lambda ck: ck["state"].pop("optimizer"), "'optimizer'"),
    (lambda ck: ck["state"].pop("policy"), "'policy'"),
    (lambda ck: ck.pop("state"), "'state'"),
    (lambda ck: ck["state"].update(step=-5), "step count is -5"),
    (lambda ck: ck["state"]["policy"].update({"pf_head.bias": torch.zeros(7)}), "pf_head.bias"),
    (lambda ck: ck["policy"].update(hidden="wide"), "policy description"),
    (lambda ck: ck["state"].update(generator=torch.zeros(3, dtype=torch.uint8)), "generator"),
])
def test_damaged_checkpoints_are_one_line(tmp_path, capsys, damage, words):
    path = _checkpoint(tmp_path)
    _edit(path, damage)
    with pytest.raises(ValueError) as e:
        gfncore.load(path)
    assert words in str(e.value) and "\n" not in str(e.value)
    assert cli.main(["eval", "--checkpoint", path, "-n", "10", "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]


def test_a_changed_weight_fails_the_checksum(tmp_path):
    path = _checkpoint(tmp_path)
    gfncore.load(path)  # intact: loads
    # one flipped bit in the file's bytes of a weight (as a disk or a copy would flip it)
    w = torch.load(path, weights_only=True)["state"]["policy"]["pf_head.weight"]
    raw = open(path, "rb").read()
    at = raw.find(w.contiguous().numpy().tobytes()[:16])
    assert at > 0
    flipped = bytearray(raw)
    flipped[at + 3] ^= 0x40  # the exponent of the first weight
    open(path, "wb").write(bytes(flipped))
    with pytest.raises(ValueError, match="checksum"):
        gfncore.load(path)
    # an edit that does not reseal the checksum is refused the same way
    path2 = _checkpoint(tmp_path, "d.pt")
    _edit(path2, lambda ck: ck["state"]["policy"]["pf_head.bias"].add_(1.0), seal=False)
    with pytest.raises(ValueError, match="checksum"):
        gfncore.load(path2)


def test_trainer_resume_checks_the_environment(tmp_path):
    path = _checkpoint(tmp_path, R0=0.1)
    env = HyperGrid(2, 4, R0=0.9)
    t = gfncore.Trainer(env, MLPPolicy(env, hidden=16, layers=1), loss="tb", batch_size=8, seed=1)
    with pytest.raises(ValueError, match="trained on"):
        t.resume(path)
    same = HyperGrid(2, 4, R0=0.1)
    t = gfncore.Trainer(same, MLPPolicy(same, hidden=16, layers=1), loss="tb", batch_size=8, seed=1)
    t.resume(path)
    assert t.step_count == 2
    # another network size: one line naming the tensor
    t = gfncore.Trainer(same, MLPPolicy(same, hidden=32, layers=1), loss="tb", batch_size=8, seed=1)
    with pytest.raises(ValueError, match="does not fit"):
        t.resume(path)
