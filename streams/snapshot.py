"""The metrics snapshot of one evaluated window: every figure, as ``undertow.metrics`` carries it.

The evaluator merges a window's panes (`streams.pane.merge_panes`) and calls
`evaluate_window`. Each column goes through `streams.comparison.compare_column`, the same
function the batch check uses, so a live window and the same rows checked from a file give
the same numbers to the last digit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from streams.baseline import Baseline
from streams.comparison import compare_column, positive_rate
from streams.histogram import NumericHistogram
from streams.pane import PaneState
from streams.severity import Severity

#: Latency percentiles a snapshot reports.
LATENCY_QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}


def evaluate_window(
    baseline: Baseline,
    window: PaneState,
    window_start: float,
    window_end: float,
    final: bool,
    *,
    emitted_at: float | None = None,
) -> dict[str, Any]:
    """The DESIGN.md metrics snapshot of ``window`` against ``baseline``.

    Feature and prediction entries are `compare_column`'s figures plus the reference
    missing rate and the pane counters (``absent``, ``type_mismatch``); a binary model's
    prediction adds ``positive_rate``. ``latency`` is in milliseconds, interpolated from
    the latency histogram. ``thresholds`` are the ones the statuses were judged by, so an
    alert can quote them. Sections not computed yet (performance, segments, fairness) are
    empty objects; statistics that have no value (an empty window) are NaN, which orjson
    writes as null.
    """
    if (window.model, window.model_version) != (baseline.model, baseline.version):
        raise ValueError(
            f"window of {window.model} {window.model_version} evaluated against the "
            f"baseline of {baseline.model} {baseline.version}"
        )
    thresholds = baseline.thresholds
    features: dict[str, dict[str, Any]] = {}
    for name, ref in baseline.features.items():
        result = compare_column(ref, window.features[name], thresholds)
        result["reference_missing_rate"] = ref.missing_rate
        result["absent"] = window.absent.get(name, 0)
        result["type_mismatch"] = window.type_mismatch.get(name, 0)
        features[name] = result
    prediction: dict[str, Any] = {}
    if baseline.prediction is not None and window.prediction is not None:
        prediction = compare_column(baseline.prediction, window.prediction, thresholds)
        prediction["reference_missing_rate"] = baseline.prediction.missing_rate
        prediction["type_mismatch"] = window.prediction_type_mismatch
        if baseline.task == "binary" and isinstance(window.prediction, NumericHistogram):
            prediction["positive_rate"] = positive_rate(window.prediction, baseline.threshold)
    levels = [Severity.parse(r["status"]) for r in [*features.values(), prediction] if r]
    return {
        "kind": "drift",
        "model": window.model,
        "model_version": window.model_version,
        "window_start": window_start,
        "window_end": window_end,
        "count": window.volume,
        "final": final,
        "emitted_at": emitted_at,
        "features": features,
        "prediction": prediction,
        "latency": latency_summary(window.latency),
        "quality": {
            "unknown_features": window.unknown_features,
            "unknown_feature_names": list(window.unknown_names),
            "first_event_time": window.min_event_time if window.volume else None,
            "last_event_time": window.max_event_time if window.volume else None,
        },
        "performance": {},
        "segments": {},
        "fairness": {},
        "thresholds": thresholds.to_dict(),
        "alert_level": str(max(levels, default=Severity.NONE)),
    }


def latency_summary(latency: NumericHistogram) -> dict[str, Any]:
    """Count and interpolated percentiles of a latency histogram kept in seconds, in ms."""
    summary: dict[str, Any] = {"count": latency.count, "missing": latency.missing, "unit": "ms"}
    for key, q in LATENCY_QUANTILES.items():
        summary[key] = histogram_quantile(latency, q) * 1000.0
    return summary


def histogram_quantile(histogram: NumericHistogram, q: float) -> float:
    """The ``q`` quantile, interpolated linearly inside the bin that holds rank ``q · n``.

    This is Prometheus' ``histogram_quantile``; the under/overflow bins end at the smallest
    and largest value seen, and the answer never leaves that range. NaN when empty.

    >>> h = NumericHistogram([0.0, 10.0, 20.0]); h.update_many([1.0, 2.0, 12.0, 18.0])
    >>> histogram_quantile(h, 0.5), histogram_quantile(h, 0.75), histogram_quantile(h, 1.0)
    (10.0, 15.0, 18.0)
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], not {q}")
    n = histogram.count
    if n == 0:
        return math.nan
    edges = histogram.edges
    # Extremes of the finite values; without any, the outer edges bound the answer.
    lowest = histogram.minimum if math.isfinite(histogram.minimum) else float(edges[0])
    highest = histogram.maximum if math.isfinite(histogram.maximum) else float(edges[-1])
    if q == 0.0:
        return lowest
    cumulative = np.cumsum(histogram.counts)
    rank = q * n
    i = int(np.searchsorted(cumulative, rank, side="left"))  # counts[i] > 0
    lower = float(edges[i - 1]) if i > 0 else lowest
    upper = float(edges[i]) if i < edges.size else highest
    before = float(cumulative[i - 1]) if i > 0 else 0.0
    value = lower + (upper - lower) * (rank - before) / float(histogram.counts[i])
    return min(max(value, lowest), highest)
