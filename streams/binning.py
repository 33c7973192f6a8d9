"""Bin edges from reference data, as DESIGN.md defines them.

Two sets of edges come from one reference sample:

- the *coarse* edges PSI and JS are computed on: reference deciles (``quantile``) or
  ``np.histogram`` edges over the reference range (``equal-width``, the classic PSI recipe);
- a *fine* grid of at least 100 quantile edges for KS and Wasserstein, so that the KS
  statistic read off the grid is within the largest reference bin mass (1/200 by default)
  of the exact two-sample statistic.

The histogram a baseline keeps is over the union of both, so each value is binned once.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

Binning = Literal["quantile", "equal-width"]
BINNINGS: tuple[Binning, ...] = ("quantile", "equal-width")

#: Quantile steps of the fine grid; the KS error bound is 1 / FINE_GRID_BINS.
FINE_GRID_BINS = 200

FloatArray = npt.NDArray[np.float64]


def coarse_edges(
    reference: FloatArray,
    bins: int = 10,
    binning: Binning = "quantile",
    minimum: float | None = None,
    maximum: float | None = None,
) -> FloatArray:
    """Edges of the PSI bins over finite reference values.

    ``minimum`` / ``maximum`` are the exact extremes of the reference when ``reference`` is
    only a sample of it, so the outer edges are the true range either way.

    >>> coarse_edges(np.arange(11.0), bins=5).round(9).tolist()
    [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    >>> coarse_edges(np.array([1.0, 1.0, 1.0])).tolist()
    [1.0, 1.0]
    """
    if bins < 1:
        raise ValueError("bins must be at least 1")
    if binning not in BINNINGS:
        raise ValueError(f"binning must be one of {', '.join(BINNINGS)}, not {binning!r}")
    x = _sorted_finite(reference)
    lo = float(x[0]) if minimum is None else minimum
    hi = float(x[-1]) if maximum is None else maximum
    if binning == "equal-width":
        edges = np.histogram_bin_edges(x, bins=bins, range=(lo, hi) if hi > lo else None)
    else:
        edges = sorted_quantiles(x, np.linspace(0.0, 1.0, bins + 1))
    return _with_range(edges, lo, hi)


def fine_grid(
    reference: FloatArray,
    bins: int = FINE_GRID_BINS,
    minimum: float | None = None,
    maximum: float | None = None,
) -> FloatArray:
    """Quantile edges for KS / Wasserstein (ties collapse, so discrete data get fewer)."""
    x = _sorted_finite(reference)
    lo = float(x[0]) if minimum is None else minimum
    hi = float(x[-1]) if maximum is None else maximum
    return _with_range(sorted_quantiles(x, np.linspace(0.0, 1.0, bins + 1)), lo, hi)


def sorted_quantiles(x: FloatArray, q: FloatArray | list[float]) -> FloatArray:
    """``np.quantile(x, q)`` (its default, linear method) for an already sorted ``x``.

    Sorting a column once and reading every quantile from it is several times cheaper than
    numpy partitioning the same column for each set of quantiles.

    >>> x = np.sort(np.random.default_rng(0).normal(size=101))
    >>> bool(np.allclose(sorted_quantiles(x, [0.1, 0.5, 0.93]), np.quantile(x, [0.1, 0.5, 0.93])))
    True
    """
    pos = np.asarray(q, dtype=np.float64) * (x.size - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, x.size - 1)
    frac = pos - lo
    return np.asarray(x[lo] + frac * (x[hi] - x[lo]), dtype=np.float64)


def union_edges(*edge_sets: FloatArray) -> FloatArray:
    """Sorted union of edge sets; a constant feature keeps its ``[c, c]`` pair."""
    merged = np.unique(np.concatenate(edge_sets))
    return merged if merged.size >= 2 else np.repeat(merged, 2)


def _sorted_finite(reference: FloatArray) -> FloatArray:
    """The finite values, ascending; a no-op copy-free view when already so."""
    x = np.asarray(reference, dtype=np.float64)
    if x.size and np.isfinite(x[0]) and np.isfinite(x[-1]) and _is_sorted(x):
        return x
    x = np.sort(x[np.isfinite(x)])
    if x.size == 0:
        raise ValueError("no finite reference values to bin")
    return x


def _is_sorted(x: FloatArray) -> bool:
    return bool(np.all(x[1:] >= x[:-1]))


def _with_range(edges: FloatArray, lo: float, hi: float) -> FloatArray:
    e = np.unique(np.clip(edges, lo, hi))
    e[0], e[-1] = lo, hi
    e = np.unique(e)
    # A constant reference still needs a bin of its own between under- and overflow.
    return e if e.size >= 2 else np.array([lo, hi], dtype=np.float64)
