"""One pane of one model version's live traffic: the mergeable state a worker updates.

Workers count each micro-batch of validated predictions into tumbling event-time panes (one
slide long, e.g. 1 min); the evaluator sums the panes of a hopping window (e.g. 5 min) with
`merge_panes`. Every part of a pane is a count, an extreme or an exact sum, so panes from any
split of the events over partitions, workers and micro-batches merge into the same window,
to the last bit.

A micro-batch is turned into columns first (`columns_from_records`), then counted with one
vectorised `PaneState.update` per (model, version, pane) group, never one write per feature
per event. `to_state` is the compact JSON form a pane is stored in: counts only, since the
edges and categories live in the baseline.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from streams.baseline import Baseline
from streams.histogram import CategoricalHistogram, Histogram, NumericHistogram

FloatArray = npt.NDArray[np.float64]
Column = Sequence[Any] | npt.NDArray[Any]

FORMAT = "undertow.pane/1"

#: Buckets of ``ml_prediction_latency_seconds`` (DESIGN.md), in seconds.
PROMETHEUS_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_R20: tuple[float, ...] = (1.0, 1.12, 1.25, 1.4, 1.6, 1.8, 2.0, 2.24, 2.5, 2.8)
_R20 += (3.15, 3.55, 4.0, 4.5, 5.0, 5.6, 6.3, 7.1, 8.0, 9.0)
#: Latency bin bounds in seconds: the R20 preferred numbers (steps of about 12 %) from 1 ms
#: to 100 s. They contain every Prometheus bucket, so the exporter's buckets are exact sums
#: of these bins, and a percentile interpolated inside a bin is off by at most 12 %.
LATENCY_BOUNDS = (*(float(f"{m}e{d}") for d in range(-3, 2) for m in _R20), 100.0)
#: The latency histogram's edges: each bound nudged one ulp up, so that a latency equal to a
#: bound counts at or below it, as in a Prometheus ``le`` bucket (100 ms is in ``le="0.1"``).
LATENCY_EDGES: FloatArray = np.nextafter(np.array(LATENCY_BOUNDS), np.inf)
_LATENCY = NumericHistogram(LATENCY_EDGES)  # the template every pane's latency shares

#: How many names of features unknown to the baseline a pane remembers (the smallest ones,
#: so that the set does not depend on the order events came in).
MAX_UNKNOWN_NAMES = 16

_NUMBER_KINDS = frozenset("fiub")
_NUMBER_TYPES = frozenset({float, int, bool, type(None)})


class PaneState:
    """Counts of one (model, version, pane): a histogram per baseline feature and more.

    Besides the feature histograms (the baseline reference's bins) a pane keeps one for the
    prediction when the baseline has one, one for latency over `LATENCY_EDGES` (seconds),
    the event count (``volume``), the earliest and latest event times, and data-quality
    counters: events carrying features the baseline does not know (``unknown_features``,
    with up to `MAX_UNKNOWN_NAMES` of their names), and per feature how often it was absent
    from an event (``absent``) or a string arrived for a numeric feature (``type_mismatch``).
    Both also count as missing in the feature's histogram, so the missing rate covers them.

    Examples
    --------
    >>> from streams.baseline import CategoricalReference
    >>> from streams.histogram import CategoricalHistogram
    >>> ref = CategoricalHistogram(["a", "b"]); ref.update_many(["a", "b"])
    >>> baseline = Baseline("m", "v1", {"x": CategoricalReference("x", ref, {})})
    >>> pane = PaneState.empty(baseline)
    >>> pane.update(columns_from_records(baseline, [
    ...     {"features": {"x": "a"}, "timestamp": 60.0, "latency_ms": 12},
    ...     {"features": {"y": 1.0}, "timestamp": 61.5, "latency_ms": None}]))
    >>> pane.volume, pane.features["x"].counts.tolist(), pane.absent, pane.unknown_features
    (2, [1, 0, 0], {'x': 1}, 1)
    >>> other = PaneState.from_state(baseline, pane.to_state()); other += pane
    >>> other.volume, other.max_event_time, other.latency.count
    (4, 61.5, 2)
    """

    __slots__ = (
        "absent",
        "features",
        "latency",
        "max_event_time",
        "min_event_time",
        "model",
        "model_version",
        "prediction",
        "prediction_type_mismatch",
        "type_mismatch",
        "unknown_features",
        "unknown_names",
        "volume",
    )

    def __init__(
        self,
        model: str,
        model_version: str,
        features: dict[str, Histogram],
        prediction: Histogram | None,
    ) -> None:
        self.model = model
        self.model_version = model_version
        self.features = features
        self.prediction = prediction
        self.latency = _LATENCY.empty_like()
        self.volume = 0
        self.min_event_time = math.inf
        self.max_event_time = -math.inf
        self.unknown_features = 0
        self.unknown_names: list[str] = []
        self.absent: dict[str, int] = {}
        self.type_mismatch: dict[str, int] = {}
        self.prediction_type_mismatch = 0

    @classmethod
    def empty(cls, baseline: Baseline) -> PaneState:
        """A pane with nothing counted yet, over ``baseline``'s bins."""
        features = {name: ref.empty_histogram() for name, ref in baseline.features.items()}
        ref = baseline.prediction
        prediction = None if ref is None else ref.empty_histogram()
        return cls(baseline.model, baseline.version, features, prediction)

    # -- counting ---------------------------------------------------------------------------

    def update(self, columns: Columns) -> None:
        """Count a micro-batch built by `columns_from_records` (or by hand)."""
        self.update_columns(
            columns.features,
            columns.prediction,
            columns.latency_ms,
            columns.timestamps,
            absent=columns.absent,
            unknown_features=columns.unknown_features,
            unknown_names=columns.unknown_names,
        )

    def update_columns(
        self,
        features: Mapping[str, Column],
        prediction: Column | None,
        latency_ms: Column | None,
        timestamps: Column,
        *,
        absent: Mapping[str, int] | None = None,
        unknown_features: int = 0,
        unknown_names: Iterable[str] = (),
    ) -> None:
        """Count ``n`` events given column by column, each column ``n`` long.

        Numeric columns are float arrays or sequences of numbers and None (missing); a string
        in one is counted as missing and as a ``type_mismatch`` of that feature. Categorical
        columns are sequences of str / None. A baseline feature with no column counts as
        absent (and missing) in all ``n`` events; ``absent`` adds how many events lacked a
        feature whose column holds None for them. A column the baseline does not know counts
        its events with a value as ``unknown_features``, on top of ``unknown_features``.
        """
        times = np.asarray(timestamps, dtype=np.float64)
        n = times.size
        for name, values in features.items():
            _check_length(name, values, n)
        _check_length("prediction", prediction, n)
        _check_length("latency_ms", latency_ms, n)
        if n == 0:
            return
        for name, histogram in self.features.items():
            column = features.get(name)
            if column is None:
                histogram.missing += n
                _add(self.absent, name, n)
            else:
                _add(self.type_mismatch, name, _count_into(histogram, column))
        for name, k in (absent or {}).items():
            if name in self.features:
                _add(self.absent, name, k)
        unknown = [name for name in features if name not in self.features]
        if unknown:
            present = np.zeros(n, dtype=bool)
            for name in unknown:
                present |= _present(features[name])
            unknown_features += int(present.sum())
            unknown_names = [*unknown_names, *unknown]
        self.unknown_features += unknown_features
        self._add_unknown_names(unknown_names)
        if self.prediction is not None:
            if prediction is None:
                self.prediction.missing += n
            else:
                self.prediction_type_mismatch += _count_into(self.prediction, prediction)
        if latency_ms is None:
            self.latency.missing += n
        else:
            self.latency.update_many(_numeric_column(latency_ms)[0] / 1000.0)
        self.volume += n
        finite = times[np.isfinite(times)]
        if finite.size:
            self.min_event_time = min(self.min_event_time, float(finite.min()))
            self.max_event_time = max(self.max_event_time, float(finite.max()))

    def _add_unknown_names(self, names: Iterable[str]) -> None:
        merged = set(self.unknown_names).union(names)
        if len(merged) != len(self.unknown_names):
            self.unknown_names = sorted(merged)[:MAX_UNKNOWN_NAMES]

    # -- merging ----------------------------------------------------------------------------

    def merge(self, other: PaneState) -> None:
        """Add another pane (or window) of the same model version into this one."""
        if (self.model, self.model_version) != (other.model, other.model_version):
            raise ValueError(
                f"cannot merge a pane of {other.model} {other.model_version} "
                f"into one of {self.model} {self.model_version}"
            )
        if self.features.keys() != other.features.keys():
            raise ValueError("cannot merge panes with different features")
        for name, histogram in self.features.items():
            _merge_histogram(histogram, other.features[name])
        if self.prediction is not None and other.prediction is not None:
            _merge_histogram(self.prediction, other.prediction)
        elif self.prediction is not None or other.prediction is not None:
            raise ValueError("cannot merge a pane with a prediction into one without")
        self.latency.merge(other.latency)
        self.volume += other.volume
        self.min_event_time = min(self.min_event_time, other.min_event_time)
        self.max_event_time = max(self.max_event_time, other.max_event_time)
        self.unknown_features += other.unknown_features
        self._add_unknown_names(other.unknown_names)
        for name, k in other.absent.items():
            _add(self.absent, name, k)
        for name, k in other.type_mismatch.items():
            _add(self.type_mismatch, name, k)
        self.prediction_type_mismatch += other.prediction_type_mismatch

    def __iadd__(self, other: PaneState) -> PaneState:
        self.merge(other)
        return self

    def __add__(self, other: PaneState) -> PaneState:
        total = self.copy()
        total.merge(other)
        return total

    def copy(self) -> PaneState:
        features = {name: h.empty_like() for name, h in self.features.items()}
        prediction = None if self.prediction is None else self.prediction.empty_like()
        pane = PaneState(self.model, self.model_version, features, prediction)
        pane.merge(self)
        return pane

    # -- state ------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Compact JSON-ready state: counts only, zero fields left out, sparse bins.

        ``{"format", "model", "model_version", "volume", "event_time": [min, max],
        "features": {name: histogram}, "prediction": histogram, "latency": histogram,
        "unknown_features", "unknown_names", "absent", "type_mismatch",
        "prediction_type_mismatch"}``, each histogram in the form of
        `NumericHistogram.to_compact_state` / `CategoricalHistogram.to_compact_state`.
        """
        state: dict[str, Any] = {
            "format": FORMAT,
            "model": self.model,
            "model_version": self.model_version,
            "volume": self.volume,
        }
        if self.volume:
            state["event_time"] = [self.min_event_time, self.max_event_time]
        state["features"] = {n: h.to_compact_state() for n, h in self.features.items()}
        if self.prediction is not None:
            state["prediction"] = self.prediction.to_compact_state()
        state["latency"] = self.latency.to_compact_state()
        if self.unknown_features:
            state["unknown_features"] = self.unknown_features
        if self.unknown_names:
            state["unknown_names"] = list(self.unknown_names)
        if self.absent:
            state["absent"] = dict(self.absent)
        if self.type_mismatch:
            state["type_mismatch"] = dict(self.type_mismatch)
        if self.prediction_type_mismatch:
            state["prediction_type_mismatch"] = self.prediction_type_mismatch
        return state

    @classmethod
    def from_state(cls, baseline: Baseline, state: Mapping[str, Any]) -> PaneState:
        """Rebuild a pane from `to_state`; ``baseline`` supplies the bins."""
        if state.get("format") != FORMAT:
            raise ValueError(f"pane state format {state.get('format')!r} is not {FORMAT!r}")
        pane = cls.empty(baseline)
        if (state["model"], state["model_version"]) != (pane.model, pane.model_version):
            raise ValueError(
                f"pane state of {state['model']} {state['model_version']} does not belong "
                f"to the baseline of {pane.model} {pane.model_version}"
            )
        stored = state["features"]
        if stored.keys() != pane.features.keys():
            raise ValueError("pane state features differ from the baseline's")
        for name, histogram in pane.features.items():
            histogram.load_compact_state(stored[name])
        if pane.prediction is not None:
            pane.prediction.load_compact_state(state.get("prediction", {}))
        pane.latency.load_compact_state(state["latency"])
        pane.volume = int(state["volume"])
        if "event_time" in state:
            pane.min_event_time, pane.max_event_time = (float(t) for t in state["event_time"])
        pane.unknown_features = int(state.get("unknown_features", 0))
        pane.unknown_names = [str(name) for name in state.get("unknown_names", ())]
        pane.absent = {str(k): int(v) for k, v in state.get("absent", {}).items()}
        pane.type_mismatch = {str(k): int(v) for k, v in state.get("type_mismatch", {}).items()}
        pane.prediction_type_mismatch = int(state.get("prediction_type_mismatch", 0))
        return pane

    def __repr__(self) -> str:
        return f"PaneState({self.model} {self.model_version}, volume={self.volume})"


def merge_panes(baseline: Baseline, panes: Iterable[PaneState]) -> PaneState:
    """The window the panes make up: their sum (an empty pane when there are none)."""
    window = PaneState.empty(baseline)
    for pane in panes:
        window.merge(pane)
    return window


def prometheus_latency_buckets(latency: NumericHistogram) -> list[tuple[float, int]]:
    """Cumulative ``(le, count)`` pairs of `PROMETHEUS_LATENCY_BUCKETS`, then ``+Inf``."""
    per_bucket = latency.coarsen(np.nextafter(np.array(PROMETHEUS_LATENCY_BUCKETS), np.inf))
    cumulative = np.cumsum(per_bucket).tolist()
    return list(zip((*PROMETHEUS_LATENCY_BUCKETS, math.inf), cumulative, strict=True))


# -- micro-batches to columns -----------------------------------------------------------------


@dataclass
class Columns:
    """A micro-batch of one model version as columns, ready for `PaneState.update`."""

    features: dict[str, Column]
    prediction: Column | None
    latency_ms: Column | None
    timestamps: FloatArray
    absent: dict[str, int] = field(default_factory=dict)
    unknown_features: int = 0
    unknown_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.timestamps.size)


class PredictionLike(Protocol):
    """The fields of a validated prediction event that a pane counts."""

    @property
    def features(self) -> Mapping[str, Any]: ...
    @property
    def prediction(self) -> Any: ...
    @property
    def latency_ms(self) -> Any: ...
    @property
    def timestamp(self) -> float: ...


def columns_from_records(baseline: Baseline, records: Sequence[Mapping[str, Any]]) -> Columns:
    """Columns of ``records`` shaped like the wire format.

    Each record is ``{"features": {...}, "prediction": ..., "latency_ms": ...,
    "timestamp": epoch_seconds}`` (``prediction`` and ``latency_ms`` optional).
    """
    return _columns(
        baseline,
        [r["features"] for r in records],
        [r.get("prediction") for r in records] if baseline.prediction is not None else None,
        [r.get("latency_ms") for r in records],
        [r["timestamp"] for r in records],
    )


def columns_from_predictions(baseline: Baseline, events: Sequence[PredictionLike]) -> Columns:
    """Columns of validated prediction events (``streams.events.Prediction``)."""
    return _columns(
        baseline,
        [e.features for e in events],
        [e.prediction for e in events] if baseline.prediction is not None else None,
        [e.latency_ms for e in events],
        [e.timestamp for e in events],
    )


def _columns(
    baseline: Baseline,
    feature_dicts: list[Mapping[str, Any]],
    prediction: list[Any] | None,
    latency_ms: list[Any],
    timestamps: list[float],
) -> Columns:
    names = list(baseline.features)
    known = baseline.features.keys()
    n_known = len(names)
    row_of = _row_getter(names)
    absent: dict[str, int] = {}
    unknown = 0
    unknown_names: set[str] = set()
    rows = _exact_rows(feature_dicts, row_of, n_known)
    if rows is not None:
        feature_dicts = []  # every event has exactly the baseline's features
    else:
        rows = []
    append = rows.append
    for features in feature_dicts:
        # The common case, exactly the baseline's features: as many keys, none of them absent.
        if len(features) == n_known:
            try:
                append(row_of(features))
                continue
            except KeyError:
                pass
        append(tuple(map(features.get, names)))
        for name in known - features.keys():
            absent[name] = absent.get(name, 0) + 1
        extra = features.keys() - known
        if extra:
            unknown += 1
            unknown_names.update(extra)
            if len(unknown_names) > 4 * MAX_UNKNOWN_NAMES:
                unknown_names = set(sorted(unknown_names)[:MAX_UNKNOWN_NAMES])
    by_column = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    return Columns(
        features=dict(zip(names, by_column, strict=True)),
        prediction=prediction,
        latency_ms=latency_ms,
        timestamps=np.array(timestamps, dtype=np.float64),
        absent=absent,
        unknown_features=unknown,
        unknown_names=sorted(unknown_names)[:MAX_UNKNOWN_NAMES],
    )


def _exact_rows(
    feature_dicts: list[Mapping[str, Any]],
    row_of: Callable[[Mapping[str, Any]], tuple[Any, ...]],
    n_known: int,
) -> list[tuple[Any, ...]] | None:
    """Every event's row when all of them carry exactly the baseline's features, else None.

    The common case, in C-level passes only: as many keys as the baseline, none missing.
    """
    if not feature_dicts or set(map(len, feature_dicts)) != {n_known}:
        return None
    try:
        return list(map(row_of, feature_dicts))
    except KeyError:
        return None


def _row_getter(names: list[str]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    if len(names) == 1:
        name = names[0]
        return lambda features: (features[name],)
    if not names:
        return lambda features: ()
    getter: Callable[[Mapping[str, Any]], tuple[Any, ...]] = operator.itemgetter(*names)
    return getter


# -- columns to histograms --------------------------------------------------------------------


def _count_into(histogram: Histogram, column: Column) -> int:
    """Count ``column`` into ``histogram``; the number of type mismatches."""
    if isinstance(histogram, NumericHistogram):
        values, mismatches = _numeric_column(column)
        histogram.update_many(values)
        return mismatches
    histogram.update_many(column)
    return 0


def _numeric_column(column: Column) -> tuple[FloatArray, int]:
    """A float array (None → NaN) and how many values were strings or other non-numbers.

    The common case, all numbers, is one ``np.array`` call; a column holding None costs a
    type scan more; only a column holding a string (a producer bug) goes value by value.
    """
    if isinstance(column, np.ndarray) and column.dtype.kind in _NUMBER_KINDS:
        return column.astype(np.float64, copy=False).reshape(-1), 0
    values = column.tolist() if isinstance(column, np.ndarray) else column
    try:
        array = np.array(values)
    except (ValueError, TypeError):  # ragged nested values
        array = np.array([], dtype=object)
    if array.ndim == 1 and array.dtype.kind in _NUMBER_KINDS and array.size == len(values):
        return array.astype(np.float64, copy=False), 0
    if array.ndim == 1 and array.dtype.kind == "O" and set(map(type, values)) <= _NUMBER_TYPES:
        return array.astype(np.float64), 0  # None becomes NaN
    out = np.full(len(values), np.nan)
    mismatches = 0
    for i, v in enumerate(values):
        if v is None:
            continue
        if isinstance(v, int | float | np.integer | np.floating):
            out[i] = v
        else:
            mismatches += 1
    return out, mismatches


def _present(column: Column) -> npt.NDArray[np.bool_]:
    if isinstance(column, np.ndarray) and column.dtype.kind == "f":
        return ~np.isnan(column)
    return np.fromiter((v is not None for v in column), dtype=bool, count=len(column))


def _merge_histogram(into: Histogram, other: Histogram) -> None:
    if isinstance(into, NumericHistogram):
        if isinstance(other, NumericHistogram):
            into.merge(other)
            return
    elif isinstance(other, CategoricalHistogram):
        into.merge(other)
        return
    raise ValueError("cannot merge a numeric histogram with a categorical one")


def _check_length(name: str, column: Column | None, n: int) -> None:
    if column is not None and len(column) != n:
        raise ValueError(f"column {name!r} has {len(column)} values, expected {n}")


def _add(counts: dict[str, int], name: str, k: int) -> None:
    if k:
        counts[name] = counts.get(name, 0) + k
