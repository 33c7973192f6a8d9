"""Fairness of merged outcome panes against a direct numpy computation over the raw rows."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.baseline import Baseline
from streams.cohorts import OTHER_SEGMENT
from streams.outcomes import OutcomePane, outcome_sections

GROUPS = ["a", "b", "c", "d", "e"]


def close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=1e-15)


def make_rows(n: int, seed: int) -> dict[str, Any]:
    """Binary rows whose groups differ in size, positive rate and error rates."""
    rng = np.random.default_rng(seed)
    group = rng.choice(GROUPS, n, p=[0.4, 0.3, 0.2, 0.07, 0.03])
    shift = {g: 0.15 * i for i, g in enumerate(GROUPS)}
    score = np.clip(rng.beta(2, 3, n) + np.array([shift[g] for g in group]), 0, 1)
    y = (rng.uniform(size=n) < np.clip(score - 0.1, 0, 1)).astype(float)
    score[rng.uniform(size=n) < 0.02] = np.nan  # no score: not in the positive rate
    return {
        "group": group,
        "band": rng.choice(["young", "old"], n),
        "score": score,
        "y": y,
        "labelled": rng.uniform(size=n) < 0.5,
        "delay": rng.exponential(600, n),
    }


def feed(pane: OutcomePane, rows: dict[str, Any], idx: np.ndarray) -> None:
    predicted = [None if math.isnan(s) else float(s) for s in rows["score"][idx]]
    segments = [
        {"gender": g, "band": b} for g, b in zip(rows["group"][idx], rows["band"][idx], strict=True)
    ]
    pane.count_predictions(predicted, segments)
    j = rows["labelled"][idx]
    pane.join(
        [p for p, k in zip(predicted, j, strict=True) if k],
        rows["y"][idx][j].tolist(),
        rows["delay"][idx][j],
        [s for s, k in zip(segments, j, strict=True) if k],
    )


def direct(rows: dict[str, Any], attr_values: np.ndarray, m: int, bounds: tuple[float, float]):
    """Group rates, parity ratio and equalized-odds differences, straight from the rows."""
    s, y, lab = rows["score"], rows["y"], rows["labelled"]
    scored = ~np.isnan(s)
    groups, positive_rates, tprs, fprs = {}, [], [], []
    for g in sorted(set(attr_values), key=lambda v: (v == OTHER_SEGMENT, v)):
        in_g = attr_values == g
        sc = in_g & scored
        pos_true = in_g & lab & scored & (y == 1)
        neg_true = in_g & lab & scored & (y == 0)
        pr = np.mean(s[sc] >= 0.5) if sc.any() else math.nan
        tpr = np.mean(s[pos_true] >= 0.5) if pos_true.any() else math.nan
        fpr = np.mean(s[neg_true] >= 0.5) if neg_true.any() else math.nan
        groups[g] = {
            "predictions": int(in_g.sum()),
            "labelled": int((in_g & lab & scored).sum()),
            "positive_rate": pr,
            "tpr": tpr,
            "fpr": fpr,
        }
        if g != OTHER_SEGMENT:
            if sc.sum() >= m:
                positive_rates.append(pr)
            if pos_true.sum() >= m:
                tprs.append(tpr)
            if neg_true.sum() >= m:
                fprs.append(fpr)
    ratio = (
        min(positive_rates) / max(positive_rates)
        if len(positive_rates) >= 2 and max(positive_rates) > 0
        else math.nan
    )
    if len(positive_rates) < 2:
        status = "insufficient"
    elif math.isnan(ratio):
        status = "ok"
    else:
        status = "ok" if bounds[0] <= ratio <= bounds[1] else "violated"
    return {
        "groups": groups,
        "demographic_parity_ratio": ratio,
        "equalized_odds_tpr_difference": max(tprs) - min(tprs) if len(tprs) >= 2 else math.nan,
        "equalized_odds_fpr_difference": max(fprs) - min(fprs) if len(fprs) >= 2 else math.nan,
        "status": status,
    }


def assert_matches(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert list(got["groups"]) == list(want["groups"])
    for g, figures in want["groups"].items():
        for k, v in figures.items():
            assert close(got["groups"][g][k], v), (g, k, got["groups"][g][k], v)
    for k in (
        "demographic_parity_ratio",
        "equalized_odds_tpr_difference",
        "equalized_odds_fpr_difference",
    ):
        assert close(got[k], want[k]), (k, got[k], want[k])
    assert got["status"] == want["status"]


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    k=st.integers(1, 5),
    n=st.integers(0, 1500),
    m=st.sampled_from([1, 30, 80]),
    lo=st.sampled_from([0.3, 0.8]),
)
def test_fairness_of_merged_panes_matches_numpy(seed, k, n, m, lo):
    rows = make_rows(n, seed)
    reference = {"gender": {"a": {"positive_rate": 0.3, "tpr": 0.5, "fpr": 0.1, "n": 400}}}
    baseline = Baseline(
        "m",
        "v1",
        {},
        task="binary",
        protected=["gender", "band"],
        fairness_reference=reference,
        min_group_size=m,
        fairness_bounds=(lo, 1.25),
        max_segment_values=4,  # five groups: "e" folds into the other group
    )
    owner = np.random.default_rng(seed).integers(0, k, n)
    panes = []
    for p in range(k):
        pane = OutcomePane.empty(baseline)
        feed(pane, rows, np.flatnonzero(owner == p))
        panes.append(pane)
    random.Random(seed).shuffle(panes)
    window = OutcomePane.empty(baseline)
    for pane in panes:
        window += pane
    fairness = outcome_sections(baseline, window)["fairness"]
    assert list(fairness) == ["gender", "band"]

    # The cap rule: pinned "a" (in the reference), then the first three other names seen.
    kept = {"a", *sorted(set(rows["group"]) - {"a"})[:3]}
    gender = np.array([g if g in kept else OTHER_SEGMENT for g in rows["group"]], dtype=object)
    assert_matches(fairness["gender"], direct(rows, gender, m, (lo, 1.25)))
    assert_matches(fairness["band"], direct(rows, rows["band"], m, (lo, 1.25)))
    assert fairness["gender"]["reference"] == reference["gender"]
    assert fairness["band"]["reference"] is None
    assert fairness["gender"]["bounds"] == [lo, 1.25]
    assert fairness["gender"]["min_group_size"] == m
    orjson.dumps(fairness)  # NaN becomes null; nothing else in it that orjson refuses


def section_of(groups: dict[str, list[tuple[float, float]]], **kw: Any) -> dict[str, Any]:
    """Fairness of one attribute from ``{group: [(score, label), ...]}``, all labelled."""
    baseline = Baseline("m", "v1", {}, task=kw.pop("task", "binary"), protected=["g"], **kw)
    pane = OutcomePane.empty(baseline)
    for g, pairs in groups.items():
        scores = [s for s, _ in pairs]
        pane.count_predictions(scores, [{"g": g}] * len(pairs))
        pane.join(scores, [y for _, y in pairs], np.zeros(len(pairs)), [{"g": g}] * len(pairs))
    return outcome_sections(baseline, pane)["fairness"]["g"]


def test_four_fifths_rule():
    # a: 5 of 10 positive, b: 3 of 10 → ratio 0.6, below 0.8.
    a = [(0.9, 1.0)] * 5 + [(0.1, 0.0)] * 5
    b = [(0.9, 1.0)] * 3 + [(0.1, 1.0)] * 2 + [(0.1, 0.0)] * 5
    f = section_of({"a": a, "b": b}, min_group_size=5)
    assert f["demographic_parity_ratio"] == pytest.approx(0.6)
    assert f["equalized_odds_tpr_difference"] == pytest.approx(1.0 - 0.6)
    assert f["equalized_odds_fpr_difference"] == 0.0
    assert f["status"] == "violated" and f["groups_compared"] == 2
    assert (
        section_of({"a": a, "b": b}, min_group_size=5, fairness_bounds=(0.5, 2))["status"] == "ok"
    )
    # Exactly on the bound is inside it: 4 of 10 against 5 of 10.
    c = [(0.9, 1.0)] * 4 + [(0.1, 0.0)] * 6
    on_bound = section_of({"a": a, "c": c}, min_group_size=5)
    assert on_bound["demographic_parity_ratio"] == 0.8 and on_bound["status"] == "ok"


def test_min_group_size_is_a_floor_on_each_rates_denominator():
    a = [(0.9, 1.0)] * 5 + [(0.1, 0.0)] * 5
    b = [(0.9, 1.0)] * 3 + [(0.1, 1.0)] * 2 + [(0.1, 0.0)] * 5
    at_floor = section_of({"a": a, "b": b}, min_group_size=10)  # 10 scored each: compared
    assert at_floor["groups_compared"] == 2 and at_floor["status"] == "violated"
    # 5 labelled positives per group: below a floor of 10, so no equalized-odds figure.
    assert math.isnan(at_floor["equalized_odds_tpr_difference"])
    above = section_of({"a": a, "b": b}, min_group_size=11)
    assert above["groups_compared"] == 0 and above["status"] == "insufficient"
    assert math.isnan(above["demographic_parity_ratio"])


def test_no_positive_decision_anywhere_is_not_a_violation():
    f = section_of({"a": [(0.1, 0.0)] * 40, "b": [(0.2, 1.0)] * 40})
    assert math.isnan(f["demographic_parity_ratio"]) and f["status"] == "ok"


def test_the_other_group_is_shown_but_never_compared():
    groups = {"a": [(0.9, 1.0)] * 40, "b": [(0.9, 1.0)] * 40, OTHER_SEGMENT: [(0.1, 0.0)] * 40}
    f = section_of(groups)
    assert f["groups"][OTHER_SEGMENT]["positive_rate"] == 0.0
    assert f["demographic_parity_ratio"] == 1.0 and f["status"] == "ok"


def test_other_tasks_report_groups_without_parity():
    baseline = Baseline("m", "v1", {}, task="regression", protected=["g"])
    pane = OutcomePane.empty(baseline)
    pane.count_predictions([1.0, 2.0], [{"g": "a"}, {"g": "b"}])
    pane.join([1.0, 2.0], [1.5, 2.0], np.zeros(2), [{"g": "a"}, {"g": "b"}])
    f = outcome_sections(baseline, pane)["fairness"]["g"]
    assert f["status"] == "not_applicable" and math.isnan(f["demographic_parity_ratio"])
    assert f["groups"] == {
        "a": {"predictions": 1, "labelled": 1, "mae": 0.5},
        "b": {"predictions": 1, "labelled": 1, "mae": 0.0},
    }
