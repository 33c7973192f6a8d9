"""Mergeable performance counters: what a model scored against ground truth.

Each keeps sufficient statistics (counts and exact sums), never the pairs themselves, so
partials from partitions, panes and micro-batches add up to the same state, bit for bit,
whatever the grouping. Every counter has the same shape: vectorised ``update_many``
(predicted, actual), ``merge`` / ``+=``, ``metrics()``, and ``to_state`` / ``from_state``
as small JSON-ready dicts.

Rows with a missing value (None, NaN, ±inf) are skipped. A figure that is undefined on the
data seen (a ratio over zero, an AUC with one class) is NaN, never an exception and never
scikit-learn's ``zero_division`` substitute: an undefined precision is not a precision of 0.
"""

from __future__ import annotations

from streams.performance.binary import BinaryPerformance
from streams.performance.common import EPS, OTHER
from streams.performance.multiclass import MulticlassPerformance
from streams.performance.primary import PrimaryMetric, primary_metric
from streams.performance.regression import RegressionPerformance

BinaryConfusion = BinaryPerformance
MulticlassAccuracy = MulticlassPerformance
RegressionErrors = RegressionPerformance

__all__ = [
    "EPS",
    "OTHER",
    "BinaryConfusion",
    "BinaryPerformance",
    "MulticlassAccuracy",
    "MulticlassPerformance",
    "PrimaryMetric",
    "RegressionErrors",
    "RegressionPerformance",
    "primary_metric",
]
