"""Data files as people have them (issue 15): BOMs read as if absent, headerless files refused
or read with --no-header, duplicate names refused, other encodings named."""
from __future__ import annotations

import codecs

import pytest

from gfncore import cli
from gfncore.bayes.cli import read_csv
from gfncore.causal import load_csv
from gfncore.datafiles import read_table


def _write(tmp_path, text: str, encoding="utf-8", bom=b"", name="d.csv"):
    p = tmp_path / name
    p.write_bytes(bom + text.encode(encoding))
    return str(p)


def test_a_utf8_bom_is_dropped(tmp_path):
    text = "X0,X1,intervened\n1.0,2.0,\n3.0,4.5,X1\n0.5,1.5,\n"
    plain = load_csv(_write(tmp_path, text, name="a.csv"))
    bom = load_csv(_write(tmp_path, text, bom=codecs.BOM_UTF8, name="b.csv"))
    assert bom.node_names == ["X0", "X1"] == plain.node_names
    assert bom.interventions is not None and bom.interventions.tolist() == plain.interventions.tolist()
    assert bom.data.tolist() == plain.data.tolist()
    # bayes: with a BOM and no header, no row is dropped
    X, y, _ = read_csv(_write(tmp_path, "1,2,3\n4,5,6\n7,8,9\n", bom=codecs.BOM_UTF8, name="c.csv"), header=False)
    assert X.shape == (3, 2) and y.tolist() == [3.0, 6.0, 9.0]
    X, y, names = read_csv(_write(tmp_path, "a,b,label\n1,2,0\n", bom=codecs.BOM_UTF8, name="e.csv"), "label")
    assert names == ["a", "b"] and y.tolist() == [0.0]


def test_a_headerless_file_is_refused_or_read_with_the_flag(tmp_path, capsys):
    path = _write(tmp_path, "1.0,2.0,3.0\n4.0,5.0,6.5\n7.0,8.0,9.0\n")
    with pytest.raises(ValueError, match="--no-header"):
        load_csv(path)
    d = load_csv(path, header=False)
    assert d.node_names == ["X0", "X1", "X2"] and d.num_rows == 3
    with pytest.raises(ValueError, match="--no-header"):
        read_csv(path)
    X, y, names = read_csv(path, header=False)
    assert X.shape == (3, 2) and names == ["x0", "x1"]
    # the CLIs: one line and exit 2, or the flag
    assert cli.main(["causal", "--data", path, "--out", str(tmp_path / "c"), "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--no-header" in err[0]
    assert cli.main(["bayes", "--data", path, "--out", str(tmp_path / "b"), "--steps", "1"]) == 2
    assert "--no-header" in capsys.readouterr().err


def test_duplicate_column_names_are_refused(tmp_path, capsys):
    path = _write(tmp_path, "a,label,label\n1,0,1\n2,1,0\n3,0,1\n")
    with pytest.raises(ValueError, match=r"duplicate column names \['label'\]"):
        read_csv(path, "label")
    assert cli.main(["bayes", "--data", path, "--target", "label", "--out", str(tmp_path / "b"), "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "duplicate" in err[0]


@pytest.mark.parametrize("encoding, bom, word", [
    ("utf-16-le", codecs.BOM_UTF16_LE, "UTF-16"),
    ("utf-16-be", codecs.BOM_UTF16_BE, "UTF-16"),
    ("utf-16-le", b"", "NUL"),
    ("latin-1", b"", "latin-1"),
])
def test_other_encodings_name_the_file_and_the_encoding(tmp_path, capsys, encoding, bom, word):
    path = _write(tmp_path, "Größe,Höhe\n1,2\n3,4\n", encoding=encoding, bom=bom)
    for read in (load_csv, read_csv, read_table):
        with pytest.raises(ValueError) as e:
            read(path)
        assert word in str(e.value) and path in str(e.value) and "UTF-8" in str(e.value)
    assert cli.main(["causal", "--data", path, "--out", str(tmp_path / "c"), "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and word in err[0]


def test_a_utf8_file_with_non_ascii_names_reads(tmp_path):
    d = load_csv(_write(tmp_path, "Größe,Höhe\n1,2\n3,4\n"))
    assert d.node_names == ["Größe", "Höhe"]
