"""Outcome panes: every figure of merged panes against numpy / scikit-learn on the raw rows."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)

from streams.baseline import Baseline, CategoricalReference
from streams.cohorts import Cohorts
from streams.histogram import CategoricalHistogram
from streams.label_delay import LabelDelay
from streams.outcomes import (
    DELAY_BUCKETS_S,
    OTHER_SEGMENT,
    OutcomePane,
    merge_outcomes,
    outcome_sections,
)

BOUNDS = np.array(DELAY_BUCKETS_S)
LE = [*(f"{b:.0f}" for b in DELAY_BUCKETS_S), "+Inf"]
BANDS = ["18-25", "26-35", "36-45", "46-55", "56-65", "65+"]


def close(a: float, b: float, rel: float = 1e-12) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=rel, abs=1e-12)


@dataclass
class Rows:
    """Raw rows of one model version: predictions, and labels for some of them."""

    predicted: list[Any]
    segments: list[dict[str, str]]
    labelled: np.ndarray  # which rows got a label
    actual: list[Any]
    delay: np.ndarray

    @property
    def n(self) -> int:
        return len(self.predicted)


def make_rows(task: str, n: int, seed: int) -> Rows:
    rng = np.random.default_rng(seed)
    segments = []
    for _ in range(n):
        s = {
            "gender": str(rng.choice(["f", "m", "x"], p=[0.5, 0.45, 0.05])),
            "band": str(rng.choice(BANDS)),
            "device": str(rng.choice(["mobile", "desktop", "tablet"])),
        }
        if rng.uniform() < 0.7:
            s["region"] = str(rng.choice(["eu", "us", "apac", "latam"]))
        if rng.uniform() < 0.05:
            del s["gender"]  # unknown cohort
        segments.append(s)
    labelled = rng.uniform(size=n) < 0.6
    delay = rng.lognormal(8, 2.5, n)
    delay[rng.uniform(size=n) < 0.05] = rng.choice([60.0, 3600.0, 86400.0, 0.0])  # on bounds
    delay[rng.uniform(size=n) < 0.02] = -5.0  # clock skew: immediate
    delay[rng.uniform(size=n) < 0.02] = np.nan  # no delay known
    predicted: list[Any]
    actual: list[Any]
    if task == "binary":
        score = np.round(rng.beta(2, 3, n) * 200) / 200  # on the AUC grid: AUC is exact
        y = (rng.uniform(size=n) < score).astype(float)
        predicted = [None if rng.uniform() < 0.03 else float(s) for s in score]
        actual = [2.0 if rng.uniform() < 0.02 else float(v) for v in y]  # 2: unscorable
    elif task == "multiclass":
        classes = ["cat", "dog", "bird", "fish"]
        truth = rng.choice(classes, n)
        guess = np.where(rng.uniform(size=n) < 0.7, truth, rng.choice(classes, n))
        predicted = [None if rng.uniform() < 0.03 else str(g) for g in guess]
        actual = [str(t) for t in truth]
    else:
        y = rng.normal(50, 20, n)
        predicted = [None if rng.uniform() < 0.03 else float(v) for v in y + rng.normal(0, 5, n)]
        actual = [float(v) for v in y]
    return Rows(predicted, segments, labelled, actual, delay)


def baseline_for(task: str, **kw: Any) -> Baseline:
    extra: dict[str, Any] = {}
    if task == "multiclass":
        h = CategoricalHistogram(["cat", "dog", "bird", "fish"])
        extra["prediction"] = CategoricalReference("prediction", h, {})
    kw.setdefault("performance", {"accuracy": 0.8, "mae": 4.0})
    kw.setdefault("threshold", 0.5)
    return Baseline("m", "v1", {}, task=task, **extra, **kw)  # type: ignore[arg-type]


def feed(pane: OutcomePane, rows: Rows, idx: np.ndarray, rng: random.Random) -> None:
    """Predictions of rows ``idx``, then their labels, in micro-batches of random size."""
    for batch in np.array_split(idx, rng.randint(1, 4)):
        b = batch.tolist()
        pane.count_predictions([rows.predicted[i] for i in b], [rows.segments[i] for i in b])
    joined = idx[rows.labelled[idx]]
    for batch in np.array_split(joined, rng.randint(1, 4)):
        b = batch.tolist()
        pane.join(
            [rows.predicted[i] for i in b],
            [rows.actual[i] for i in b],
            rows.delay[batch],
            [rows.segments[i] for i in b],
        )


def split_panes(baseline: Baseline, rows: Rows, k: int, seed: int) -> list[OutcomePane]:
    rng = random.Random(seed)
    owner = np.random.default_rng(seed).integers(0, k, rows.n)
    panes = []
    for p in range(k):
        pane = OutcomePane.empty(baseline)
        feed(pane, rows, np.flatnonzero(owner == p), rng)
        panes.append(pane)
    return panes


def tree_merge(baseline: Baseline, panes: list[OutcomePane], rng: random.Random) -> OutcomePane:
    """Merge copies of ``panes`` in a random order and grouping."""
    parts = [p.copy() for p in panes]
    rng.shuffle(parts)
    while len(parts) > 1:
        i = rng.randrange(len(parts) - 1)
        parts[i] += parts.pop(i + 1)
    return parts[0] if parts else OutcomePane.empty(baseline)


def state_bytes(pane: OutcomePane) -> bytes:
    return orjson.dumps(pane.to_state())


# -- direct computation over the raw rows -------------------------------------------------------


def scored_rows(task: str, rows: Rows) -> np.ndarray:
    """Labelled rows that the task's counter can score."""
    ok = rows.labelled.copy()
    for i in range(rows.n):
        p, a = rows.predicted[i], rows.actual[i]
        if p is None or (task == "binary" and a not in (0.0, 1.0)):
            ok[i] = False
    return ok


def kept_values(values: set[str], pinned: set[str], cap: int) -> set[str]:
    """The capping rule, applied directly to every value seen."""
    free = max(0, cap - len(pinned))
    return pinned | set(sorted(values - pinned - {OTHER_SEGMENT})[:free])


def direct_segments(task: str, rows: Rows, baseline: Baseline) -> dict[str, dict[str, dict]]:
    ok = scored_rows(task, rows)
    attrs = {a for s in rows.segments for a in s}
    protected = set(baseline.protected)
    kept_attrs = kept_values(attrs, protected, baseline.max_segment_attributes)
    out: dict[str, dict[str, dict]] = {}
    for attr in kept_attrs & attrs:
        col = np.array([s.get(attr) for s in rows.segments], dtype=object)
        pinned = set(baseline.fairness_reference.get(attr, {})) if attr in protected else set()
        seen = {v for v in col if v is not None}
        kept = kept_values(seen, pinned, baseline.max_segment_values)
        keys = np.array([None if v is None else v if v in kept else OTHER_SEGMENT for v in col])
        out[attr] = {}
        for value in sorted(set(keys) - {None}):
            m = keys == value
            out[attr][value] = direct_figures(task, rows, m, ok)
    return out


def direct_figures(task: str, rows: Rows, m: np.ndarray, ok: np.ndarray) -> dict[str, Any]:
    sel = m & ok
    fig: dict[str, Any] = {"predictions": int(m.sum()), "labelled": int(sel.sum())}
    idx = np.flatnonzero(sel)
    if task == "binary":
        s = np.array([rows.predicted[i] for i in idx], dtype=float)
        y = np.array([rows.actual[i] for i in idx], dtype=float)
        pred = s >= 0.5
        tp, fp = np.sum(pred & (y == 1)), np.sum(pred & (y == 0))
        tn, fn = np.sum(~pred & (y == 0)), np.sum(~pred & (y == 1))
        all_s = np.array([np.nan if p is None else p for p in rows.predicted], dtype=float)[m]
        fig["accuracy"] = (tp + tn) / idx.size if idx.size else math.nan
        fig["fpr"] = fp / (fp + tn) if fp + tn else math.nan
        fig["fnr"] = fn / (fn + tp) if fn + tp else math.nan
        scored = all_s[~np.isnan(all_s)]
        fig["positive_rate"] = float(np.mean(scored >= 0.5)) if scored.size else math.nan
    elif task == "multiclass":
        right = sum(rows.predicted[i] == rows.actual[i] for i in idx)
        fig["accuracy"] = right / idx.size if idx.size else math.nan
    else:
        err = [abs(rows.predicted[i] - rows.actual[i]) for i in idx]
        fig["mae"] = math.fsum(err) / idx.size if idx.size else math.nan
    return fig


def assert_figures_equal(got: dict[str, dict], want: dict[str, dict]) -> None:
    assert got.keys() == want.keys()
    for attr in want:
        assert list(got[attr]) == sorted(want[attr], key=lambda v: (v == OTHER_SEGMENT, v))
        for value, fig in want[attr].items():
            assert got[attr][value].keys() == fig.keys(), (attr, value)
            for k, v in fig.items():
                assert close(got[attr][value][k], v), (attr, value, k, got[attr][value][k], v)


# -- merges ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(1, 6))
def test_merged_panes_match_direct_computation(task, seed, k):
    rows = make_rows(task, 600, seed)
    baseline = baseline_for(task, protected=["gender"], max_segment_values=5)
    panes = split_panes(baseline, rows, k, seed)
    rng = random.Random(seed)
    merged = [tree_merge(baseline, panes, rng) for _ in range(3)]
    merged.append(merge_outcomes(baseline, reversed(panes)))
    one = OutcomePane.empty(baseline)
    feed(one, rows, np.arange(rows.n), rng)
    # Any split, any merge order and grouping: the same state, to the last bit.
    assert {state_bytes(p) for p in merged} == {state_bytes(one)}

    sections = outcome_sections(baseline, merged[0])
    perf = sections["performance"]
    ok = scored_rows(task, rows)
    assert perf["predictions"] == rows.n
    assert perf["labelled"] == ok.sum()
    assert perf["unscorable"] == rows.labelled.sum() - ok.sum()
    assert perf["coverage"] == ok.sum() / rows.n
    idx = np.flatnonzero(ok)
    p = [rows.predicted[i] for i in idx]
    a = [rows.actual[i] for i in idx]
    if task == "binary":
        s, y = np.array(p), np.array(a).astype(int)
        pred = (s >= 0.5).astype(int)
        assert close(perf["accuracy"], accuracy_score(y, pred))
        assert close(perf["precision"], precision_score(y, pred))
        assert close(perf["recall"], recall_score(y, pred))
        assert close(perf["f1"], f1_score(y, pred))
        assert close(perf["auc"], roc_auc_score(y, s))
        assert close(perf["log_loss"], log_loss(y, s, labels=[0, 1]), rel=1e-9)
        assert close(perf["positive_rate"], pred.mean())
        assert perf["tp"] == np.sum((pred == 1) & (y == 1))
        assert perf["fn"] == np.sum((pred == 0) & (y == 1))
        value = accuracy_score(y, pred)
    elif task == "multiclass":
        value = accuracy_score(a, p)
        assert close(perf["accuracy"], value)
        assert close(perf["macro_f1"], f1_score(a, p, average="macro"))
    else:
        assert close(perf["mae"], mean_absolute_error(a, p))
        assert close(perf["rmse"], math.sqrt(mean_squared_error(a, p)))
        assert close(perf["r2"], r2_score(a, p), rel=1e-9)
        value = mean_absolute_error(a, p)
    primary = "mae" if task == "regression" else "accuracy"
    assert perf["primary_metric"] == primary and close(perf["value"], value)
    reference = baseline.performance[primary]
    expected_drop = 100 * (reference - value) if primary == "accuracy" else 100 * (value / 4 - 1)
    assert perf["baseline_value"] == reference and close(perf["drop"], expected_drop, rel=1e-9)
    assert perf["status"] == ("ok" if ok.sum() >= 100 else "insufficient")

    # Label delay: every label joined, scorable or not, with a known delay; clipped at 0.
    d = np.clip(rows.delay[rows.labelled], 0, None)
    d = d[np.isfinite(d)]
    delay = perf["label_delay"]
    cumulative = [int(np.sum(d <= le)) for le in DELAY_BUCKETS_S] + [d.size]
    assert list(np.cumsum(list(delay["buckets"].values()))) == cumulative
    assert list(delay["buckets"]) == LE
    assert delay["count"] == d.size and delay["sum"] == math.fsum(d)
    assert (delay["min"], delay["max"]) == (d.min(), d.max())
    for q, key in ((0.5, "p50"), (0.9, "p90")):
        exact = np.quantile(d, q, method="inverted_cdf")
        i = int(np.searchsorted(BOUNDS, exact, side="left"))
        lower = BOUNDS[i - 1] if i else 0.0
        upper = BOUNDS[i] if i < BOUNDS.size else np.inf
        assert lower <= delay[key] <= upper, (key, delay[key], exact)

    # Outcome by delay bucket, over the scorable labels with a delay.
    timed = ok & np.isfinite(rows.delay)
    bucket = np.searchsorted(BOUNDS, np.clip(rows.delay, 0, None), side="left")
    for b, le in enumerate(LE):
        m = timed & (bucket == b)
        want = direct_figures(task, rows, m, m)
        got = perf["by_delay"][le]
        assert got["labelled"] == want["labelled"]
        key = "mae" if task == "regression" else "accuracy"
        assert close(got[key], want[key]), (le, got, want)

    assert_figures_equal(sections["segments"], direct_segments(task, rows, baseline))


def test_sections_of_an_empty_pane_are_nan_and_serialise_as_null():
    baseline = baseline_for("binary", protected=["gender"])
    sections = outcome_sections(baseline, merge_outcomes(baseline, []))
    perf = sections["performance"]
    assert perf["labelled"] == perf["predictions"] == 0 and perf["status"] == "insufficient"
    assert math.isnan(perf["coverage"]) and math.isnan(perf["accuracy"])
    assert sections["segments"] == {}
    assert sections["fairness"]["gender"]["status"] == "insufficient"
    raw = orjson.loads(orjson.dumps(sections))
    assert raw["performance"]["coverage"] is None
    assert raw["performance"]["label_delay"]["p50"] is None
    assert raw["performance"]["by_delay"]["60"] == {"labelled": 0, "accuracy": None}


def test_min_labelled_comes_from_the_baseline_or_the_argument():
    rows = make_rows("binary", 300, 1)
    for needed, status in ((None, "ok"), (10_000, "insufficient")):
        baseline = baseline_for("binary", min_labelled=50)
        pane = split_panes(baseline, rows, 1, 1)[0]
        perf = outcome_sections(baseline, pane, min_labelled=needed)["performance"]
        assert perf["status"] == status and perf["min_labelled"] == (needed or 50)


def test_unscorable_labels_and_detections():
    baseline = baseline_for("binary")
    pane = OutcomePane.empty(baseline)
    pane.count_predictions([0.9, None, 0.1], [{}, {}, {}])
    pane.join([0.9, None, 0.1], [1, 1, 2], np.array([1.0, 2.0, 3.0]), [{}, {}, {}])
    pane.join([0.9], ["yes"], np.array([4.0]), [{}])  # label words, as the builder reads them
    pane.add_detections(2)
    assert (pane.labelled, pane.unscorable, pane.detections) == (2, 2, 2)
    assert pane.delay.count == 4
    perf = outcome_sections(baseline, pane)["performance"]
    assert perf["accuracy"] == 1.0 and perf["detections"] == 2 and perf["unscorable"] == 2


def test_pane_without_task_counts_volume_and_delay_only():
    baseline = Baseline("m", "v1", {})
    pane = OutcomePane.empty(baseline)
    pane.count_predictions([None, None], [{"a": "x"}, {}])
    pane.join([None], [1.0], np.array([5.0]), [{"a": "x"}])
    assert (pane.predictions, pane.labelled, pane.unscorable) == (2, 0, 1)
    sections = outcome_sections(baseline, OutcomePane.from_state(baseline, pane.to_state()))
    assert sections["performance"]["status"] == "insufficient"
    assert sections["segments"] == {"a": {"x": {"predictions": 1}}}


def test_lengths_must_agree():
    pane = OutcomePane.empty(baseline_for("binary"))
    with pytest.raises(ValueError, match="segments"):
        pane.count_predictions([0.5, 0.5], [{}])
    with pytest.raises(ValueError, match="delay_s"):
        pane.join([0.5], [1.0], np.array([1.0, 2.0]), [{}])


# -- state ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_state_round_trip(task):
    baseline = baseline_for(task, protected=["gender"], max_segment_values=3)
    pane = split_panes(baseline, make_rows(task, 400, 7), 1, 7)[0]
    pane.add_detections(3)
    raw = state_bytes(pane)
    back = OutcomePane.from_state(baseline, orjson.loads(raw))
    assert state_bytes(back) == raw
    assert orjson.dumps(outcome_sections(baseline, back)) == orjson.dumps(
        outcome_sections(baseline, pane)
    )
    other = baseline_for(task, threshold=0.7) if task == "binary" else baseline_for("binary")
    with pytest.raises(ValueError, match="does not belong"):
        OutcomePane.from_state(other, orjson.loads(raw))
    with pytest.raises(ValueError, match="format"):
        OutcomePane.from_state(baseline, {**orjson.loads(raw), "format": "x/9"})
    tampered = orjson.loads(raw)
    tampered["labelled"] += 1
    with pytest.raises(ValueError, match="add up"):
        OutcomePane.from_state(baseline, tampered)


def test_merging_another_model_version_is_refused():
    a = OutcomePane.empty(baseline_for("binary"))
    b = OutcomePane.empty(Baseline("m", "v2", {}, task="binary"))
    with pytest.raises(ValueError, match="cannot merge"):
        a.merge(b)


def test_state_size():
    """A typical binary pane: 1,000 predictions, 300 labels, 2 attributes × 5 values."""
    baseline = baseline_for("binary", protected=["gender"])
    rng = np.random.default_rng(3)
    n = 1000
    score = rng.beta(2, 5, n)
    segments = [
        {"gender": str(rng.choice(list("abcde"))), "device": str(rng.choice(list("vwxyz")))}
        for _ in range(n)
    ]
    pane = OutcomePane.empty(baseline)
    pane.count_predictions(score.tolist(), segments)
    idx = rng.choice(n, 300, replace=False)
    y = (rng.uniform(size=300) < score[idx]).astype(float)
    pane.join(
        score[idx].tolist(), y.tolist(), rng.exponential(3600, 300), [segments[i] for i in idx]
    )
    size = len(state_bytes(pane))
    cohorts = len(orjson.dumps(pane.to_state()["cohorts"]))
    print(f"binary pane state: {size} bytes, of which cohorts {cohorts}")
    assert size < 2_000 and cohorts < 400


# -- caps -----------------------------------------------------------------------------------------


def test_busiest_values_would_not_be_associative_but_first_names_are():
    """The docstring's example: with one slot, A = {x: 5}, B = {y: 3}, C = {y: 3}."""

    def pane(value: str, n: int) -> Cohorts:
        c = Cohorts(None, max_values=1)
        c.add([{"g": value}] * n, np.ones((n, 1), dtype=np.int64))
        return c

    left = pane("x", 5)
    left.merge(pane("y", 3))
    left.merge(pane("y", 3))
    right_tail = pane("y", 3)
    right_tail.merge(pane("y", 3))
    right = pane("x", 5)
    right.merge(right_tail)
    assert left.to_state() == right.to_state() == {"a": {"g": {"__other__": [6], "x": [5]}}}


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.sampled_from(list("abcdefghij")), min_size=1, max_size=60),
    attrs=st.lists(st.sampled_from(["p", "q", "r", "s", "t"]), min_size=1, max_size=60),
    cut=st.integers(1, 5),
    order=st.randoms(use_true_random=False),
)
def test_caps_do_not_depend_on_split_or_merge_order(values, attrs, cut, order):
    n = min(len(values), len(attrs))
    segments = [{attrs[i]: values[i], "p": values[-1 - i]} for i in range(n)]
    rows = np.arange(1, n + 1, dtype=np.int64)[:, None] * np.array([[1, 0]])
    errors = np.linspace(0.1, 3.3, n)

    def cohorts() -> Cohorts:
        return Cohorts("regression", max_attributes=3, max_values=3, pinned={"p": ["j"]})

    whole = cohorts()
    whole.add(segments, rows, errors)
    parts = []
    bounds = sorted(order.sample(range(n + 1), min(cut, n + 1)))
    for lo, hi in zip([0, *bounds], [*bounds, n], strict=True):
        part = cohorts()
        part.add(segments[lo:hi], rows[lo:hi], errors[lo:hi])
        parts.append(part)
    order.shuffle(parts)
    merged = cohorts()
    for part in parts:
        merged.merge(part)
    assert orjson.dumps(merged.to_state()) == orjson.dumps(whole.to_state())
    # The rule, directly: "p" and its pinned "j" always kept, then the first names.
    names = {a for s in segments for a in s}
    assert set(whole.counts) == kept_values(names, {"p"}, 3)
    assert whole.truncated == (len(names - {"p"}) > 2)
    for attr, table in whole.counts.items():
        seen = {s[attr] for s in segments if attr in s}
        pinned = {"j"} if attr == "p" else set()
        kept = kept_values(seen, pinned, 3)
        assert set(table) - {OTHER_SEGMENT} == kept & seen
        assert (OTHER_SEGMENT in table) == bool(seen - kept)
        total = sum(int(r[0]) for i, r in enumerate(rows) if attr in segments[i])
        assert sum(int(r[0]) for r in table.values()) == total


def test_attribute_cap_keeps_protected_and_first_names():
    baseline = baseline_for("binary", protected=["zone"], max_segment_attributes=3)
    pane = OutcomePane.empty(baseline)
    segments = [{"zone": "1", "b": "x", "a": "y", "c": "z", "d": "w"}]
    pane.count_predictions([0.7], segments)
    assert sorted(pane.cohorts.counts) == ["a", "b", "zone"] and pane.cohorts.truncated
    assert OutcomePane.from_state(baseline, pane.to_state()).cohorts.truncated


def test_reference_groups_are_pinned():
    reference = {"gender": {"x": {"n": 10}, OTHER_SEGMENT: {"n": 1}}}
    baseline = baseline_for(
        "binary", protected=["gender"], fairness_reference=reference, max_segment_values=2
    )
    pane = OutcomePane.empty(baseline)
    pane.count_predictions([0.1] * 5, [{"gender": g} for g in "abcdx"])
    assert sorted(pane.cohorts.counts["gender"]) == [OTHER_SEGMENT, "a", "x"]


def test_label_delay_quantile_doctest_shape():
    h = LabelDelay()
    h.update_many(np.array([10.0, 20.0, 1e9]))
    assert h.quantile(0.0) == 10.0 and h.quantile(1.0) == 1e9
    assert h.prometheus_buckets()[-1] == (math.inf, 3)
    assert LabelDelay.from_state(h.to_state()).to_state() == h.to_state()


def test_state_under_other_caps_is_capped_again_on_load():
    wide = baseline_for("binary", max_segment_values=20)
    pane = OutcomePane.empty(wide)
    pane.count_predictions([0.9] * 6, [{"g": v} for v in "fedcba"])
    narrow = baseline_for("binary", max_segment_values=2)
    again = OutcomePane.from_state(narrow, pane.to_state())
    assert {v: int(r[0]) for v, r in again.cohorts.counts["g"].items()} == {
        "a": 1,
        "b": 1,
        OTHER_SEGMENT: 4,
    }


def test_sections_refuse_another_model_version():
    pane = OutcomePane.empty(baseline_for("binary"))
    with pytest.raises(ValueError, match="evaluated against"):
        outcome_sections(Baseline("m", "v2", {}, task="binary"), pane)


def test_rows_that_count_nothing_take_no_slot():
    baseline = baseline_for("binary", max_segment_attributes=1, max_segment_values=1)
    pane = OutcomePane.empty(baseline)
    pane.count_predictions([0.9], [{"b": "y"}])
    pane.join([0.9], [7.0], np.array([1.0]), [{"a": "x"}])  # unscorable: no counts
    assert pane.to_state()["cohorts"] == {"a": {"b": {"y": [1, 1, 1, 0, 0, 0, 0]}}}
    assert not pane.cohorts.truncated
    raw = state_bytes(pane)
    assert state_bytes(OutcomePane.from_state(baseline, orjson.loads(raw))) == raw
