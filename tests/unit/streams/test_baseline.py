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


# -- the label side: protected attributes, fairness reference, label settings -------------------


def make_fair_csv(path: Path, n: int, seed: int) -> dict[str, np.ndarray]:
    """Scored rows with a gender (some missing) and an age band of eight values."""
    rng = np.random.default_rng(seed)
    gender = rng.choice(["f", "m", "x", ""], n, p=[0.45, 0.45, 0.07, 0.03])
    band = rng.choice(
        [f"b{i}" for i in range(8)], n, p=[0.3, 0.2, 0.15, 0.1, 0.1, 0.08, 0.04, 0.03]
    )
    score = np.clip(rng.beta(2, 3, n) + (gender == "m") * 0.1, 0, 1)
    label = (rng.uniform(size=n) < score).astype(int)
    amount = rng.lognormal(3, 1, n)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["amount", "gender", "age_band", "prediction", "label"])
        w.writerows(zip(amount, gender, band, score, label, strict=True))
    return {"gender": gender, "age_band": band, "score": score, "label": label}


def direct_reference(groups: np.ndarray, score: np.ndarray, label: np.ndarray, keep: int):
    """Positive rate, TPR, FPR and n per group; past the ``keep`` largest, one other group."""
    values, counts = np.unique(groups[groups != ""], return_counts=True)
    ranked = sorted(
        zip(values.tolist(), counts.tolist(), strict=True), key=lambda vc: (-vc[1], vc[0])
    )
    kept = [v for v, _ in ranked[:keep]]
    pooled = [v for v, _ in ranked[keep:]]
    members = {v: groups == v for v in kept}
    if pooled:
        members["__other__"] = np.isin(groups, pooled)
    out = {}
    predicted = score >= 0.5
    for g, m in members.items():
        out[g] = {
            "positive_rate": predicted[m].mean(),
            "tpr": predicted[m & (label == 1)].mean(),
            "fpr": predicted[m & (label == 0)].mean(),
            "accuracy": (predicted[m] == (label[m] == 1)).mean(),
            "n": int(m.sum()),
        }
    return out


def test_fairness_reference_matches_direct_computation(tmp_path):
    data = make_fair_csv(tmp_path / "ref.csv", 3000, 4)
    options = BuildOptions("credit", "v1", protected=["gender", "age_band"], max_segment_values=5)
    baseline, _ = build_baseline(TableFile(tmp_path / "ref.csv"), options)
    assert list(baseline.features) == ["amount"]  # protected columns are not features
    assert baseline.protected == ["gender", "age_band"]
    for attr in ("gender", "age_band"):
        want = direct_reference(data[attr], data["score"], data["label"], keep=5)
        got = baseline.fairness_reference[attr]
        assert list(got) == list(want)
        for g, stats in want.items():
            assert got[g]["n"] == stats["n"]
            for k in ("positive_rate", "tpr", "fpr", "accuracy"):
                assert got[g][k] == pytest.approx(stats[k], rel=1e-12), (attr, g, k)
    assert "__other__" in baseline.fairness_reference["age_band"]  # 8 bands, 5 kept
    assert "__other__" not in baseline.fairness_reference["gender"]  # missing is no group
    again = Baseline.from_json(baseline.to_json())
    assert again.to_dict() == baseline.to_dict()


def test_reference_without_target_or_for_another_task(tmp_path):
    p = tmp_path / "ref.csv"
    p.write_text("x,g,prediction\n1,a,0.9\n2,a,0.1\n3,b,0.7\n")
    b, _ = build_baseline(TableFile(p), BuildOptions("m", "1", protected=["g"]))
    assert b.fairness_reference["g"]["a"] == {
        "positive_rate": 0.5,
        "tpr": None,
        "fpr": None,
        "accuracy": None,  # no labels in the file: no accuracy to compare a cohort with
        "n": 2,
    }
    q = tmp_path / "reg.csv"
    q.write_text("x,g,prediction,target\n1,a,10,11\n2,a,20,19\n3,b,30,30\n")
    r, _ = build_baseline(TableFile(q), BuildOptions("m", "1", protected=["g"]))
    assert r.task == "regression"
    assert r.fairness_reference["g"]["a"] == {
        "positive_rate": None,
        "tpr": None,
        "fpr": None,
        "n": 2,
    }


@pytest.mark.parametrize(
    ("content", "options", "message"),
    [
        ("a,b\n1,2\n", {"protected": ["gender"]}, r"--protected column\(s\) 'gender' not in"),
        ("a,g\n1,x\n", {"protected": ["g"], "features": ["a", "g"]}, "both features and"),
        ("a,prediction\n1,0.5\n", {"protected": ["prediction"]}, "is the prediction column"),
        ("a,g\n1,\n2,\n", {"protected": ["g"]}, "column 'g': has no values"),
    ],
)
def test_bad_protected_columns(tmp_path, content, options, message):
    p = tmp_path / "ref.csv"
    p.write_text(content)
    with pytest.raises(InputError, match=message):
        build_baseline(TableFile(p), BuildOptions("m", "1", **options))


def test_protected_column_with_too_many_values(tmp_path, monkeypatch):
    import streams.baseline_builder as builder

    monkeypatch.setattr(builder, "MAX_GROUPS", 3)
    p = tmp_path / "ref.csv"
    p.write_text("a,g\n" + "".join(f"{i},id{i}\n" for i in range(10)))
    with pytest.raises(InputError, match="more than 3 distinct values"):
        build_baseline(TableFile(p), BuildOptions("m", "1", protected=["g"]))


def test_label_settings_round_trip_and_old_baselines_still_read(tmp_path):
    make_csv(tmp_path / "ref.csv", n=300)
    options = BuildOptions(
        "m",
        "v1",
        label_ttl_s=2_592_000.0,
        expected_label_delay_s=172_800.0,
        min_labelled=250,
        min_group_size=50,
        fairness_bounds=(0.9, 1.1),
    )
    baseline, _ = build_baseline(TableFile(tmp_path / "ref.csv"), options)
    again = Baseline.from_json(baseline.to_json())
    assert (again.label_ttl_s, again.expected_label_delay_s) == (2_592_000.0, 172_800.0)
    assert (again.min_labelled, again.min_group_size) == (250, 50)
    assert again.fairness_bounds == (0.9, 1.1)

    # A baseline written before the label side: none of these keys; the defaults apply.
    raw = json.loads(baseline.to_json())
    for key in (
        "protected",
        "fairness_reference",
        "fairness_bounds",
        "min_group_size",
        "min_labelled",
        "label_ttl_s",
        "expected_label_delay_s",
        "max_segment_attributes",
        "max_segment_values",
    ):
        del raw[key]
    old = Baseline.from_json(json.dumps(raw))
    assert old.protected == [] and old.fairness_reference == {}
    assert old.fairness_bounds == (0.8, 1.25)
    assert (old.min_labelled, old.min_group_size) == (100, 30)
    assert old.label_ttl_s is None and old.expected_label_delay_s is None
    assert (old.max_segment_attributes, old.max_segment_values) == (10, 20)

    for key, bad in (
        ("fairness_bounds", [1.2, 0.8]),
        ("fairness_bounds", [0.8]),
        ("min_labelled", -1),
    ):
        with pytest.raises(BaselineFormatError, match="malformed"):
            Baseline.from_json(json.dumps({**raw, key: bad}))
