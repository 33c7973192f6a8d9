"""Every figure for one column: current histogram against its reference.

The batch check and the streaming evaluator both call `compare_column`, so a window
evaluated live and the same rows checked from a file give the same numbers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from streams import drift
from streams.baseline import CategoricalReference, NumericReference, Reference
from streams.histogram import CategoricalHistogram, Histogram, NumericHistogram
from streams.severity import Severity, Thresholds


def compare_column(
    reference: Reference, current: Histogram, thresholds: Thresholds
) -> dict[str, Any]:
    """Drift, data quality and status of one column, as the JSON report shows them."""
    if isinstance(reference, NumericReference):
        assert isinstance(current, NumericHistogram)
        result = _numeric(reference, current)
    else:
        assert isinstance(reference, CategoricalReference) and isinstance(
            current, CategoricalHistogram
        )
        result = _categorical(reference, current)
    missing_rate = current.missing / current.total if current.total else math.nan
    result["missing_rate"] = missing_rate
    result["count"] = current.total
    drift_level = thresholds.psi_severity(result["psi"])
    quality_level = (
        thresholds.missing_severity(missing_rate, _zero_if_nan(reference.missing_rate))
        if current.total
        else Severity.NONE
    )
    if current.total and current.count == 0:
        # A column that went entirely missing is the loudest data-quality failure there is.
        quality_level = Severity.CRITICAL
    result["drift_status"] = str(drift_level)
    result["quality_status"] = str(quality_level)
    result["status"] = str(max(drift_level, quality_level))
    return result


def positive_rate(scores: NumericHistogram, threshold: float) -> float:
    """Share of scores at or above the threshold, exact when it is a bin edge."""
    n = scores.count
    if n == 0:
        return math.nan
    edges = scores.edges
    pos = int(np.searchsorted(edges, threshold, side="left"))
    if pos < edges.size and edges[pos] == threshold:
        return float(scores.counts[pos + 1 :].sum()) / n
    # Between edges: interpolate the bin that holds the threshold.
    return _interpolated_above(scores, threshold) / n


def _interpolated_above(scores: NumericHistogram, threshold: float) -> float:
    edges, counts = scores.edges, scores.counts
    i = int(np.searchsorted(edges, threshold, side="right"))  # bin index holding threshold
    above = float(counts[i + 1 :].sum())
    if 1 <= i < edges.size:
        lo, hi = edges[i - 1], edges[i]
        share = (hi - threshold) / (hi - lo) if hi > lo else 0.0
        above += share * float(counts[i])
    elif i == 0:
        above += float(counts[0])
    return above


def _numeric(reference: NumericReference, current: NumericHistogram) -> dict[str, Any]:
    ref_coarse = reference.coarse_counts(reference.histogram)
    cur_coarse = reference.coarse_counts(current)
    ks, ks_p = drift.ks(reference.histogram, current)
    n = current.count
    return {
        "type": "numeric",
        "psi": drift.psi(ref_coarse, cur_coarse),
        "ks": ks,
        "ks_pvalue": ks_p,
        "js": drift.js_distance(ref_coarse, cur_coarse),
        "wasserstein": drift.wasserstein(reference.histogram, current),
        "out_of_range_rate": (int(current.counts[0]) + int(current.counts[-1])) / n
        if n
        else math.nan,
    }


def _categorical(reference: CategoricalReference, current: CategoricalHistogram) -> dict[str, Any]:
    ref_counts = reference.histogram.counts
    chi2, chi2_p = drift.chi_square(ref_counts, current.counts)
    n = current.count
    return {
        "type": "categorical",
        "psi": drift.psi(ref_counts, current.counts),
        "js": drift.js_distance(ref_counts, current.counts),
        "chi2": chi2,
        "chi2_pvalue": chi2_p,
        "unseen_rate": current.unseen / n if n else math.nan,
    }


def _zero_if_nan(x: float) -> float:
    return 0.0 if math.isnan(x) else x
