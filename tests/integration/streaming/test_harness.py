"""The harness's own arithmetic, at unit speed (no broker, no Redis, no worker)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from agents.pane_store import owner_view
from streams import drift
from streams.watermarks import Watermark, combine_watermarks
from streams.windows import WindowSpec

from .expected_alerts import PolicyKey, bh_significant, chi2_pvalue
from .harness import (
    CATEGORICAL,
    NUMERIC,
    SLIDE_S,
    WINDOW_S,
    Windows,
    drift_stream,
    make_events,
    numpy_counts,
    numpy_psi,
)


def test_windows_hold_the_events_the_worker_would_count_in_them() -> None:
    spec = WindowSpec(WINDOW_S * 1000, SLIDE_S * 1000)
    rng = random.Random(5)
    stamps = [1_795_000_000 + rng.uniform(0, 40) for _ in range(2_000)]
    members = Windows().members(stamps)
    brute: dict[int, list[int]] = {}
    for i, ts in enumerate(stamps):
        for start in spec.windows_of(round(ts * 1000)):
            brute.setdefault(start, []).append(i)
    assert members == brute
    for start, indices in members.items():
        assert all(start <= round(stamps[i] * 1000) < start + WINDOW_S * 1000 for i in indices)


def test_numpy_psi_agrees_with_the_library_on_the_baselines_bins(
    reference: tuple[Any, dict[str, list[Any]]],
) -> None:
    baseline, ref = reference
    stream = drift_stream(n=3_000, span_s=20, drift_s=(0, 20))  # all drifted
    for name in (*NUMERIC, *CATEGORICAL):
        values = [e["features"][name] for e in stream.events]
        reference_counts = baseline.features[name].coarse_counts(baseline.features[name].histogram)
        # The baseline's own reference histogram holds exactly the reference rows.
        assert numpy_counts(baseline.features[name], ref[name]).tolist() == (
            np.asarray(reference_counts, dtype=np.float64).tolist()
        )
        current = baseline.features[name].empty_histogram()
        current.update_many(values)
        expected = drift.psi(reference_counts, baseline.features[name].coarse_counts(current))
        got = numpy_psi(baseline.features[name], ref[name], values)
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-15), name


def test_drift_changes_only_the_drifting_features() -> None:
    stamps = list(range(0, 10_000, 1))
    calm = make_events(stamps, seed=1)
    moved = make_events(stamps, seed=1, drifting=lambda t: t >= 5_000)
    for a, b in zip(calm, moved, strict=True):
        for name in ("age", "income", "tenure", "channel"):
            assert a["features"][name] == b["features"][name]
        if a["timestamp"] * 1000 < 5_000:
            assert a == b
    late = [e["features"]["amount"] for e in moved[5_000:]]
    early = [e["features"]["amount"] for e in calm[5_000:]]
    assert np.mean(late) > 2 * np.mean(early)
    assert "crypto" in {e["features"]["merchant"] for e in moved[5_000:]}


def events_of(key: PolicyKey, psis: list[float], significant: bool = True) -> list[Any]:
    """Feed a key 10 s windows sliding by 2 s, as the streaming tests' windows are."""
    out = []
    for k, psi in enumerate(psis):
        event = key.observe(2.0 * k, 2.0 * k + 10.0, psi, significant)
        if event is not None:
            out.append((k, *event[:2]))
    return out


def test_expected_alerts_follow_the_documented_rules() -> None:
    # critical at once; warning only once the run reaches a window sharing no row with its
    # first (5 slides later); not significant: nothing.
    assert events_of(PolicyKey(), [0.3]) == [(0, "firing", "critical")]
    assert events_of(PolicyKey(), [0.15] * 6) == [(5, "firing", "warning")]
    assert events_of(PolicyKey(), [0.15] * 4 + [0.02]) == []
    assert events_of(PolicyKey(), [0.3], significant=False) == []
    # hysteresis: critical ends under 0.2, warning under 0.08; then a 5-window cooldown in
    # which only critical may fire again.
    assert events_of(PolicyKey(), [0.3, 0.21, 0.19, 0.081, 0.079]) == [
        (0, "firing", "critical"),
        (2, "firing", "warning"),
        (4, "firing", "info"),
    ]
    calm = [0.3, 0.01] + [0.15] * 12
    assert events_of(PolicyKey(), calm) == [
        (0, "firing", "critical"),
        (1, "resolved", "critical"),
        (7, "firing", "warning"),  # windows 2-6 are the cooldown; the run began at 2
    ]
    # adaptive: a key that learnt a noisy normal raises its bands (at most x3)
    noisy = PolicyKey(learnt=[0.02, 0.12] * 5)
    assert noisy.bands()[1] == pytest.approx(0.07 + 2 * np.std([0.02, 0.12] * 5, ddof=1))


def test_bh_and_chi_square_helpers_match_a_hand_computation() -> None:
    # BH at 0.01 over 4 tests: sorted p x 4 / rank, made monotone from the top.
    assert bh_significant({"a": 0.001, "b": 0.004, "c": 0.0075, "d": 0.5}) == {
        "a": True,
        "b": True,
        "c": True,
        "d": False,
    }
    assert bh_significant({"a": 0.006, "b": 0.5}) == {"a": False, "b": False}  # 0.006 > 0.005
    ref, cur = np.array([50.0, 30.0, 20.0, 0.0]), np.array([40.0, 30.0, 20.0, 10.0])
    expected = np.clip(ref / ref.sum(), 1e-4, 1) / np.clip(ref / ref.sum(), 1e-4, 1).sum() * 100
    statistic = float(((cur - expected) ** 2 / expected).sum())
    assert chi2_pvalue(ref, cur) == pytest.approx(stats.chi2.sf(statistic, 3), rel=1e-9)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0.01, 0.045, 0.06, 0.085, 0.12, 0.2, 0.3, 0.9]), st.booleans()),
        min_size=1,
        max_size=60,
    )
)
def test_expected_alerts_agree_with_the_library(windows: list[tuple[float, bool]]) -> None:
    """The test-side model and `streams.alert_policy` are two readings of one rulebook: on
    any sequence of windows they must give the same events (as `numpy_psi` and the library
    must give the same PSI)."""
    from streams.alert_policy import AlertPolicy
    from streams.alert_state import AlertTracker

    tracker = AlertTracker(policy=AlertPolicy())
    key = PolicyKey()
    for k, (psi, significant) in enumerate(windows):
        start = 1_795_000_000.0 + 2.0 * k
        snapshot = {
            "model": "m",
            "model_version": "v",
            "window_start": start,
            "window_end": start + 10.0,
            "final": True,
            "features": {
                "f": {"psi": psi, "ks_pvalue": 1e-9 if significant else 0.5, "count": 1000}
            },
        }
        got = [
            (e["status"], e["severity"], e["window_start"])
            for e in tracker.observe(snapshot, start + 11.0)
            if e["type"] == "data_drift"
        ]
        event = key.observe(start, start + 10.0, psi, significant)
        assert got == ([] if event is None else [event]), (k, windows[: k + 1])


# -- agents.pane_store.owner_view: the idle clock only runs while an owner polls ----------


def _active(now_ms: int) -> dict[str, int | None]:
    w = Watermark(2_000, idle_timeout_ms=5_000, now_ms=0)
    w.observe(now_ms - 100, now_ms=now_ms)  # an event just arrived
    return w.to_state()


def test_a_partition_whose_owner_died_is_seen_as_it_was_and_holds_the_watermark_back() -> None:
    died_at = 100_000
    orphan = _active(died_at)  # its owner flushed it at died_at, then was killed
    healthy = Watermark(2_000, idle_timeout_ms=5_000, now_ms=0)
    now = died_at + 30_000
    healthy.observe(now - 50, now_ms=now)
    # Without the owner's view: idle for 30 s, so it no longer holds anything back.
    naive = [Watermark.from_state(orphan), Watermark.from_state(healthy.to_state())]
    assert combine_watermarks(naive, now) == now - 50 - 2_000
    # As its owner last saw it: active, so it holds the combined watermark back.
    viewed = owner_view(orphan, heartbeat_ms=died_at, now_ms=now)
    marks = [Watermark.from_state(viewed), Watermark.from_state(healthy.to_state())]
    assert combine_watermarks(marks, now) == died_at - 100 - 2_000


def test_a_partition_whose_owner_polls_it_goes_idle_and_follows_the_wall_clock() -> None:
    state = _active(100_000)
    now = 130_000
    # Owner alive: its heartbeat is a flush interval old, the partition is idle.
    viewed = Watermark.from_state(owner_view(state, heartbeat_ms=now - 1_000, now_ms=now))
    assert viewed.is_idle(now)
    assert combine_watermarks([viewed], now) == 99_900 + 29_000 - 2_000
    # No heartbeat recorded (state from an older worker): unchanged.
    assert owner_view(state, heartbeat_ms=None, now_ms=now) == state
    assert owner_view(state, heartbeat_ms=now, now_ms=None) == state
