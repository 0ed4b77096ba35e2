"""Sizes the machine cannot hold are refused before anything is allocated, in one line naming the
flag and the size (issue 15)."""
from __future__ import annotations

import pytest

import gfncore
from gfncore import cli
from gfncore.envs import HyperGrid
from gfncore.limits import available_memory, max_threads


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("argv, words", [
    (["train", "hypergrid", "--batch-size", "1000000000"], ["--batch-size 1000000000", "GiB"]),
    (["train", "hypergrid", "--threads", "100000"], ["--threads", "100000"]),
    (["train", "hypergrid", "--seed", str(2**64 + 1)], ["--seed"]),
    (["bayes", "--K", "1000000000"], ["--K 1000000000", "GiB"]),
    (["bayes", "--threads", "100000"], ["--threads", "100000"]),
    (["bayes", "--seed", str(2**64 + 1)], ["--seed"]),
    (["bayes", "--data-seed", str(2**64 + 1)], ["--data-seed"]),
    (["causal", "--synthetic", "d=100000"], ["--synthetic d=100000", "GiB"]),
    (["causal", "--synthetic", "d=3", "--threads", "100000"], ["--threads"]),
    (["causal", "--synthetic", "d=3", "--seed", str(2**64 + 1)], ["--seed"]),
    (["design", "--synthetic", "d=3", "--seed", str(2**64 + 1)], ["--seed"]),
    (["design", "--synthetic", "d=3", "--threads", "100000"], ["--threads"]),
])
def test_absurd_sizes_are_one_line_naming_the_flag(tmp_path, capsys, argv, words):
    assert cli.main([*argv, "--out", str(tmp_path / "o")]) == 2
    line = _one_line(capsys)
    assert all(w in line for w in words), line


def test_a_data_set_of_ten_thousand_columns_is_refused(tmp_path, capsys):
    p = tmp_path / "wide.csv"
    d = 10_000
    p.write_text(",".join(f"c{i}" for i in range(d)) + "\n" + "\n".join(",".join(["1.5"] * d) for _ in range(3)) + "\n")
    assert cli.main(["causal", "--data", str(p), "--out", str(tmp_path / "o")]) == 2
    line = _one_line(capsys)
    assert "10000 columns" in line and "GiB" in line


def test_library_limits():
    with pytest.raises(ValueError, match="threads"):
        gfncore.set_num_threads(max_threads() + 1)
    env = HyperGrid(2, 4)
    policy = gfncore.nn.MLPPolicy(env, hidden=8, layers=1)
    with pytest.raises(ValueError, match="--batch-size"):
        gfncore.Trainer(env, policy, batch_size=10**12)
    with pytest.raises(ValueError, match="first step"):
        gfncore.Sampler(env, policy).sample(int(available_memory() // 10))
    # HyperGrid(ndim=2**19): hours of work per trajectory, refused instead of running silently
    big = HyperGrid(ndim=2**19, height=2)
    with pytest.raises(ValueError, match="too large to sample"):
        gfncore.Sampler(big, gfncore.nn.MLPPolicy(big, hidden=1, layers=1)).sample(1)
