"""Drift statistics against scipy and a plain numpy PSI, on random data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon

from streams import drift
from streams.binning import coarse_edges, fine_grid, union_edges
from streams.histogram import NumericHistogram


def numpy_psi(ref: np.ndarray, cur: np.ndarray) -> float:
    """The classic recipe, written out: proportions, clip to [1e-4, 1], sum."""
    r = np.clip(ref / ref.sum(), 1e-4, 1)
    c = np.clip(cur / cur.sum(), 1e-4, 1)
    return float(np.sum((c - r) * np.log(c / r)))


def histograms(ref: np.ndarray, cur: np.ndarray) -> tuple[NumericHistogram, NumericHistogram]:
    grid = union_edges(coarse_edges(ref), fine_grid(ref))
    r, c = NumericHistogram(grid), NumericHistogram(grid)
    r.update_many(ref)
    c.update_many(cur)
    return r, c


SHIFTS = [
    ("same", lambda rng, n: rng.normal(size=n)),
    ("mean", lambda rng, n: rng.normal(0.3, 1, size=n)),
    ("scale", lambda rng, n: rng.normal(0, 1.6, size=n)),
    ("far", lambda rng, n: rng.normal(4, 1, size=n)),
    ("narrow", lambda rng, n: rng.normal(0.2, 0.05, size=n)),
    ("skew", lambda rng, n: rng.lognormal(0, 0.6, size=n) - 1),
]


@pytest.mark.parametrize(("name", "make"), SHIFTS, ids=[s[0] for s in SHIFTS])
def test_ks_within_001_of_exact_and_pvalue_as_scipy(name, make):
    rng = np.random.default_rng(11)
    ref, cur = rng.normal(size=20_000), make(rng, 15_000)
    d, _ = drift.ks(*histograms(ref, cur))
    exact = stats.ks_2samp(ref, cur, method="asymp")
    assert abs(d - exact.statistic) <= 0.01
    assert d <= exact.statistic + 1e-12  # read at the edges, the grid can only under-read
    # Same statistic in, same p-value out as scipy's two-sample distribution.
    assert drift.ks_pvalue(exact.statistic, ref.size, cur.size) == pytest.approx(
        exact.pvalue, rel=1e-9, abs=1e-300
    )


@pytest.mark.parametrize(("name", "make"), SHIFTS, ids=[s[0] for s in SHIFTS])
def test_wasserstein_close_to_scipy(name, make):
    rng = np.random.default_rng(12)
    ref, cur = rng.normal(size=20_000), make(rng, 15_000)
    w = drift.wasserstein(*histograms(ref, cur))
    exact = stats.wasserstein_distance(ref, cur)
    # The grid interpolates inside ~1/200 quantile bins; the tails are exact.
    assert w == pytest.approx(exact, rel=0.03, abs=0.005)


@pytest.mark.parametrize(("name", "make"), SHIFTS, ids=[s[0] for s in SHIFTS])
def test_psi_and_js_match_plain_numpy_and_scipy(name, make):
    rng = np.random.default_rng(13)
    ref, cur = rng.normal(size=20_000), make(rng, 15_000)
    edges = coarse_edges(ref)
    r = np.histogram(ref, bins=edges)[0]
    below, above = np.sum(cur < edges[0]), np.sum(cur > edges[-1])
    c = np.histogram(cur[(cur >= edges[0]) & (cur <= edges[-1])], bins=edges)[0]
    ref_counts = np.concatenate(([0], r, [0]))
    cur_counts = np.concatenate(([below], c, [above]))
    rh, ch = histograms(ref, cur)
    assert rh.coarsen(edges).tolist() == ref_counts.tolist()
    assert ch.coarsen(edges).tolist() == cur_counts.tolist()
    assert drift.psi(ref_counts, cur_counts) == pytest.approx(numpy_psi(ref_counts, cur_counts))
    expected_js = jensenshannon(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum())
    assert drift.js_distance(ref_counts, cur_counts) == pytest.approx(expected_js, abs=1e-12)


def test_psi_known_value_and_bands():
    # Deciles of the reference; 90/10 split of the current over two halves.
    assert drift.psi([50, 50], [90, 10]) == pytest.approx(
        0.4 * math.log(0.9 / 0.5) + (-0.4) * math.log(0.1 / 0.5)
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=2, max_size=30))
def test_psi_and_js_of_a_histogram_with_itself_are_zero(counts):
    if sum(counts) == 0:
        assert math.isnan(drift.psi(counts, counts))
        return
    assert drift.psi(counts, counts) == 0.0
    assert drift.js_distance(counts, counts) == pytest.approx(0.0, abs=1e-7)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=1000), min_size=3, max_size=3),
    st.lists(st.integers(min_value=0, max_value=1000), min_size=3, max_size=3),
)
def test_js_matches_scipy_on_any_counts(a, b):
    if sum(a) == 0 or sum(b) == 0:
        assert math.isnan(drift.js_distance(a, b))
        return
    expected = jensenshannon(np.array(a) / sum(a), np.array(b) / sum(b), base=math.e)
    assert drift.js_distance(a, b) == pytest.approx(expected, abs=1e-7)


def test_chi_square_matches_scipy():
    ref = np.array([500, 300, 200, 0])  # last bin: unseen in the reference
    cur = np.array([420, 310, 250, 20])
    stat, p = drift.chi_square(ref, cur)
    expected = np.clip(ref / ref.sum(), 1e-4, 1)
    expected = expected / expected.sum() * cur.sum()
    want = stats.chisquare(cur, expected)
    assert stat == pytest.approx(want.statistic)
    assert p == pytest.approx(want.pvalue)


def test_chi_square_without_new_categories_is_plain_goodness_of_fit():
    ref = np.array([500, 300, 200, 0])
    cur = np.array([480, 330, 190, 0])
    stat, p = drift.chi_square(ref, cur)
    want = stats.chisquare(cur[:3], ref[:3] / ref.sum() * cur.sum())
    assert stat == pytest.approx(want.statistic)
    assert p == pytest.approx(want.pvalue)


def test_empty_current_gives_nan_not_an_error():
    rh, _ = histograms(np.arange(100.0), np.arange(10.0))
    empty = rh.empty_like()
    assert math.isnan(drift.ks(rh, empty)[0])
    assert math.isnan(drift.wasserstein(rh, empty))
    assert math.isnan(drift.psi(rh.counts, empty.counts))
    assert math.isnan(drift.chi_square([1, 2], [0, 0])[0])


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        drift.psi([1, 2, 3], [1, 2])
