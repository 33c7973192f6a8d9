"""Binary classification: confusion counts, binned scores for AUC, log loss."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from streams.exact_sum import decode_counts, encode_counts, exact_add, exact_sum
from streams.performance.common import (
    _BLOCK,
    EPS,
    ArrayLike,
    CountArray,
    _floats,
    _ratio,
    _total,
)


class BinaryPerformance:
    """A scored binary classifier against 0/1 labels: confusion, AUC-ROC and log loss.

    * Confusion counts at ``threshold`` (predicted positive when ``score >= threshold``).
    * AUC-ROC from scores rounded to a grid of step ``1 / score_bins`` over [0, 1]
      (``score_bins + 1`` cells, scores outside [0, 1] in the end cells), one count vector
      for positives and one for negatives. Scores in one cell count as tied, as scikit-learn
      counts tied scores (half a pair), so the AUC is exact when the scores are on the grid,
      and otherwise off by at most `auc_error_bound` (half the share of positive-negative
      pairs that share a cell; see there).
    * Log loss: the mean of ``-log p`` of the true class, ``p`` clipped to [EPS, 1 - EPS].

    Rows whose label is not 0 or 1, or whose score or label is missing, are skipped.

    Examples
    --------
    >>> c = BinaryPerformance(threshold=0.5)
    >>> c.update_many(np.array([0.9, 0.2, 0.7, 0.4]), np.array([1.0, 0.0, 0.0, 1.0]))
    >>> (c.tp, c.fp, c.tn, c.fn), c.metrics()["accuracy"], c.auc()
    ((1, 1, 1, 1), 0.5, 0.75)
    """

    __slots__ = (
        "_log_loss",
        "fn",
        "fp",
        "negatives",
        "positives",
        "score_bins",
        "threshold",
        "tn",
        "tp",
    )

    def __init__(self, threshold: float = 0.5, score_bins: int = 200) -> None:
        if score_bins < 1:
            raise ValueError("score_bins must be at least 1")
        self.threshold = float(threshold)
        self.score_bins = int(score_bins)
        self.tp = self.fp = self.tn = self.fn = 0
        self.positives: CountArray = np.zeros(score_bins + 1, dtype=np.int64)
        self.negatives: CountArray = np.zeros(score_bins + 1, dtype=np.int64)
        self._log_loss: list[float] = []

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    def update(self, score: float | None, label: float | None) -> None:
        """One row, without numpy's per-call overhead; the same state as `update_many`."""
        if score is None or label is None or not math.isfinite(score) or label not in (0, 1):
            return
        positive, predicted = label == 1, score >= self.threshold
        if predicted:
            self.tp += positive
            self.fp += not positive
        else:
            self.fn += positive
            self.tn += not positive
        cell = math.floor(min(max(score, 0.0), 1.0) * self.score_bins + 0.5)
        (self.positives if positive else self.negatives)[cell] += 1
        p_true = min(max(score if positive else 1.0 - score, EPS), 1.0 - EPS)
        # np.log, not math.log: the two differ in the last bit for a few values in 1,000.
        self._log_loss = exact_sum([-float(np.log(p_true))], self._log_loss)

    def update_many(self, scores: ArrayLike, labels: ArrayLike) -> None:
        s, y = _floats(scores), _floats(labels)
        if s.size > _BLOCK:  # the temporaries of a block stay in cache
            for i in range(0, s.size, _BLOCK):
                self.update_many(s[i : i + _BLOCK], y[i : i + _BLOCK])
            return
        ok = np.isfinite(s) & ((y == 0) | (y == 1))
        s, positive = s[ok], y[ok] == 1
        if s.size == 0:
            return
        predicted = s >= self.threshold
        self.tp += int(np.count_nonzero(predicted & positive))
        self.fp += int(np.count_nonzero(predicted & ~positive))
        self.fn += int(np.count_nonzero(~predicted & positive))
        self.tn += int(np.count_nonzero(~predicted & ~positive))
        # floor(x + 0.5), not floor(x): a score k/B computed as 0.2899… still lands in cell k.
        cells = np.floor(np.clip(s, 0.0, 1.0) * self.score_bins + 0.5).astype(np.intp)
        size = self.score_bins + 1
        self.positives += np.bincount(cells[positive], minlength=size)
        self.negatives += np.bincount(cells[~positive], minlength=size)
        p_true = np.where(positive, s, 1.0 - s)
        losses = -np.log(np.clip(p_true, EPS, 1.0 - EPS))
        self._log_loss = exact_add(losses, self._log_loss)

    def merge(self, other: BinaryPerformance) -> None:
        if (self.threshold, self.score_bins) != (other.threshold, other.score_bins):
            raise ValueError("cannot merge binary counters with different thresholds or bins")
        self.tp += other.tp
        self.fp += other.fp
        self.tn += other.tn
        self.fn += other.fn
        self.positives += other.positives
        self.negatives += other.negatives
        if other._log_loss:
            self._log_loss = exact_sum(other._log_loss, self._log_loss)

    def __iadd__(self, other: BinaryPerformance) -> BinaryPerformance:
        self.merge(other)
        return self

    def auc(self) -> float:
        """AUC-ROC over the score cells (NaN without both classes), correctly rounded.

        Integer arithmetic: P(s+ > s-) + P(s+ = s-)/2 over cells, one division at the end.
        """
        pos: list[int] = self.positives.tolist()
        neg: list[int] = self.negatives.tolist()
        p, n = sum(pos), sum(neg)
        if p == 0 or n == 0:
            return math.nan
        twice_wins, below = 0, 0
        for pk, nk in zip(pos, neg, strict=True):
            twice_wins += pk * (2 * below + nk)
            below += nk
        return twice_wins / (2 * p * n)

    def auc_error_bound(self) -> float:
        """Largest possible |`auc` − exact AUC on the raw scores|, from the counts alone.

        Rounding to cells keeps the order of any two scores in different cells, so only
        a positive and a negative in the same cell can be counted wrong: the exact AUC
        gives the pair 0, ½ or 1, the binned one ½. Hence the bound
        ``Σ_k P_k·N_k / (2·P·N)``. It is 0 when no cell holds both classes, and about
        ``1 / (2 · occupied cells)`` for scores spread evenly; the actual error is much
        smaller for smooth score densities, as wins and losses inside a cell cancel.
        """
        p, n = int(self.positives.sum()), int(self.negatives.sum())
        if p == 0 or n == 0:
            return math.nan
        pos: list[int] = self.positives.tolist()
        neg: list[int] = self.negatives.tolist()
        shared = sum(a * b for a, b in zip(pos, neg, strict=True))
        return shared / (2 * p * n)

    def metrics(self) -> dict[str, float]:
        tp, fp, tn, fn, n = self.tp, self.fp, self.tn, self.fn, self.n
        return {
            "labelled": float(n),
            "accuracy": _ratio(tp + tn, n),
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            # As scikit-learn: 2TP / (2TP + FP + FN), defined whenever a positive exists.
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "positive_rate": _ratio(tp + fp, n),
            "prevalence": _ratio(tp + fn, n),
            "fpr": _ratio(fp, fp + tn),
            "fnr": _ratio(fn, fn + tp),
            "auc": self.auc(),
            "log_loss": _ratio(_total(self._log_loss), n),
            "tp": float(tp),
            "fp": float(fp),
            "tn": float(tn),
            "fn": float(fn),
        }

    def to_state(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "score_bins": self.score_bins,
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
            "pos": encode_counts(self.positives),
            "neg": encode_counts(self.negatives),
            "log_loss": list(self._log_loss),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BinaryPerformance:
        c = cls(float(state["threshold"]), int(state["score_bins"]))
        c.tp, c.fp, c.tn, c.fn = (int(state[k]) for k in ("tp", "fp", "tn", "fn"))
        c.positives = decode_counts(state["pos"], c.score_bins + 1)
        c.negatives = decode_counts(state["neg"], c.score_bins + 1)
        if int(c.positives.sum()) + int(c.negatives.sum()) != c.n:
            raise ValueError("binned scores do not add up to the confusion counts")
        c._log_loss = [float(t) for t in state["log_loss"]]
        return c

    def __repr__(self) -> str:
        return f"BinaryPerformance(n={self.n}, threshold={self.threshold})"
