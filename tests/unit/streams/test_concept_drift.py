"""Change detectors on streams with a known change point, across seeds; and the verdict."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from streams.concept_drift import ADWIN, PageHinkley, concept_drift_verdict

CHANGE = 2000
SEEDS = range(20)


def errors(seed: int, p0: float = 0.1, p1: float = 0.4, n: int = 4000) -> list[float]:
    """A model's 0/1 error stream whose error rate jumps at CHANGE."""
    rng = np.random.default_rng(seed)
    p = np.where(np.arange(n) < CHANGE, p0, p1)
    return (rng.uniform(size=n) < p).astype(float).tolist()


def shifted(seed: int, shift: float = 1.0, n: int = 4000) -> list[float]:
    """Unit-variance Gaussian values whose mean moves by ``shift`` at CHANGE."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=n) + np.where(np.arange(n) < CHANGE, 0.0, shift)).tolist()


def detections(detector: PageHinkley | ADWIN, stream: list[float]) -> list[int]:
    found = []
    for t, x in enumerate(stream):
        detector.update(x)
        if detector.drift_detected:
            found.append(t)
    return found


def assert_detects(make, stream, max_delay: int, max_false_alarms: int = 1) -> None:
    """Across SEEDS: at most ``max_false_alarms`` seeds alarm before the change, and every
    seed detects it within ``max_delay`` values."""
    false_alarms, delays = 0, []
    for seed in SEEDS:
        found = detections(make(), stream(seed))
        false_alarms += any(t < CHANGE for t in found)
        after = [t - CHANGE for t in found if t >= CHANGE]
        delays.append(after[0] if after else math.inf)
    assert false_alarms <= max_false_alarms
    assert max(delays) <= max_delay, delays


# --- Page-Hinkley ---------------------------------------------------------------------------


def test_page_hinkley_detects_a_rise_in_the_error_rate():
    # λ = 50 needs ~50 / (0.4 − mean) ≈ 150–250 values past the change; none before it.
    assert_detects(lambda: PageHinkley(mode="up"), errors, max_delay=400)


def test_page_hinkley_detects_a_gaussian_mean_shift():
    # λ is in the units of the data: on unit-variance values river's λ = 50, δ = 0.005 alarms
    # on a third of stationary runs. δ a quarter of the shift to detect keeps the drift of
    # the statistic negative before the change (Page's rule of thumb), λ = 25 keeps the
    # chance of a stationary excursion that high small.
    assert_detects(lambda: PageHinkley(delta=0.25, threshold=25, mode="up"), shifted, 100)


def test_page_hinkley_modes_watch_one_direction():
    down = [1.0 - e for e in errors(0)]  # the error rate falls: good news
    assert detections(PageHinkley(mode="up"), down) == []
    assert detections(PageHinkley(mode="down"), down)[0] > CHANGE
    assert detections(PageHinkley(mode="both"), down) == detections(PageHinkley(mode="down"), down)
    with pytest.raises(ValueError, match="mode"):
        PageHinkley(mode="sideways")  # type: ignore[arg-type]


def test_page_hinkley_waits_for_min_instances_and_restarts_after_a_detection():
    ph = PageHinkley(min_instances=30, threshold=5, mode="up")
    found = detections(ph, [0.0] * 10 + [100.0] * 40)
    assert found and found[0] == 29  # the jump at 10 is only reported at the 30th value
    assert ph.n_detections == len(found) and ph.n < 30  # each detection started afresh


# --- ADWIN ----------------------------------------------------------------------------------


def test_adwin_detects_a_rise_in_the_error_rate():
    assert_detects(ADWIN, errors, max_delay=300)


def test_adwin_detects_a_gaussian_mean_shift():
    assert_detects(ADWIN, shifted, max_delay=200)


def test_adwin_window_forgets_the_old_concept():
    stream = errors(3, n=6000)
    adwin = ADWIN()
    detections(adwin, stream)
    # Detections cut the window back to (about) the new concept, whose mean it estimates.
    assert adwin.width < 6000 - CHANGE + 200
    assert adwin.estimation == pytest.approx(0.4, abs=0.05)


@pytest.mark.parametrize("clock", [1, 32])
def test_adwin_window_is_exactly_the_latest_values(clock):
    """The buckets summarise exactly the last `width` values, across merges and cuts."""
    stream = shifted(5, shift=2.0)
    adwin = ADWIN(clock=clock)
    for t, x in enumerate(stream, start=1):
        adwin.update(x)
        if t % 250 == 0 or adwin.drift_detected:
            recent = np.asarray(stream[t - adwin.width : t])
            assert adwin.estimation == pytest.approx(recent.mean(), abs=1e-9)
            assert adwin.variance == pytest.approx(recent.var(), rel=1e-9)
    assert adwin.n_detections >= 1


def test_adwin_memory_is_logarithmic_and_stationary_streams_do_not_alarm():
    rng = np.random.default_rng(0)
    adwin = ADWIN()
    assert detections(adwin, (rng.uniform(size=100_000) < 0.1).astype(float).tolist()) == []
    assert adwin.width == 100_000
    rows = len(adwin.to_state()["rows"])
    assert rows <= math.log2(100_000 / adwin.max_buckets) + 2
    assert adwin.n_buckets <= adwin.max_buckets * rows
    assert all(len(row) <= adwin.max_buckets for row in adwin.to_state()["rows"])


def test_adwin_validates_its_parameters():
    with pytest.raises(ValueError):
        ADWIN(delta=0)
    with pytest.raises(ValueError):
        ADWIN(max_buckets=1)


# --- both: state, missing values, river ----------------------------------------------------


@pytest.mark.parametrize("make", [lambda: PageHinkley(mode="up"), ADWIN], ids=["ph", "adwin"])
@pytest.mark.parametrize("cut", [0, 1, 1500, 2050, 2100])
def test_state_round_trip_resumes_exactly(make, cut):
    stream = errors(1)
    whole = make()
    expected = detections(whole, stream)
    first = make()
    found = detections(first, stream[:cut])
    state = json.loads(json.dumps(first.to_state(), allow_nan=False))
    resumed = type(first).from_state(state)
    assert resumed.to_state() == first.to_state()
    found += [cut + t for t in detections(resumed, stream[cut:])]
    assert found == expected and resumed.to_state() == whole.to_state()


@pytest.mark.parametrize("make", [PageHinkley, ADWIN], ids=["ph", "adwin"])
def test_non_finite_values_are_ignored(make):
    plain, noisy = make(), make()
    stream = errors(2, n=500)
    detections(plain, stream)
    detections(noisy, [v for x in stream for v in (x, math.nan, math.inf)])
    assert noisy.to_state() == plain.to_state()


def test_adwin_state_must_add_up():
    state = ADWIN().to_state() | {"width": 3}
    with pytest.raises(ValueError, match="add up"):
        ADWIN.from_state(state)


def test_page_hinkley_matches_river_exactly():
    drift = pytest.importorskip("river.drift")
    for seed in range(5):
        for stream in (errors(seed), shifted(seed)):
            assert detections(PageHinkley(), stream) == detections(drift.PageHinkley(), stream)


def test_adwin_first_detection_agrees_with_river():
    """river's ADWIN follows MOA (which shrinks m a little) and restarts after a detection,
    so only the first detection compares: within two clock ticks, never later."""
    drift = pytest.importorskip("river.drift")
    for seed in SEEDS:
        for stream in (errors(seed), shifted(seed)):
            ours = detections(ADWIN(), stream)[0]
            theirs = detections(drift.ADWIN(), stream)[0]
            assert theirs - 64 <= ours <= theirs


# --- the verdict ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "drift", "says"),
    [
        ({"input_psi_max": 0.03, "performance_drop": 8.0}, True, "inputs stable"),
        ({"input_psi_max": 0.30, "performance_drop": 8.0}, False, "data drift"),
        ({"input_psi_max": 0.03, "performance_drop": 2.0}, False, "performance held"),
        ({"input_psi_max": 0.03, "performance_drop": -4.0}, False, "performance held"),
        ({"input_psi_max": 0.03, "performance_drop": 5.0}, True, "fell 5.0 points"),
        (
            {"input_psi_max": 0.03, "performance_drop": 1.0, "detector_fired": True},
            True,
            "detector",
        ),
        (
            {"input_psi_max": 0.03, "performance_drop": math.nan, "detector_fired": True},
            True,
            "detector",
        ),
        ({"input_psi_max": 0.03, "performance_drop": 9.0, "labelled": 40}, False, "fewer"),
        ({"input_psi_max": math.nan, "performance_drop": 9.0}, False, "input drift unknown"),
        ({"input_psi_max": 0.03, "performance_drop": math.nan}, False, "performance unknown"),
        (
            {"input_psi_max": 0.15, "performance_drop": 9.0, "psi_threshold": 0.2},
            True,
            "< 0.2",
        ),
    ],
)
def test_concept_drift_verdict(kwargs, drift, says):
    verdict = concept_drift_verdict(**kwargs)
    assert bool(verdict) is drift and verdict.drift is drift
    assert says in verdict.reason
