"""Prometheus gauges of ground truth: accuracy, cohorts and fairness per model version.

Each gauge shows the newest performance window that had enough labels to be judged
(``status: ok``): the newest window overall usually has almost none yet, and a gauge that
dropped to "unknown" every hour would hide the figure people watch. Coverage is the
exception: it is the newest window's, so a stall in label arrival shows at once.
Segment and group label values are capped upstream (`streams.outcomes`), so the series
count stays bounded.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

#: Figures exported as ml_model_performance{metric=…} when the task has them.
PERFORMANCE_METRICS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "auc",
    "log_loss",
    "fpr",
    "fnr",
    "positive_rate",
    "macro_f1",
    "mae",
    "rmse",
    "mape",
    "r2",
)

Ident = tuple[str, str]


class PerformanceCollector:
    """Gauges from the performance snapshots of the model versions this worker evaluates."""

    def __init__(self, models: Callable[[str], str]) -> None:
        self._models = models
        self._lock = threading.Lock()
        self._judged: dict[Ident, Mapping[str, Any]] = {}
        self._newest: dict[Ident, Mapping[str, Any]] = {}

    def update(self, snapshot: Mapping[str, Any]) -> None:
        key = (self._models(str(snapshot["model"])), str(snapshot["model_version"]))
        judged = (snapshot.get("performance") or {}).get("status") == "ok"
        with self._lock:
            for store, wanted in ((self._newest, True), (self._judged, judged)):
                old = store.get(key)
                if wanted and (old is None or old["window_end"] <= snapshot["window_end"]):
                    store[key] = snapshot

    def forget(self, keep: Callable[[str], bool]) -> None:
        """Drop the model versions this worker no longer evaluates (after a rebalance)."""
        with self._lock:
            for store in (self._judged, self._newest):
                for key in [k for k in store if not keep(k[0])]:
                    del store[key]

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            judged = dict(self._judged)
            newest = dict(self._newest)
        ident = ["model_name", "model_version"]
        accuracy = GaugeMetricFamily(
            "ml_model_accuracy", "Accuracy of the newest judged performance window.", labels=ident
        )
        figures = GaugeMetricFamily(
            "ml_model_performance",
            "Performance figures of the newest judged window (labels joined so far).",
            labels=[*ident, "metric"],
        )
        drop = GaugeMetricFamily(
            "ml_model_performance_drop",
            "Points the primary metric is worse than the baseline's (accuracy, or MAE in %).",
            labels=ident,
        )
        baseline = GaugeMetricFamily(
            "ml_model_baseline_accuracy",
            "The baseline's accuracy (classification models), what ModelAccuracyDrop compares.",
            labels=ident,
        )
        labelled = GaugeMetricFamily(
            "ml_window_labelled", "Labels joined to the newest judged window.", labels=ident
        )
        coverage = GaugeMetricFamily(
            "ml_label_coverage",
            "Share of the newest window's predictions labelled so far.",
            labels=ident,
        )
        expected = GaugeMetricFamily(
            "ml_label_expected_delay_seconds",
            "The label delay a model's baseline (or UNDERTOW_EXPECTED_LABEL_DELAY) expects.",
            labels=["model_name"],
        )
        concept = GaugeMetricFamily(
            "ml_concept_drift",
            "1 when the newest judged window shows concept drift (inputs stable, errors up).",
            labels=ident,
        )
        segment = GaugeMetricFamily(
            "ml_segment_accuracy",
            "Accuracy per segment value in the newest judged window.",
            labels=["model_name", "attribute", "segment"],
        )
        parity = GaugeMetricFamily(
            "ml_demographic_parity_ratio",
            "Lowest over highest positive rate across a protected attribute's groups.",
            labels=["model_name", "attribute"],
        )
        odds = GaugeMetricFamily(
            "ml_equalized_odds_difference",
            "Largest difference of TPR or FPR across a protected attribute's groups.",
            labels=["model_name", "attribute", "rate"],
        )
        for (model, version), snap in sorted(judged.items()):
            perf = snap.get("performance") or {}
            if _finite(perf.get("accuracy")):
                accuracy.add_metric([model, version], float(perf["accuracy"]))
            for name in PERFORMANCE_METRICS:
                if _finite(perf.get(name)):
                    figures.add_metric([model, version, name], float(perf[name]))
            if _finite(perf.get("drop")):
                drop.add_metric([model, version], float(perf["drop"]))
            if _finite(perf.get("baseline_value")) and perf.get("primary_metric") == "accuracy":
                baseline.add_metric([model, version], float(perf["baseline_value"]))
            labelled.add_metric([model, version], float(perf.get("labelled") or 0))
            concept.add_metric(
                [model, version], float(bool((snap.get("concept_drift") or {}).get("drift")))
            )
            for attribute, values in sorted((snap.get("segments") or {}).items()):
                for value, entry in sorted(values.items()):
                    if _finite(entry.get("accuracy")):
                        segment.add_metric([model, attribute, value], float(entry["accuracy"]))
            for attribute, entry in sorted((snap.get("fairness") or {}).items()):
                if _finite(entry.get("demographic_parity_ratio")):
                    parity.add_metric([model, attribute], float(entry["demographic_parity_ratio"]))
                for rate in ("tpr", "fpr"):
                    value = entry.get(f"equalized_odds_{rate}_difference")
                    if _finite(value):
                        odds.add_metric([model, attribute, rate], float(value))
        expected_by_model: dict[str, float] = {}
        for (model, version), snap in sorted(newest.items()):
            perf = snap.get("performance") or {}
            if _finite(perf.get("coverage")):
                coverage.add_metric([model, version], float(perf["coverage"]))
            delay = (perf.get("label_delay") or {}).get("expected")
            if _finite(delay):
                expected_by_model[model] = float(delay)
        for model, seconds in sorted(expected_by_model.items()):
            expected.add_metric([model], seconds)
        yield from (accuracy, figures, drop, baseline, labelled, coverage, expected, concept)
        yield from (segment, parity, odds)


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
