"""Mergeable count histograms: the state every drift statistic is computed from.

A histogram is fixed by its bins when it is created, so two partials over the same bins
(two partitions, two micro-batches, two workers) merge by adding counts. Nothing here keeps
raw values: memory is O(bins), whatever the traffic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
CountArray = npt.NDArray[np.int64]

#: Strings that mean "no value" in CSV and JSON sources.
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})


class NumericHistogram:
    """Counts of numeric values over fixed, increasing bin edges.

    With ``k`` edges there are ``k + 1`` bins: an underflow bin (``x < edges[0]``), ``k - 1``
    inner bins ``[edges[i], edges[i+1])`` (the last one closed, so the reference maximum is
    inside), and an overflow bin (``x > edges[-1]``). Values outside the reference range are
    counted, never dropped. NaN counts as missing; ``±inf`` lands in the under/overflow bin.

    The sums of the finite values that fell in the under/overflow bins are kept too: they make
    the Wasserstein distance exact in the tails, where bins have no width to interpolate in.

    Examples
    --------
    >>> h = NumericHistogram([0.0, 1.0, 2.0])
    >>> h.update_many([-1.0, 0.0, 0.5, 1.5, 2.0, 3.0, float("nan")])
    >>> h.counts.tolist(), h.missing
    ([1, 2, 2, 1], 1)
    >>> both = NumericHistogram([0.0, 1.0, 2.0]); both.update_many([0.5]); both.merge(h)
    >>> int(both.counts.sum()), both.total
    (7, 8)
    """

    kind = "numeric"

    __slots__ = (
        "_locator",
        "counts",
        "edges",
        "maximum",
        "minimum",
        "missing",
        "over_sum",
        "under_sum",
    )

    def __init__(self, edges: Sequence[float] | FloatArray) -> None:
        e = np.asarray(edges, dtype=np.float64)
        if e.ndim != 1 or e.size < 2 or not np.all(np.isfinite(e)) or np.any(np.diff(e) < 0):
            raise ValueError("edges must be at least two finite, non-decreasing numbers")
        self.edges: FloatArray = e
        self.counts: CountArray = np.zeros(e.size + 1, dtype=np.int64)
        self.missing = 0
        self.minimum = math.inf
        self.maximum = -math.inf
        self.under_sum = 0.0
        self.over_sum = 0.0
        self._locator: BinLocator | None = None

    @property
    def n_bins(self) -> int:
        return int(self.counts.size)

    @property
    def count(self) -> int:
        """Number of non-missing values seen."""
        return int(self.counts.sum())

    @property
    def total(self) -> int:
        """Number of values seen, missing included."""
        return self.count + self.missing

    def bin_index(self, values: FloatArray) -> npt.NDArray[np.intp]:
        """Bin of each (non-NaN) value, as `update_many` would count it."""
        if self._locator is None:
            self._locator = BinLocator(self.edges)
        idx = self._locator.locate(values)
        # The last inner bin is closed: the reference maximum belongs inside, not in overflow.
        idx[values == self.edges[-1]] = self.edges.size - 1
        return idx

    def update(self, x: float | None) -> None:
        self.update_many(np.array([np.nan if x is None else x], dtype=np.float64))

    def update_many(self, values: Iterable[float | None] | FloatArray) -> None:
        """Count a batch of values in one vectorised pass (None and NaN are missing)."""
        x = _as_float_array(values)
        nan = np.isnan(x)
        n_missing = int(nan.sum())
        if n_missing:
            x = x[~nan]
        self.missing += n_missing
        if x.size == 0:
            return
        idx = self.bin_index(x)
        self.counts += np.bincount(idx, minlength=self.counts.size)
        finite = x[np.isfinite(x)]
        if finite.size:
            self.minimum = min(self.minimum, float(finite.min()))
            self.maximum = max(self.maximum, float(finite.max()))
            below = finite < self.edges[0]
            above = finite > self.edges[-1]
            if below.any():
                self.under_sum += float(finite[below].sum())
            if above.any():
                self.over_sum += float(finite[above].sum())

    def update_sorted(self, values: FloatArray) -> None:
        """Count an ascending, NaN-free array in O(bins · log n), without touching each value.

        Building a baseline sorts each column anyway (for its quantiles); counting the
        sorted column by bisection is then far cheaper than binning every value.
        """
        if values.size == 0:
            return
        below = np.searchsorted(values, self.edges, side="left")
        # The last inner bin is closed on the right.
        below[-1] = np.searchsorted(values, self.edges[-1], side="right")
        cumulative = np.concatenate(([0], below, [values.size]))
        self.counts += np.diff(cumulative).astype(np.int64)
        finite = values[np.isfinite(values)]
        if finite.size:
            self.minimum = min(self.minimum, float(finite[0]))
            self.maximum = max(self.maximum, float(finite[-1]))
            self.under_sum += float(finite[: np.searchsorted(finite, self.edges[0])].sum())
            over_from = np.searchsorted(finite, self.edges[-1], side="right")
            self.over_sum += float(finite[over_from:].sum())

    def merge(self, other: NumericHistogram) -> None:
        """Add another partial over the same edges into this one."""
        if not np.array_equal(self.edges, other.edges):
            raise ValueError("cannot merge numeric histograms with different edges")
        self.counts += other.counts
        self.missing += other.missing
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        self.under_sum += other.under_sum
        self.over_sum += other.over_sum

    def __iadd__(self, other: NumericHistogram) -> NumericHistogram:
        self.merge(other)
        return self

    def empty_like(self) -> NumericHistogram:
        return NumericHistogram(self.edges)

    def copy(self) -> NumericHistogram:
        h = self.empty_like()
        h.merge(self)
        return h

    def coarsen(self, edges: Sequence[float] | FloatArray) -> CountArray:
        """Counts over a subset of this histogram's edges (under/overflow kept).

        A baseline keeps one fine histogram per feature whose edges contain the coarse PSI
        edges, so each value is binned once and both views come from the same counts.
        """
        coarse = np.asarray(edges, dtype=np.float64)
        if np.array_equal(coarse, self.edges):
            return self.counts.copy()
        pos = np.searchsorted(self.edges, coarse)
        if np.any(pos >= self.edges.size) or not np.array_equal(self.edges[pos], coarse):
            raise ValueError("coarse edges must be a subset of the histogram's edges")
        # Fine bin j+1 starts at fine edge j; coarse bin i+1 starts at coarse edge i.
        starts = np.concatenate(([0], pos + 1))
        return np.add.reduceat(self.counts, starts).astype(np.int64)

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "edges": self.edges.tolist(),
            "counts": self.counts.tolist(),
            "missing": self.missing,
            "min": _finite_or_none(self.minimum),
            "max": _finite_or_none(self.maximum),
            "under_sum": self.under_sum,
            "over_sum": self.over_sum,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> NumericHistogram:
        h = cls(state["edges"])
        counts = np.asarray(state["counts"], dtype=np.int64)
        if counts.shape != h.counts.shape:
            raise ValueError(f"expected {h.counts.size} counts, got {counts.size}")
        h.counts = counts
        h.missing = int(state["missing"])
        h.minimum = math.inf if state["min"] is None else float(state["min"])
        h.maximum = -math.inf if state["max"] is None else float(state["max"])
        h.under_sum = float(state["under_sum"])
        h.over_sum = float(state["over_sum"])
        return h

    def __repr__(self) -> str:
        return f"NumericHistogram(bins={self.n_bins}, count={self.count}, missing={self.missing})"


class BinLocator:
    """``np.searchsorted(edges, x, side="right")``, several times faster on unsorted data.

    Binary search over ~200 edges costs a cache miss and a mispredicted branch per step.
    Instead the edge range is cut into equal cells; a table gives, for each cell, a bin at
    or just below the right one, and a few vectorised passes of ``x >= edge`` step up to
    it. Quantile edges put few edges in any one cell; when a heavy tail crowds too many
    into one, this falls back to binary search, so the answer is always exact.
    """

    MAX_PASSES = 6

    def __init__(self, edges: FloatArray, cells: int | None = None) -> None:
        self.edges = edges
        k = edges.size
        self.cells = cells or int(min(max(16 * k, 1024), 1 << 16))
        lo, hi = float(edges[0]), float(edges[-1])
        self.lo = lo
        with np.errstate(over="ignore", divide="ignore"):
            scale = self.cells / (hi - lo) if hi > lo else 0.0
        # A range so narrow the cell width underflows gets plain binary search.
        self.scale = scale if math.isfinite(scale) and (hi - lo) * scale > 0 else 0.0
        starts = lo + np.arange(self.cells) / self.scale if self.scale else np.full(1, lo)
        # One bin low on purpose: a value rounded into the next cell still starts at or
        # below its bin, and the passes below only ever step up.
        below = np.maximum(np.searchsorted(edges, starts, side="left") - 1, 0)
        self.table = np.concatenate(([0], below, [k - 1])).astype(np.intp)
        per_cell = np.diff(np.concatenate((below, [k])))
        self.passes = int(per_cell.max(initial=0)) + 2
        # NaN compares false, so nothing steps past the overflow bin (not even +inf).
        self.padded = np.concatenate((edges, [np.nan]))
        self.lower = np.concatenate(([-np.inf], edges))

    def locate(self, values: FloatArray) -> npt.NDArray[np.intp]:
        if not self.scale or self.passes > self.MAX_PASSES:
            return np.searchsorted(self.edges, values, side="right")
        cell = np.clip((values - self.lo) * self.scale, -1, self.cells).astype(np.intp)
        idx = self.table[cell + 1]
        padded = self.padded
        for _ in range(self.passes):
            idx += values >= padded[idx]
        # Check every answer against its two edges; float rounding near tiny or crowded
        # edges can defeat the table, and those few values get binary search instead.
        wrong = (values < self.lower[idx]) | (values >= padded[idx])
        if wrong.any():
            idx[wrong] = np.searchsorted(self.edges, values[wrong], side="right")
        return idx


class CategoricalHistogram:
    """Counts of categorical values over the reference categories plus one unseen bin.

    The last bin collects every value the reference did not list. Values are compared as
    strings, so ``1`` and ``"1"`` are the same category (CSV cannot tell them apart).

    Examples
    --------
    >>> h = CategoricalHistogram(["a", "b"])
    >>> h.update_many(["a", "b", "b", "zzz", None])
    >>> h.counts.tolist(), h.missing, h.unseen
    ([1, 2, 1], 1, 1)
    """

    kind = "categorical"

    __slots__ = ("_index", "categories", "counts", "missing")

    def __init__(self, categories: Sequence[str]) -> None:
        cats = [str(c) for c in categories]
        if len(set(cats)) != len(cats):
            raise ValueError("categories must be distinct")
        self.categories: list[str] = cats
        self._index: dict[str, int] = {c: i for i, c in enumerate(cats)}
        self.counts: CountArray = np.zeros(len(cats) + 1, dtype=np.int64)
        self.missing = 0

    @property
    def n_bins(self) -> int:
        return int(self.counts.size)

    @property
    def unseen(self) -> int:
        return int(self.counts[-1])

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    @property
    def total(self) -> int:
        return self.count + self.missing

    def update(self, x: object) -> None:
        self.update_many([x])

    def update_many(self, values: Iterable[object]) -> None:
        """Count a batch of values (None, NaN and empty strings are missing)."""
        index = self._index
        unseen = len(self.categories)
        codes = []
        missing = 0
        for v in values:
            if _is_missing(v):
                missing += 1
                continue
            codes.append(index.get(v if isinstance(v, str) else _category(v), unseen))
        self.missing += missing
        if codes:
            self.counts += np.bincount(np.asarray(codes, dtype=np.intp), minlength=unseen + 1)

    def merge(self, other: CategoricalHistogram) -> None:
        if self.categories != other.categories:
            raise ValueError("cannot merge categorical histograms with different categories")
        self.counts += other.counts
        self.missing += other.missing

    def __iadd__(self, other: CategoricalHistogram) -> CategoricalHistogram:
        self.merge(other)
        return self

    def empty_like(self) -> CategoricalHistogram:
        return CategoricalHistogram(self.categories)

    def copy(self) -> CategoricalHistogram:
        h = self.empty_like()
        h.merge(self)
        return h

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "categories": list(self.categories),
            "counts": self.counts.tolist(),
            "missing": self.missing,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CategoricalHistogram:
        h = cls(state["categories"])
        counts = np.asarray(state["counts"], dtype=np.int64)
        if counts.shape != h.counts.shape:
            raise ValueError(f"expected {h.counts.size} counts, got {counts.size}")
        h.counts = counts
        h.missing = int(state["missing"])
        return h

    def __repr__(self) -> str:
        return (
            f"CategoricalHistogram(categories={len(self.categories)}, count={self.count}, "
            f"missing={self.missing})"
        )


Histogram = NumericHistogram | CategoricalHistogram


def histogram_from_state(state: dict[str, Any]) -> Histogram:
    """Rebuild either kind of histogram from its `to_state` form."""
    kind = state.get("kind")
    if kind == NumericHistogram.kind:
        return NumericHistogram.from_state(state)
    if kind == CategoricalHistogram.kind:
        return CategoricalHistogram.from_state(state)
    raise ValueError(f"unknown histogram kind {kind!r}")


def _as_float_array(values: Iterable[float | None] | FloatArray) -> FloatArray:
    if isinstance(values, np.ndarray) and values.dtype == np.float64:
        return values
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":
        return values.astype(np.float64)
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _is_missing(v: object) -> bool:
    if v is None:
        return True
    if isinstance(v, float):
        return math.isnan(v)
    if isinstance(v, str):
        return v.strip().lower() in MISSING_TOKENS
    return False


def _category(v: object) -> str:
    # 1.0 and 1 are one category whichever way a writer spelled it.
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None
