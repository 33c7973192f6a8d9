"""evaluate_window: the live window agrees with the batch check, and with scipy / numpy."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon

from streams.baseline import Baseline, NumericReference
from streams.baseline_builder import BuildOptions, build_baseline
from streams.check import check
from streams.histogram import NumericHistogram
from streams.pane import PaneState, columns_from_records, merge_panes
from streams.snapshot import evaluate_window, histogram_quantile
from streams.tabular import TableFile

MERCHANTS = ["grocery", "travel", "fuel", "restaurants", "online"]
T0 = 1_764_151_200.0


def reference_columns(n: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    score = rng.beta(1.2, 4, n)
    return {
        "prediction_id": [f"r{i}" for i in range(n)],
        "amount": rng.lognormal(3.5, 1.1, n),
        "age": rng.integers(18, 90, n).astype(float),
        "tenure": rng.gamma(2.0, 300, n).round(0),
        "merchant": rng.choice(MERCHANTS, n, p=[0.4, 0.2, 0.15, 0.15, 0.1]),
        "prediction": score,
        "label": (rng.uniform(size=n) < score).astype(int),
    }


def current_records(n: int, seed: int) -> list[dict[str, Any]]:
    """Drifted traffic: a shifted, wider amount (tails beyond the reference), older users,
    an unseen merchant, more missing values, and one feature sometimes absent."""
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(4.2, 1.6, n)
    age = rng.integers(25, 99, n)
    tenure = rng.gamma(2.0, 250, n).round(0)
    merchant = rng.choice([*MERCHANTS, "crypto"], n, p=[0.3, 0.2, 0.15, 0.15, 0.1, 0.1])
    score = rng.beta(1.6, 4, n)
    records = []
    for i in range(n):
        features: dict[str, Any] = {
            "amount": None if i % 13 == 0 else float(amount[i]),
            "age": int(age[i]),
            "tenure": float(tenure[i]),
            "merchant": None if i % 29 == 0 else str(merchant[i]),
        }
        if i % 17 == 0:
            del features["tenure"]
        records.append(
            {
                "prediction_id": f"p{i}",
                "features": features,
                "prediction": float(score[i]),
                "latency_ms": float(rng.gamma(2.0, 20.0)),
                "timestamp": T0 + 300.0 * i / n,
            }
        )
    return records


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def records_to_csv(path: Path, records: list[dict[str, Any]]) -> None:
    names = ["amount", "age", "tenure", "merchant"]
    rows = []
    for r in records:
        f = r["features"]
        cells = ["" if f.get(n) is None else repr(f[n]) if n != "merchant" else f[n] for n in names]
        rows.append([r["prediction_id"], r["timestamp"], *cells, repr(r["prediction"])])
    write_csv(path, ["prediction_id", "timestamp", *names, "prediction"], rows)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Baseline, dict[str, Any]]:
    path = tmp_path_factory.mktemp("snapshot") / "reference.csv"
    cols = reference_columns(20_000, seed=1)
    as_lists = {c: list(np.asarray(v).tolist()) for c, v in cols.items()}
    rows = [[as_lists[c][i] for c in cols] for i in range(20_000)]  # floats print as repr
    write_csv(path, list(cols), rows)
    baseline, _ = build_baseline(TableFile(path), BuildOptions(model="fraud", version="v2"))
    return baseline, cols


def window_of(baseline: Baseline, records: list[dict[str, Any]], partitions: int) -> PaneState:
    """Count the records the way workers do: by partition, then by 1-minute pane, in
    micro-batches; then merge every partial into the window."""
    panes: dict[tuple[int, float], PaneState] = {}
    for p in range(partitions):
        mine = [r for i, r in enumerate(records) if hash((i * 7919) % 104729) % partitions == p]
        for start in range(0, len(mine), 333):  # micro-batches
            batch = mine[start : start + 333]
            by_pane: dict[float, list[dict[str, Any]]] = {}
            for r in batch:
                by_pane.setdefault(r["timestamp"] // 60 * 60, []).append(r)
            for pane_start, group in by_pane.items():
                pane = panes.setdefault((p, pane_start), PaneState.empty(baseline))
                pane.update(columns_from_records(baseline, group))
    return merge_panes(baseline, panes.values())


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


@pytest.mark.parametrize("partitions", [1, 3])
def test_live_window_equals_batch_check_to_the_last_digit(reference, tmp_path, partitions):
    baseline, _ = reference
    records = current_records(6_000, seed=7)
    records_to_csv(tmp_path / "current.csv", records)
    batch = check(baseline, TableFile(tmp_path / "current.csv"))
    window = window_of(baseline, records, partitions)
    snap = evaluate_window(baseline, window, T0, T0 + 300, final=True)

    assert snap["count"] == batch.rows == 6_000
    assert snap["alert_level"] == str(batch.alert_level) == "critical"
    for name, expected in batch.features.items():
        got = snap["features"][name]
        for key, value in expected.items():
            assert same(got[key], value), (name, key, got[key], value)
    for key in ("psi", "ks", "js", "wasserstein"):
        assert snap["features"]["amount"][key] == batch.features["amount"][key]
    assert snap["features"]["merchant"]["chi2"] == batch.features["merchant"]["chi2"]
    for key, value in batch.prediction.items():
        assert same(snap["prediction"][key], value), (key, snap["prediction"][key], value)
    assert "positive_rate" in snap["prediction"]

    # Underneath, the window's histograms are the batch check's, tail sums to the last bit.
    table = TableFile(tmp_path / "current.csv")
    references = {**baseline.features, "prediction": baseline.prediction}
    counted = {n: ref.empty_histogram() for n, ref in references.items() if ref is not None}
    numeric = [n for n, h in counted.items() if isinstance(h, NumericHistogram)]
    for chunk in table.chunks(numeric=numeric, columns=list(counted)):
        for n, h in counted.items():
            h.update_many(chunk.numeric[n] if n in numeric else chunk.text[n])
    live = {**window.features, "prediction": window.prediction}
    for n, h in counted.items():
        assert live[n].to_state() == h.to_state(), n
    assert counted["amount"].over_sum != 0.0  # the tails are exercised


def test_statistics_agree_with_scipy_and_numpy(reference):
    baseline, ref_cols = reference
    records = current_records(5_000, seed=8)
    snap = evaluate_window(baseline, window_of(baseline, records, 2), T0, T0 + 300, final=False)
    amount_ref = baseline.features["amount"]
    assert isinstance(amount_ref, NumericReference)
    ref = np.asarray(ref_cols["amount"])
    cur = np.array([r["features"]["amount"] for r in records], dtype=float)
    cur = cur[~np.isnan(cur)]
    got = snap["features"]["amount"]

    exact = stats.ks_2samp(ref, cur)
    assert abs(got["ks"] - exact.statistic) <= 0.01  # DESIGN.md: within 0.01
    for name in ("age", "tenure"):  # amount's heavy tail is a known weak spot of binned W1
        ref_x = np.asarray(ref_cols[name])
        cur_x = np.array([r["features"].get(name) for r in records], dtype=float)
        cur_x = cur_x[~np.isnan(cur_x)]
        w = snap["features"][name]["wasserstein"]
        assert w == pytest.approx(stats.wasserstein_distance(ref_x, cur_x), rel=0.03)
    edges = amount_ref.coarse_edges
    r_counts = np.histogram(np.clip(ref, edges[0], edges[-1]), edges)[0]
    c_counts = np.concatenate(
        (
            [np.sum(cur < edges[0])],
            np.histogram(cur[(cur >= edges[0]) & (cur <= edges[-1])], edges)[0],
            [np.sum(cur > edges[-1])],
        )
    )
    r_counts = np.concatenate(([0], r_counts, [0]))
    r, c = r_counts / r_counts.sum(), c_counts / c_counts.sum()
    r_clip, c_clip = np.clip(r, 1e-4, 1), np.clip(c, 1e-4, 1)
    assert got["psi"] == pytest.approx(float(np.sum((c_clip - r_clip) * np.log(c_clip / r_clip))))
    assert got["js"] == pytest.approx(float(jensenshannon(r, c)), abs=1e-12)
    assert got["missing_rate"] == pytest.approx(
        sum(r["features"]["amount"] is None for r in records) / 5_000
    )
    assert got["out_of_range_rate"] == pytest.approx(np.mean((cur < ref.min()) | (cur > ref.max())))

    scores = np.array([r["prediction"] for r in records])
    assert snap["prediction"]["positive_rate"] == pytest.approx(np.mean(scores >= 0.5), abs=1e-12)

    latency = np.array([r["latency_ms"] for r in records])
    for key, q in (("p50", 50), ("p95", 95), ("p99", 99)):
        assert snap["latency"][key] == pytest.approx(np.percentile(latency, q), rel=0.12)
    assert snap["latency"]["count"] == 5_000 and snap["latency"]["unit"] == "ms"

    tenure = snap["features"]["tenure"]
    absent = sum("tenure" not in r["features"] for r in records)
    assert tenure["absent"] == absent and tenure["missing_rate"] == absent / 5_000


def test_snapshot_has_the_design_shape_and_serialises(reference):
    baseline, _ = reference
    records = current_records(500, seed=9)
    records[0]["features"]["surprise"] = 1.0
    snap = evaluate_window(
        baseline, window_of(baseline, records, 1), T0, T0 + 300, final=True, emitted_at=T0 + 302
    )
    for key in ("model", "model_version", "window_start", "window_end", "count", "final"):
        assert key in snap
    assert (snap["model"], snap["model_version"], snap["final"]) == ("fraud", "v2", True)
    assert snap["performance"] == snap["segments"] == snap["fairness"] == {}
    for entry in snap["features"].values():
        assert {"psi", "js", "missing_rate", "status", "count"} <= set(entry)
    assert {"psi", "ks", "ks_pvalue", "wasserstein"} <= set(snap["features"]["amount"])
    assert snap["quality"]["unknown_features"] == 1
    assert snap["quality"]["unknown_feature_names"] == ["surprise"]
    assert snap["thresholds"]["psi_critical"] == 0.25
    assert orjson.loads(orjson.dumps(snap))["emitted_at"] == T0 + 302


def test_empty_window_has_no_statistics_and_no_alert(reference):
    baseline, _ = reference
    snap = evaluate_window(baseline, PaneState.empty(baseline), T0, T0 + 300, final=True)
    assert snap["count"] == 0 and snap["alert_level"] == "none"
    assert math.isnan(snap["features"]["amount"]["psi"])
    assert math.isnan(snap["latency"]["p50"])
    assert orjson.loads(orjson.dumps(snap))["features"]["amount"]["psi"] is None


def test_window_of_another_model_is_refused(reference):
    baseline, _ = reference
    other = Baseline("other", "v1", baseline.features)
    with pytest.raises(ValueError, match="evaluated against"):
        evaluate_window(baseline, PaneState.empty(other), T0, T0 + 300, final=True)


# -- histogram_quantile ----------------------------------------------------------------------------


def bin_bounds(h: NumericHistogram, x: float) -> tuple[float, float]:
    i = int(h.bin_index(np.array([x]))[0])
    lower = h.edges[i - 1] if i > 0 else h.minimum
    upper = h.edges[i] if i < h.edges.size else h.maximum
    return float(lower), float(upper)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-50, 50, allow_nan=False), min_size=1, max_size=300),
    st.floats(0.0, 1.0),
)
def test_quantile_lies_in_the_bin_of_the_order_statistic(values, q):
    h = NumericHistogram([-10.0, -1.0, 0.0, 0.5, 3.0, 20.0])
    h.update_many(values)
    got = histogram_quantile(h, q)
    x = np.sort(values)
    n = x.size
    k = min(max(math.ceil(q * n), 1), n)  # the inverted-CDF order statistic, 1-based
    lower = bin_bounds(h, x[max(k - 2, 0)])[0]  # one order statistic of slack each side
    upper = bin_bounds(h, x[min(k, n - 1)])[1]  # for q·n rounding
    assert lower <= got <= upper
    assert x[0] <= got <= x[-1]


def test_quantile_of_evenly_spread_values_is_exact():
    h = NumericHistogram(np.arange(0.0, 101.0))
    h.update_many(np.arange(0.5, 100.0))  # one value in the middle of each unit bin
    for q in (0.1, 0.5, 0.95, 0.99):
        assert histogram_quantile(h, q) == pytest.approx(100 * q)
    assert math.isnan(histogram_quantile(NumericHistogram([0.0, 1.0]), 0.5))
    with pytest.raises(ValueError):
        histogram_quantile(h, 1.5)


def test_quantile_against_numpy_on_a_fine_grid():
    rng = np.random.default_rng(3)
    x = rng.lognormal(0, 1, 100_000)
    h = NumericHistogram(np.quantile(x, np.linspace(0, 1, 201)))
    h.update_many(x)
    for q in (0.05, 0.5, 0.95, 0.99):
        assert histogram_quantile(h, q) == pytest.approx(np.quantile(x, q), rel=2e-3)
