"""Running mean, variance and extremes that merge exactly across partials (Chan et al.)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt


class Moments:
    """Count, mean, variance, min and max of the finite values seen.

    Examples
    --------
    >>> m = Moments(); m.update_many(np.array([1.0, 2.0, 3.0, np.nan]))
    >>> m.n, m.mean, round(m.std, 6)
    (3, 2.0, 0.816497)
    >>> other = Moments(); other.update_many(np.array([4.0])); m.merge(other); m.mean
    2.5

    References
    ----------
    Chan, Golub, LeVeque (1979), "Updating formulae and a pairwise algorithm for computing
    sample variances".
    """

    __slots__ = ("_m2", "maximum", "mean", "minimum", "n")

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self._m2 = 0.0
        self.minimum = math.inf
        self.maximum = -math.inf

    def update_many(self, values: npt.NDArray[np.float64]) -> None:
        x = values[np.isfinite(values)]
        if x.size == 0:
            return
        other = Moments()
        other.n = int(x.size)
        other.mean = float(x.mean())
        other._m2 = float(np.square(x - other.mean).sum())
        other.minimum = float(x.min())
        other.maximum = float(x.max())
        self.merge(other)

    def merge(self, other: Moments) -> None:
        if other.n == 0:
            return
        n = self.n + other.n
        delta = other.mean - self.mean
        self.mean += delta * other.n / n
        self._m2 += other._m2 + delta * delta * self.n * other.n / n
        self.n = n
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)

    @property
    def variance(self) -> float:
        """Population variance (ddof=0), as numpy's default."""
        return self._m2 / self.n if self.n else math.nan

    @property
    def std(self) -> float:
        return math.sqrt(self.variance) if self.n else math.nan

    def to_state(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "mean": self.mean,
            "m2": self._m2,
            "min": self.minimum if self.n else None,
            "max": self.maximum if self.n else None,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Moments:
        m = cls()
        m.n = int(state["n"])
        m.mean = float(state["mean"])
        m._m2 = float(state["m2"])
        m.minimum = math.inf if state["min"] is None else float(state["min"])
        m.maximum = -math.inf if state["max"] is None else float(state["max"])
        return m
