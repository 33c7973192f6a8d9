"""Mergeable performance counters: what a model scored against ground truth.

Each keeps sufficient statistics (counts and sums), never the pairs themselves, so
partials from partitions and micro-batches add up exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class BinaryConfusion:
    """Confusion counts of a scored binary classifier at a decision threshold.

    >>> c = BinaryConfusion(threshold=0.5)
    >>> c.update_many(np.array([0.9, 0.2, 0.7, 0.4]), np.array([1.0, 0.0, 0.0, 1.0]))
    >>> (c.tp, c.fp, c.tn, c.fn), c.metrics()["accuracy"]
    ((1, 1, 1, 1), 0.5)
    """

    __slots__ = ("fn", "fp", "threshold", "tn", "tp")

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self.tp = self.fp = self.tn = self.fn = 0

    def update_many(self, scores: FloatArray, labels: FloatArray) -> None:
        ok = np.isfinite(scores) & np.isfinite(labels)
        predicted = scores[ok] >= self.threshold
        actual = labels[ok] == 1
        self.tp += int(np.sum(predicted & actual))
        self.fp += int(np.sum(predicted & ~actual))
        self.tn += int(np.sum(~predicted & ~actual))
        self.fn += int(np.sum(~predicted & actual))

    def merge(self, other: BinaryConfusion) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.tn += other.tn
        self.fn += other.fn

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    def metrics(self) -> dict[str, float]:
        precision = _ratio(self.tp, self.tp + self.fp)
        recall = _ratio(self.tp, self.tp + self.fn)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else math.nan
        return {
            "labelled": float(self.n),
            "accuracy": _ratio(self.tp + self.tn, self.n),
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "positive_rate": _ratio(self.tp + self.fp, self.n),
            "fpr": _ratio(self.fp, self.fp + self.tn),
            "fnr": _ratio(self.fn, self.fn + self.tp),
        }

    def to_state(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
        }


class MulticlassAccuracy:
    """Share of predictions equal to the label."""

    __slots__ = ("correct", "n")

    def __init__(self) -> None:
        self.n = 0
        self.correct = 0

    def update_many(self, predicted: list[str | None], actual: list[str | None]) -> None:
        for p, a in zip(predicted, actual, strict=True):
            if p is None or a is None:
                continue
            self.n += 1
            self.correct += p == a

    def merge(self, other: MulticlassAccuracy) -> None:
        self.n += other.n
        self.correct += other.correct

    def metrics(self) -> dict[str, float]:
        return {"labelled": float(self.n), "accuracy": _ratio(self.correct, self.n)}


class RegressionErrors:
    """Sums for MAE and RMSE."""

    __slots__ = ("abs_sum", "n", "sq_sum")

    def __init__(self) -> None:
        self.n = 0
        self.abs_sum = 0.0
        self.sq_sum = 0.0

    def update_many(self, predicted: FloatArray, actual: FloatArray) -> None:
        ok = np.isfinite(predicted) & np.isfinite(actual)
        err = predicted[ok] - actual[ok]
        self.n += int(err.size)
        self.abs_sum += float(np.abs(err).sum())
        self.sq_sum += float(np.square(err).sum())

    def merge(self, other: RegressionErrors) -> None:
        self.n += other.n
        self.abs_sum += other.abs_sum
        self.sq_sum += other.sq_sum

    def metrics(self) -> dict[str, float]:
        return {
            "labelled": float(self.n),
            "mae": _ratio(self.abs_sum, self.n),
            "rmse": math.sqrt(self.sq_sum / self.n) if self.n else math.nan,
        }


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan
