from __future__ import annotations

import numpy as np
import pytest

from streams.binning import FINE_GRID_BINS, coarse_edges, fine_grid, sorted_quantiles, union_edges


def test_quantile_edges_are_reference_deciles():
    x = np.random.default_rng(3).gamma(2.0, size=5001)
    assert np.allclose(coarse_edges(x), np.quantile(x, np.linspace(0, 1, 11)))


def test_equal_width_edges_are_numpy_histogram_edges():
    x = np.random.default_rng(4).normal(size=3000)
    assert np.allclose(coarse_edges(x, 7, "equal-width"), np.histogram_bin_edges(x, bins=7))


def test_exact_extremes_replace_sample_extremes():
    x = np.linspace(0, 1, 101)
    edges = coarse_edges(x, 4, minimum=-5.0, maximum=9.0)
    assert edges[0] == -5.0 and edges[-1] == 9.0


def test_ties_collapse_and_constant_keeps_a_bin():
    # Nine deciles of 90 zeros are 0; they collapse into one edge.
    assert np.allclose(coarse_edges(np.array([0.0] * 90 + [1.0] * 10)), [0.0, 0.1, 1.0])
    assert coarse_edges(np.full(10, 4.0)).tolist() == [4.0, 4.0]
    assert union_edges(np.array([4.0, 4.0]), np.array([4.0, 4.0])).tolist() == [4.0, 4.0]


def test_fine_grid_has_at_least_100_quantile_edges_on_continuous_data():
    x = np.random.default_rng(5).normal(size=10_000)
    grid = fine_grid(x)
    assert grid.size == FINE_GRID_BINS + 1 >= 101
    assert np.allclose(grid, np.quantile(x, np.linspace(0, 1, FINE_GRID_BINS + 1)))


def test_union_contains_both():
    a, b = np.array([0.0, 1.0, 2.0]), np.array([0.5, 1.0, 3.0])
    assert union_edges(a, b).tolist() == [0.0, 0.5, 1.0, 2.0, 3.0]


def test_infinities_and_nans_are_ignored():
    x = np.array([np.nan, -np.inf, 1.0, 2.0, 3.0, np.inf])
    assert coarse_edges(x, 2).tolist() == [1.0, 2.0, 3.0]


def test_sorted_quantiles_equal_numpy():
    x = np.sort(np.random.default_rng(6).exponential(size=777))
    q = np.linspace(0, 1, 37)
    assert np.allclose(sorted_quantiles(x, q), np.quantile(x, q))


@pytest.mark.parametrize(("bins", "binning"), [(0, "quantile"), (10, "log")])
def test_bad_arguments(bins, binning):
    with pytest.raises(ValueError):
        coarse_edges(np.arange(10.0), bins, binning)


def test_no_finite_values():
    with pytest.raises(ValueError, match="no finite"):
        coarse_edges(np.array([np.nan, np.inf]))
