"""The alert policy: levels, minimum duration, hysteresis, cooldown, multiple testing,
adaptive thresholds, accuracy / latency / volume alerts and meta-monitoring."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from streams.adaptive import DAY, AdaptiveConfig, History, adaptive_scale
from streams.alert_policy import (
    AlertContext,
    AlertPolicy,
    Bands,
    FeaturePolicy,
    HealthPolicy,
    Timing,
)
from streams.alert_state import AlertKey, AlertTracker
from streams.multiple_testing import bh_adjust, bh_reject
from streams.severity import Severity, Thresholds

T0 = 1_764_151_200.0
SIGNIFICANT, NOISE = 1e-9, 0.5


def snap(
    k: int,
    psi: dict[str, float] | float = 0.0,
    *,
    pvalues: dict[str, float] | float = SIGNIFICANT,
    count: int = 1000,
    latency_p95: float | None = None,
    performance: dict[str, float] | None = None,
    unknown: list[str] | None = None,
    final: bool = True,
) -> dict[str, Any]:
    """The k-th 5-minute tumbling window; one numeric feature "amount" by default."""
    psis = psi if isinstance(psi, dict) else {"amount": psi}
    t = Thresholds()
    features = {}
    for name, value in psis.items():
        p = pvalues.get(name, NOISE) if isinstance(pvalues, dict) else pvalues
        features[name] = {
            "type": "numeric",
            "psi": value,
            "ks_pvalue": p,
            "drift_status": str(t.psi_severity(value)),
            "missing_rate": 0.0,
            "reference_missing_rate": 0.0,
            "quality_status": "none",
            "count": count,
        }
    s: dict[str, Any] = {
        "model": "fraud",
        "model_version": "v2",
        "window_start": T0 + 300 * k,
        "window_end": T0 + 300 * k + 300,
        "final": final,
        "count": count,
        "thresholds": t.to_dict(),
        "features": features,
        "prediction": {},
        "latency": {} if latency_p95 is None else {"p95": latency_p95, "count": count},
        "performance": performance or {},
        "quality": {"unknown_feature_names": unknown or []},
    }
    return s


def feed(
    tracker: AlertTracker,
    snaps: list[dict[str, Any]],
    context: AlertContext | None = None,
    *,
    types: tuple[str, ...] = ("data_drift",),
) -> list[tuple[int, str, str]]:
    """(window index, status, severity) of the events of the given types, in order."""
    out = []
    for s in snaps:
        k = int((s["window_start"] - T0) // 300)
        for e in tracker.observe(s, s["window_end"] + 2, context):
            if e["type"] in types:
                out.append((k, e["status"], e["severity"]))
    return out


def drift_events(psis: list[float], policy: AlertPolicy | None = None, **kw: Any) -> list[Any]:
    tracker = AlertTracker(policy=policy or AlertPolicy())
    return feed(tracker, [snap(k, p, **kw) for k, p in enumerate(psis)])


# -- levels and timing ------------------------------------------------------------------------


def test_three_levels_with_minimum_duration():
    # info from 0.05, warning from 0.1, critical above 0.25; info / warning need 2 windows.
    assert drift_events([0.07, 0.02]) == []  # one info window: not enough
    assert drift_events([0.07, 0.07]) == [(1, "firing", "info")]
    assert drift_events([0.15, 0.02, 0.15, 0.02]) == []  # never twice in a row
    assert drift_events([0.15, 0.15]) == [(1, "firing", "warning")]
    # critical fires at once
    assert drift_events([0.3]) == [(0, "firing", "critical")]
    # warning then critical: the streak at >= warning counts the critical window too
    assert drift_events([0.15, 0.3]) == [(1, "firing", "critical")]


def test_minimum_duration_counts_windows_of_distinct_data():
    """With 5-minute windows sliding by 1 minute, 2 windows of data are 6 windows."""

    def sliding(k: int, psi: float) -> dict[str, Any]:
        s = snap(0, psi)
        s["window_start"], s["window_end"] = T0 + 60 * k, T0 + 60 * k + 300
        return s

    tracker = AlertTracker(policy=AlertPolicy())
    fired = []
    for k in range(8):
        fired += [(k, e["severity"]) for e in tracker.observe(sliding(k, 0.15), T0 + 60 * k + 302)]
    assert fired == [(5, "warning")]  # window 5 starts where window 0 ended
    # one odd minute of data lifts 5 overlapping windows: not enough
    tracker = AlertTracker(policy=AlertPolicy())
    psis = [0.02] * 3 + [0.15] * 5 + [0.02] * 5
    assert not [e for k, p in enumerate(psis) for e in tracker.observe(sliding(k, p), 1.0)]
    # critical needs one window
    tracker = AlertTracker(policy=AlertPolicy())
    assert [e["severity"] for e in tracker.observe(sliding(0, 0.3), 1.0)] == ["critical"]


def test_hysteresis_resolves_only_below_the_lower_level():
    events = drift_events([0.15, 0.15, 0.09, 0.085, 0.081, 0.079])
    assert events == [(1, "firing", "warning"), (5, "firing", "info")]  # 0.079: below 0.08
    # info itself ends below 0.8 x 0.05 = 0.04
    assert drift_events([0.15, 0.15, 0.045, 0.041, 0.039])[-1] == (4, "resolved", "info")
    tracker = AlertTracker(policy=AlertPolicy())
    snaps = [snap(k, p) for k, p in enumerate([0.3, 0.22, 0.21, 0.19, 0.03])]
    events = []
    for s in snaps:
        events += tracker.observe(s, s["window_end"] + 2)
    assert [(e["status"], e["severity"], e["threshold"]) for e in events] == [
        ("firing", "critical", 0.25),
        ("firing", "warning", pytest.approx(0.2)),  # critical ended below 0.8 x 0.25
        ("resolved", "warning", pytest.approx(0.08)),
    ]
    assert events[1]["message"].startswith(
        "PSI of amount is 0.19, back under 0.20 (was critical, now warning) in window"
    )
    assert events[2]["message"].startswith(
        "PSI of amount is 0.03, back under 0.08 (was warning) in window"
    )


def test_a_level_sitting_on_its_threshold_does_not_flap():
    rng = np.random.default_rng(0)
    psis = list(0.1 + rng.normal(0, 0.008, 200))  # around the warning threshold
    static = AlertTracker()
    flips = feed(static, [snap(k, p) for k, p in enumerate(psis)])
    policy = drift_events(psis)
    assert len(flips) > 40
    assert len(policy) <= 3


def test_cooldown_blocks_a_non_critical_refire_but_not_critical():
    calm, warn = 0.02, 0.15
    events = drift_events([warn, warn, calm] + [warn] * 6)
    # resolved at window 2; windows 3-7 are the cooldown; fires again at 8
    assert events == [
        (1, "firing", "warning"),
        (2, "resolved", "warning"),
        (8, "firing", "warning"),
    ]
    events = drift_events([warn, warn, calm, 0.4])
    assert events[-1] == (3, "firing", "critical")
    no_cooldown = AlertPolicy(timing=Timing(cooldown_windows=0))
    assert drift_events([warn, warn, calm, warn, warn], no_cooldown)[-1] == (4, "firing", "warning")


def test_custom_timing_per_type_and_bands_per_feature():
    policy = AlertPolicy(
        timing_by_type={"data_drift": Timing(for_warning=3, for_critical=2)},
        features={"amount": FeaturePolicy(psi=Bands(None, 0.2, 0.5))},
    )
    assert drift_events([0.15] * 5, policy) == []  # 0.15 is under this feature's 0.2
    assert drift_events([0.3, 0.3, 0.3], policy) == [(2, "firing", "warning")]
    assert drift_events([0.6, 0.6], policy) == [(1, "firing", "critical")]


def test_a_correction_of_the_latest_window_does_not_count_twice():
    tracker = AlertTracker(policy=AlertPolicy())
    assert feed(tracker, [snap(0, 0.15), snap(0, 0.15)]) == []  # same window again
    assert feed(tracker, [snap(1, 0.15)]) == [(1, "firing", "warning")]
    # a correction that raises the latest window to critical does count
    tracker = AlertTracker(policy=AlertPolicy())
    assert feed(tracker, [snap(0, 0.15), snap(0, 0.3)]) == [(0, "firing", "critical")]
    # an older window never moves the state
    assert feed(tracker, [snap(-3, 0.01), snap(-2, 0.01)]) == []


def test_provisional_snapshots_are_ignored_and_small_windows_are_no_evidence():
    assert drift_events([0.4], final=False) == []
    assert drift_events([0.4, 0.4], count=150) == []  # fewer than min_drift_count values
    assert drift_events([0.4], AlertPolicy(min_drift_count=100), count=150) == [
        (0, "firing", "critical")
    ]


# -- multiple testing -------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 1e-12, 0.01, 1.0])),
        min_size=1,
        max_size=60,
    )
)
def test_bh_matches_scipy(pvalues):
    p = np.array(pvalues)
    np.testing.assert_allclose(bh_adjust(p), stats.false_discovery_control(p), rtol=1e-12)
    for q in (0.01, 0.05, 0.2):
        expected = stats.false_discovery_control(p) <= q
        assert bh_reject(p, q).tolist() == expected.tolist()


def test_bh_on_random_pvalues_and_nans():
    rng = np.random.default_rng(7)
    for m in (1, 2, 10, 50, 500):
        p = np.concatenate([rng.uniform(size=m), rng.uniform(0, 1e-4, size=m // 5)])
        np.testing.assert_allclose(bh_adjust(p), stats.false_discovery_control(p), rtol=1e-12)
    with_nan = np.array([0.001, np.nan, 0.02, 0.5])
    adjusted = bh_adjust(with_nan)
    assert math.isnan(adjusted[1])
    np.testing.assert_allclose(
        adjusted[[0, 2, 3]], stats.false_discovery_control(with_nan[[0, 2, 3]])
    )
    assert bh_reject(with_nan, 0.05).tolist() == [True, False, True, False]
    with pytest.raises(ValueError):
        bh_reject([0.1], 0.0)
    with pytest.raises(ValueError):
        bh_adjust([1.5])


def test_bh_keeps_the_false_alarm_rate_of_a_null_family():
    rng = np.random.default_rng(3)
    runs = 4000
    any_rejected = sum(bh_reject(rng.uniform(size=50), 0.01).any() for _ in range(runs))
    assert any_rejected / runs < 0.02  # about q under the global null
    uncorrected = sum((rng.uniform(size=50) < 0.01).any() for _ in range(runs))
    assert uncorrected / runs > 0.3


def test_psi_alerts_only_when_its_test_survives_bh_and_psi_decides_the_severity():
    names = [f"f{i}" for i in range(50)]
    psis = dict.fromkeys(names, 0.02) | {"f0": 0.3, "f1": 0.3, "f2": 0.03}
    # f0 very significant; f1 p = 0.003 (fine alone, not among 50 tests); f2 significant but
    # its PSI says nothing.
    pvalues = dict.fromkeys(names, 0.6) | {"f0": 1e-8, "f1": 0.003, "f2": 1e-9}
    tracker = AlertTracker(policy=AlertPolicy())
    events = []
    for k in range(3):
        events += [e for e in tracker.observe(snap(k, psis, pvalues=pvalues), T0 + 400 + 60 * k)]
    assert [(e["feature"], e["severity"]) for e in events] == [("f0", "critical")]
    assert "KS p-value 1e-08, significant at FDR 0.01 over 50 features" in events[0]["message"]
    # the same f1 with the correction off does fire
    off = AlertTracker(policy=AlertPolicy(fdr=None))
    fired = {e["feature"] for e in off.observe(snap(0, psis, pvalues=pvalues), T0 + 400)}
    assert fired == {"f0", "f1"}
    # a feature can be taken out of the family (judged by PSI alone)
    solo = AlertPolicy(features={"f1": FeaturePolicy(multiple_testing=False)})
    fired = {
        e["feature"] for e in AlertTracker(policy=solo).observe(snap(0, psis, pvalues=pvalues), 1)
    }
    assert fired == {"f0", "f1"}


def test_a_firing_alert_holds_while_psi_holds_even_if_a_window_is_not_significant():
    tracker = AlertTracker(policy=AlertPolicy())
    assert feed(tracker, [snap(0, 0.3)]) == [(0, "firing", "critical")]
    assert feed(tracker, [snap(1, 0.3, pvalues=NOISE)]) == []  # still critical
    assert feed(tracker, [snap(2, 0.02, pvalues=NOISE)]) == [(2, "resolved", "critical")]


def test_categorical_features_use_the_chi_square_pvalue():
    s = snap(0, 0.3, pvalues=NOISE)
    entry = s["features"]["amount"]
    del entry["ks_pvalue"]
    entry.update(type="categorical", chi2_pvalue=1e-7)
    [event] = AlertTracker(policy=AlertPolicy()).observe(s, 1.0)
    assert event["severity"] == "critical" and "chi-square p-value 1e-07" in event["message"]


# -- adaptive thresholds ----------------------------------------------------------------------


def test_history_is_mergeable_bounded_and_serialisable():
    rng = np.random.default_rng(1)
    values = rng.gamma(2.0, 0.02, 400)
    times = np.sort(rng.uniform(0, 20 * DAY, 400))
    whole, a, b = History(), History(), History()
    for i, (t, x) in enumerate(zip(times, values, strict=True)):
        whole.add(t, x)
        (a if i % 3 else b).add(t, x)
    a.merge(b)
    assert a.n == whole.n == 400
    assert a.mean == pytest.approx(values.mean()) == whole.mean
    assert whole.std == pytest.approx(values.std(ddof=1))
    assert a.std == pytest.approx(whole.std)
    assert len(whole.buckets) <= 30
    restored = History.from_state(orjson.loads(orjson.dumps(whole.to_state())))
    assert restored.to_state() == whole.to_state()
    # 30 days kept: 40 days later only the last 30 days' buckets remain
    long = History()
    for day in range(70):
        long.add(day * DAY, float(day))
    assert len(long.buckets) == 30 and long.mean == pytest.approx(np.mean(range(40, 70)))
    with pytest.raises(ValueError):
        History(bucket_s=2.0).merge(History(bucket_s=3.0))


def test_adaptive_scale_never_lowers_and_is_capped():
    config = AdaptiveConfig()
    flat = History()
    for day in range(20):
        flat.add(day * DAY, 0.01)  # a perfectly calm feature
    assert adaptive_scale(flat, config, 0.1) == 1.0  # the static bands stay
    noisy = History()
    for day in range(20):
        noisy.add(day * DAY, 0.12 + 0.04 * (day % 2))
    expected = (noisy.mean + 2 * noisy.std) / 0.1
    assert adaptive_scale(noisy, config, 0.1) == pytest.approx(expected)
    wild = History()
    for day in range(20):
        wild.add(day * DAY, 2.0 * (day % 2))
    assert adaptive_scale(wild, config, 0.1) == 3.0  # at most max_raise
    few = History()
    for day in range(6):
        few.add(day * DAY, 0.5 * (day % 2))
    assert adaptive_scale(few, config, 0.1) == 1.0  # fewer than 7 observations
    assert adaptive_scale(noisy, AdaptiveConfig(enabled=False), 0.1) == 1.0


def test_a_recurring_pattern_is_learnt_once_its_episode_is_over():
    """The weekend mix: PSI 0.15 for a while, then calm, then 0.15 again."""
    weekend, weekday = 0.15, 0.02
    psis = [weekday] * 10 + [weekend] * 10 + [weekday] * 10 + [weekend] * 10
    events = drift_events(psis)
    # The second time it is only logged (info): the bands rose x2.2 with the first episode.
    assert events == [
        (11, "firing", "warning"),
        (20, "resolved", "warning"),
        (31, "firing", "info"),
    ]
    # without adaptivity it fires every time
    static_bands = AlertPolicy(adaptive=AdaptiveConfig(enabled=False))
    assert [e[1] for e in drift_events(psis, static_bands)] == ["firing", "resolved", "firing"]


def test_a_persistent_shift_never_teaches_the_threshold_to_ignore_it():
    psis = [0.02] * 10 + [0.3] * 200
    tracker = AlertTracker(policy=AlertPolicy())
    events = feed(tracker, [snap(k, p) for k, p in enumerate(psis)])
    assert events == [(10, "firing", "critical")]
    state = tracker.keys[AlertKey("fraud", "v2", "data_drift", "amount")]
    assert state.history is not None and state.history.n == 10  # only the calm windows
    assert state.pending is not None and state.pending.n == 200


def test_adaptive_bands_are_explained_in_the_message():
    rng = np.random.default_rng(5)
    calm = list(rng.uniform(0.05, 0.13, 30))  # a noisy feature, learnt as normal
    tracker = AlertTracker(policy=AlertPolicy(timing=Timing(for_info=100, for_warning=100)))
    feed(tracker, [snap(k, p) for k, p in enumerate(calm)])
    events = tracker.observe(snap(40, 0.5), T0)
    [event] = [e for e in events if e["type"] == "data_drift"]
    assert event["severity"] == "critical"
    assert event["threshold"] > 0.25
    assert "bands raised x" in event["message"] and "by this key's history" in event["message"]


# -- accuracy, latency, volume ----------------------------------------------------------------


def test_accuracy_drop_in_points_from_the_baseline():
    context = AlertContext(task="binary", baseline_performance={"accuracy": 0.91})
    tracker = AlertTracker(policy=AlertPolicy())

    def perf(acc: float, labelled: int = 500) -> dict[str, Any]:
        return {"accuracy": acc, "labelled": labelled}

    snaps = [
        snap(0, performance=perf(0.90)),  # 1 point: nothing
        snap(1, performance=perf(0.88)),  # 3 points: warning, 1st window
        snap(2, performance=perf(0.80, labelled=40)),  # too few labels: no evidence
        snap(3, performance=perf(0.88)),  # 2nd window at warning
        snap(4, performance=perf(0.84)),  # 7 points: critical
        snap(5, performance=perf(0.897)),  # 1.3 points: below 0.8 x 2
    ]
    events = []
    for s in snaps:
        events += [
            e for e in tracker.observe(s, s["window_end"], context) if e["type"] == "accuracy_drop"
        ]
    assert [(e["status"], e["severity"]) for e in events] == [
        ("firing", "warning"),
        ("firing", "critical"),
        ("resolved", "critical"),
    ]
    assert events[0]["metric"] == "accuracy_drop" and events[0]["value"] == pytest.approx(3.0)
    assert events[0]["runbook_url"] == "docs/runbooks/accuracy-drop.md"
    # regression: MAE, in percent of the baseline
    reg = AlertContext(task="regression", baseline_performance={"mae": 2.0})
    [event] = [
        e
        for e in AlertTracker(policy=AlertPolicy()).observe(
            snap(0, performance={"mae": 2.3, "labelled": 500}), 1.0, reg
        )
        if e["type"] == "accuracy_drop"
    ]
    assert event["severity"] == "critical" and event["value"] == pytest.approx(15.0)


def test_latency_p95():
    tracker = AlertTracker(policy=AlertPolicy())
    events = feed(
        tracker,
        [snap(k, latency_p95=v) for k, v in enumerate([120, 250, 260, 600, 170, 150])],
        types=("latency",),
    )
    assert events == [
        (2, "firing", "warning"),
        (3, "firing", "critical"),
        (4, "firing", "warning"),  # 170 ms: under critical's 400 ms end, not warning's 160 ms
        (5, "resolved", "warning"),
    ]


def test_volume_against_the_same_window_a_day_earlier():
    tracker = AlertTracker(policy=AlertPolicy())
    day = 24 * 12  # 5-minute windows a day
    yesterday = [snap(k, count=1000) for k in range(0, day, 5)]  # every 5th one is enough
    assert feed(tracker, yesterday, types=("volume",)) == []  # nothing to compare with yet
    today = [snap(day + k, count=c) for k, c in enumerate([950, 400, 380, 60, 50, 900, 3500])]
    events = []
    for s in today:
        events += [e for e in tracker.observe(s, s["window_end"]) if e["type"] == "volume"]
    assert [(e["status"], e["severity"], e["metric"]) for e in events] == [
        ("firing", "warning", "volume_ratio"),  # 0.40 then 0.38: two windows under 0.5
        ("firing", "critical", "volume_ratio"),  # 0.06: under 0.1
        ("resolved", "critical", "volume_ratio"),  # 0.9: above 0.6
    ]
    assert events[1]["message"].startswith(
        "window volume / the same window a day earlier is 0.06 (critical below 0.10)"
    )
    # a surge (3.5x) needs two windows, and the cooldown holds it back here
    assert events[-1]["value"] == pytest.approx(0.9)


def test_volume_against_the_baseline_rate_and_a_given_day_ago_count():
    policy = AlertPolicy(timing=Timing(for_warning=1))
    rate = AlertContext(baseline_rate=10.0)  # 3000 events expected in 300 s
    [event] = [
        e
        for e in AlertTracker(policy=policy).observe(snap(0, count=12_000), 1.0, rate)
        if e["type"] == "volume"
    ]
    assert (event["severity"], event["value"]) == ("warning", 4.0)
    assert "the baseline rate" in event["message"]
    given = AlertContext(volume_day_ago=20_000)
    [event] = [
        e
        for e in AlertTracker(policy=policy).observe(snap(0, count=1000), 1.0, given)
        if e["type"] == "volume"
    ]
    assert (event["severity"], event["value"]) == ("critical", 0.05)
    # too small a reference says nothing
    tiny = AlertContext(volume_day_ago=10)
    events = AlertTracker(policy=policy).observe(snap(0, count=0), 1.0, tiny)
    assert not [e for e in events if e["type"] == "volume"]


# -- meta-monitoring --------------------------------------------------------------------------


def test_baseline_age_and_coverage():
    tracker = AlertTracker(policy=AlertPolicy())
    old = AlertContext(baseline_created_at=T0 - 100 * DAY)
    events = tracker.observe(snap(0, unknown=["new_feature"]), T0, old)
    health = {e["check"]: e for e in events if e["type"] == "monitor_health"}
    assert set(health) == {"baseline_age", "baseline_coverage"}
    assert health["baseline_age"]["severity"] == "warning"
    assert health["baseline_age"]["value"] == pytest.approx(100.0, abs=0.1)
    coverage = health["baseline_coverage"]
    assert coverage["value"] == 0.5 and coverage["feature"] is None
    assert "features without a baseline: new_feature" in coverage["message"]
    assert coverage["runbook_url"] == "docs/runbooks/monitor-health.md"
    fresh = AlertContext(baseline_created_at=T0 - DAY)
    events = tracker.observe(snap(1), T0 + 60, fresh)
    assert sorted((e["check"], e["status"]) for e in events) == [
        ("baseline_age", "resolved"),
        ("baseline_coverage", "resolved"),
    ]


def test_no_window_evaluated_for_a_while():
    tracker = AlertTracker(policy=AlertPolicy())
    assert tracker.check_health(T0) == []  # nothing seen yet: nothing to say
    tracker.observe(snap(0), T0 + 302)
    assert tracker.check_health(T0 + 302 + 600) == []
    [warning] = tracker.check_health(T0 + 302 + 1000)
    assert (warning["check"], warning["severity"], warning["status"]) == (
        "stale_window",
        "warning",
        "firing",
    )
    assert warning["emitted_at"] == T0 + 302 + 1000
    assert tracker.check_health(T0 + 302 + 1200) == []
    [critical] = tracker.check_health(T0 + 302 + 4000)
    assert critical["severity"] == "critical"
    events = tracker.observe(snap(70), T0 + 302 + 4100)
    assert [(e["check"], e["status"]) for e in events] == [("stale_window", "resolved")]
    off = AlertPolicy(health=HealthPolicy(stale_warning_s=None, stale_critical_s=None))
    quiet = AlertTracker(policy=off)
    quiet.observe(snap(0), T0)
    assert quiet.check_health(T0 + DAY) == []


def test_alerts_firing_without_acknowledgement():
    no_staleness = HealthPolicy(stale_warning_s=None, stale_critical_s=None)
    tracker = AlertTracker(policy=AlertPolicy(health=no_staleness))
    [fired] = tracker.observe(snap(0, 0.4), T0)
    assert fired["severity"] == "critical"
    assert tracker.check_health(T0 + 1800) == []
    [nag] = tracker.check_health(T0 + 3700)
    assert (nag["check"], nag["severity"], nag["value"]) == ("unacknowledged", "warning", 1.0)
    assert fired["alert_id"] in nag["message"] and "data_drift amount" in nag["message"]
    acked = AlertContext(acknowledged=frozenset({fired["alert_id"]}))
    [done] = tracker.check_health(T0 + 3800, acked)
    assert (done["check"], done["status"]) == ("unacknowledged", "resolved")


def test_health_keys_are_distinct_and_ids_of_other_keys_are_unchanged():
    a = AlertKey("m", "v", "monitor_health", None, "baseline_age")
    b = AlertKey("m", "v", "monitor_health", None, "stale_window")
    assert a.alert_id(1.0) != b.alert_id(1.0)
    plain = AlertKey("fraud", "v2", "data_drift", "amount")
    raw = orjson.dumps(["fraud", "v2", "data_drift", "amount"]) + repr(1.0).encode()
    assert plain.alert_id(1.0) == hashlib.sha256(raw).hexdigest()[:32]


# -- configuration and state ------------------------------------------------------------------


def test_policy_round_trips_through_json():
    policy = AlertPolicy(
        psi=Bands(0.04, 0.12, 0.3),
        fdr=0.05,
        timing=Timing(for_warning=3, cooldown_windows=10, resolve_ratio=0.7),
        adaptive=AdaptiveConfig(k=3.0, min_observations=14),
        features={"amount": FeaturePolicy(psi=Bands(None, 0.2, 0.4), adaptive=False)},
        health=HealthPolicy(baseline_max_age_days=30.0),
    )
    raw = orjson.dumps(policy.to_dict())
    assert AlertPolicy.from_dict(orjson.loads(raw)) == policy
    assert AlertPolicy.from_dict({}) == AlertPolicy()
    assert AlertPolicy.from_dict({"fdr": None}).fdr is None
    assert AlertPolicy.from_dict({"timing": {"for_warning": 4}}).timing.for_warning == 4
    with pytest.raises(ValueError, match="unknown alert policy setting"):
        AlertPolicy.from_dict({"psi_warn": 0.2})
    with pytest.raises(ValueError, match="unknown timing setting"):
        AlertPolicy.from_dict({"timing": {"for": 2}})
    with pytest.raises(ValueError):
        Bands(0.3, 0.1, 0.25)
    with pytest.raises(ValueError):
        Timing(for_warning=0)
    with pytest.raises(ValueError):
        AlertPolicy(fdr=0.0)


def test_psi_bands_come_from_the_baseline_unless_the_policy_sets_them():
    policy = AlertPolicy()
    assert policy.psi_bands(Thresholds()) == Bands(0.05, 0.1, 0.25)
    assert policy.psi_bands(Thresholds(psi_warning=0.2, psi_critical=0.4)) == Bands(0.05, 0.2, 0.4)
    assert policy.psi_bands(Thresholds(psi_warning=0.04)).info is None
    custom = AlertPolicy(prediction_psi=Bands(None, 0.05, 0.1))
    assert custom.psi_bands(Thresholds()) == Bands(None, 0.05, 0.1)  # the prediction
    assert custom.psi_bands(Thresholds(), "amount") == Bands(0.05, 0.1, 0.25)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from([0.01, 0.04, 0.07, 0.09, 0.15, 0.22, 0.4]), min_size=2, max_size=40),
    st.integers(0, 39),
)
def test_a_restart_anywhere_gives_the_same_events(psis, cut):
    snaps = [snap(k, p, latency_p95=100 + 1000 * p) for k, p in enumerate(psis)]
    context = AlertContext(baseline_created_at=T0 - 95 * DAY)

    def events(tracker: AlertTracker, part: list[dict[str, Any]]) -> list[Any]:
        return [
            (e["type"], e["status"], e["severity"], e["alert_id"])
            for s in part
            for e in tracker.observe(s, s["window_end"] + 2, context)
        ]

    whole = events(AlertTracker(policy=AlertPolicy()), snaps)
    first = AlertTracker(policy=AlertPolicy())
    before = events(first, snaps[:cut])
    raw = orjson.dumps(first.to_state())
    restarted = AlertTracker.from_state(orjson.loads(raw), policy=AlertPolicy())
    assert restarted.to_state() == first.to_state()
    assert before + events(restarted, snaps[cut:]) == whole


def test_an_old_state_loads_under_a_policy():
    old = AlertTracker()
    old.observe(snap(0, 0.3), T0)
    tracker = AlertTracker.from_state(old.to_state(), policy=AlertPolicy())
    events = feed(tracker, [snap(1, 0.3), snap(2, 0.01)])
    assert events == [(2, "resolved", "critical")]


def test_without_a_policy_nothing_changes():
    tracker = AlertTracker()
    events = feed(tracker, [snap(0, 0.07), snap(1, 0.15), snap(2, 0.09)])
    assert events == [(1, "firing", "warning"), (2, "resolved", "warning")]
    assert tracker.check_health(T0 + DAY) == []
    assert tracker.policy is None and Severity.INFO not in {
        s.severity for s in tracker.keys.values()
    }


def test_context_from_a_baseline():
    from streams.baseline import Baseline

    baseline = Baseline(
        "fraud", "v2", {}, task="binary", performance={"accuracy": 0.9}, created_at=T0 - 5
    )
    context = AlertContext.from_baseline(baseline, acknowledged=["a1"], baseline_rate=2.0)
    assert context == AlertContext(
        baseline_created_at=T0 - 5,
        task="binary",
        baseline_performance={"accuracy": 0.9},
        baseline_rate=2.0,
        acknowledged=frozenset({"a1"}),
    )


def test_a_baseline_carries_its_model_s_policy_and_refuses_a_bad_one():
    from streams.baseline import Baseline
    from streams.errors import BaselineFormatError

    policy = AlertPolicy(fdr=0.05, health=HealthPolicy(stale_warning_s=60.0))
    baseline = Baseline("fraud", "v2", {}, alert_policy=policy)
    again = Baseline.from_json(baseline.to_json())
    assert again.alert_policy == policy
    plain = orjson.loads(Baseline("fraud", "v2", {}).to_json())
    assert plain["alert_policy"] is None
    assert Baseline.from_dict(plain).alert_policy is None
    del plain["alert_policy"]  # a baseline written before policies: the defaults apply
    assert Baseline.from_dict(plain).alert_policy is None
    for bad, message in [
        ({"psi_warn": 0.2}, "unknown alert policy setting"),
        ({"timing": {"for_warning": "2"}}, "whole number of windows"),
        ({"health": {"stale_warning_s": "15m"}}, "stale_warning_s must be a positive number"),
        ({"health": {"stale_warning_s": 7200}}, "must not exceed stale_critical_s"),
        ({"min_drift_count": 2.5}, "min_drift_count must be a whole number"),
        ({"fdr": "0.01"}, "fdr must be in"),
        ([1, 2], "alert_policy must be an object"),
    ]:
        raw = {**orjson.loads(baseline.to_json()), "alert_policy": bad}
        with pytest.raises(BaselineFormatError, match=message):
            Baseline.from_dict(raw)


def test_a_health_check_with_nothing_new_leaves_the_state_as_it_was():
    """The evaluator checks health at every tick and stores nothing after a check that sent
    nothing: that loses nothing only because such a check changes no byte of the state."""
    tracker = AlertTracker(policy=AlertPolicy())
    context = AlertContext(baseline_created_at=T0 - 10 * DAY, acknowledged=frozenset({"x"}))
    [fired] = [e for e in tracker.observe(snap(0, 0.4), T0, context) if e["type"] == "data_drift"]
    before = orjson.dumps(tracker.to_state())
    for later in (1.0, 60.0, 600.0):
        assert tracker.check_health(T0 + later, context) == []
        assert orjson.dumps(tracker.to_state()) == before
    assert tracker.check_health(T0 + 1000, context)  # stale: now it has something to say
    assert orjson.dumps(tracker.to_state()) != before
    assert fired["severity"] == "critical"
