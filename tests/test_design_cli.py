"""`gfncore design` (through the main entry point and python -m gfncore.design.cli): outputs of the
comparison and of the ranking, and one-line errors with exit status 1 on bad input."""
from __future__ import annotations

import csv
import json
import os

import pytest
import torch

import gfncore
from gfncore.design.cli import main

FAST_GFN = ["--steps", "40", "--update-steps", "10", "--hidden", "32", "--batch-size", "16", "--outer", "16",
            "--no-progress"]


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)
    gfncore._C.set_num_threads(0)


def read_curves(out):
    with open(os.path.join(out, "curves.csv")) as f:
        return list(csv.DictReader(f))


def test_comparison_writes_curves_plot_and_summary(tmp_path):
    from gfncore.cli import main as gfncore_main

    out = str(tmp_path / "run")
    rc = gfncore_main(["design", "--synthetic", "d=3,n=30,seed=0", "--budget", "2", "--out", out,
                       "--strategies", "eig,random,observational,heuristic,eig_amortized", "--amortized-histories", "4",
                       "--amortized-steps", "20", *FAST_GFN])
    assert rc == 0
    assert gfncore.design.DesignRun.__module__ == "gfncore.design.loop"   # the lazy export
    rows = read_curves(out)
    strategies = ["eig", "random", "observational", "heuristic", "eig_amortized"]
    for s in strategies:
        mine = [r for r in rows if r["strategy"] == s]
        assert [int(r["round"]) for r in mine] == [0, 1, 2]
        assert float(mine[-1]["spent"]) == 2.0
        for key in ("entropy", "expected_shd", "p_true_mec", "edge_auroc", "gfn_entropy", "gfn_jsd"):
            assert mine[-1][key] not in ("", None)
    assert os.path.getsize(os.path.join(out, "curves.png")) > 0
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)
    assert set(s["strategies"]) == set(strategies)
    assert s["warm_start"]["initial_steps_from_scratch"] == 40 and s["warm_start"]["update_steps_per_round"] == 10
    assert s["strategies"]["eig"]["update_steps"] == [10, 10]
    assert s["amortized"]["instances"] == 4 * 3
    assert len(s["true_graph"]) >= 0 and len(s["candidates"]) == 3
    # a second run into the same directory needs --overwrite
    assert main(["--synthetic", "d=3,n=30,seed=0", "--budget", "1", "--out", out, *FAST_GFN]) == 2


def test_ranking_of_a_csv_data_set(tmp_path):
    from gfncore.causal import sample_erdos_renyi_sem, save_csv

    cd = sample_erdos_renyi_sem(3, 40, seed=1)
    path = str(tmp_path / "d.csv")
    save_csv(cd, path)
    out = str(tmp_path / "rank")
    rc = main(["--data", path, "--posterior", "exact", "--budget", "3", "--node-cost", "X0=2", "--sizes", "5,20",
               "--out", out, "--outer", "64", "--no-progress"])
    assert rc == 0
    with open(os.path.join(out, "ranking.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6
    per_cost = [float(r["eig_per_cost"]) for r in rows]
    assert per_cost == sorted(per_cost, reverse=True)
    assert {float(r["cost"]) for r in rows if r["experiment"].startswith("do(X0")} == {2.0}


@pytest.mark.parametrize("args, message", [
    (["--budget", "0.5"], "budget 0.5 is smaller than the cheapest experiment (1)"),
    (["--node-cost", "1,0,1"], "the cost of node 1 must be a finite number > 0"),
    (["--node-cost", "X7=2"], "node 'X7', which does not exist"),
    (["--sizes", "0"], "a sample size must be >= 1"),
    (["--strategies", "eig,oracle"], "unknown strategy 'oracle'"),
    (["--synthetic", "d=3,n=x"], "--synthetic: n must be an integer"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    argv = ["--synthetic", "d=3,n=30,seed=0", "--budget", "2", "--out", str(tmp_path / "x"), "--posterior", "exact",
            "--no-progress"]
    # later flags win in argparse
    rc = main(argv + args)
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and err.startswith("gfncore design: error:")


def test_missing_data_file(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "none.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err
