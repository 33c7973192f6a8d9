"""Build a `Baseline` from a reference file in one streaming pass (two when it is large).

Numeric columns feed exact running moments and a row reservoir of ``sample_rows`` rows.
Bin edges and percentiles come from the reservoir; when the file fits in it (the common
case) that is the data itself and everything is exact. When it does not, a second pass
counts every row into the chosen bins, so the reference histograms are exact either way and
only the position of the edges rests on the sample.

Protected columns (``BuildOptions.protected``) are not features: they are the segment
attributes whose groups the live monitor compares for fairness. The same pass counts them
into cohorts, from which the baseline keeps each group's positive rate, TPR and FPR on the
training data (`streams.fairness.fairness_reference`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from streams.baseline import (
    Baseline,
    CategoricalReference,
    NumericReference,
    Reference,
    Task,
)
from streams.binning import Binning, coarse_edges, fine_grid, sorted_quantiles, union_edges
from streams.cohorts import MAX_ATTRIBUTES, MAX_VALUES, OTHER_SEGMENT, Cohorts
from streams.errors import InputError
from streams.fairness import fairness_reference
from streams.histogram import CategoricalHistogram, NumericHistogram
from streams.moments import Moments
from streams.outcome_rows import (
    FALSE_WORDS,
    TRUE_WORDS,
    binary_outcome_rows,
    binary_prediction_rows,
)
from streams.performance import BinaryConfusion, MulticlassAccuracy, RegressionErrors
from streams.reservoir import RowReservoir
from streams.severity import Thresholds
from streams.tabular import BadRow, Chunk, ColumnType, Progress, TableFile

#: Columns that identify or time an event rather than describe it.
DEFAULT_IGNORE = ("prediction_id", "timestamp", "model", "model_version", "latency_ms")
#: Column names taken as the target when --target is not given.
TARGET_NAMES = ("label", "target", "actual")
#: Distinct values a protected column may have in the reference data: groups, not ids.
MAX_GROUPS = 1000


@dataclass
class BuildOptions:
    model: str
    version: str
    prediction: str | None = None
    target: str | None = None
    task: Task | None = None
    bins: int = 10
    binning: Binning = "quantile"
    threshold: float = 0.5
    features: Sequence[str] | None = None
    ignore: Sequence[str] = DEFAULT_IGNORE
    categorical: Sequence[str] = ()
    sample_rows: int = 1_000_000
    max_categories: int = 200
    max_bad_share: float = 0.01
    thresholds: Thresholds = field(default_factory=Thresholds)
    protected: Sequence[str] = ()
    label_ttl_s: float | None = None
    expected_label_delay_s: float | None = None
    min_labelled: int = 100
    min_group_size: int = 30
    fairness_bounds: tuple[float, float] = (0.8, 1.25)
    max_segment_attributes: int = MAX_ATTRIBUTES
    max_segment_values: int = MAX_VALUES


@dataclass
class ReadReport:
    """How many rows were read and which were left out."""

    rows: int = 0
    bad: int = 0
    examples: list[BadRow] = field(default_factory=list)

    def add_bad(self, bad: list[BadRow], keep: int = 5) -> None:
        self.bad += len(bad)
        self.examples.extend(bad[: max(0, keep - len(self.examples))])

    @property
    def bad_share(self) -> float:
        total = self.rows + self.bad
        return self.bad / total if total else 0.0

    def enforce(self, path: str, max_share: float) -> None:
        if self.rows == 0 and self.bad == 0:
            raise InputError("has a header but no data rows", path=path)
        if self.bad and self.bad_share > max_share:
            first = self.examples[0]
            raise InputError(
                f"{self.bad} of {self.rows + self.bad} rows are malformed "
                f"({self.bad_share:.1%}, more than the {max_share:.1%} allowed); "
                f"first: {first.describe()}",
                path=path,
            )


@dataclass
class Roles:
    """Which column plays which part."""

    features: list[str]
    prediction: str | None
    target: str | None
    types: dict[str, ColumnType]
    protected: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        extra = [c for c in (self.prediction, self.target) if c is not None]
        return self.features + extra

    @property
    def numeric(self) -> list[str]:
        return [c for c in self.columns if self.types[c] == "numeric"]


def resolve_roles(table: TableFile, options: BuildOptions) -> Roles:
    """Decide features, prediction and target from the header and the options."""
    cols = table.columns
    for name, flag in ((options.prediction, "--prediction"), (options.target, "--target")):
        if name is not None and name not in cols:
            raise InputError(
                f"{flag} column {name!r} is not in the file (columns: {', '.join(cols)})",
                path=table.path,
            )
    prediction = options.prediction or ("prediction" if "prediction" in cols else None)
    target = options.target or next((c for c in TARGET_NAMES if c in cols), None)
    protected = _protected_columns(table, options.protected, prediction, target)
    if options.features is not None:
        missing = [f for f in options.features if f not in cols]
        if missing:
            raise InputError(
                f"feature column(s) {', '.join(map(repr, missing))} not in the file",
                path=table.path,
            )
        both = [f for f in options.features if f in protected]
        if both:
            raise InputError(
                f"column(s) {', '.join(map(repr, both))} are given as both features and "
                "protected attributes; a protected attribute is compared across groups, "
                "not monitored for drift",
                path=table.path,
            )
        features = list(options.features)
    else:
        skip = {*options.ignore, prediction, target, *protected}
        features = [c for c in cols if c not in skip]
    if not features:
        raise InputError("no feature columns left to monitor", path=table.path)
    types = table.infer_types()
    for c in options.categorical:
        if c not in cols:
            raise InputError(f"--categorical column {c!r} is not in the file", path=table.path)
        types[c] = "categorical"
    return Roles(features, prediction, target, types, protected)


def _protected_columns(
    table: TableFile, names: Sequence[str], prediction: str | None, target: str | None
) -> list[str]:
    cols = table.columns
    missing = [c for c in names if c not in cols]
    if missing:
        raise InputError(
            f"--protected column(s) {', '.join(map(repr, missing))} not in the file "
            f"(columns: {', '.join(cols)})",
            path=table.path,
        )
    for c in names:
        if c in (prediction, target):
            role = "prediction" if c == prediction else "target"
            raise InputError(f"--protected column {c!r} is the {role} column", path=table.path)
    return list(dict.fromkeys(names))


class _NumericColumn:
    def __init__(self) -> None:
        self.moments = Moments()
        self.missing = 0


def build_baseline(
    table: TableFile, options: BuildOptions, progress: Progress | None = None
) -> tuple[Baseline, ReadReport]:
    """Read ``table`` and return the baseline it defines, with the read report."""
    roles = resolve_roles(table, options)
    numeric = roles.numeric
    report = ReadReport()
    stats = {c: _NumericColumn() for c in numeric}
    counters: dict[str, Counter[str]] = {c: Counter() for c in roles.columns if c not in stats}
    missing_text: dict[str, int] = dict.fromkeys(counters, 0)
    reservoir = RowReservoir(options.sample_rows, max(len(numeric), 1))
    target_is_binary = True
    performance = _PerformanceCounters(roles, options)
    groups = _GroupCounters(roles, options)
    columns = roles.columns + roles.protected

    for chunk in table.chunks(numeric=numeric, columns=columns, progress=progress):
        report.rows += chunk.n_rows
        report.add_bad(chunk.bad_rows)
        if chunk.n_rows == 0:
            continue
        for c, col in stats.items():
            x = chunk.numeric[c]
            col.moments.update_many(x)
            col.missing += int(np.isnan(x).sum())
        if numeric:
            reservoir.add(np.column_stack([chunk.numeric[c] for c in numeric]))
        for c, counter in counters.items():
            values = chunk.text[c]
            counter.update(v for v in values if v is not None)
            missing_text[c] += sum(v is None for v in values)
        if roles.target in stats:
            t = chunk.numeric[roles.target]
            t = t[np.isfinite(t)]
            target_is_binary &= bool(np.all((t == 0) | (t == 1)))
        performance.update(chunk)
        groups.update(chunk)

    report.enforce(table.path, options.max_bad_share)
    task = options.task or _infer_task(roles, stats, counters, target_is_binary)

    numeric_refs: dict[str, NumericReference] = {}
    sample = reservoir.sample
    for i, c in enumerate(numeric):
        col = stats[c]
        if col.moments.n == 0:
            raise InputError(
                f"has no values: all {col.missing} rows are missing or non-finite, "
                "so there is nothing to compare against",
                path=table.path,
                column=c,
            )
        # A binary model's decision threshold becomes a bin edge: positive rate is then exact.
        cut = options.threshold if c == roles.prediction and task == "binary" else None
        column = sample[:, i]
        ordered = np.sort(column[~np.isnan(column)])
        numeric_refs[c] = _numeric_reference(c, ordered, col, options, cut)
        if reservoir.exact:
            numeric_refs[c].histogram.update_sorted(ordered)
    if not reservoir.exact:
        _count_second_pass(table, roles, numeric_refs)

    refs: dict[str, Reference] = dict(numeric_refs)
    for c, counter in counters.items():
        if not counter:
            raise InputError(
                f"has no values: all {missing_text[c]} rows are missing",
                path=table.path,
                column=c,
            )
        refs[c] = _categorical_reference(c, counter, missing_text[c], options.max_categories)

    baseline = Baseline(
        model=options.model,
        version=options.version,
        features={c: refs[c] for c in roles.features},
        prediction=refs.get(roles.prediction) if roles.prediction else None,
        target=refs.get(roles.target) if roles.target else None,
        task=task,
        threshold=options.threshold,
        binning=options.binning,
        bins=options.bins,
        thresholds=options.thresholds,
        source={
            "file": table.path,
            "rows": report.rows,
            "bad_rows": report.bad,
            "sampled": not reservoir.exact,
            "prediction_column": roles.prediction,
            "target_column": roles.target,
        },
        protected=roles.protected,
        fairness_reference=groups.reference(table.path, task),
        fairness_bounds=options.fairness_bounds,
        min_group_size=options.min_group_size,
        min_labelled=options.min_labelled,
        label_ttl_s=options.label_ttl_s,
        expected_label_delay_s=options.expected_label_delay_s,
        max_segment_attributes=options.max_segment_attributes,
        max_segment_values=options.max_segment_values,
    )
    baseline.performance = performance.metrics(task)
    return baseline, report


def _numeric_reference(
    name: str,
    ordered: npt.NDArray[np.float64],
    col: _NumericColumn,
    options: BuildOptions,
    extra_edge: float | None = None,
) -> NumericReference:
    """Edges and summary from the ascending, NaN-free sample of a column."""
    m = col.moments
    # ±inf sit at the two ends of a sorted column; edges come from the finite middle.
    start = int(np.searchsorted(ordered, -np.inf, side="right"))
    stop = int(np.searchsorted(ordered, np.inf, side="left"))
    finite = ordered[start:stop]
    coarse = coarse_edges(finite, options.bins, options.binning, m.minimum, m.maximum)
    grid = union_edges(coarse, fine_grid(finite, minimum=m.minimum, maximum=m.maximum))
    if extra_edge is not None and m.minimum < extra_edge < m.maximum:
        grid = union_edges(grid, np.array([extra_edge]))
    histogram = NumericHistogram(grid)
    histogram.missing = col.missing
    p25, p50, p75, p95 = (float(v) for v in sorted_quantiles(finite, [0.25, 0.5, 0.75, 0.95]))
    summary: dict[str, float | None] = {
        "count": float(m.n),
        "mean": m.mean,
        "std": m.std,
        "min": m.minimum,
        "max": m.maximum,
        "p25": p25,
        "p50": p50,
        "p75": p75,
        "p95": p95,
    }
    return NumericReference(name, histogram, coarse, summary)


def _count_second_pass(table: TableFile, roles: Roles, refs: dict[str, NumericReference]) -> None:
    """Exact counts into the chosen bins; missing counts are already exact from pass one."""
    for chunk in table.chunks(numeric=list(refs), columns=list(refs)):
        for c, ref in refs.items():
            x = chunk.numeric[c]
            ref.histogram.update_many(x[~np.isnan(x)])


def _categorical_reference(
    name: str, counter: Counter[str], missing: int, max_categories: int
) -> CategoricalReference:
    top = counter.most_common(max_categories)
    histogram = CategoricalHistogram([k for k, _ in top])
    counts = [n for _, n in top]
    # Categories past the cap are rare by construction; they share the unseen bin.
    other = sum(counter.values()) - sum(counts)
    histogram.counts = np.asarray([*counts, other], dtype=np.int64)
    histogram.missing = missing
    summary = {
        "distinct": len(counter),
        "kept": len(top),
        "top": [[k, n] for k, n in top[:5]],
    }
    return CategoricalReference(name, histogram, summary)


def _infer_task(
    roles: Roles,
    stats: dict[str, _NumericColumn],
    counters: dict[str, Counter[str]],
    target_is_binary: bool,
) -> Task | None:
    p = roles.prediction
    if p is None:
        return None
    if p in counters:
        return "multiclass"
    m = stats[p].moments
    in_unit = m.n > 0 and m.minimum >= 0.0 and m.maximum <= 1.0
    t = roles.target
    if t is None:
        return "binary" if in_unit else "regression"
    if t in counters:
        words = {k.lower() for k in counters[t]}
        binary_words = words <= TRUE_WORDS | FALSE_WORDS
        return "binary" if in_unit and binary_words else "multiclass"
    return "binary" if in_unit and target_is_binary else "regression"


class _PerformanceCounters:
    """How the model did on the reference data, for every task the pair could be.

    The task is known only after the whole file is read, and the counters are cheap, so
    all of them are fed in the same pass and the right one is picked at the end.
    """

    def __init__(self, roles: Roles, options: BuildOptions) -> None:
        self.prediction = roles.prediction
        self.target = roles.target
        self.numeric_prediction = roles.prediction in roles.numeric
        # Comparing as text costs a string per row: only when the pair can be multiclass.
        self.count_multiclass = (
            not self.numeric_prediction
            or roles.target not in roles.numeric
            or options.task == "multiclass"
        )
        threshold = options.threshold
        self.binary = BinaryConfusion(threshold)
        self.multiclass = MulticlassAccuracy()
        self.regression = RegressionErrors()

    def update(self, chunk: Chunk) -> None:
        if self.prediction is None or self.target is None:
            return
        if self.numeric_prediction:
            scores = chunk.numeric[self.prediction]
            labels = _as_number(chunk, self.target)
            self.binary.update_many(scores, labels)
            self.regression.update_many(scores, labels)
        if self.count_multiclass:
            predicted = _as_text(chunk, self.prediction)
            self.multiclass.update_many(predicted, _as_text(chunk, self.target))

    def metrics(self, task: Task | None) -> dict[str, float]:
        if self.prediction is None or self.target is None or task is None:
            return {}
        if task == "binary":
            return self.binary.metrics()
        if task == "multiclass":
            return self.multiclass.metrics()
        return self.regression.metrics()


class _GroupCounters:
    """Cohort counts of the protected columns, for the baseline's fairness reference.

    As with `_PerformanceCounters` the task is known only at the end, so a numeric
    prediction is counted as a binary score all along and the rates are kept only if the
    task turns out binary; the group sizes are kept whatever the task.
    """

    def __init__(self, roles: Roles, options: BuildOptions) -> None:
        self.protected = roles.protected
        self.prediction = roles.prediction if roles.prediction in roles.numeric else None
        self.target = roles.target
        self.threshold = options.threshold
        self.max_values = options.max_segment_values
        pinned = dict.fromkeys(self.protected, ())
        self.cohorts = Cohorts(
            "binary", max_attributes=len(self.protected), max_values=MAX_GROUPS, pinned=pinned
        )

    def update(self, chunk: Chunk) -> None:
        if not self.protected or chunk.n_rows == 0:
            return
        n = chunk.n_rows
        columns = [chunk.text[c] for c in self.protected]
        segments = [
            {c: v for c, v in zip(self.protected, values, strict=True) if v is not None}
            for values in zip(*columns, strict=True)
        ]
        nan = np.full(n, np.nan)
        scores = chunk.numeric[self.prediction] if self.prediction else nan
        labels = _as_number(chunk, self.target) if self.target and self.prediction else nan
        rows = binary_prediction_rows(scores, self.threshold)
        rows += binary_outcome_rows(scores, labels, self.threshold)
        self.cohorts.add(segments, rows)

    def reference(self, path: str, task: Task | None) -> dict[str, dict[str, dict[str, Any]]]:
        for c in self.protected:
            table = self.cohorts.counts.get(c, {})
            if not table:
                raise InputError("has no values: all rows are missing", path=path, column=c)
            if OTHER_SEGMENT in table:
                raise InputError(
                    f"has more than {MAX_GROUPS:,} distinct values (or the reserved value "
                    f"{OTHER_SEGMENT!r}); a protected attribute names groups, such as "
                    "gender or an age band",
                    path=path,
                    column=c,
                )
        return fairness_reference(
            self.cohorts, self.protected, self.max_values, binary=task == "binary"
        )


def _as_text(chunk: Chunk, column: str) -> list[str | None]:
    if column in chunk.text:
        return chunk.text[column]
    return [None if math.isnan(v) else _number_text(v) for v in chunk.numeric[column].tolist()]


def _number_text(v: float) -> str:
    return str(int(v)) if v.is_integer() else str(v)


def _as_number(chunk: Chunk, column: str) -> npt.NDArray[np.float64]:
    if column in chunk.numeric:
        return chunk.numeric[column]
    return np.array([_truth_value(w) for w in chunk.text[column]], dtype=np.float64)


def _truth_value(word: str | None) -> float:
    if word is None:
        return math.nan
    w = word.lower()
    return 1.0 if w in TRUE_WORDS else 0.0 if w in FALSE_WORDS else math.nan
