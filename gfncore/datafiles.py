"""CSV data files as people have them, read the same way by every command (`gfncore causal`,
`gfncore bayes`, `gfncore design`).

The rules:
- UTF-8, with or without a byte-order mark (Excel's "CSV UTF-8" writes one): the mark is dropped.
  A UTF-16 file, or one that is not UTF-8 (latin-1, cp1252), is refused in one line naming the
  file and the encoding, with how to convert it.
- A header row of column names is expected. A first row of numbers is refused (it would silently
  become column names, or a row of data would become names), unless the caller says the file has
  no header (`--no-header`), when every row is data and columns are named by position.
- Column names must be distinct and non-empty: `--target label` must not pick one of two columns.
- Blank lines are skipped; every other row has as many fields as the header.
"""
from __future__ import annotations

import codecs
import csv
import io
import os

_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"), (codecs.BOM_UTF16_LE, "UTF-16"),
         (codecs.BOM_UTF16_BE, "UTF-16"))


def decode(raw: bytes, path: str) -> str:
    """The text of a data file: UTF-8 (a leading byte-order mark dropped); anything else raises
    ValueError naming the file and what its encoding looks like."""
    for bom, name in _BOMS:  # UTF-32 first: its little-endian mark starts with UTF-16's
        if raw.startswith(bom):
            raise ValueError(f"{path} is {name} text; gfncore reads UTF-8 CSV files: save it as UTF-8 (Excel: "
                             f"'CSV UTF-8'; iconv -f {name} -t UTF-8 {os.path.basename(path)})")
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    if b"\x00" in raw[:4096]:
        raise ValueError(f"{path} holds NUL bytes: UTF-16 text without a byte-order mark, or not a text file; "
                         f"save it as UTF-8 CSV")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ValueError(f"{path} is not UTF-8 (byte 0x{raw[e.start]:02x} on line {line}; latin-1 or cp1252?): save "
                         f"it as UTF-8 (iconv -f latin1 -t UTF-8 {os.path.basename(path)})") from None


def _numeric(cells: list[str]) -> bool:
    try:
        for c in cells:
            float(c)
    except ValueError:
        return False
    return bool(cells)


def read_table(path, header: bool = True, flag: str = "--data") -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(column names, [(line number, fields)]) of a CSV file under the rules above. With
    header=False every row is data and the names are "0", "1", ... (the caller may rename them).
    Raises ValueError in one line naming the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{flag} {path}: no such file")
    with open(path, "rb") as f:
        text = decode(f.read(), path)
    try:
        rows = [(ln, r) for ln, r in enumerate(csv.reader(io.StringIO(text, newline="")), start=1)
                if any(c.strip() for c in r)]
    except csv.Error as e:
        raise ValueError(f"{path} is not a readable CSV file ({e})") from None
    if not rows:
        raise ValueError(f"{path}: empty file (expected a header row of column names)" if header else f"{path}: empty file")
    if not header:
        width = len(rows[0][1])
        return [str(i) for i in range(width)], _same_width(rows, width, path)
    names = [c.strip() for c in rows[0][1]]
    if _numeric(names):
        raise ValueError(f"{path}: the first row ({','.join(names[:6])}{',...' if len(names) > 6 else ''}) is "
                         f"numbers, not column names: add a header row, or pass --no-header to read every row as data")
    if any(not n for n in names):
        raise ValueError(f"{path}: the header row has an empty column name (column {names.index('')})")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{path}: duplicate column names {dup}: every column needs its own name")
    return names, _same_width(rows[1:], len(names), path, "the header")


def _same_width(rows, width: int, path: str, first: str = "the first row"):
    for ln, r in rows:
        if len(r) != width:
            raise ValueError(f"{path}, line {ln}: {len(r)} fields, {first} has {width}")
    return rows
