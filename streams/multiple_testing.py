"""Multiple testing: which of a window's per-feature tests are evidence, not luck.

Every window tests dozens of features at once (KS for numeric ones, chi-square for
categorical ones). At a per-test level of 1 % a stationary 50-feature stream would still
"find" drift in some feature in four windows out of ten. The Benjamini–Hochberg step-up
procedure keeps the expected share of false discoveries among the features it flags at
``q`` (the false discovery rate); when nothing moved at all, it keeps the chance of flagging
anything in a window at ``q``.

Tests without a p-value (NaN: an empty column, a categorical column with a single
category) are left out of the family: they neither count towards ``m`` nor get flagged.

References
----------
Benjamini, Y. and Hochberg, Y. (1995). Controlling the false discovery rate: a practical
and powerful approach to multiple testing. JRSS B 57(1), 289–300.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def bh_adjust(pvalues: Sequence[float] | FloatArray) -> FloatArray:
    """Benjamini–Hochberg adjusted p-values (``scipy.stats.false_discovery_control``).

    NaN p-values stay NaN and are not part of the family.

    >>> bh_adjust([0.01, 0.04, 0.03, float("nan"), 0.5]).round(4).tolist()
    [0.04, 0.0533, 0.0533, nan, 0.5]
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError("p-values must be a flat sequence")
    out = np.full(p.shape, np.nan)
    present = np.flatnonzero(~np.isnan(p))
    if present.size == 0:
        return out
    values = p[present]
    if np.any((values < 0) | (values > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    m = values.size
    order = np.argsort(values, kind="stable")
    scaled = values[order] * (m / np.arange(1, m + 1))  # as scipy rounds it
    # Step-up: each adjusted value is the smallest scaled value at or after its rank.
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    ranked = np.empty(m)
    ranked[order] = np.minimum(adjusted, 1.0)
    out[present] = ranked
    return out


def bh_reject(pvalues: Sequence[float] | FloatArray, fdr: float) -> BoolArray:
    """Which hypotheses Benjamini–Hochberg rejects at false discovery rate ``fdr``.

    >>> bh_reject([0.001, 0.02, 0.04, 0.9], 0.05).tolist()
    [True, True, False, False]
    """
    if not 0.0 < fdr <= 1.0:
        raise ValueError(f"the false discovery rate must be in (0, 1], not {fdr}")
    adjusted = bh_adjust(pvalues)
    return np.asarray(np.nan_to_num(adjusted, nan=np.inf) <= fdr, dtype=np.bool_)
