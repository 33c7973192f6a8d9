from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from streams.moments import Moments
from streams.reservoir import RowReservoir


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), max_size=100), st.lists(st.floats(-1e6, 1e6), max_size=100))
def test_merged_moments_equal_numpy(a, b):
    left, right = Moments(), Moments()
    left.update_many(np.asarray(a, dtype=float))
    right.update_many(np.asarray(b, dtype=float))
    left.merge(right)
    both = np.asarray(a + b, dtype=float)
    assert left.n == both.size
    if both.size:
        assert left.mean == pytest.approx(both.mean(), rel=1e-9, abs=1e-6)
        assert left.std == pytest.approx(both.std(), rel=1e-6, abs=1e-4)
        assert (left.minimum, left.maximum) == (both.min(), both.max())
    assert Moments.from_state(left.to_state()).to_state() == left.to_state()


def test_moments_skip_nan_and_inf():
    m = Moments()
    m.update_many(np.array([1.0, np.nan, np.inf, 3.0]))
    assert (m.n, m.mean) == (2, 2.0)


def test_reservoir_keeps_everything_below_capacity():
    r = RowReservoir(capacity=100, width=2)
    rows = np.arange(60.0).reshape(-1, 2)
    r.add(rows[:10])
    r.add(rows[10:])
    assert r.exact and np.array_equal(r.sample, rows)


def test_reservoir_is_uniform_over_the_stream():
    """Every row of a 10,000-row stream is kept with chance capacity / n, in any block size."""
    capacity, n, trials = 50, 2000, 400
    kept = np.zeros(n)
    for seed in range(trials):
        r = RowReservoir(capacity=capacity, width=1, seed=seed)
        for start in range(0, n, 137):
            r.add(np.arange(start, min(start + 137, n), dtype=float).reshape(-1, 1))
        assert r.sample.shape == (capacity, 1) and not r.exact
        kept[r.sample.ravel().astype(int)] += 1
    # Kept counts per tenth of the stream: equal expectations if the sample is uniform.
    per_decile = kept.reshape(10, -1).sum(axis=1)
    assert stats.chisquare(per_decile).pvalue > 0.001
