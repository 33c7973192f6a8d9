from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.histogram import (
    BinLocator,
    CategoricalHistogram,
    NumericHistogram,
    histogram_from_state,
)

EDGES = np.array([-2.0, -0.5, 0.0, 0.7, 3.0])
finite_floats = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
values_lists = st.lists(
    st.one_of(finite_floats, st.just(math.nan), st.just(math.inf), st.just(-math.inf)),
    max_size=200,
)


def reference_counts(edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Counts the slow, obvious way: under, inner bins [e_i, e_i+1) with the last closed, over."""
    x = x[~np.isnan(x)]
    under = np.sum(x < edges[0])
    over = np.sum(x > edges[-1])
    inner, _ = np.histogram(x[(x >= edges[0]) & (x <= edges[-1])], bins=edges)
    return np.concatenate(([under], inner, [over]))


def test_counts_match_numpy_histogram_with_outer_bins():
    rng = np.random.default_rng(1)
    x = rng.normal(size=10_000) * 2
    h = NumericHistogram(EDGES)
    h.update_many(x)
    assert h.counts.tolist() == reference_counts(EDGES, x).tolist()
    assert h.count == 10_000 and h.missing == 0


def test_missing_and_infinities():
    h = NumericHistogram(EDGES)
    h.update_many([None, math.nan, math.inf, -math.inf, 0.1])
    assert h.missing == 2
    assert h.counts[0] == 1 and h.counts[-1] == 1
    assert h.total == 5
    assert h.minimum == 0.1 == h.maximum  # extremes are of finite values only


def test_reference_extremes_are_inside():
    h = NumericHistogram(EDGES)
    h.update_many(np.array([EDGES[0], EDGES[-1]]))
    assert h.counts[0] == 0 and h.counts[-1] == 0
    assert h.count == 2


def test_tail_sums_are_sums_of_outside_values():
    h = NumericHistogram(EDGES)
    h.update_many(np.array([-10.0, -3.0, 1.0, 5.0, 7.5]))
    assert h.under_sum == -13.0
    assert h.over_sum == 12.5


@settings(max_examples=200, deadline=None)
@given(values_lists, values_lists)
def test_merge_equals_one_histogram_fed_everything(a, b):
    one = NumericHistogram(EDGES)
    one.update_many(a + b)
    left, right = NumericHistogram(EDGES), NumericHistogram(EDGES)
    left.update_many(a)
    right.update_many(b)
    left.merge(right)
    assert left.counts.tolist() == one.counts.tolist()
    assert left.missing == one.missing
    assert left.minimum == one.minimum and left.maximum == one.maximum
    assert math.isclose(left.over_sum, one.over_sum, rel_tol=1e-9, abs_tol=1e-6)
    assert math.isclose(left.under_sum, one.under_sum, rel_tol=1e-9, abs_tol=1e-6)


@settings(max_examples=100, deadline=None)
@given(values_lists)
def test_state_round_trip(values):
    h = NumericHistogram(EDGES)
    h.update_many(values)
    back = histogram_from_state(h.to_state())
    assert isinstance(back, NumericHistogram)
    assert back.to_state() == h.to_state()


@settings(max_examples=100, deadline=None)
@given(st.lists(finite_floats, max_size=300))
def test_update_sorted_equals_update_many(values):
    x = np.sort(np.asarray(values, dtype=np.float64))
    a, b = NumericHistogram(EDGES), NumericHistogram(EDGES)
    a.update_many(x)
    b.update_sorted(x)
    assert a.counts.tolist() == b.counts.tolist()
    assert (a.minimum, a.maximum) == (b.minimum, b.maximum)
    assert math.isclose(a.over_sum, b.over_sum, rel_tol=1e-9, abs_tol=1e-6)
    assert math.isclose(a.under_sum, b.under_sum, rel_tol=1e-9, abs_tol=1e-6)


def test_coarsen_sums_fine_bins():
    fine = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    h = NumericHistogram(fine)
    x = np.array([-1.0, 0.5, 1.5, 1.7, 2.5, 3.5, 4.0, 9.0])
    h.update_many(x)
    coarse = np.array([0.0, 2.0, 4.0])
    assert h.coarsen(coarse).tolist() == reference_counts(coarse, x).tolist()
    with pytest.raises(ValueError):
        h.coarsen(np.array([0.0, 2.5, 4.0]))


def test_constant_feature_has_its_own_bin():
    h = NumericHistogram([3.0, 3.0])
    h.update_many(np.array([2.0, 3.0, 3.0, 4.0]))
    assert h.counts.tolist() == [1, 2, 1]
    assert h.coarsen([3.0, 3.0]).tolist() == [1, 2, 1]


def test_merge_refuses_other_edges():
    with pytest.raises(ValueError):
        NumericHistogram([0.0, 1.0]).merge(NumericHistogram([0.0, 2.0]))


@pytest.mark.parametrize("bad", [[1.0], [2.0, 1.0], [0.0, math.inf], []])
def test_bad_edges_rejected(bad):
    with pytest.raises(ValueError):
        NumericHistogram(bad)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(finite_floats, min_size=2, max_size=60, unique=True),
    st.lists(st.one_of(finite_floats, st.just(math.inf), st.just(-math.inf)), max_size=200),
)
def test_bin_locator_equals_searchsorted(edge_values, values):
    edges = np.sort(np.asarray(edge_values))
    x = np.concatenate([np.asarray(values, dtype=np.float64), edges, np.nextafter(edges, 0)])
    expected = np.searchsorted(edges, x, side="right")
    assert BinLocator(edges).locate(x).tolist() == expected.tolist()


@pytest.mark.parametrize("dist", ["normal", "lognormal", "integers", "pareto"])
def test_bin_locator_on_quantile_edges(dist):
    rng = np.random.default_rng(7)
    sample = {
        "normal": lambda: rng.normal(size=50_000),
        "lognormal": lambda: rng.lognormal(0, 2, size=50_000),
        "integers": lambda: rng.integers(0, 5, size=50_000).astype(float),
        "pareto": lambda: rng.pareto(1.0, size=50_000),
    }[dist]()
    edges = np.unique(np.quantile(sample, np.linspace(0, 1, 211)))
    x = np.concatenate([sample, edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)])
    assert np.array_equal(BinLocator(edges).locate(x), np.searchsorted(edges, x, side="right"))


def test_categorical_counts_unseen_and_missing():
    h = CategoricalHistogram(["grocery", "travel"])
    h.update_many(["grocery", "travel", "travel", "crypto", None, "", float("nan"), "NA"])
    assert h.counts.tolist() == [1, 2, 1]
    assert h.missing == 4
    assert h.unseen == 1
    assert h.total == 8


def test_categorical_numbers_match_their_text():
    h = CategoricalHistogram(["1", "2", "true"])
    h.update_many([1, 2.0, "1", True])
    assert h.counts.tolist() == [2, 1, 1, 0]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "c", "zz", None]), max_size=100),
    st.lists(st.sampled_from(["a", "b", "c", "zz", None]), max_size=100),
)
def test_categorical_merge_and_round_trip(a, b):
    one = CategoricalHistogram(["a", "b", "c"])
    one.update_many(a + b)
    left, right = CategoricalHistogram(["a", "b", "c"]), CategoricalHistogram(["a", "b", "c"])
    left.update_many(a)
    right.update_many(b)
    left += right
    assert left.to_state() == one.to_state()
    assert histogram_from_state(one.to_state()).to_state() == one.to_state()


def test_unknown_state_kind():
    with pytest.raises(ValueError, match="unknown histogram kind"):
        histogram_from_state({"kind": "sketch"})
