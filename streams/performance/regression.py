"""Regression: MAE, RMSE, MAPE and R² from exact, mergeable sums."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from streams.exact_sum import exact_add, exact_sum
from streams.performance.common import (
    _BLOCK,
    _HUGE,
    EPS,
    ArrayLike,
    _exact_square,
    _floats,
    _ratio,
    _total,
)


class RegressionPerformance:
    """MAE, RMSE, MAPE and R² from exact sums.

    MAPE is the mean of ``|y - ŷ| / max(|y|, EPS)`` (a fraction, as scikit-learn computes
    it) over the rows whose target is not zero; rows with ``y == 0`` have no percentage
    error and are left out of it, and counted (`zero_targets`, reported as
    ``mape_skipped``).

    R² = 1 − SS_res / SS_tot with SS_tot = Σy² − (Σy)²/n. That difference is the textbook
    cancellation trap when the targets sit far from zero, so Σy² is summed exactly (each
    square split into three exactly representable parts) and SS_tot is computed in exact
    rational arithmetic: R² keeps full precision at any offset. SS_tot = 0 (constant
    targets) makes R² NaN, where scikit-learn would substitute 1.0 or 0.0.

    Values beyond ±1e150 count as missing, like NaN: their squares would overflow.

    Examples
    --------
    >>> r = RegressionPerformance()
    >>> r.update_many(np.array([2.0, 0.5, 4.0]), np.array([1.0, 0.0, 4.0]))
    >>> {k: round(v, 4) for k, v in r.metrics().items()}
    {'labelled': 3.0, 'mae': 0.5, 'rmse': 0.6455, 'mape': 0.5, 'mape_skipped': 1.0, 'r2': 0.8558}
    """

    __slots__ = ("_abs", "_ape", "_sq", "_y", "_y2", "n", "zero_targets")

    def __init__(self) -> None:
        self.n = 0
        self.zero_targets = 0
        # Exact sums (see `exact_sum`): |e|, e², |e|/|y| for y != 0, y and y².
        self._abs: list[float] = []
        self._sq: list[float] = []
        self._ape: list[float] = []
        self._y: list[float] = []
        self._y2: list[float] = []

    def update(self, predicted: float | None, actual: float | None) -> None:
        """One row, without numpy's per-call overhead; the same state as `update_many`."""
        if predicted is None or actual is None:
            return
        p, y = float(predicted), float(actual)
        if not (abs(p) < _HUGE and abs(y) < _HUGE):
            return
        err = abs(p - y)
        self.n += 1
        self._abs = exact_sum([err], self._abs)
        self._sq = exact_sum([err * err], self._sq)
        if y == 0:
            self.zero_targets += 1
        else:
            self._ape = exact_sum([err / max(abs(y), EPS)], self._ape)
        self._y = exact_sum([y], self._y)
        self._y2 = exact_sum(_exact_square(y), self._y2)

    def update_many(self, predicted: ArrayLike, actual: ArrayLike) -> None:
        p, y = _floats(predicted), _floats(actual)
        if p.size > _BLOCK:  # the temporaries of a block stay in cache
            for i in range(0, p.size, _BLOCK):
                self.update_many(p[i : i + _BLOCK], y[i : i + _BLOCK])
            return
        ok = (np.abs(p) < _HUGE) & (np.abs(y) < _HUGE)  # False for NaN too
        p, y = p[ok], y[ok]
        if y.size == 0:
            return
        err = np.abs(p - y)
        nonzero = y != 0
        self.n += int(y.size)
        self.zero_targets += int(y.size - np.count_nonzero(nonzero))
        self._abs = exact_add(err, self._abs)
        self._sq = exact_add(np.square(err), self._sq)
        self._ape = exact_add(err[nonzero] / np.maximum(np.abs(y[nonzero]), EPS), self._ape)
        self._y = exact_add(y, self._y)
        self._y2 = exact_add(np.concatenate(_exact_square(y)), self._y2)

    def merge(self, other: RegressionPerformance) -> None:
        self.n += other.n
        self.zero_targets += other.zero_targets
        self._abs = exact_sum(self._abs, other._abs)
        self._sq = exact_sum(self._sq, other._sq)
        self._ape = exact_sum(self._ape, other._ape)
        self._y = exact_sum(self._y, other._y)
        self._y2 = exact_sum(self._y2, other._y2)

    def __iadd__(self, other: RegressionPerformance) -> RegressionPerformance:
        self.merge(other)
        return self

    def r2(self) -> float:
        if self.n == 0:
            return math.nan
        try:
            y = sum(map(Fraction, self._y), Fraction(0))
            ss_tot = sum(map(Fraction, self._y2), Fraction(0)) - y * y / self.n
        except (OverflowError, ValueError):  # non-finite sums: squares beyond float range
            return math.nan
        if ss_tot <= 0:
            return math.nan
        return 1.0 - _total(self._sq) / float(ss_tot)

    def metrics(self) -> dict[str, float]:
        n = self.n
        return {
            "labelled": float(n),
            "mae": _ratio(_total(self._abs), n),
            "rmse": math.sqrt(_total(self._sq) / n) if n else math.nan,
            "mape": _ratio(_total(self._ape), n - self.zero_targets),
            "mape_skipped": float(self.zero_targets),
            "r2": self.r2(),
        }

    def to_state(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "zero_targets": self.zero_targets,
            "abs": list(self._abs),
            "sq": list(self._sq),
            "ape": list(self._ape),
            "y": list(self._y),
            "y2": list(self._y2),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RegressionPerformance:
        r = cls()
        r.n = int(state["n"])
        r.zero_targets = int(state["zero_targets"])
        r._abs, r._sq, r._ape, r._y, r._y2 = (
            [float(t) for t in state[k]] for k in ("abs", "sq", "ape", "y", "y2")
        )
        return r

    def __repr__(self) -> str:
        return f"RegressionPerformance(n={self.n})"
