"""A micro-batch of joined labels, judged per task: which rows count, and how they did.

The ingest hands `streams.outcomes.OutcomePane.join` the predicted and actual values of a
micro-batch as they came (numbers, text, None). This module turns them into what the pane
counts: which rows the task's performance counter can score (the same rule as the
counter's), whether each was right, its absolute error (regression), and each row's
contribution to its cohorts' records (`streams.cohorts.COLUMNS`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from streams.baseline import Task
from streams.performance.common import _HUGE, _label, _missing

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
CountArray = npt.NDArray[np.int64]

#: Label words read as 1 and 0 for a binary model (as `streams.baseline_builder` reads a
#: text target column).
TRUE_WORDS = frozenset({"1", "true", "yes", "y", "t"})
FALSE_WORDS = frozenset({"0", "false", "no", "n", "f"})
_NUMBER_KINDS = frozenset("biuf")


@dataclass(slots=True)
class Outcome:
    """One micro-batch of joined labels, judged: which rows count, and how they did."""

    scorable: BoolArray  # rows the task's counter scores
    predicted: Any  # what to feed the counter's update_many
    actual: Any
    rows: CountArray | None  # cohort contributions (None without a task)
    correct: BoolArray
    errors: FloatArray | None = None  # regression: |error|, 0 where not scorable


def judge(
    task: Task | None,
    threshold: float,
    predicted: Sequence[float | str | None],
    actual: Sequence[float | str],
) -> Outcome:
    """Judge ``predicted[i]`` against ``actual[i]`` with the performance counter's rules:
    binary, a finite score and a 0/1 label (or `TRUE_WORDS` / `FALSE_WORDS`); multiclass,
    both present, compared as text; regression, both finite."""
    n = len(predicted)
    if task == "binary":
        s, y = scores_of(predicted), binary_labels(actual)
        ok = np.isfinite(s) & ((y == 0) | (y == 1))
        return Outcome(
            ok, s, y, binary_outcome_rows(s, y, threshold), _correct_binary(s, y, ok, threshold)
        )
    if task == "multiclass":
        pairs = [
            (not (_missing(p) or _missing(a)), _label(p) == _label(a))
            for p, a in zip(predicted, actual, strict=True)
        ]
        ok = np.fromiter((p[0] for p in pairs), bool, n)
        correct = ok & np.fromiter((p[1] for p in pairs), bool, n)
        rows = np.zeros((n, 3), dtype=np.int64)
        rows[:, 1], rows[:, 2] = ok, correct
        return Outcome(ok, list(predicted), list(actual), rows, correct)
    if task == "regression":
        p, y = scores_of(predicted), scores_of(actual)
        ok = (np.abs(p) < _HUGE) & (np.abs(y) < _HUGE)
        errors = np.where(ok, np.abs(p - y), 0.0)
        rows = np.zeros((n, 2), dtype=np.int64)
        rows[:, 1] = ok
        return Outcome(ok, p, y, rows, ok, errors)
    return Outcome(np.zeros(n, dtype=bool), None, None, None, np.zeros(n, dtype=bool))


def _correct_binary(s: FloatArray, y: FloatArray, ok: BoolArray, threshold: float) -> BoolArray:
    correct: BoolArray = ok & ((s >= threshold) == (y == 1))
    return correct


def binary_outcome_rows(scores: FloatArray, labels: FloatArray, threshold: float) -> CountArray:
    """Binary cohort contributions of joined labels: a 1 in tp, fp, tn or fn per scorable row."""
    ok = np.isfinite(scores) & ((labels == 0) | (labels == 1))
    predicted, positive = scores >= threshold, labels == 1
    rows = np.zeros((scores.size, 7), dtype=np.int64)
    rows[:, 3] = ok & predicted & positive
    rows[:, 4] = ok & predicted & ~positive
    rows[:, 5] = ok & ~predicted & ~positive
    rows[:, 6] = ok & ~predicted & positive
    return rows


def binary_prediction_rows(scores: FloatArray, threshold: float) -> CountArray:
    """Binary cohort contributions of predictions: predictions, scored, predicted positive."""
    scored = np.isfinite(scores)
    rows = np.zeros((scores.size, 7), dtype=np.int64)
    rows[:, 0] = 1
    rows[:, 1] = scored
    rows[:, 2] = scored & (scores >= threshold)
    return rows


def scores_of(values: Sequence[float | str | None] | FloatArray) -> FloatArray:
    """Numbers as a float array; None, text and anything else non-numeric become NaN.

    >>> scores_of([0.5, None, "0.7", 1]).tolist()
    [0.5, nan, nan, 1.0]
    """
    array = values if isinstance(values, np.ndarray) else np.asarray(values)
    if array.dtype.kind in _NUMBER_KINDS and array.ndim == 1:
        return array.astype(np.float64, copy=False)
    return np.array([_number(v) for v in values], dtype=np.float64)


def binary_labels(values: Sequence[float | str | None]) -> FloatArray:
    """0/1 labels as floats: numbers as they are, `TRUE_WORDS` / `FALSE_WORDS` as 1 / 0.

    >>> binary_labels([1.0, "yes", "F", "maybe", None]).tolist()
    [1.0, 1.0, 0.0, nan, nan]
    """
    array = np.asarray(values)
    if array.dtype.kind in _NUMBER_KINDS and array.ndim == 1:
        return array.astype(np.float64, copy=False)
    return np.array([_truth_value(v) for v in values], dtype=np.float64)


def _number(v: object) -> float:
    if isinstance(v, int | float | np.integer | np.floating):
        return float(v)
    return math.nan


def _truth_value(v: object) -> float:
    if isinstance(v, str):
        w = v.strip().lower()
        return 1.0 if w in TRUE_WORDS else 0.0 if w in FALSE_WORDS else math.nan
    return _number(v)
