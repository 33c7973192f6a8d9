"""Mergeable count histograms: the state every drift statistic is computed from.

A histogram is fixed by its bins when it is created, so two partials over the same bins
(two partitions, two micro-batches, two workers) merge by adding counts. Nothing here keeps
raw values: memory is O(bins), whatever the traffic.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from streams.bin_locator import BinLocator
from streams.exact_sum import decode_counts, encode_counts, exact_sum

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
    They are kept exactly (see `exact_sum`), so partials merged in any grouping give the
    same sums to the last bit, like the counts.

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
        "_over_terms",
        "_under_terms",
        "counts",
        "edges",
        "maximum",
        "minimum",
        "missing",
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
        self._under_terms: list[float] = []
        self._over_terms: list[float] = []
        self._locator: BinLocator | None = None

    @property
    def n_bins(self) -> int:
        return int(self.counts.size)

    @property
    def under_sum(self) -> float:
        """Sum of the finite values below the first edge, correctly rounded."""
        return self._under_terms[0] if self._under_terms else 0.0

    @under_sum.setter
    def under_sum(self, value: float) -> None:
        self._under_terms = [float(value)] if value else []

    @property
    def over_sum(self) -> float:
        """Sum of the finite values above the last edge, correctly rounded."""
        return self._over_terms[0] if self._over_terms else 0.0

    @over_sum.setter
    def over_sum(self, value: float) -> None:
        self._over_terms = [float(value)] if value else []

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
                self._under_terms = exact_sum(finite[below].tolist(), self._under_terms)
            if above.any():
                self._over_terms = exact_sum(finite[above].tolist(), self._over_terms)

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
            under = finite[: np.searchsorted(finite, self.edges[0])]
            over = finite[np.searchsorted(finite, self.edges[-1], side="right") :]
            if under.size:
                self._under_terms = exact_sum(under.tolist(), self._under_terms)
            if over.size:
                self._over_terms = exact_sum(over.tolist(), self._over_terms)

    def merge(self, other: NumericHistogram) -> None:
        """Add another partial over the same edges into this one."""
        if self.edges is not other.edges and not np.array_equal(self.edges, other.edges):
            raise ValueError("cannot merge numeric histograms with different edges")
        self.counts += other.counts
        self.missing += other.missing
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        if other._under_terms:
            self._under_terms = exact_sum(other._under_terms, self._under_terms)
        if other._over_terms:
            self._over_terms = exact_sum(other._over_terms, self._over_terms)

    def __iadd__(self, other: NumericHistogram) -> NumericHistogram:
        self.merge(other)
        return self

    def empty_like(self) -> NumericHistogram:
        """An empty histogram over the same edges, sharing this one's (read-only) bin locator.

        Every pane of a model version starts from its baseline's histograms, so the locator
        table is built once per baseline instead of once per pane.
        """
        h = NumericHistogram(self.edges)
        if self._locator is None:
            self._locator = BinLocator(self.edges)
        h._locator = self._locator
        return h

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
        state = {
            "kind": self.kind,
            "edges": self.edges.tolist(),
            "counts": self.counts.tolist(),
            "missing": self.missing,
            "min": _finite_or_none(self.minimum),
            "max": _finite_or_none(self.maximum),
            "under_sum": self.under_sum,
            "over_sum": self.over_sum,
        }
        # The rest of an exact sum's expansion, only when there is one (rarely).
        if len(self._under_terms) > 1:
            state["under_sum_rest"] = self._under_terms[1:]
        if len(self._over_terms) > 1:
            state["over_sum_rest"] = self._over_terms[1:]
        return state

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
        h._under_terms += [float(t) for t in state.get("under_sum_rest", ())]
        h._over_terms += [float(t) for t in state.get("over_sum_rest", ())]
        return h

    def to_compact_state(self) -> dict[str, Any]:
        """Counts-only state for a histogram whose edges are known elsewhere (the baseline).

        Zero fields are left out and counts are sparse when most bins are empty (see
        `encode_counts`); `load_compact_state` on an `empty_like` histogram reads it back.

        >>> h = NumericHistogram([0.0, 1.0, 2.0]); h.update_many([0.5, 0.5, 9.0, None])
        >>> h.to_compact_state()
        {'c': [0, 2, 0, 1], 'm': 1, 'lo': 0.5, 'hi': 9.0, 'os': [9.0]}
        """
        state: dict[str, Any] = {}
        if self.counts.any():
            state["c"] = encode_counts(self.counts)
        if self.missing:
            state["m"] = self.missing
        if math.isfinite(self.minimum):
            state["lo"] = self.minimum
            state["hi"] = self.maximum
        if self._under_terms:
            state["us"] = list(self._under_terms)
        if self._over_terms:
            state["os"] = list(self._over_terms)
        return state

    def load_compact_state(self, state: dict[str, Any]) -> None:
        """Replace this histogram's contents with a `to_compact_state` dict."""
        self.counts = decode_counts(state.get("c"), self.counts.size)
        self.missing = int(state.get("m", 0))
        self.minimum = float(state.get("lo", math.inf))
        self.maximum = float(state.get("hi", -math.inf))
        self._under_terms = [float(t) for t in state.get("us", ())]
        self._over_terms = [float(t) for t in state.get("os", ())]

    def __repr__(self) -> str:
        return f"NumericHistogram(bins={self.n_bins}, count={self.count}, missing={self.missing})"


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

    __slots__ = ("_index", "_lookup", "categories", "counts", "missing")

    def __init__(self, categories: Sequence[str]) -> None:
        cats = [str(c) for c in categories]
        if len(set(cats)) != len(cats):
            raise ValueError("categories must be distinct")
        self.categories: list[str] = cats
        self._index: dict[str, int] = {c: i for i, c in enumerate(cats)}
        # The categories a value can be looked up as directly: all of them, unless one is
        # spelled like a missing value (then that spelling must stay missing).
        self._lookup = self._index
        if any(_is_missing(c) for c in cats):
            self._lookup = {c: i for c, i in self._index.items() if not _is_missing(c)}
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
        if isinstance(values, list | tuple) and self._update_known(values):
            return
        self._update_each(values)

    def _update_each(self, values: Iterable[object]) -> None:
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

    def _update_known(self, values: Sequence[object]) -> bool:
        """`update_many` by one C-level dict lookup per value; the misses go value by value.

        Missing, unseen and non-string values miss. Returns False, having counted nothing,
        when a value cannot be looked up at all (unhashable).
        """
        lookup = cast(Callable[[object, int], int], self._lookup.get)
        try:
            codes = np.fromiter(
                map(lookup, values, itertools.repeat(-1)), dtype=np.intp, count=len(values)
            )
        except TypeError:
            return False
        misses = np.flatnonzero(codes < 0)
        if misses.size:
            self._update_each([values[i] for i in misses.tolist()])
            codes = codes[codes >= 0]
        self.counts += np.bincount(codes, minlength=self.counts.size)
        return True

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

    def to_compact_state(self) -> dict[str, Any]:
        """Counts-only state; the categories live in the baseline.

        >>> h = CategoricalHistogram(["a", "b", "c"]); h.update_many(["b", "b", "a", None])
        >>> h.to_compact_state()
        {'c': [1, 2, 0, 0], 'm': 1}
        """
        state: dict[str, Any] = {}
        if self.counts.any():
            state["c"] = encode_counts(self.counts)
        if self.missing:
            state["m"] = self.missing
        return state

    def load_compact_state(self, state: dict[str, Any]) -> None:
        """Replace this histogram's contents with a `to_compact_state` dict."""
        self.counts = decode_counts(state.get("c"), self.counts.size)
        self.missing = int(state.get("m", 0))

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
