"""Performance checks: is the model still right, still fast, still asked as often?

- ``accuracy_drop``, in points below the baseline (`PrimaryMetric.drop`): warning from 2,
  critical above 5, once a window holds ``min_labelled`` (100) labelled predictions.
- ``latency``, p95 in ms: warning from 200, critical above 500, over at least
  ``min_latency_count`` (20) latencies.
- ``volume``, window count / reference count: warning below 0.5, critical below 0.1,
  warning above 3 (surge). The references are the same window one day earlier and the
  baseline rate; a reference under ``min_volume_reference`` (30) events says nothing, and
  the worse of the two verdicts counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from streams.alert_config import AlertContext, judge, number
from streams.alert_state import AlertKey, Observation
from streams.performance.primary import primary_metric

if TYPE_CHECKING:
    from streams.alert_policy import AlertPolicy


def accuracy_observations(
    policy: AlertPolicy,
    model: str,
    version: str,
    snapshot: Mapping[str, Any],
    context: AlertContext,
) -> list[Observation]:
    performance = snapshot.get("performance") or {}
    if context.task not in ("binary", "multiclass", "regression"):
        return []
    metric = primary_metric(context.task)  # type: ignore[arg-type]
    base = number(context.baseline_performance.get(metric.name))
    current = number(performance.get(metric.name))
    labelled = number(performance.get("labelled"))
    if base is None or current is None or labelled is None or labelled < policy.min_labelled:
        return []
    drop = metric.drop(base, current)
    if math.isnan(drop):
        return []
    subject = f"drop of {metric.name} from the baseline's {base:.4g}, in points"
    key = AlertKey(model, version, "accuracy_drop", None)
    note = f"{metric.name} {current:.4g} over {labelled:.0f} labelled predictions"
    return [judge(key, f"{metric.name}_drop", drop, policy.accuracy_drop, subject, note=note)]


def latency_observations(
    policy: AlertPolicy, model: str, version: str, snapshot: Mapping[str, Any]
) -> list[Observation]:
    latency = snapshot.get("latency") or {}
    p95, count = number(latency.get("p95")), number(latency.get("count")) or 0.0
    if p95 is None or count < policy.min_latency_count:
        return []
    key = AlertKey(model, version, "latency", None)
    return [judge(key, "latency_p95_ms", p95, policy.latency_p95_ms, "p95 latency in ms")]


def volume_observations(
    policy: AlertPolicy,
    model: str,
    version: str,
    snapshot: Mapping[str, Any],
    context: AlertContext,
    remembered: float | None,
) -> list[Observation]:
    """``remembered``: the tracker's count of the same window a day earlier
    (``context.volume_day_ago`` wins when given)."""
    count = number(snapshot.get("count"))
    if count is None:
        return []
    span = float(snapshot["window_end"]) - float(snapshot["window_start"])
    day_ago = context.volume_day_ago if context.volume_day_ago is not None else remembered
    references = [
        ("the same window a day earlier", day_ago),
        (
            "the baseline rate",
            None if context.baseline_rate is None else context.baseline_rate * span,
        ),
    ]
    best: Observation | None = None
    for label, ref in references:
        if ref is None or not ref >= policy.min_volume_reference:
            continue
        ratio = count / ref
        bands = policy.volume_drop if ratio < 1.0 else policy.volume_surge
        obs = judge(
            AlertKey(model, version, "volume", None),
            "volume_ratio",
            ratio,
            bands,
            f"window volume / {label}",
            normal=1.0,
            note=f"{count:.0f} events against {ref:.0f}",
        )
        if best is None or obs.severity > best.severity:
            best = obs
    return [] if best is None else [best]
