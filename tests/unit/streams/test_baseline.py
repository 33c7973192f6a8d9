from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from streams.baseline import FORMAT, Baseline, CategoricalReference, NumericReference
from streams.baseline_builder import BuildOptions, build_baseline
from streams.errors import BaselineFormatError, InputError
from streams.tabular import TableFile


def make_csv(path: Path, n: int = 4000, seed: int = 0, shift: float = 0.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    cols = {
        "prediction_id": np.arange(n),
        "amount": rng.lognormal(3 + shift, 1, n),
        "age": rng.integers(18, 90, n).astype(float),
        "merchant": rng.choice(["grocery", "travel", "fuel"], n, p=[0.6, 0.3, 0.1]),
        "prediction": rng.uniform(size=n),
    }
    cols["label"] = (rng.uniform(size=n) < cols["prediction"]).astype(int)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for i in range(n):
            w.writerow([cols[c][i] for c in cols])
    return cols


def test_build_from_csv(tmp_path):
    data = make_csv(tmp_path / "ref.csv")
    baseline, report = build_baseline(
        TableFile(tmp_path / "ref.csv"), BuildOptions(model="fraud", version="v1")
    )
    assert report.rows == 4000 and report.bad == 0
    assert list(baseline.features) == ["amount", "age", "merchant"]
    assert baseline.task == "binary"
    assert baseline.source["prediction_column"] == "prediction"
    assert baseline.source["target_column"] == "label"

    amount = baseline.features["amount"]
    assert isinstance(amount, NumericReference)
    x = data["amount"]
    assert np.allclose(amount.coarse_edges, np.quantile(x, np.linspace(0, 1, 11)))
    s = amount.summary
    assert s["mean"] == pytest.approx(x.mean()) and s["std"] == pytest.approx(x.std())
    assert s["min"] == x.min() and s["max"] == x.max()
    for q in (25, 50, 75, 95):
        assert s[f"p{q}"] == pytest.approx(np.percentile(x, q))
    assert amount.histogram.count == 4000 and amount.histogram.counts[0] == 0
    assert amount.histogram.edges.size >= 101  # the fine KS grid

    merchant = baseline.features["merchant"]
    assert isinstance(merchant, CategoricalReference)
    assert merchant.histogram.categories == ["grocery", "travel", "fuel"]
    expected = [int(np.sum(data["merchant"] == c)) for c in ("grocery", "travel", "fuel")]
    assert merchant.histogram.counts.tolist() == [*expected, 0]

    # The decision threshold is a bin edge, and reference accuracy is what sklearn would say.
    assert 0.5 in baseline.prediction.histogram.edges.tolist()
    predicted = data["prediction"] >= 0.5
    assert baseline.performance["accuracy"] == pytest.approx(
        np.mean(predicted == (data["label"] == 1))
    )
    assert baseline.performance["labelled"] == 4000


def test_equal_width_and_bins_options(tmp_path):
    data = make_csv(tmp_path / "ref.csv")
    baseline, _ = build_baseline(
        TableFile(tmp_path / "ref.csv"),
        BuildOptions(model="m", version="1", bins=5, binning="equal-width", features=["age"]),
    )
    assert list(baseline.features) == ["age"]
    assert np.allclose(
        baseline.features["age"].coarse_edges, np.histogram_bin_edges(data["age"], bins=5)
    )


def test_sampled_build_still_counts_every_row_exactly(tmp_path):
    data = make_csv(tmp_path / "ref.csv", n=5000)
    table = TableFile(tmp_path / "ref.csv", block_bytes=16 << 10)
    baseline, _ = build_baseline(
        table, BuildOptions(model="m", version="1", sample_rows=700, features=["amount"])
    )
    assert baseline.source["sampled"] is True
    h = baseline.features["amount"].histogram
    assert h.count == 5000
    x = data["amount"]
    exact = np.histogram(x, bins=h.edges)[0]
    assert h.counts[1:-1].tolist() == exact.tolist()
    # Edges from a 700-row sample sit near the true deciles.
    deciles = np.quantile(x, np.linspace(0.1, 0.9, 9))
    ranks = np.searchsorted(np.sort(x), baseline.features["amount"].coarse_edges[1:-1]) / 5000
    assert np.max(np.abs(ranks - np.linspace(0.1, 0.9, 9))) < 0.06
    assert deciles.size == 9


def test_json_round_trip_and_format_version(tmp_path):
    make_csv(tmp_path / "ref.csv", n=500)
    baseline, _ = build_baseline(TableFile(tmp_path / "ref.csv"), BuildOptions("m", "v1"))
    again = Baseline.from_json(baseline.to_json())
    assert again.to_dict() == baseline.to_dict()
    raw = json.loads(baseline.to_json())
    assert raw["format"] == FORMAT
    raw["format"] = "undertow.baseline/0"
    with pytest.raises(BaselineFormatError, match="not supported"):
        Baseline.from_json(json.dumps(raw))
    with pytest.raises(BaselineFormatError, match="not valid JSON"):
        Baseline.from_json(b"{nope")
    del raw["features"]
    raw["format"] = FORMAT
    with pytest.raises(BaselineFormatError, match="malformed"):
        Baseline.from_json(json.dumps(raw))


@pytest.mark.parametrize(
    ("content", "options", "message"),
    [
        ("a,b\n", {}, "no data rows"),
        ("a,b\n,1\n,2\n", {}, "column 'a': has no values"),
        ("a,b\n1,2\n", {"target": "nope"}, "--target column 'nope' is not in the file"),
        ("a,b\n1,2\n", {"features": ["c"]}, "'c' not in the file"),
        ("a,b\n1,2\n", {"features": [], "ignore": ["a", "b"]}, "no feature columns"),
    ],
)
def test_bad_reference_data(tmp_path, content, options, message):
    p = tmp_path / "ref.csv"
    p.write_text(content)
    with pytest.raises(InputError, match=message):
        build_baseline(TableFile(p), BuildOptions("m", "1", **options))


def test_too_many_bad_rows_is_fatal_a_few_are_not(tmp_path):
    rows = [f"{i},x" for i in range(200)]
    p = tmp_path / "ref.csv"
    p.write_text("a,b\n" + "\n".join([*rows[:199], "oops,x"]) + "\n")
    baseline, report = build_baseline(TableFile(p), BuildOptions("m", "1"))
    assert report.bad == 1 and baseline.features["a"].histogram.count == 199
    p.write_text("a,b\n" + "\n".join([*rows[:195], *["oops,x"] * 5]) + "\n")
    with pytest.raises(InputError, match=r"5 of 200 rows are malformed .*row 197, column 'a'"):
        build_baseline(TableFile(p), BuildOptions("m", "1"))


def test_regression_and_multiclass_tasks(tmp_path):
    rng = np.random.default_rng(2)
    y = rng.normal(10, 3, 300)
    pred = y + rng.normal(0, 1, 300)
    p = tmp_path / "reg.csv"
    p.write_text(
        "x,prediction,target\n"
        + "".join(f"{a},{b},{c}\n" for a, b, c in zip(y, pred, y, strict=True))
    )
    b, _ = build_baseline(TableFile(p), BuildOptions("m", "1"))
    assert b.task == "regression"
    assert b.performance["mae"] == pytest.approx(np.mean(np.abs(pred - y)))
    assert b.performance["rmse"] == pytest.approx(np.sqrt(np.mean((pred - y) ** 2)))

    classes = rng.choice(["cat", "dog", "bird"], 300)
    guess = np.where(rng.uniform(size=300) < 0.7, classes, "dog")
    q = tmp_path / "mc.csv"
    q.write_text(
        "x,prediction,label\n"
        + "".join(f"{i},{g},{c}\n" for i, (g, c) in enumerate(zip(guess, classes, strict=True)))
    )
    m, _ = build_baseline(TableFile(q), BuildOptions("m", "1"))
    assert m.task == "multiclass"
    assert m.performance["accuracy"] == pytest.approx(np.mean(guess == classes))
