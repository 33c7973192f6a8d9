"""The harness's own arithmetic, at unit speed (no broker, no Redis, no worker)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from agents.pane_store import owner_view
from streams import drift
from streams.watermarks import Watermark, combine_watermarks
from streams.windows import WindowSpec

from .harness import (
    CATEGORICAL,
    NUMERIC,
    SLIDE_S,
    WINDOW_S,
    Windows,
    drift_stream,
    expected_transitions,
    make_events,
    numpy_counts,
    numpy_psi,
    severity,
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


def test_expected_transitions_are_one_event_per_change() -> None:
    levels = [(0.0, "none"), (2.0, "warning"), (4.0, "critical"), (6.0, "critical")]
    levels += [(8.0, "warning"), (10.0, "none"), (12.0, "none")]
    assert expected_transitions(levels) == [
        ("firing", "warning", 2.0),
        ("firing", "critical", 4.0),
        ("firing", "warning", 8.0),
        ("resolved", "warning", 10.0),
    ]
    assert severity(0.0999) == "none" and severity(0.1) == "warning"
    assert severity(0.25) == "warning" and severity(0.2501) == "critical"


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
