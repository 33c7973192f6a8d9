from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from streams.errors import InputError
from streams.tabular import TableFile


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def read_all(table: TableFile, numeric, columns=None):
    rows, num, txt, bad = 0, {}, {}, []
    for chunk in table.chunks(numeric=numeric, columns=columns):
        rows += chunk.n_rows
        bad.extend(chunk.bad_rows)
        for k, v in chunk.numeric.items():
            num.setdefault(k, []).extend(v.tolist())
        for k, v in chunk.text.items():
            txt.setdefault(k, []).extend(v)
    return rows, num, txt, bad


def test_csv_types_missing_values_and_blocks(tmp_path):
    lines = ["a,b,c"] + [
        f"{i},{'x' if i % 2 else 'y'},{'' if i % 5 == 0 else i / 2}" for i in range(1000)
    ]
    p = write(tmp_path, "t.csv", "\n".join(lines) + "\n")
    table = TableFile(p, block_bytes=512)  # many blocks, cut mid-line
    assert table.infer_types() == {"a": "numeric", "b": "categorical", "c": "numeric"}
    rows, num, txt, bad = read_all(table, numeric={"a", "c"})
    assert rows == 1000 and not bad
    assert num["a"] == list(map(float, range(1000)))
    assert sum(math.isnan(v) for v in num["c"]) == 200
    assert txt["b"][:3] == ["y", "x", "y"]


def test_csv_bad_number_is_reported_with_row_and_column(tmp_path):
    p = write(tmp_path, "t.csv", "a,b\n1,x\n2,y\nthree,z\n4,w\n")
    rows, num, txt, bad = read_all(TableFile(p), numeric={"a"})
    assert rows == 3
    assert num["a"] == [1.0, 2.0, 4.0] and txt["b"] == ["x", "y", "w"]
    assert [(b.row, b.column, b.value) for b in bad] == [(4, "a", "three")]
    assert "row 4, column 'a': not a number ('three')" in bad[0].describe()


def test_csv_wrong_field_count_is_a_bad_row(tmp_path):
    p = write(tmp_path, "t.csv", "a,b\n1,x\n2,y,extra\n3,z\n")
    rows, num, _, bad = read_all(TableFile(p), numeric={"a"})
    assert rows == 2 and num["a"] == [1.0, 3.0]
    assert len(bad) == 1 and "expected 2 fields, got 3" in bad[0].reason


def test_csv_without_trailing_newline_and_with_bom(tmp_path):
    p = write(tmp_path, "t.csv", "\ufeffa,b\n1,x\n2,y".encode("utf-8"))
    table = TableFile(p)
    assert table.columns == ["a", "b"]
    rows, num, _, _ = read_all(table, numeric={"a"})
    assert rows == 2 and num["a"] == [1.0, 2.0]


def test_jsonl_flattens_features_and_reports_bad_lines(tmp_path):
    text = "\n".join(
        [
            '{"prediction_id": "p1", "features": {"amount": 10.5, "cat": "a"}, "prediction": 0.2}',
            "not json",
            '{"prediction_id": "p2", "features": {"amount": "bad", "cat": "b"}, "prediction": 0.4}',
            "[1, 2]",
            '{"prediction_id": "p3", "features": {"amount": null, "cat": true}, "prediction": 1}',
            "",
        ]
    )
    table = TableFile(write(tmp_path, "t.jsonl", text))
    assert table.columns == ["prediction_id", "prediction", "amount", "cat"]
    rows, num, txt, bad = read_all(table, numeric={"amount", "prediction"})
    assert rows == 2
    assert num["prediction"] == [0.2, 1.0]
    assert num["amount"][0] == 10.5 and math.isnan(num["amount"][1])
    assert txt["cat"] == ["a", "true"]
    assert sorted(b.row for b in bad) == [2, 3, 4]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", "", "file is empty"),
        ("bin.dat", b"\x00\x01\x02abc", "binary file"),
        ("notes.txt", "hello world\nno commas here\n", "cannot tell the format"),
        ("dupe.csv", "a,a\n1,2\n", "duplicate column"),
    ],
)
def test_unreadable_files_give_one_clear_error(tmp_path, name, content, message):
    with pytest.raises(InputError, match=message) as info:
        TableFile(write(tmp_path, name, content))
    assert str(info.value).startswith(str(tmp_path / name))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        TableFile(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="directory"):
        TableFile(tmp_path)


def test_infer_tolerates_five_percent_of_junk(tmp_path):
    vals = [str(i) for i in range(1000)]
    p = write(tmp_path, "t.csv", "a\n" + "\n".join(vals[:960] + ["n/a?"] * 40) + "\n")
    assert TableFile(p).infer_types() == {"a": "numeric"}
    p2 = write(tmp_path, "u.csv", "a\n" + "\n".join(vals[:90] + ["x"] * 10) + "\n")
    assert TableFile(p2).infer_types() == {"a": "categorical"}


def test_large_file_reads_in_bounded_blocks(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, 3))
    p = tmp_path / "big.csv"
    np.savetxt(p, x, delimiter=",", header="a,b,c", comments="", fmt="%.17g")
    table = TableFile(p, block_bytes=64 << 10)
    sizes = []
    total = {k: [] for k in "abc"}
    for chunk in table.chunks(numeric={"a", "b", "c"}):
        sizes.append(chunk.n_rows)
        for k in "abc":
            total[k].append(chunk.numeric[k])
    assert len(sizes) > 10 and sum(sizes) == 20_000
    assert np.array_equal(np.concatenate(total["b"]), x[:, 1])
