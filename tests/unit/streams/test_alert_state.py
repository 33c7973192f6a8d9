"""AlertTracker: one event per state change, stable ids, old windows ignored, restartable."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.alert_state import AlertKey, AlertTracker
from streams.baseline import Baseline, NumericReference
from streams.histogram import NumericHistogram
from streams.pane import PaneState, columns_from_records
from streams.severity import Severity, Thresholds
from streams.snapshot import evaluate_window

T0 = 1_764_151_200.0
ALERT_FIELDS = [
    "alert_id",
    "type",
    "severity",
    "status",
    "model",
    "model_version",
    "feature",
    "segment",
    "metric",
    "value",
    "threshold",
    "window_start",
    "window_end",
    "message",
    "runbook_url",
    "emitted_at",
]
PSI_FOR = {"none": 0.02, "warning": 0.17, "critical": 0.41}


def snapshot(
    k: int,
    psi: float | str = "none",
    *,
    missing: float = 0.0,
    prediction_psi: float | None = None,
    final: bool = True,
    feature: str = "amount",
) -> dict[str, Any]:
    """The snapshot of the k-th 5-minute window (1-minute slide), judged like compare_column."""
    t = Thresholds()
    value = PSI_FOR[psi] if isinstance(psi, str) else psi
    snap: dict[str, Any] = {
        "model": "fraud",
        "model_version": "v2",
        "window_start": T0 + 60 * k,
        "window_end": T0 + 60 * k + 300,
        "final": final,
        "thresholds": t.to_dict(),
        "features": {
            feature: {
                "psi": value,
                "drift_status": str(t.psi_severity(value)),
                "missing_rate": missing,
                "reference_missing_rate": 0.01,
                "quality_status": str(t.missing_severity(missing, 0.01)),
                "count": 1000,
            }
        },
        "prediction": {},
    }
    if prediction_psi is not None:
        snap["prediction"] = {
            "psi": prediction_psi,
            "drift_status": str(t.psi_severity(prediction_psi)),
        }
    return snap


def run(tracker: AlertTracker, snaps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    events = []
    for snap in snaps:
        events += tracker.observe(snap, emitted_at=snap["window_end"] + 2)
    return events


def test_none_warning_critical_none_fires_twice_then_resolves():
    events = run(
        AlertTracker(),
        [snapshot(k, s) for k, s in enumerate(["none", "warning", "critical", "none"])],
    )
    assert [(e["status"], e["severity"]) for e in events] == [
        ("firing", "warning"),
        ("firing", "critical"),
        ("resolved", "critical"),
    ]
    warning, critical, resolved = events
    assert [e["threshold"] for e in events] == [0.1, 0.25, 0.1]
    assert warning["alert_id"] != critical["alert_id"]  # a new firing transition
    assert resolved["alert_id"] == critical["alert_id"]
    assert warning["window_start"] == T0 + 60 and critical["window_start"] == T0 + 120
    for e in events:
        assert list(e) == ALERT_FIELDS
        assert e["type"] == "data_drift" and e["metric"] == "psi" and e["feature"] == "amount"
        assert e["runbook_url"] == "docs/runbooks/data-drift.md"
        assert e["emitted_at"] == e["window_end"] + 2 and e["segment"] is None
    assert critical["message"] == (
        "PSI of amount is 0.41 (critical above 0.25) in window "
        "2025-11-26T10:02:00Z to 2025-11-26T10:07:00Z"
    )
    assert resolved["message"].startswith("PSI of amount is 0.02, back under 0.10 (was critical)")


def test_same_level_repeated_emits_nothing():
    events = run(AlertTracker(), [snapshot(k, "critical") for k in range(10)])
    assert len(events) == 1
    assert run(AlertTracker(), [snapshot(k, "none") for k in range(5)]) == []


def test_critical_back_to_warning_is_a_new_firing_event():
    events = run(AlertTracker(), [snapshot(0, "critical"), snapshot(1, "warning")])
    assert [(e["status"], e["severity"]) for e in events] == [
        ("firing", "critical"),
        ("firing", "warning"),
    ]


def test_an_older_window_is_ignored():
    tracker = AlertTracker()
    assert len(run(tracker, [snapshot(5, "critical")])) == 1
    # A late re-evaluation of an earlier window says all was fine: it must not resolve.
    assert run(tracker, [snapshot(2, "none"), snapshot(4, "warning")]) == []
    key = AlertKey("fraud", "v2", "data_drift", "amount")
    assert tracker.keys[key].severity == Severity.CRITICAL
    assert tracker.keys[key].window_end == T0 + 600
    [resolved] = run(tracker, [snapshot(6, "none")])
    assert resolved["status"] == "resolved"


def test_a_corrected_re_evaluation_of_the_latest_window_counts_and_keeps_the_id():
    tracker = AlertTracker()
    [first] = run(tracker, [snapshot(3, "warning")])
    [corrected] = run(tracker, [snapshot(3, "critical")])  # late events, same window
    assert corrected["severity"] == "critical"
    assert corrected["alert_id"] == first["alert_id"]  # same window: same alert
    assert run(tracker, [snapshot(3, "critical")]) == []


def test_ids_are_deterministic_across_trackers_and_windows():
    snaps = [snapshot(k, s) for k, s in enumerate(["warning", "none", "warning"])]
    a, b = run(AlertTracker(), snaps), run(AlertTracker(), snaps)
    assert [e["alert_id"] for e in a] == [e["alert_id"] for e in b]
    assert a[0]["alert_id"] != a[2]["alert_id"]  # a new episode, a new id
    assert len(a[0]["alert_id"]) == 32


def test_state_survives_a_restart():
    tracker = AlertTracker()
    [fired] = run(tracker, [snapshot(0, "critical"), snapshot(1, "critical")])
    raw = orjson.dumps(tracker.to_state())
    restarted = AlertTracker.from_state(orjson.loads(raw))
    assert restarted.to_state() == tracker.to_state()
    assert run(restarted, [snapshot(1, "critical"), snapshot(2, "critical")]) == []
    assert run(restarted, [snapshot(0, "none")]) == []  # older than what it had seen
    [resolved] = run(restarted, [snapshot(3, "none")])
    assert resolved["alert_id"] == fired["alert_id"]
    with pytest.raises(ValueError, match="format"):
        AlertTracker.from_state({"format": "nope", "keys": []})


def test_provisional_snapshots_are_ignored_unless_asked_for():
    provisional = snapshot(0, "critical", final=False)
    assert AlertTracker().observe(provisional, T0) == []
    assert len(AlertTracker(final_only=False).observe(provisional, T0)) == 1


def test_data_quality_and_prediction_drift_alerts():
    tracker = AlertTracker()
    events = run(tracker, [snapshot(0, "none", missing=0.30, prediction_psi=0.3)])
    by_type = {e["type"]: e for e in events}
    assert set(by_type) == {"data_quality", "prediction_drift"}
    quality = by_type["data_quality"]
    assert (quality["severity"], quality["metric"], quality["value"]) == (
        "critical",
        "missing_rate",
        0.30,
    )
    assert quality["threshold"] == pytest.approx(0.01 + 0.20)  # reference rate + the band
    assert quality["runbook_url"] == "docs/runbooks/data-quality.md"
    assert quality["message"].startswith("missing rate of amount is 30.0% (critical above 21.0%)")
    drift = by_type["prediction_drift"]
    assert drift["feature"] is None and drift["severity"] == "critical"
    assert drift["runbook_url"] == "docs/runbooks/prediction-drift.md"
    assert [e["type"] for e in run(tracker, [snapshot(1, "none", prediction_psi=0.01)])] == [
        "data_quality",
        "prediction_drift",
    ]


def test_a_statistic_without_a_value_leaves_the_key_alone():
    tracker = AlertTracker()
    run(tracker, [snapshot(0, "critical")])
    empty = snapshot(1, math.nan)
    empty["features"]["amount"].update(missing_rate=math.nan, count=0)
    assert run(tracker, [empty]) == []
    assert tracker.firing()[AlertKey("fraud", "v2", "data_drift", "amount")].window_end == T0 + 300


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["none", "warning", "critical"]), max_size=30))
def test_one_event_per_change_of_level(levels):
    events = run(AlertTracker(), [snapshot(k, s) for k, s in enumerate(levels)])
    changes = [(a, b) for a, b in zip(["none", *levels], levels, strict=False) if a != b]
    assert len(events) == len(changes)
    for (before, after), e in zip(changes, events, strict=True):
        if after == "none":
            assert (e["status"], e["severity"]) == ("resolved", before)
        else:
            assert (e["status"], e["severity"]) == ("firing", after)


def test_from_a_real_window_snapshot():
    edges = np.linspace(0.0, 10.0, 11)
    ref = NumericHistogram(edges)
    ref.update_many(np.random.default_rng(0).uniform(0, 10, 5000))
    baseline = Baseline("fraud", "v2", {"x": NumericReference("x", ref, edges, {})})
    tracker = AlertTracker()
    fired = []
    for k, high in enumerate([10.0, 14.0, 10.0]):
        pane = PaneState.empty(baseline)
        xs = np.random.default_rng(k).uniform(0, high, 2000)
        records = [{"features": {"x": float(x)}, "timestamp": T0 + 60 * k} for x in xs]
        pane.update(columns_from_records(baseline, records))
        snap = evaluate_window(baseline, pane, T0 + 60 * k, T0 + 60 * k + 300, final=True)
        fired += tracker.observe(snap, emitted_at=T0 + 60 * k + 301)
    assert [(e["type"], e["status"]) for e in fired] == [
        ("data_drift", "firing"),
        ("data_drift", "resolved"),
    ]
    assert fired[0]["value"] > 0.25 and fired[0]["severity"] == "critical"
