"""PaneState: columns in, counts out; merging in any grouping; compact state; its size."""

from __future__ import annotations

import csv
import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.baseline import Baseline, CategoricalReference, NumericReference
from streams.baseline_builder import BuildOptions, build_baseline
from streams.histogram import (
    CategoricalHistogram,
    NumericHistogram,
    decode_counts,
    encode_counts,
    exact_sum,
)
from streams.pane import (
    LATENCY_EDGES,
    MAX_UNKNOWN_NAMES,
    PROMETHEUS_LATENCY_BUCKETS,
    PaneState,
    columns_from_predictions,
    columns_from_records,
    merge_panes,
    prometheus_latency_buckets,
)
from streams.tabular import TableFile

MERCHANTS = ["grocery", "travel", "fuel", "restaurants", "online"]


def reference_rows(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    score = rng.beta(1.2, 6, n)
    return {
        "amount": rng.lognormal(3.5, 1.1, n),
        "age": rng.integers(18, 90, n).astype(float),
        "account_age_days": rng.gamma(2.0, 300, n).round(0),
        "merchant": rng.choice(MERCHANTS, n, p=[0.4, 0.2, 0.15, 0.15, 0.1]),
        "prediction": score.round(4),
        "label": (rng.uniform(size=n) < score).astype(int),
    }


def write_csv(path: Path, cols: dict[str, Any]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        n = len(next(iter(cols.values())))
        for i in range(n):
            w.writerow([cols[c][i] for c in cols])


@pytest.fixture(scope="module")
def reference_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pane") / "reference.csv"
    write_csv(path, reference_rows(20_000, seed=1))
    return path


@pytest.fixture(scope="module")
def baseline(reference_csv: Path) -> Baseline:
    built, _ = build_baseline(TableFile(reference_csv), BuildOptions(model="fraud", version="v2"))
    return built


def live_records(n: int, seed: int, shift: float = 0.0, t0: float = 1_764_151_200.0) -> list:
    """Prediction events as the wire format has them: some drift, nulls and odd values."""
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3.5 + shift, 1.1 + shift / 2, n).round(2)
    age = rng.integers(18, 95, n)
    days = rng.gamma(2.0, 300, n).round(0)
    merchant = rng.choice([*MERCHANTS, "crypto"], n, p=[0.38, 0.2, 0.15, 0.15, 0.1, 0.02])
    score = rng.beta(1.2, 6 - 2 * shift, n).round(4)
    latency = rng.gamma(2.0, 15.0, n).round(1)
    times = t0 + np.sort(rng.uniform(0, 60, n))
    records = []
    for i in range(n):
        features: dict[str, Any] = {
            "amount": float(amount[i]),
            "age": int(age[i]),
            "account_age_days": float(days[i]),
            "merchant": str(merchant[i]),
        }
        if i % 97 == 0:
            features["amount"] = None
        if i % 211 == 0:
            del features["age"]
        records.append(
            {
                "features": features,
                "prediction": float(score[i]),
                "latency_ms": float(latency[i]),
                "timestamp": float(times[i]),
            }
        )
    return records


# -- a small hand-made baseline for the property tests -----------------------------------------

EDGES = np.array([0.0, 1.0, 2.0, 5.0])


def small_baseline() -> Baseline:
    num = NumericHistogram(EDGES)
    num.update_many(np.linspace(0, 5, 50))
    cat = CategoricalHistogram(["a", "b"])
    cat.update_many(["a"] * 30 + ["b"] * 20)
    score = NumericHistogram(np.linspace(0, 1, 11))
    score.update_many(np.linspace(0, 1, 50))
    return Baseline(
        model="m",
        version="v1",
        features={
            "x": NumericReference("x", num, EDGES, {}),
            "c": CategoricalReference("c", cat, {}),
        },
        prediction=NumericReference("prediction", score, np.linspace(0, 1, 11), {}),
        task="binary",
    )


SMALL = small_baseline()

numbers = st.one_of(
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, 1.0, 5.0, -0.1, 1e-300, 7.25]),
    st.none(),
)
event = st.fixed_dictionaries(
    {
        "features": st.fixed_dictionaries(
            {},
            optional={
                "x": st.one_of(numbers, st.just("oops")),
                "c": st.one_of(st.sampled_from(["a", "b", "zz", ""]), st.none()),
                "extra": st.sampled_from(["q", "r"]),
                "other": st.just(1.0),
            },
        ),
        "prediction": st.one_of(st.floats(0, 1), st.none()),
        "latency_ms": st.one_of(st.floats(0, 2e5), st.none(), st.sampled_from([100.0, 250.0])),
        "timestamp": st.floats(1.7e9, 1.7e9 + 600),
    }
)


def pane_of(records: list, baseline: Baseline = SMALL, batch: int | None = None) -> PaneState:
    pane = PaneState.empty(baseline)
    step = batch or max(len(records), 1)
    for i in range(0, len(records), step):
        pane.update(columns_from_records(baseline, records[i : i + step]))
    return pane


# -- counting ------------------------------------------------------------------------------------


def test_columns_count_like_histograms_fed_directly(baseline):
    records = live_records(3000, seed=2, shift=0.3)
    pane = pane_of(records, baseline)
    assert pane.volume == 3000
    assert pane.min_event_time == min(r["timestamp"] for r in records)
    assert pane.max_event_time == max(r["timestamp"] for r in records)
    for name, ref in baseline.features.items():
        expected = ref.empty_histogram()
        expected.update_many([r["features"].get(name) for r in records])
        assert pane.features[name].to_state() == expected.to_state(), name
    assert pane.prediction is not None
    scores = baseline.prediction.empty_histogram()
    scores.update_many([r["prediction"] for r in records])
    assert pane.prediction.to_state() == scores.to_state()
    latency = NumericHistogram(LATENCY_EDGES)
    latency.update_many(np.array([r["latency_ms"] for r in records]) / 1000)
    assert pane.latency.counts.tolist() == latency.counts.tolist()


def test_absent_and_unknown_features_are_counted_per_event():
    records = [
        {"features": {"x": 1.5, "c": "a"}, "timestamp": 1.0},
        {"features": {"c": "b", "extra": 3.0, "zzz": "q"}, "timestamp": 2.0},  # x absent
        {"features": {"x": None, "c": "a", "extra": 1.0}, "timestamp": 3.0},  # null, not absent
        {"features": {}, "timestamp": 4.0},
    ]
    pane = pane_of(records)
    assert pane.absent == {"x": 2, "c": 1}
    assert pane.unknown_features == 2
    assert pane.unknown_names == ["extra", "zzz"]
    x = pane.features["x"]
    assert x.missing == 3 and x.count == 1  # absent counts as missing too
    assert pane.features["c"].missing == 1


def test_a_string_in_a_numeric_feature_is_missing_and_a_type_mismatch():
    records = [
        {"features": {"x": v, "c": "a"}, "prediction": p, "timestamp": 1.0}
        for v, p in [(1.5, 0.2), ("1.5", "0.9"), ("true", 0.4), (3, None), (None, 0.1)]
    ]
    pane = pane_of(records)
    x = pane.features["x"]
    assert isinstance(x, NumericHistogram)
    assert x.count == 2 and x.missing == 3  # "1.5" is a string, not a number
    assert pane.type_mismatch == {"x": 2}
    assert pane.prediction_type_mismatch == 1
    assert pane.prediction is not None and pane.prediction.missing == 2


def test_update_columns_accepts_arrays_lists_and_absent_columns():
    pane = PaneState.empty(SMALL)
    pane.update_columns(
        {"x": np.array([0.5, np.nan, 9.0]), "extra": [None, 2.0, None]},
        prediction=np.array([0.1, 0.7, 0.9]),
        latency_ms=None,
        timestamps=np.array([10.0, 11.0, 12.0]),
    )
    assert pane.features["x"].counts.tolist() == [0, 1, 0, 0, 1]
    assert pane.features["c"].missing == 3 and pane.absent == {"c": 3}
    assert pane.unknown_features == 1 and pane.unknown_names == ["extra"]
    assert pane.latency.missing == 3 and pane.latency.count == 0
    with pytest.raises(ValueError, match="expected 3"):
        pane.update_columns({"x": [1.0]}, None, None, np.array([1.0, 2.0, 3.0]))


def test_unknown_names_keep_the_smallest_whatever_the_order():
    names = [f"f{i:03d}" for i in range(3 * MAX_UNKNOWN_NAMES)]
    records = [{"features": {n: 1.0}, "timestamp": 0.0} for n in reversed(names)]
    pane = pane_of(records, batch=7)
    assert pane.unknown_names == names[:MAX_UNKNOWN_NAMES]
    assert pane.unknown_features == len(names)


def test_columns_from_predictions_matches_records(baseline):
    @dataclass
    class Event:
        features: dict
        prediction: Any
        latency_ms: Any
        timestamp: float

    records = live_records(500, seed=3)
    events = [
        Event(r["features"], r["prediction"], r["latency_ms"], r["timestamp"]) for r in records
    ]
    a, b = PaneState.empty(baseline), PaneState.empty(baseline)
    a.update(columns_from_records(baseline, records))
    b.update(columns_from_predictions(baseline, events))
    assert a.to_state() == b.to_state()


def test_latency_buckets_are_prometheus_le_buckets():
    latency_ms = np.array([0.2, 1.0, 10.0, 10.0001, 24.9, 25.0, 100.0, 100.5, 999.0, 1000.0, 4e4])
    pane = PaneState.empty(SMALL)
    pane.update_columns({}, None, latency_ms, np.zeros(latency_ms.size))
    seconds = latency_ms / 1000
    expected = [int(np.sum(seconds <= b)) for b in PROMETHEUS_LATENCY_BUCKETS] + [seconds.size]
    buckets = prometheus_latency_buckets(pane.latency)
    assert [b for b, _ in buckets] == [*PROMETHEUS_LATENCY_BUCKETS, math.inf]
    assert [c for _, c in buckets] == expected


# -- merging -------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    records=st.lists(event, max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=6),
    batch=st.integers(1, 8),
    order=st.randoms(use_true_random=False),
)
def test_any_split_and_grouping_gives_the_same_window(records, cuts, batch, order):
    whole = pane_of(records)
    bounds = sorted({0, len(records), *(min(c, len(records)) for c in cuts)})
    panes = [pane_of(records[a:b], batch=batch) for a, b in itertools.pairwise(bounds)]
    order.shuffle(panes)
    # Fold in a random tree shape: pairwise sums of neighbours until one is left.
    while len(panes) > 1:
        i = order.randrange(len(panes) - 1)
        panes[i : i + 2] = [panes[i] + panes[i + 1]]
    merged = panes[0] if panes else PaneState.empty(SMALL)
    assert merged.to_state() == whole.to_state()
    assert merge_panes(SMALL, reversed(panes)).to_state() == whole.to_state()


def test_tail_sums_do_not_depend_on_the_grouping():
    rng = np.random.default_rng(5)
    values = rng.normal(0, 1e6, 5000)  # mostly outside [0, 5]: under/overflow sums
    records = [{"features": {"x": float(v), "c": "a"}, "timestamp": 0.0} for v in values]
    one = pane_of(records)
    parts = [pane_of(records[i : i + 333]) for i in range(0, len(records), 333)]
    left = merge_panes(SMALL, parts)
    right = merge_panes(SMALL, parts[::-1])
    for pane in (left, right):
        x = pane.features["x"]
        assert isinstance(x, NumericHistogram)
        assert x.under_sum == one.features["x"].under_sum  # type: ignore[union-attr]
        assert x.over_sum == one.features["x"].over_sum  # type: ignore[union-attr]
    # and they are the correctly rounded sums
    assert one.features["x"].over_sum == math.fsum(v for v in values if v > 5.0)  # type: ignore[union-attr]


def test_merging_other_model_or_features_is_refused(baseline):
    with pytest.raises(ValueError, match="cannot merge"):
        PaneState.empty(SMALL).merge(PaneState.empty(baseline))


def test_iadd_and_add():
    a = pane_of([{"features": {"x": 1.0, "c": "a"}, "timestamp": 5.0}])
    b = pane_of([{"features": {"x": 7.0, "c": "b"}, "timestamp": 3.0}])
    total = a + b
    assert total.volume == 2 and a.volume == 1
    a += b
    assert a.to_state() == total.to_state()
    assert (a.min_event_time, a.max_event_time) == (3.0, 5.0)


# -- state ---------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.lists(event, max_size=40))
def test_state_round_trips_through_json(records):
    pane = pane_of(records)
    raw = orjson.dumps(pane.to_state())
    back = PaneState.from_state(SMALL, orjson.loads(raw))
    assert back.to_state() == pane.to_state()
    assert orjson.dumps(back.to_state()) == raw


def test_state_is_counts_only_and_sparse_when_mostly_empty(baseline):
    pane = pane_of(live_records(200, seed=4), baseline)
    state = pane.to_state()
    text = orjson.dumps(state).decode()
    assert "edges" not in text and "categories" not in text
    latency = state["latency"]["c"]
    assert isinstance(latency, dict) and set(latency) == {"i", "n"}  # 102 bins, few used
    empty = PaneState.empty(baseline).to_state()
    assert all(h == {} for h in empty["features"].values())


def test_state_of_another_baseline_is_refused(baseline):
    state = pane_of([{"features": {"x": 1.0}, "timestamp": 0.0}]).to_state()
    with pytest.raises(ValueError, match="does not belong"):
        PaneState.from_state(baseline, state)
    with pytest.raises(ValueError, match="format"):
        PaneState.from_state(SMALL, {**state, "format": "undertow.pane/0"})


@pytest.mark.parametrize("binning", ["quantile", "equal-width"])
def test_numeric_feature_state_across_a_five_pane_window_is_under_8_kb(reference_csv, binning):
    """The issue's memory target: one numeric feature, 5 one-minute panes of 10,000 events.

    Equal-width PSI edges rarely fall on the 200-quantile grid, so that baseline has the
    most bins (~211 edges); quantile deciles mostly coincide with it.
    """
    options = BuildOptions(model="fraud", version="v2", binning=binning)
    baseline, _ = build_baseline(TableFile(reference_csv), options)
    amount = baseline.features["amount"]
    assert isinstance(amount, NumericReference)
    assert amount.histogram.edges.size >= 200  # the fine grid ∪ the PSI edges
    single = Baseline("fraud", "v2", {"amount": amount})
    per_feature = whole_panes = 0
    for k in range(5):
        records = live_records(10_000, seed=10 + k, shift=0.1 * k, t0=1.7e9 + 60 * k)
        pane = pane_of(records, baseline, batch=2_000)
        entry = orjson.dumps({"amount": pane.to_state()["features"]["amount"]})
        per_feature += len(entry) - 2  # the braces belong to the enclosing object
        alone = pane_of(
            [{**r, "features": {"amount": r["features"]["amount"]}} for r in records], single
        )
        whole_panes += len(orjson.dumps(alone.to_state()))
    print(
        f"\n{binning}: bytes for 'amount' ({amount.histogram.edges.size} edges) over 5 panes × "
        f"10,000 events: "
        f"{per_feature} as entries of full pane states, {whole_panes} as one-feature panes"
    )
    assert per_feature < 8 * 1024
    assert whole_panes < 8 * 1024


# -- the histogram additions panes rely on -------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.floats(-1e300, 1e300), st.floats(-1e-300, 1e-300)), max_size=50),
    st.randoms(use_true_random=False),
)
def test_exact_sum_is_the_correctly_rounded_sum_in_any_grouping(values, rnd):
    total = sum((Fraction(v) for v in values), Fraction(0))
    terms = exact_sum(values)
    assert sum((Fraction(t) for t in terms), Fraction(0)) == total  # nothing lost
    assert (terms[0] if terms else 0.0) == math.fsum(values)  # first term correctly rounded
    shuffled = list(values)
    rnd.shuffle(shuffled)
    cut = rnd.randint(0, len(values))
    assert exact_sum(exact_sum(shuffled[:cut]), exact_sum(shuffled[cut:])) == terms


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 10**12), min_size=1, max_size=60).map(np.array))
def test_counts_encoding_round_trips(counts):
    encoded = encode_counts(counts)
    assert isinstance(encoded, dict) == (2 * np.count_nonzero(counts) < counts.size)
    assert (
        decode_counts(orjson.loads(orjson.dumps(encoded)), counts.size).tolist() == counts.tolist()
    )
    if isinstance(encoded, list):
        with pytest.raises(ValueError):
            decode_counts(encoded, counts.size + 1)
    elif counts[-1]:
        with pytest.raises(ValueError):
            decode_counts(encoded, counts.size - 1)


cat_values = st.lists(
    st.one_of(
        st.sampled_from(["a", "b", "NA", "", " none ", "zz", "1"]),
        st.none(),
        st.just(math.nan),
        st.sampled_from([1, 1.0, 2.5, True]),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(cat_values, st.sampled_from([["a", "b", "1"], ["a", "NA", "true"]]))
def test_categorical_fast_path_counts_like_the_general_one(values, categories):
    fast, slow = CategoricalHistogram(categories), CategoricalHistogram(categories)
    fast.update_many(values)  # a list: the dict-lookup path
    slow.update_many(iter(values))  # an iterator: value by value
    assert fast.to_state() == slow.to_state()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(numbers, st.sampled_from([math.inf, -math.inf, math.nan])), max_size=40))
def test_numeric_compact_state_round_trips(values):
    h = NumericHistogram(EDGES)
    h.update_many([v for v in values if not isinstance(v, str)])
    back = h.empty_like()
    back.load_compact_state(orjson.loads(orjson.dumps(h.to_compact_state())))
    assert back.to_state() == h.to_state()
    assert back.under_sum == h.under_sum and back.over_sum == h.over_sum
