"""Synthetic SEM data and CSV input/output for causal structure learning."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gfncore.causal import CausalScore, Intervention, is_dag, load_csv, sample_erdos_renyi_sem, save_csv


def test_sem_is_seeded_and_well_formed():
    a = sample_erdos_renyi_sem(8, 30, seed=5)
    b = sample_erdos_renyi_sem(8, 30, seed=5)
    c = sample_erdos_renyi_sem(8, 30, seed=6)
    assert torch.equal(a.data, b.data) and torch.equal(a.graph, b.graph)
    assert not torch.equal(a.data, c.data)
    assert a.data.shape == (30, 8) and a.data.dtype == torch.float64
    assert a.interventions is None and a.node_names == [f"X{i}" for i in range(8)]
    assert bool(is_dag(a.graph))
    w = a.weights[a.graph].abs()
    assert bool(((w >= 0.5) & (w <= 2.0)).all())
    assert not bool(a.weights[~a.graph].any())


def test_sem_expected_edges():
    # ER with expected_edges = 12 on 10 nodes: the mean over many graphs is close to 12
    # (standard error sqrt(45 p (1 - p) / 200) ~ 0.2).
    n = [int(sample_erdos_renyi_sem(10, 0, expected_edges=12, seed=s).graph.sum()) for s in range(200)]
    assert abs(np.mean(n) - 12) < 1.0
    with pytest.raises(ValueError, match="expected_edges must be in"):
        sample_erdos_renyi_sem(3, 10, expected_edges=4)


def test_sem_samples_follow_the_structural_equations():
    """Least squares of each node on its true parents recovers the weights and the noise scale."""
    d = sample_erdos_renyi_sem(6, 20000, expected_edges=8, noise_std=0.5, seed=3)
    x = d.data.numpy()
    for j in range(6):
        pa = d.graph[:, j].nonzero().flatten().tolist()
        resid = x[:, j]
        if pa:
            coef, *_ = np.linalg.lstsq(x[:, pa], x[:, j], rcond=None)
            assert np.allclose(coef, d.weights[pa, j].numpy(), atol=0.03)
            resid = x[:, j] - x[:, pa] @ coef
        assert abs(resid.std() - 0.5) < 0.02


def test_interventional_batches():
    d = sample_erdos_renyi_sem(5, 40, seed=1, interventions=[Intervention(2, 10, value=3.0),
                                                             Intervention((0, 4), 7), {"nodes": 1, "n": 5}])
    assert d.data.shape == (62, 5)
    m = d.interventions
    assert not bool(m[:40].any())
    assert bool((d.data[40:50, 2] == 3.0).all()) and m[40:50].nonzero()[:, 1].unique().tolist() == [2]
    assert m[50:57].sum(0).tolist() == [7, 0, 0, 0, 7]
    assert m[57:].sum(0).tolist() == [0, 5, 0, 0, 0]
    # Every entry not set by an intervention follows its structural equation, including the
    # children of intervened nodes in the interventional rows: residuals are the N(0, 1) noise.
    resid = d.data - d.data @ d.weights
    r = resid[~m]
    assert abs(float(r.mean())) < 0.2 and 0.85 < float(r.std()) < 1.15


def test_csv_round_trip(tmp_path):
    d = sample_erdos_renyi_sem(4, 12, seed=2, interventions=[Intervention((1, 3), 3), Intervention(0, 2, value=-1.0)])
    p = tmp_path / "data.csv"
    save_csv(d, p)
    e = load_csv(p)
    assert e.node_names == d.node_names
    assert torch.equal(e.data, d.data)
    assert torch.equal(e.interventions, d.interventions)
    obs = sample_erdos_renyi_sem(3, 5, seed=0)
    save_csv(obs, p)
    assert p.read_text().splitlines()[0] == "X0,X1,X2"
    assert load_csv(p).interventions is None


def test_csv_intervened_column_by_name_and_index(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("A,B,intervened,C\n1,2,,3\n4,5,A;C,6\n7,8, 1 ,9\n\n1.5,-2e-1,B; A,0\n")
    d = load_csv(p)
    assert d.node_names == ["A", "B", "C"]
    assert d.data.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [1.5, -0.2, 0]]
    assert d.interventions.tolist() == [[0, 0, 0], [1, 0, 1], [0, 1, 0], [1, 1, 0]]
    s = CausalScore(d, "bge")
    assert s.rows_per_node() == [2, 2, 3]
    q = tmp_path / "other.csv"
    q.write_text("A,B,do\n1,2,B\n3,4,\n")
    assert load_csv(q, intervention_column="do").interventions.tolist() == [[0, 1], [0, 0]]


@pytest.mark.parametrize("text,match", [
    ("A,B,colour\n1,2,red\n3,4,blue\n", r"line 2: column 'colour' holds 'red', which is not a number"),
    ("A,B\n1,2\n3\n", r"line 3: 1 fields, the header has 2"),
    ("A,B\n1,nan\n3,4\n", r"column 'B' holds 'nan'; values must be finite"),
    ("A,B\n1,\n3,4\n", r"column 'B' holds '', which is not a number"),
    ("A,A\n1,2\n", r"duplicate column names \['A'\]"),
    ("A,B,intervened\n1,2,C\n3,4,\n", r"line 2, column 'intervened' names node 'C', which does not exist"),
    ("A,B,intervened\n1,2,2\n3,4,\n", r"names node 2, which does not exist"),
    ("", "empty file"),
])
def test_bad_csv(tmp_path, text, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_csv(p)


def test_csv_with_too_few_rows_is_refused_by_the_score(tmp_path):
    p = tmp_path / "one.csv"
    p.write_text("A,B\n1,2\n")
    with pytest.raises(ValueError, match="at least 2 rows"):
        CausalScore(load_csv(p), "bge")


def test_transform_log_and_standardize(tmp_path):
    from gfncore.causal.data import CausalData, load_csv, save_csv, transform

    x = torch.tensor([[1.0, 10.0], [2.0, 20.0], [4.0, 50.0]], dtype=torch.float64)
    cd = CausalData(data=x, node_names=["a", "b"])
    assert torch.allclose(transform(cd, log=True).data, x.log())
    z = transform(cd, standardize=True).data
    assert torch.allclose(z.mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(z.std(0), torch.ones(2, dtype=torch.float64))
    both = transform(cd, log=True, standardize=True).data
    assert torch.allclose(both, (x.log() - x.log().mean(0)) / x.log().std(0))
    with pytest.raises(ValueError, match="positive.*'b'"):
        transform(CausalData(data=torch.tensor([[1.0, 0.0], [2.0, 3.0]]), node_names=["a", "b"]), log=True)
    with pytest.raises(ValueError, match="constant"):
        transform(CausalData(data=torch.tensor([[1.0, 5.0], [2.0, 5.0]]), node_names=["a", "b"]), standardize=True)
    # the fast loader keeps values, interventions and its messages
    p = tmp_path / "d.csv"
    save_csv(CausalData(data=x, node_names=["a", "b"], interventions=torch.tensor([[1, 0], [0, 0], [0, 1]]).bool()), p)
    back = load_csv(p)
    assert torch.equal(back.data, x) and back.interventions[0, 0] and back.interventions[2, 1]
    p.write_text("a,b\n1,2\n3,x\n")
    with pytest.raises(ValueError, match="line 3: column 'b' holds 'x'"):
        load_csv(p)
    p.write_text("a,b\n1,2\n3,inf\n")
    with pytest.raises(ValueError, match="line 3: column 'b'.*finite"):
        load_csv(p)
