"""Multiclass classification: a mergeable confusion matrix over a bounded label set."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from streams.exact_sum import decode_counts, encode_counts
from streams.performance.common import (
    OTHER,
    CountArray,
    _grown,
    _label,
    _missing,
    _ratio,
)


class MulticlassPerformance:
    """Accuracy and macro-F1 from a confusion matrix over a bounded label set.

    ``labels`` fixes the label set up front (a baseline's classes: partials then always
    merge exactly); without it the set grows as labels arrive, up to ``max_classes``. Either
    way, every label outside the set is pooled into one extra class, `OTHER`, so memory
    stays bounded whatever the cardinality of the stream.

    Accuracy counts exact matches, so it is exact even for pooled labels. Macro-F1 is the
    mean of per-class ``2TP / (2TP + FP + FN)`` over the classes that occur (as actual or
    predicted), as scikit-learn's ``f1_score(average="macro")`` with `OTHER` as one class:
    exact while nothing is pooled (`pooled` counts the rows that were). A growing set
    filled by merges keeps whichever labels came first, so merges of partials are exact
    while the union of their labels fits ``max_classes``.

    Labels are compared as text: ``1``, ``1.0`` and ``"1"`` are one class.

    Examples
    --------
    >>> m = MulticlassPerformance()
    >>> m.update_many(["cat", "dog", "dog", None], ["cat", "cat", "dog", "dog"])
    >>> m.metrics()
    {'labelled': 3.0, 'accuracy': 0.6666666666666666, 'macro_f1': 0.6666666666666666}
    """

    __slots__ = ("_index", "correct", "fixed", "labels", "matrix", "max_classes", "pooled")

    def __init__(self, labels: Sequence[object] | None = None, max_classes: int = 50) -> None:
        self.fixed = labels is not None
        self.labels: list[str] = [] if labels is None else [_label(v) for v in labels]
        if len(set(self.labels)) != len(self.labels) or OTHER in self.labels:
            raise ValueError(f"labels must be distinct and must not include {OTHER!r}")
        self.max_classes = len(self.labels) if self.fixed else int(max_classes)
        self._index = {label: i for i, label in enumerate(self.labels)}
        k = len(self.labels) + 1
        # Rows are actual classes, columns predicted ones; the last of each is OTHER.
        self.matrix: CountArray = np.zeros((k, k), dtype=np.int64)
        self.correct = 0
        self.pooled = 0

    @property
    def n(self) -> int:
        return int(self.matrix.sum())

    def update(self, predicted: object, actual: object) -> None:
        self.update_many([predicted], [actual])

    def update_many(self, predicted: Sequence[object], actual: Sequence[object]) -> None:
        if len(predicted) != len(actual):
            raise ValueError("predicted and actual differ in length")
        pairs = [
            (_label(p), _label(a))
            for p, a in zip(predicted, actual, strict=True)
            if not (_missing(p) or _missing(a))
        ]
        if not pairs:
            return
        codes = np.array([(self._code(a), self._code(p)) for p, a in pairs], dtype=np.intp)
        other = len(self.labels)  # OTHER's index, once this batch's new labels are in
        codes[codes < 0] = other
        k = other + 1
        if self.matrix.shape[0] != k:
            self.matrix = _grown(self.matrix, k)
        self.matrix += np.bincount(codes[:, 0] * k + codes[:, 1], minlength=k * k).reshape(k, k)
        self.correct += sum(p == a for p, a in pairs)
        self.pooled += int(np.count_nonzero((codes == other).any(axis=1)))

    def _code(self, label: str) -> int:
        i = self._index.get(label)
        if i is None and len(self.labels) < self.max_classes and label != OTHER:
            i = self._index[label] = len(self.labels)
            self.labels.append(label)
        return -1 if i is None else i

    def merge(self, other: MulticlassPerformance) -> None:
        if self.fixed and other.fixed and self.labels == other.labels:
            self.matrix += other.matrix
        else:
            mapped = [self._code(label) for label in sorted(other.labels)]
            order = [other._index[label] for label in sorted(other.labels)]
            k = len(self.labels) + 1
            if self.matrix.shape[0] != k:
                self.matrix = _grown(self.matrix, k)
            codes = np.full(len(other.labels) + 1, k - 1, dtype=np.intp)
            codes[order] = [k - 1 if c < 0 else c for c in mapped]
            np.add.at(self.matrix, (codes[:, None], codes[None, :]), other.matrix)
            # Rows of other's own classes that this set has no room for are pooled now.
            newly = (codes[:, None] == k - 1) | (codes[None, :] == k - 1)
            newly[-1, :] = newly[:, -1] = False
            self.pooled += int(other.matrix[newly].sum())
        self.correct += other.correct
        self.pooled += other.pooled

    def __iadd__(self, other: MulticlassPerformance) -> MulticlassPerformance:
        self.merge(other)
        return self

    def macro_f1(self) -> float:
        m = self.matrix
        tp = np.diag(m).astype(np.float64)
        actual, predicted = m.sum(axis=1), m.sum(axis=0)
        present = (actual + predicted) > 0
        if not present.any():
            return math.nan
        f1 = 2 * tp[present] / (actual[present] + predicted[present])
        return float(f1.mean())

    def metrics(self) -> dict[str, float]:
        return {
            "labelled": float(self.n),
            "accuracy": _ratio(self.correct, self.n),
            "macro_f1": self.macro_f1(),
        }

    def to_state(self) -> dict[str, Any]:
        """State with a growing label set sorted, so equal contents give equal states."""
        order = list(range(len(self.labels)))
        if not self.fixed:
            order.sort(key=self.labels.__getitem__)
        perm = [*order, len(self.labels)]
        state: dict[str, Any] = {
            "labels": [self.labels[i] for i in order],
            "matrix": encode_counts(self.matrix[np.ix_(perm, perm)].ravel()),
            "correct": self.correct,
        }
        if self.fixed:
            state["fixed"] = True
        else:
            state["max_classes"] = self.max_classes
        if self.pooled:
            state["pooled"] = self.pooled
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MulticlassPerformance:
        labels = [str(v) for v in state["labels"]]
        if state.get("fixed"):
            m = cls(labels)
        else:
            m = cls(max_classes=int(state["max_classes"]))
            m.labels, m._index = labels, {label: i for i, label in enumerate(labels)}
        k = len(labels) + 1
        m.matrix = decode_counts(state["matrix"], k * k).reshape(k, k)
        m.correct = int(state["correct"])
        m.pooled = int(state.get("pooled", 0))
        return m

    def __repr__(self) -> str:
        return f"MulticlassPerformance(n={self.n}, classes={len(self.labels)})"
