"""The batch monitoring job: a file of current data against a baseline.

No broker, no Redis: the current rows are counted into the baseline's bins block by block
and compared column by column, exactly as a streaming window would be.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.baseline import Baseline, NumericReference, Reference
from streams.baseline_builder import DEFAULT_IGNORE, ReadReport
from streams.comparison import compare_column, positive_rate
from streams.errors import InputError
from streams.histogram import CategoricalHistogram, Histogram, NumericHistogram
from streams.severity import Severity
from streams.tabular import Progress, TableFile


@dataclass
class CheckResult:
    """The report `undertow check` prints."""

    alert_level: Severity
    rows: int
    features: dict[str, dict[str, Any]]
    prediction: dict[str, Any]
    read: ReadReport = field(default_factory=ReadReport)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alert_level": str(self.alert_level),
            "rows": self.rows,
            "bad_rows": self.read.bad,
            "features": self.features,
            "prediction": self.prediction,
        }


def check(
    baseline: Baseline,
    table: TableFile,
    *,
    ignore: Sequence[str] = DEFAULT_IGNORE,
    max_bad_share: float = 0.01,
    progress: Progress | None = None,
) -> CheckResult:
    """Count ``table`` into ``baseline``'s bins and compare every monitored column."""
    columns = _monitored_columns(baseline, table, ignore)
    numeric = [c for c, ref in columns.items() if isinstance(ref, NumericReference)]
    current: dict[str, Histogram] = {c: ref.empty_histogram() for c, ref in columns.items()}
    report = ReadReport()
    for chunk in table.chunks(numeric=numeric, columns=list(columns), progress=progress):
        report.rows += chunk.n_rows
        report.add_bad(chunk.bad_rows)
        for c, h in current.items():
            if isinstance(h, NumericHistogram):
                h.update_many(chunk.numeric[c])
            else:
                assert isinstance(h, CategoricalHistogram)
                h.update_many(chunk.text[c])
    report.enforce(table.path, max_bad_share)

    thresholds = baseline.thresholds
    prediction_column = baseline.source.get("prediction_column")
    results = {c: compare_column(columns[c], current[c], thresholds) for c in columns}
    prediction = results.pop(prediction_column, {}) if prediction_column else {}
    if prediction and prediction_column and baseline.task == "binary":
        score = current[prediction_column]
        assert isinstance(score, NumericHistogram)
        prediction["positive_rate"] = positive_rate(score, baseline.threshold)
    warnings = [
        f"column {c!r} is entirely missing in {table.path} ({r['count']} rows)"
        for c, r in results.items()
        if r["count"] and r["missing_rate"] == 1.0
    ]
    levels = [Severity.parse(r["status"]) for r in [*results.values(), prediction] if r]
    return CheckResult(
        alert_level=max(levels, default=Severity.NONE),
        rows=report.rows,
        features=results,
        prediction=prediction,
        read=report,
        warnings=warnings,
    )


def _monitored_columns(
    baseline: Baseline, table: TableFile, ignore: Sequence[str]
) -> dict[str, Reference]:
    columns: dict[str, Reference] = dict(baseline.features)
    prediction_column = baseline.source.get("prediction_column")
    if baseline.prediction is not None and prediction_column:
        columns[prediction_column] = baseline.prediction
    present = set(table.columns)
    absent = [c for c in columns if c not in present]
    if absent:
        raise InputError(
            f"column(s) {', '.join(map(repr, absent))} are in the baseline "
            f"({baseline.model} {baseline.version}) but not in this file",
            path=table.path,
        )
    target_column = baseline.source.get("target_column")
    # Protected columns are segment attributes, compared by the live monitor, not drift.
    skip = {*ignore, target_column, *baseline.protected}
    extra = [c for c in table.columns if c not in columns and c not in skip]
    if extra:
        raise InputError(
            f"column(s) {', '.join(map(repr, extra))} are not in the baseline "
            f"({baseline.model} {baseline.version}); pass --ignore to leave them out",
            path=table.path,
        )
    return columns
