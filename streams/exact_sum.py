"""Order-independent sums and compact counts: what makes partial states merge bit for bit."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

CountArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
#: Values per vectorised pass of `exact_add`: temporaries that fit in cache.
_BLOCK = 1 << 16


def encode_counts(counts: CountArray) -> list[int] | dict[str, list[int]]:
    """Counts as a JSON-ready list, or sparse ``{"i": bins, "n": counts}`` when most are 0.

    >>> encode_counts(np.array([3, 0, 4])), encode_counts(np.array([0, 0, 0, 7, 0]))
    ([3, 0, 4], {'i': [3], 'n': [7]})
    """
    nonzero = np.flatnonzero(counts)
    if 2 * nonzero.size < counts.size:
        return {"i": nonzero.tolist(), "n": counts[nonzero].tolist()}
    return [int(c) for c in counts.tolist()]


def decode_counts(encoded: list[int] | dict[str, list[int]] | None, size: int) -> CountArray:
    """The inverse of `encode_counts` (None means all zero), checked against ``size`` bins."""
    if encoded is None:
        return np.zeros(size, dtype=np.int64)
    if isinstance(encoded, dict):
        index = np.asarray(encoded["i"], dtype=np.intp)
        values = np.asarray(encoded["n"], dtype=np.int64)
        fits = index.size == 0 or (index.min() >= 0 and index.max() < size)
        if index.shape != values.shape or not fits:
            raise ValueError(f"sparse counts do not fit {size} bins")
        counts = np.zeros(size, dtype=np.int64)
        counts[index] = values
        return counts
    counts = np.asarray(encoded, dtype=np.int64)
    if counts.shape != (size,):
        raise ValueError(f"expected {size} counts, got {counts.size}")
    return counts


def exact_sum(*parts: Iterable[float]) -> list[float]:
    """The exact sum of finite floats, as its canonical expansion ``[t1, t2, …]``.

    ``t1`` is the correctly rounded sum, ``t2`` the correctly rounded remainder, and so on
    until nothing is left (``[]`` for zero). The expansion depends only on the exact total,
    so summing partials in any grouping or order gives the same floats, where ``+=`` on
    floats would differ in the last bits. Pass an earlier expansion as one of the parts to
    add to it; it is a short list (one to three terms on real data).

    >>> exact_sum([0.1, 0.2, 0.3]) == exact_sum([0.3], exact_sum([0.2, 0.1]))
    True
    >>> exact_sum([1e16, 1.0, -1e16]), exact_sum([0.5, -0.5])
    ([1.0], [])
    """
    given = [v for part in parts for v in part]
    values = list(given)
    terms: list[float] = []
    try:
        # Each fsum is exact up to one final rounding; feeding back the negated terms so far
        # leaves the exact remainder, which a double can hold only after ~2,100 bits.
        for _ in range(64):
            t = math.fsum(values)
            if t == 0.0:
                return terms
            terms.append(t)
            values.append(-t)
    except (OverflowError, ValueError):
        pass
    # Sums beyond the float range (or non-finite input): inexact, like plain addition.
    return [float(sum(given))]


def exact_add(values: FloatArray, terms: list[float]) -> list[float]:
    """`exact_sum` of finite ``values`` and an expansion ``terms``: the same floats, faster.

    `exact_sum` runs ``math.fsum`` over a batch two or three times; on large batches it
    is cheaper to add the values as integers. Each is ``m · 2**(e - 53)`` with an integer
    mantissa ``|m| < 2**53``, split into two halves below 2**27 that ``np.bincount`` sums
    per exponent exactly (every partial sum of a block stays an integer below 2**53). The
    per-exponent sums are added in one Python integer, in units of 2**-1126 (below the
    smallest subnormal's), and the exact total is rounded into `exact_sum`'s expansion.
    """
    if values.size < 1024 or not all(map(math.isfinite, terms)):
        return exact_sum(values.tolist(), terms)
    total = sum(map(_units, terms))
    for start in range(0, values.size, _BLOCK):
        mantissa, exponent = np.frexp(values[start : start + _BLOCK])  # |mantissa| < 1
        high = np.floor(mantissa * 2.0**26)
        low = mantissa * 2.0**53 - high * 2.0**27  # mantissa · 2**53 = high · 2**27 + low
        base = int(exponent.min())
        bins = exponent - base
        for half, scale in ((high, 27), (low, 0)):
            sums = np.bincount(bins, weights=half)
            for k in np.flatnonzero(sums).tolist():
                total += int(sums[k]) << (k + base + scale - 53 + _UNIT_BITS)
    expansion: list[float] = []
    try:
        while total:
            expansion.append(total / (1 << _UNIT_BITS))  # int / int is correctly rounded
            total -= _units(expansion[-1])
    except OverflowError:  # beyond the float range: inexact, as exact_sum is there
        return [sum(values.tolist()) + sum(terms)]
    return expansion


_UNIT_BITS = 1126  # 2**-1126: a unit that every float64, subnormals included, is a multiple of


def _units(x: float) -> int:
    """``x`` as an exact integer number of 2**-1126 units."""
    numerator, denominator = x.as_integer_ratio()  # denominator: a power of two ≤ 2**1074
    return numerator << (_UNIT_BITS - denominator.bit_length() + 1)
