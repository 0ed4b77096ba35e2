"""What a new user meets first (issue 18): `import gfncore` from the repository root after
`pip install .`, the Python Trainer choosing threads and seeding the policy as the CLI does, typo'd
flags, sample/eval on conditional runs and on files that are not checkpoints, `--env module:Class`,
and the progress bar of a resumed run."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import gfncore
from gfncore import cli

ROOT = Path(gfncore.__file__).resolve().parent.parent
SMALL = ["--hidden", "16", "--batch-size", "8", "--no-progress", "--threads", "1"]


def _python(code: str, cwd, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OMP_NUM_THREADS")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _source_tree_without_extension(tmp_path: Path) -> Path:
    """A copy of the package's Python sources, as a fresh clone has them: no _C."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "gfncore", src / "gfncore", ignore=shutil.ignore_patterns("_C*", "__pycache__"))
    return src


def test_source_tree_without_extension_uses_the_installed_one(tmp_path):
    src = _source_tree_without_extension(tmp_path)
    site = tmp_path / "site" / "gfncore"  # where `pip install .` put the package and its _C
    site.mkdir(parents=True)
    ext = glob.glob(str(ROOT / "gfncore" / "_C*"))[0]
    shutil.copy(ext, site)
    r = _python("import gfncore; print(gfncore.__file__); print(gfncore._C.__file__)", cwd=src,
                env_extra={"PYTHONPATH": str(site.parent)})
    assert r.returncode == 0, r.stderr
    pkg, c = r.stdout.split()
    assert Path(pkg).parent == src / "gfncore" and Path(c).parent == site


def test_source_tree_without_any_extension_says_what_to_run(tmp_path):
    src = _source_tree_without_extension(tmp_path)
    # as on a machine where no gfncore is installed either (CI installs one into site-packages):
    # the installed extension files are hidden from the lookup, nothing else changes
    hide = textwrap.dedent("""
        import os
        _isfile, _here = os.path.isfile, os.getcwd()
        os.path.isfile = lambda p: _isfile(p) and (os.path.abspath(p).startswith(_here) or
                                                   os.path.basename(os.path.dirname(p)) != "gfncore")
        import gfncore
    """)
    r = _python(hide, cwd=src)
    assert r.returncode != 0
    assert "circular import" not in r.stderr
    assert "without a built extension" in r.stderr and "pip install ." in r.stderr and "dev-build.sh" in r.stderr


def test_trainer_picks_the_cli_thread_count_unless_the_user_set_one():
    code = textwrap.dedent("""
        import os, torch
        os.getloadavg = lambda: (0.0, 0.0, 0.0)
        os.sched_getaffinity = lambda pid: set(range(3))
        import gfncore as gfn
        {before}
        env = gfn.envs.HyperGrid(ndim=2, height=4)
        gfn.Trainer(env, gfn.nn.MLPPolicy(env, hidden=8))
        print(torch.get_num_threads(), gfn.default_threads(), mine)
    """)
    r = _python(code.format(before="mine = 0"), cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["3", "3", "0"]
    # the user's own count stays (one that differs from torch's default, which is how it shows)
    r = _python(code.format(before="mine = torch.get_num_threads() + 2; torch.set_num_threads(mine)"), cwd=ROOT)
    assert r.returncode == 0, r.stderr
    got, default, mine = r.stdout.split()
    assert got == mine and default == "3"


def _weights(policy):
    return [p.detach().clone() for p in policy.parameters()]


def test_trainer_seed_draws_the_initial_weights_of_a_fresh_policy():
    env = gfncore.envs.HyperGrid(ndim=2, height=4)
    torch.manual_seed(123)
    a = gfncore.nn.MLPPolicy(env, hidden=16)
    torch.manual_seed(456)  # a different global state: the seed decides, not it
    b = gfncore.nn.MLPPolicy(env, hidden=16)
    c = gfncore.nn.MLPPolicy(env, hidden=16)
    assert not all(torch.equal(x, y) for x, y in zip(_weights(a), _weights(b)))
    gfncore.Trainer(env, a, seed=3)
    gfncore.Trainer(env, b, seed=3)
    gfncore.Trainer(env, c, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(_weights(a), _weights(b)))
    assert not all(torch.equal(x, y) for x, y in zip(_weights(a), _weights(c)))
    # what the CLI does: torch.manual_seed(seed) before building the policy
    torch.manual_seed(3)
    d = gfncore.nn.MLPPolicy(env, hidden=16)
    assert all(torch.equal(x, y) for x, y in zip(_weights(a), _weights(d)))
    # a policy that was edited (or trained, or loaded) is kept as it is, and so is a trained one
    e = gfncore.nn.MLPPolicy(env, hidden=16)
    with torch.no_grad():
        e.pf_head.bias += 1
    kept = _weights(e)
    gfncore.Trainer(env, e, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(kept, _weights(e)))
    t = gfncore.Trainer(env, a, seed=3)
    t.fit(2, progress=False)
    trained = _weights(a)
    gfncore.Trainer(env, a, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(trained, _weights(a)))


def test_typos_get_the_nearest_flag_and_abbreviations_are_refused(capsys):
    assert cli.main(["train", "hypergrid", "--stpes", "5"]) == cli.USAGE
    assert "did you mean --steps?" in capsys.readouterr().err
    assert cli.main(["train", "hypergrid", "--step", "5"]) == cli.USAGE  # not silently --steps
    assert "unrecognized arguments: --step 5" in capsys.readouterr().err


def test_eval_of_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    f = tmp_path / "data.csv"
    f.write_text("a,b\n1,2\n")
    assert cli.main(["eval", "--checkpoint", str(f)]) == cli.USAGE
    err = capsys.readouterr().err
    assert "is not a checkpoint" in err and "IndexError" not in err and len(err.strip().splitlines()) == 1


def test_eval_of_another_applications_run_says_where_its_results_are(tmp_path, capsys):
    run = tmp_path / "causal"
    assert cli.main(["causal", "--synthetic", "d=3,n=30,seed=0", "--steps", "2", "--batch-size", "8",
                     "--hidden", "8", "--no-progress", "--out", str(run)]) == 0
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(run / "checkpoint.pt")]) == cli.USAGE
    err = capsys.readouterr().err
    assert "gfncore causal" in err and "posterior_samples.csv" in err and "--resume" in err
    # the run's data.csv (a synthetic run writes it, in the format --data reads) is no checkpoint at all
    assert cli.main(["eval", "--checkpoint", str(run / "data.csv")]) == cli.USAGE
    assert "is not a checkpoint" in capsys.readouterr().err
    assert cli.main(["causal", "--data", str(run / "data.csv"), "--steps", "2", "--batch-size", "8", "--hidden", "8",
                     "--no-progress", "--out", str(tmp_path / "again")]) == 0


def test_sample_and_eval_of_a_conditional_run_take_a_context(tmp_path, capsys):
    run = tmp_path / "cond"
    assert cli.main(["train", "hypergrid", "--ndim", "2", "--height", "4", "--conditional", "R0=0.1:1.0",
                     "--steps", "4", "--curve-points", "3", "--eval-samples", "16", "--out", str(run), *SMALL]) == 0
    ck = str(run / "checkpoint.pt")
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", ck]) == cli.USAGE
    assert "--context" in capsys.readouterr().err
    assert cli.main(["eval", "--checkpoint", ck, "--context", "0.35", "-n", "200", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "context [0.35]" in printed and "exact L1" in printed
    out = tmp_path / "x.pt"
    assert cli.main(["sample", "--checkpoint", ck, "--context", "0.35", "-n", "50", "--out", str(out),
                     "--threads", "1"]) == 0
    data = torch.load(out, weights_only=True)
    assert data["x"].shape == (50, 2) and data["context"] == [0.35] and torch.isfinite(data["log_reward"]).all()
    assert cli.main(["eval", "--checkpoint", ck, "--context", "0.3,0.4"]) == cli.USAGE
    assert "1 finite number" in capsys.readouterr().err


CHAIN = '''
import torch, gfncore as gfn


class Chain(gfn.envs.PythonEnv):
    """Walk up a chain of N + 1 states; stop anywhere."""

    def __init__(self, N=6, scale: float = 0.5):
        super().__init__(state_dim=1, n_actions=2, max_length=N + 1)
        self.N, self.scale = N, scale

    def initial_state(self):
        return torch.zeros(1, dtype=torch.int32)

    def forward_mask(self, s):
        return torch.cat([s < self.N, torch.ones_like(s, dtype=torch.bool)], 1)

    def step(self, s, a):
        return s + 1

    def backward_mask(self, s):
        return s > 0

    def backward_step(self, s, a):
        return s - 1

    def log_reward(self, x):
        return x[:, 0].double() * self.scale
'''


def test_train_a_user_environment_by_module_and_class(tmp_path, capsys, monkeypatch):
    (tmp_path / "my_chain_envs.py").write_text(CHAIN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "runs" / "chain"
    assert cli.main(["train", "--env", "my_chain_envs:Chain", "--N", "4", "--scale", "1.0", "--steps", "6",
                     "--out", str(out), *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "exact L1" in printed and (out / "checkpoint.pt").is_file()
    # a resume rebuilds it from the same flags
    assert cli.main(["train", "--env", "my_chain_envs:Chain", "--N", "4", "--scale", "1.0", "--steps", "8",
                     "--out", str(out), "--resume", *SMALL]) == 0
    assert "steps=8" in capsys.readouterr().out
    assert cli.main(["train", "--env", "my_chain_envs:Chian", "--steps", "2"]) == cli.USAGE
    assert "has no Chian" in capsys.readouterr().err
    assert cli.main(["train", "--env", "my_chain_envs:Chain", "--M", "3"]) == cli.USAGE
    assert "did you mean --N?" in capsys.readouterr().err
    assert cli.main(["train", "--env", "my_chain_envs:torch", "--steps", "2"]) == cli.USAGE
    assert "not a gfncore environment class" in capsys.readouterr().err


def test_train_a_user_environment_of_the_cpp_route(tmp_path, capsys, monkeypatch):
    # a class of the user's over a compiled header: its flags come from the header's declarations
    (tmp_path / "my_cpp_envs.py").write_text(
        'import gfncore as gfn\n\n\nclass MyGrid(gfn.envs.CompiledEnv, kind="hypergrid"):\n    """A grid."""\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli.main(["train", "--env", "my_cpp_envs:MyGrid", "--ndim", "3", "--height", "3", "--steps", "4",
                     "--out", str(tmp_path / "run"), *SMALL]) == 0
    assert "MyGrid(ndim=3, height=3" in capsys.readouterr().out


def test_a_resumed_run_shows_its_progress_from_the_resumed_step(tmp_path, capsys):
    env = gfncore.envs.HyperGrid(ndim=2, height=4)
    t = gfncore.Trainer(env, gfncore.nn.MLPPolicy(env, hidden=8), batch_size=8)
    t.fit(3, progress=False)
    path = t.save(str(tmp_path / "ck.pt"))
    _, _, again = gfncore.load(path)
    capsys.readouterr()
    again.fit(2, progress=True)
    err = capsys.readouterr().err
    assert "resumed from step 3" in err and "5/5" in err
