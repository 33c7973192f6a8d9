"""What the performance counters share: constants, exact sums, label handling."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
CountArray = npt.NDArray[np.int64]
ArrayLike = Sequence[float | None] | npt.NDArray[Any]
Real = TypeVar("Real", float, FloatArray)

#: float64 machine epsilon: probabilities are clipped to [EPS, 1 - EPS] for the log loss,
#: as scikit-learn does since 1.5 (``eps="auto"``).
EPS = float(np.finfo(np.float64).eps)
#: The pooled class of a multiclass counter once its label set is full.
OTHER = "__other__"
#: Regression values at least this large are skipped: their squares would not be finite.
_HUGE = 1e150
#: Rows per vectorised pass: large batches are cut into blocks whose temporaries fit in cache.
_BLOCK = 1 << 16


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def _total(terms: list[float]) -> float:
    return terms[0] if terms else 0.0


def _floats(values: ArrayLike) -> FloatArray:
    if isinstance(values, np.ndarray) and values.dtype == np.float64:
        return values
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        return values.astype(np.float64)
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


def _exact_square(x: Real) -> tuple[Real, Real, Real]:
    """Three numbers (or arrays) whose exact sum is x², element by element (Dekker's product).

    Veltkamp's split makes ``x = hi + lo`` with both halves 26 bits wide, so ``hi²``,
    ``2·hi·lo`` and ``lo²`` are each exact in float64 (up to overflow and underflow).
    """
    c = 134217729.0 * x  # 2**27 + 1
    hi = c - (c - x)
    lo = x - hi
    return hi * hi, 2.0 * hi * lo, lo * lo


def _grown(matrix: CountArray, k: int) -> CountArray:
    """``matrix`` padded to k×k, its last row and column (OTHER) kept last."""
    old = matrix.shape[0] - 1
    grown = np.zeros((k, k), dtype=np.int64)
    grown[:old, :old] = matrix[:old, :old]
    grown[:old, -1] = matrix[:old, -1]
    grown[-1, :old] = matrix[-1, :old]
    grown[-1, -1] = matrix[-1, -1]
    return grown


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v == ""


def _label(v: object) -> str:
    # 1, 1.0 and "1" are one class whichever way a writer spelled it.
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)
