"""The one figure an accuracy-drop alert watches, per task."""

from __future__ import annotations

import math
from dataclasses import dataclass

from streams.baseline import Task


@dataclass(frozen=True)
class PrimaryMetric:
    """The one figure an ``accuracy_drop`` alert watches for a task.

    `drop` puts every task on one scale, "points worse than the baseline", so one pair of
    thresholds (warning 5, critical 10) reads the same for all of them: percentage points
    for a rate (accuracy), percent of the baseline value for an error (MAE).
    """

    name: str
    higher_is_better: bool

    def drop(self, baseline: float, current: float) -> float:
        """How much worse ``current`` is than ``baseline`` (negative: better; NaN: unknown).

        >>> round(primary_metric("binary").drop(0.91, 0.85), 6)  # accuracy 91 % → 85 %
        6.0
        >>> round(primary_metric("regression").drop(2.0, 2.3), 6)  # MAE 2.0 → 2.3
        15.0
        """
        if math.isnan(baseline) or math.isnan(current):
            return math.nan
        if self.higher_is_better:
            return 100.0 * (baseline - current)
        if baseline == 0:
            return math.inf if current > 0 else 0.0
        return 100.0 * (current - baseline) / baseline


def primary_metric(task: Task) -> PrimaryMetric:
    """Accuracy for classification, MAE for regression.

    MAE rather than RMSE: labels that arrive late are also the ones most often wrong (a
    mistyped amount, a reversed chargeback), and one wild label moves RMSE by its square,
    enough to fire an alert on its own; MAE moves in proportion to how many predictions got
    worse, which is what a degradation alert is about.
    """
    if task in ("binary", "multiclass"):
        return PrimaryMetric("accuracy", higher_is_better=True)
    if task == "regression":
        return PrimaryMetric("mae", higher_is_better=False)
    raise ValueError(f"unknown task {task!r}")


# The names baseline_builder (and its callers) know these counters by.
