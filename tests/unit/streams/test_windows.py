from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.watermarks import CombinedWatermark, Watermark, combine_watermarks
from streams.windows import (
    WindowSpec,
    classify,
    closed_windows,
    due_windows,
    windows_to_reevaluate,
)

MIN = 60_000


@st.composite
def specs(draw: st.DrawFn) -> WindowSpec:
    slide = draw(st.integers(1, 1_000))
    panes = draw(st.integers(1, 8))
    grace = draw(st.integers(0, 3 * slide * panes))
    return WindowSpec(slide * panes, slide, grace)


timestamps = st.integers(-(10**6), 10**13)


def containing(spec: WindowSpec, ts: int) -> list[int]:
    """Window starts around ts that contain it, found by brute force."""
    lo = spec.pane_start(ts) - 2 * spec.size_ms
    return [s for s in range(lo, ts + 1, spec.slide_ms) if s <= ts < s + spec.size_ms]


# --- the spec -----------------------------------------------------------------------------------


def test_spec_validation() -> None:
    WindowSpec(300_000, 60_000, 0)
    WindowSpec(60_000, 60_000)
    with pytest.raises(ValueError, match="not a multiple of slide"):
        WindowSpec(300_000, 70_000, 0)
    with pytest.raises(ValueError, match="positive"):
        WindowSpec(0, 0, 0)
    with pytest.raises(ValueError, match="positive"):
        WindowSpec(300, -100, 0)
    with pytest.raises(ValueError, match="grace"):
        WindowSpec(300, 100, -1)
    with pytest.raises(TypeError):
        WindowSpec(300.0, 100, 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        WindowSpec(300, True, 0)


def test_parse_from_durations() -> None:
    assert WindowSpec.parse("5m", "1m", "30s") == WindowSpec(300_000, 60_000, 30_000)
    assert WindowSpec.parse("1h") == WindowSpec(3_600_000, 3_600_000, 0)
    with pytest.raises(ValueError, match="invalid duration"):
        WindowSpec.parse("5 minutes")


def test_hand_made_arithmetic() -> None:
    spec = WindowSpec(5 * MIN, MIN, 0)
    assert spec.panes_per_window == 5
    assert spec.pane_start(0) == 0 and spec.pane_start(MIN - 1) == 0 and spec.pane_start(MIN) == MIN
    assert spec.pane_start(-1) == -MIN  # floor, not truncation
    assert spec.window_end(2 * MIN) == 7 * MIN
    assert spec.panes_of_window(0) == [0, MIN, 2 * MIN, 3 * MIN, 4 * MIN]
    assert spec.windows_of_pane(4 * MIN) == [0, MIN, 2 * MIN, 3 * MIN, 4 * MIN]
    assert spec.windows_of(4 * MIN + 5) == spec.windows_of_pane(4 * MIN)
    with pytest.raises(ValueError, match="not a multiple"):
        spec.panes_of_window(5)
    with pytest.raises(ValueError, match="not a multiple"):
        spec.windows_of_pane(MIN + 1)


def test_tumbling() -> None:
    spec = WindowSpec(MIN, MIN)
    assert spec.windows_of(90_000) == [MIN] and spec.panes_of_window(MIN) == [MIN]


@given(specs(), timestamps)
def test_every_pane_is_in_exactly_size_over_slide_windows(spec: WindowSpec, ts: int) -> None:
    pane = spec.pane_start(ts)
    assert pane <= ts < pane + spec.slide_ms and pane % spec.slide_ms == 0
    windows = spec.windows_of_pane(pane)
    assert len(windows) == spec.panes_per_window == len(set(windows))
    assert windows == containing(spec, ts) == sorted(windows)
    for start in windows:
        assert pane in spec.panes_of_window(start)
    # ... and a window is its panes, nothing more.
    assert spec.panes_of_window(windows[0]) == [
        windows[0] + i * spec.slide_ms for i in range(spec.panes_per_window)
    ]


# --- closing windows ----------------------------------------------------------------------------


def test_closed_windows_by_hand() -> None:
    spec = WindowSpec(300, 100, 50)
    assert closed_windows(spec, 350, 620) == [100, 200, 300]  # ends 400, 500, 600
    assert closed_windows(spec, 400, 500) == [200]  # end 400 closed already; 500 now
    assert closed_windows(spec, 399, 400) == [100]
    assert closed_windows(spec, 620, 620) == []
    assert closed_windows(spec, 620, 100) == []  # never backwards
    assert due_windows(spec, 350, 620) == [200, 300]  # ends in (400, 670]
    tumbling = WindowSpec(100, 100)
    assert closed_windows(tumbling, -1, 300) == [-100, 0, 100, 200]


@given(specs(), st.lists(st.integers(-(10**5), 10**5), min_size=2, max_size=30))
def test_each_window_closes_exactly_once_and_in_order(spec: WindowSpec, marks: list[int]) -> None:
    # Watermarks may stand still or (for a caller that did not clamp them) go back.
    closed: list[int] = []
    high = marks[0]
    for mark in marks[1:]:
        closed += closed_windows(spec, high, mark)
        high = max(high, mark)
    expected = [
        s
        for s in range(spec.pane_start(marks[0]) - spec.size_ms, high + 1, spec.slide_ms)
        if marks[0] < s + spec.size_ms <= high
    ]
    assert closed == expected
    assert closed == sorted(set(closed))


@given(specs(), st.integers(-(10**6), 10**6), st.integers(0, 10**5))
def test_due_comes_grace_before_closed(spec: WindowSpec, previous: int, step: int) -> None:
    new = previous + step
    shifted = closed_windows(spec, previous + spec.grace_ms, new + spec.grace_ms)
    assert due_windows(spec, previous, new) == shifted


# --- lateness -----------------------------------------------------------------------------------


SPEC = WindowSpec(size_ms=300, slide_ms=100, grace_ms=100)


@pytest.mark.parametrize(
    ("ts", "watermark", "expected", "reevaluate"),
    [
        # watermark 500: frontier 600; windows ending <= 600 are due, <= 500 closed.
        (650, 500, "on_time", []),  # pane 600: its first window ends at 700
        (600, 500, "on_time", []),
        (599, 500, "late_within_grace", [300]),  # pane 500: window [300, 600) is due
        (450, 500, "late_within_grace", [300]),  # [200, 500) is final, [300, 600) is not
        (350, 500, "late_within_grace", [300]),  # pane 300: windows end 400, 500, 600
        (299, 500, "too_late", []),  # pane 200: its last window [200, 500) is closed
        (0, 500, "too_late", []),
        (10_000, None, "on_time", []),
        (0, None, "on_time", []),
    ],
)
def test_classify_by_hand(
    ts: int, watermark: int | None, expected: str, reevaluate: list[int]
) -> None:
    assert classify(SPEC, ts, watermark) == expected
    assert windows_to_reevaluate(SPEC, ts, watermark) == reevaluate


def test_tumbling_lateness_is_the_grace() -> None:
    spec = WindowSpec(MIN, MIN, 30_000)
    frontier = 2 * MIN + 10_000  # window [MIN, 2 MIN) is due, not closed: grace until 2 MIN + 30 s
    watermark = frontier - spec.grace_ms
    assert classify(spec, MIN + 5, watermark) == "late_within_grace"
    assert windows_to_reevaluate(spec, MIN + 5, watermark) == [MIN]
    assert classify(spec, 2 * MIN + 5, watermark) == "on_time"
    frontier = 2 * MIN + 30_000  # now [MIN, 2 MIN) is closed
    assert classify(spec, MIN + 5, frontier - spec.grace_ms) == "too_late"


def test_without_grace_nothing_is_late_within_grace_for_tumbling_windows() -> None:
    spec = WindowSpec(MIN, MIN, 0)
    assert classify(spec, MIN - 1, MIN) == "too_late"
    assert classify(spec, MIN, MIN) == "on_time"


def test_small_grace_may_leave_nothing_to_reevaluate() -> None:
    spec = WindowSpec(300, 100, 0)
    # frontier = watermark = 500: [200, 500) closed; the event still counts in [300, 600).
    assert classify(spec, 350, 500) == "late_within_grace"
    assert windows_to_reevaluate(spec, 350, 500) == []


@given(specs(), timestamps, timestamps)
def test_classification_agrees_with_the_windows(spec: WindowSpec, ts: int, watermark: int) -> None:
    frontier = watermark + spec.grace_ms
    ends = [s + spec.size_ms for s in spec.windows_of(ts)]
    verdict = classify(spec, ts, watermark)
    again = windows_to_reevaluate(spec, ts, watermark)
    if verdict == "too_late":
        assert all(end <= watermark for end in ends)
        assert again == []
    elif verdict == "late_within_grace":
        assert any(end <= frontier for end in ends)
        assert any(end > watermark for end in ends)
        assert all(watermark < s + spec.size_ms <= frontier for s in again)
        if spec.grace_ms >= spec.slide_ms:
            assert again
    else:
        assert all(end > frontier for end in ends)
        assert again == []


@given(specs(), st.lists(st.integers(0, 5_000), max_size=20), st.integers(0, 10**5))
def test_reevaluation_targets_windows_emitted_but_not_final(
    spec: WindowSpec, steps: list[int], ts: int
) -> None:
    # An evaluator walking the watermark forward from before any data (events are >= 0).
    start = watermark = -spec.grace_ms - spec.size_ms
    due: set[int] = set()
    closed: set[int] = set()
    for step in steps:
        due.update(due_windows(spec, watermark, watermark + step))
        closed.update(closed_windows(spec, watermark, watermark + step))
        watermark += step
    # Every window closes after it was due, bar those ending before the evaluator started.
    assert {s for s in closed if s + spec.size_ms > start + spec.grace_ms} <= due
    expected = [s for s in spec.windows_of(ts) if s in due and s not in closed]
    assert windows_to_reevaluate(spec, ts, watermark) == expected


# --- watermarks ---------------------------------------------------------------------------------


def test_watermark_is_max_event_time_minus_grace() -> None:
    w = Watermark(grace_ms=1_000)
    assert w.value is None and w.frontier is None and w.max_event_ms is None
    for ts in (5_000, 3_000, 9_000, 8_000):
        w.observe(ts)
    assert w.max_event_ms == 9_000 and w.frontier == 9_000 and w.value == 8_000


def test_idle_partition_advances_by_the_elapsed_wall_clock() -> None:
    w = Watermark(grace_ms=0, idle_timeout_ms=10_000, now_ms=0)
    w.observe(100_000, now_ms=1_000)
    w.advance(11_000)  # exactly the timeout: not idle yet
    assert not w.is_idle(11_000) and w.value == 100_000
    w.advance(11_001)
    assert w.is_idle(11_001) and w.value == 110_001
    w.advance(20_000)  # repeated ticks do not compound
    assert w.value == 119_000
    # An event on time for a steady producer (1 s of delay) wakes it up on time...
    w.observe(118_500, now_ms=20_000)
    assert not w.is_idle(20_000)
    assert w.value == 119_000 and w.max_event_ms == 118_500  # ...and nothing moved back
    w.advance(25_000)
    assert w.value == 119_000
    w.advance(31_000)  # idle again: from where it stood at its last event
    assert w.value == 119_000 + 11_000


def test_idle_timeout_needs_the_wall_clock() -> None:
    w = Watermark(idle_timeout_ms=1_000)
    with pytest.raises(ValueError, match="now_ms"):
        w.observe(5)
    with pytest.raises(ValueError):
        Watermark(grace_ms=-1)


def test_watermark_without_timeout_never_idles() -> None:
    w = Watermark(grace_ms=0)
    w.observe(10, now_ms=0)
    w.advance(10**12)
    assert not w.is_idle(10**12) and w.value == 10


def test_watermark_state_round_trips() -> None:
    w = Watermark(grace_ms=500, idle_timeout_ms=1_000, now_ms=0)
    w.observe(10_000, now_ms=100)
    w.advance(5_000)
    copy = Watermark.from_state(w.to_state())
    assert copy.to_state() == w.to_state()
    copy.advance(6_000)
    w.advance(6_000)
    assert copy.value == w.value == 10_000 + 5_900 - 500


@given(
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 5_000), st.booleans()), max_size=40),
    st.integers(0, 2_000),
    st.integers(1, 3_000),
)
def test_watermark_never_moves_back(
    steps: list[tuple[int, int, bool]], grace: int, timeout: int
) -> None:
    w = Watermark(grace_ms=grace, idle_timeout_ms=timeout, now_ms=0)
    now, last = 0, None
    for ts, wait, is_event in steps:
        now += wait
        if is_event:
            w.observe(ts, now_ms=now)
        else:
            w.advance(now)
        if last is not None:
            assert w.value is not None and w.value >= last
        last = w.value
        assert w.max_event_ms is None or w.frontier is None or w.frontier >= w.max_event_ms


def test_combined_is_the_minimum_over_active_partitions() -> None:
    c = CombinedWatermark(grace_ms=100)
    for p in range(3):
        c.assign(p)
    c.observe(0, 5_000)
    c.observe(1, 7_000)
    assert c.value(now_ms=0) is None  # partition 2 has not spoken
    c.observe(2, 6_000)
    assert c.value(now_ms=0) == 4_900
    assert c.partitions == [0, 1, 2] and c[0].value == 4_900
    c.revoke(0)
    assert c.value(now_ms=0) == 5_900
    c.observe(0, 1_000)  # re-assigned with an old event: the combined value stays
    assert c.value(now_ms=0) == 5_900


def test_idle_partition_stops_holding_the_minimum_back() -> None:
    c = CombinedWatermark(grace_ms=0, idle_timeout_ms=10_000)
    c.assign(0, now_ms=0)
    c.assign(1, now_ms=0)
    c.observe(0, 50_000, now_ms=1_000)
    c.observe(1, 20_000, now_ms=1_000)
    assert c.value(now_ms=1_000) == 20_000
    for now in range(2_000, 40_000, 1_000):
        c.observe(0, 50_000 + now, now_ms=now)  # partition 0 keeps talking
    # partition 1 went quiet at 1 s; from 11 s on it no longer counts.
    assert c.value(now_ms=39_000) == 50_000 + 39_000
    # All quiet: the idle partitions' own clocks still carry the minimum forward.
    assert c.value(now_ms=100_000) == min(20_000 + 99_000, 89_000 + 61_000)


def test_partition_never_heard_from_holds_back_until_idle() -> None:
    c = CombinedWatermark(idle_timeout_ms=5_000)
    c.assign(0, now_ms=0)
    c.assign(1, now_ms=0)
    c.observe(0, 9_000, now_ms=1_000)
    assert c.value(now_ms=5_000) is None
    assert c.value(now_ms=5_001) == 9_000
    assert combine_watermarks([], now_ms=0) is None


@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 10**5), st.integers(0, 3_000)),
        max_size=60,
    )
)
def test_combined_never_moves_back(events: list[tuple[int, int, int]]) -> None:
    c = CombinedWatermark(grace_ms=50, idle_timeout_ms=2_000)
    for p in range(4):
        c.assign(p, now_ms=0)
    now, last = 0, None
    for partition, ts, wait in events:
        now += wait
        c.observe(partition, ts, now_ms=now)
        value = c.value(now)
        if last is not None:
            assert value is not None and value >= last
        last = value
