"""Prometheus metrics of a worker, with bounded label sets.

Names follow the classic recipe so existing rules and dashboards work unchanged
(``ml_predictions_total``, ``ml_prediction_latency_seconds``, ``ml_drift_score`` …).
Per-event figures are counted per micro-batch with numpy and exposed by a collector at
scrape time; drift figures come from the latest window snapshot, also at scrape time, so
nothing is set in a loop and a test can build everything on a fresh registry.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry, Counter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from agents.performance_metrics import PerformanceCollector
from streams.outcomes import DELAY_BUCKETS_S

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
OTHER = "__other__"


class LabelGuard:
    """Caps how many distinct values a label may take; the rest become ``__other__``.

    A producer that sends a new model name per request must not grow the registry
    without bound; it gets one warning and one ``__other__`` series instead.
    """

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self._seen: set[str] = set()
        self._warned = False
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self.limit:
                self._seen.add(value)
                return value
            if not self._warned:
                log.warning(
                    "more than %d distinct %s values; further ones are reported as %r",
                    self.limit,
                    self.name,
                    OTHER,
                )
                self._warned = True
        return OTHER


class WorkerMetrics:
    """Every metric a worker exports, registered on ``registry``."""

    def __init__(
        self,
        registry: CollectorRegistry = REGISTRY,
        max_models: int = 100,
        max_features: int = 200,
    ) -> None:
        self.models = LabelGuard("model_name", max_models)
        self.max_features = max_features
        self.invalid = Counter(
            "ml_invalid_events_total",
            "Events rejected and dead-lettered, by reason.",
            ["reason"],
            registry=registry,
        )
        self.late = Counter(
            "ml_late_events_total",
            "Events later than the allowed lateness, dead-lettered with reason 'late'.",
            ["model_name"],
            registry=registry,
        )
        self.alerts = Counter(
            "ml_alerts_total",
            "Alert events emitted, by type and severity (resolved events as severity 'none').",
            ["type", "severity"],
            registry=registry,
        )
        self.evaluations = Counter(
            "ml_window_evaluations_total",
            "Windows evaluated, corrected re-evaluations included.",
            ["model_name", "final"],
            registry=registry,
        )
        self.traffic = TrafficCollector(self.models)
        self.drift = SnapshotCollector(self.models, max_features)
        self.labels = LabelCollector(self.models)
        self.performance = PerformanceCollector(self.models)
        registry.register(self.traffic)
        registry.register(self.drift)
        registry.register(self.labels)
        registry.register(self.performance)


class TrafficCollector:
    """``ml_predictions_total`` and ``ml_prediction_latency_seconds``, counted per batch."""

    def __init__(self, models: LabelGuard) -> None:
        self._models = models
        self._lock = threading.Lock()
        self._predictions: dict[tuple[str, str], float] = {}
        # Per model: counts per bucket (last one is +Inf) and the sum of latencies.
        self._latency: dict[str, tuple[np.ndarray, float]] = {}

    def record(self, model: str, version: str, count: int, latency_s: np.ndarray) -> None:
        model = self._models(model)
        latency_s = latency_s[np.isfinite(latency_s)]
        counts = np.bincount(
            np.searchsorted(LATENCY_BUCKETS, latency_s, side="left"),
            minlength=len(LATENCY_BUCKETS) + 1,
        )
        with self._lock:
            key = (model, version)
            self._predictions[key] = self._predictions.get(key, 0.0) + count
            old, total = self._latency.get(model, (np.zeros_like(counts), 0.0))
            self._latency[model] = (old + counts, total + float(latency_s.sum()))

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            predictions = dict(self._predictions)
            latency = {m: (c.copy(), s) for m, (c, s) in self._latency.items()}
        total = CounterMetricFamily(
            "ml_predictions_total",
            "Predictions consumed, by model and version.",
            labels=["model_name", "model_version"],
        )
        for (model, version), value in sorted(predictions.items()):
            total.add_metric([model, version], value)
        yield total
        hist = HistogramMetricFamily(
            "ml_prediction_latency_seconds",
            "Model latency reported by the prediction events.",
            labels=["model_name"],
        )
        for model, (counts, seconds) in sorted(latency.items()):
            cumulative = np.cumsum(counts)
            buckets = [
                (_le(b), float(n)) for b, n in zip(LATENCY_BUCKETS, cumulative, strict=False)
            ]
            buckets.append(("+Inf", float(cumulative[-1])))
            hist.add_metric([model], buckets, seconds)
        yield hist


class LabelCollector:
    """``ml_labels_total`` by outcome and ``ml_label_delay_seconds``, counted per batch."""

    def __init__(self, models: LabelGuard) -> None:
        self._models = models
        self._lock = threading.Lock()
        self._outcomes: dict[tuple[str, str], float] = {}
        self._delay: dict[str, tuple[np.ndarray, float]] = {}

    def count(self, model: str, outcome: str, n: int) -> None:
        key = (self._models(model), outcome)
        with self._lock:
            self._outcomes[key] = self._outcomes.get(key, 0.0) + n

    def observe_delay(self, model: str, delay_s: np.ndarray) -> None:
        model = self._models(model)
        counts = np.bincount(
            np.searchsorted(DELAY_BUCKETS_S, delay_s, side="left"),
            minlength=len(DELAY_BUCKETS_S) + 1,
        )
        with self._lock:
            old, total = self._delay.get(model, (np.zeros_like(counts), 0.0))
            self._delay[model] = (old + counts, total + float(delay_s.sum()))

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            outcomes = dict(self._outcomes)
            delay = {m: (c.copy(), s) for m, (c, s) in self._delay.items()}
        total = CounterMetricFamily(
            "ml_labels_total",
            "Labels consumed, by how they ended: joined, duplicate, orphan (no prediction), "
            "wrong_type; held counts labels that waited for their prediction, expired counts "
            "predictions whose label never came within the label TTL.",
            labels=["model_name", "outcome"],
        )
        for (model, outcome), value in sorted(outcomes.items()):
            total.add_metric([model, outcome], value)
        yield total
        hist = HistogramMetricFamily(
            "ml_label_delay_seconds",
            "Time from a prediction's event time to its label's, for joined labels.",
            labels=["model_name"],
        )
        for model, (counts, seconds) in sorted(delay.items()):
            cumulative = np.cumsum(counts)
            buckets = [
                (_le(b), float(n)) for b, n in zip(DELAY_BUCKETS_S, cumulative, strict=False)
            ]
            buckets.append(("+Inf", float(cumulative[-1])))
            hist.add_metric([model], buckets, seconds)
        yield hist


class SnapshotCollector:
    """Drift and quality gauges from the latest evaluated window of each model version."""

    FEATURE_GAUGES = (
        ("ml_drift_score", "psi", "Population stability index of a feature vs its baseline."),
        ("ml_feature_ks_statistic", "ks", "Two-sample KS statistic of a feature vs baseline."),
        ("ml_feature_js_divergence", "js", "Jensen-Shannon distance of a feature vs baseline."),
        ("ml_feature_wasserstein", "wasserstein", "Wasserstein-1 distance vs baseline."),
        ("ml_feature_missing_rate", "missing_rate", "Share of missing values in the window."),
        ("ml_feature_out_of_range_rate", "out_of_range_rate", "Share outside the baseline range."),
        ("ml_feature_unseen_rate", "unseen_rate", "Share of categories the baseline never saw."),
    )

    def __init__(self, models: LabelGuard, max_features: int = 200) -> None:
        self._models = models
        # One cap per model: a wide schema cannot crowd out another model's features.
        self._max_features = max_features
        self._features: dict[str, LabelGuard] = {}
        self._lock = threading.Lock()
        self._latest: dict[tuple[str, str], Mapping[str, Any]] = {}
        # Drift figures of the latest window that had events: an empty window (a model that
        # stopped sending) has no distribution to compare, and shows as ml_window_events 0.
        self._latest_data: dict[tuple[str, str], Mapping[str, Any]] = {}

    def update(self, snapshot: Mapping[str, Any]) -> None:
        key = (self._models(str(snapshot["model"])), str(snapshot["model_version"]))
        with self._lock:
            for latest in (self._latest, self._latest_data):
                if latest is self._latest_data and not snapshot.get("count"):
                    continue
                old = latest.get(key)
                if old is None or old["window_end"] <= snapshot["window_end"]:
                    latest[key] = snapshot

    def forget(self, keep: Callable[[str], bool]) -> None:
        """Drop the snapshots of models this worker no longer evaluates.

        After a rebalance the former evaluator of a model would otherwise export its last
        figures forever, beside the new evaluator's fresh ones.
        """
        with self._lock:
            for latest in (self._latest, self._latest_data):
                for key in [k for k in latest if not keep(k[0])]:
                    del latest[key]

    def _feature_label(self, model: str, feature: str) -> str:
        guard = self._features.get(model)
        if guard is None:
            guard = self._features[model] = LabelGuard(
                f"feature_name of {model}", self._max_features
            )
        return guard(feature)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            latest = dict(self._latest)
            with_data = dict(self._latest_data)
        # The feature gauges keep the classic {model_name, feature_name} labels: with two
        # versions of a model live, the one with the newest window speaks for the model.
        newest: dict[str, Mapping[str, Any]] = {}
        for (model, _version), snap in with_data.items():
            if model not in newest or newest[model]["window_end"] < snap["window_end"]:
                newest[model] = snap
        for name, stat, doc in self.FEATURE_GAUGES:
            g = GaugeMetricFamily(name, doc, labels=["model_name", "feature_name"])
            for model, snap in sorted(newest.items()):
                values: dict[str, float] = {}
                for feature, figures in sorted(snap.get("features", {}).items()):
                    value = figures.get(stat)
                    if _finite(value):
                        label = self._feature_label(model, feature)
                        # Features past the cap share one series: the worst of them, so a
                        # drifted feature cannot hide behind a calm one.
                        values[label] = max(values.get(label, -math.inf), float(value))
                for label, value in values.items():
                    g.add_metric([model, label], value)
            yield g
        pred = GaugeMetricFamily(
            "ml_prediction_drift_psi",
            "Population stability index of the prediction vs the baseline.",
            labels=["model_name", "model_version"],
        )
        rate = GaugeMetricFamily(
            "ml_prediction_positive_rate",
            "Share of binary scores at or above the decision threshold.",
            labels=["model_name", "model_version"],
        )
        volume = GaugeMetricFamily(
            "ml_window_events",
            "Events in the latest evaluated window.",
            labels=["model_name", "model_version"],
        )
        end = GaugeMetricFamily(
            "ml_window_end_timestamp_seconds",
            "End of the latest evaluated window (event time).",
            labels=["model_name", "model_version"],
        )
        for (model, version), snap in sorted(with_data.items()):
            p = snap.get("prediction") or {}
            if _finite(p.get("psi")):
                pred.add_metric([model, version], float(p["psi"]))
            if _finite(p.get("positive_rate")):
                rate.add_metric([model, version], float(p["positive_rate"]))
        for (model, version), snap in sorted(latest.items()):
            volume.add_metric([model, version], float(snap.get("count", 0)))
            end.add_metric([model, version], float(snap["window_end"]))
        yield pred
        yield rate
        yield volume
        yield end


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def _le(bound: float) -> str:
    return repr(float(bound))
