"""The snapshot's label-side sections of a window: ``performance``, ``segments``, ``fairness``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from streams.baseline import Baseline
from streams.fairness import fairness_section
from streams.label_delay import bucket_labels
from streams.performance import primary_metric

if TYPE_CHECKING:
    from streams.outcomes import OutcomePane


def outcome_sections(
    baseline: Baseline, pane: OutcomePane, *, min_labelled: int | None = None
) -> dict[str, dict[str, Any]]:
    """The snapshot's ``performance``, ``segments`` and ``fairness`` sections of ``pane``.

    Undefined figures are NaN, which orjson writes as null (as `streams.snapshot` does).
    ``performance`` has ``labelled``, ``predictions``, ``coverage`` (labelled /
    predictions), ``unscorable``, ``status`` (``"insufficient"`` below ``min_labelled``
    labels, default ``baseline.min_labelled``), every figure of the task's counter, the
    ``primary_metric`` with its ``value``, ``baseline_value`` and ``drop`` (points worse,
    `PrimaryMetric.drop`), ``label_delay`` (`LabelDelay.summary`, per-bucket counts keyed by
    ``le``), ``by_delay`` (per delay bucket: labelled, and accuracy or MAE) and
    ``detections``. ``segments``: `Cohorts.section`. ``fairness``: `fairness_section`.
    """
    if (pane.model, pane.model_version) != (baseline.model, baseline.version):
        raise ValueError(
            f"outcomes of {pane.model} {pane.model_version} evaluated against the "
            f"baseline of {baseline.model} {baseline.version}"
        )
    needed = baseline.min_labelled if min_labelled is None else min_labelled
    performance: dict[str, Any] = {
        "labelled": pane.labelled,
        "predictions": pane.predictions,
        "coverage": pane.labelled / pane.predictions if pane.predictions else math.nan,
        "unscorable": pane.unscorable,
        "status": "ok" if pane.labelled >= needed and pane.task else "insufficient",
        "min_labelled": needed,
    }
    if pane.performance is not None and pane.task is not None:
        metrics = pane.performance.metrics()
        metrics.pop("labelled")
        for name in ("tp", "fp", "tn", "fn", "mape_skipped"):
            if name in metrics:
                metrics[name] = int(metrics[name])
        performance.update(metrics)
        primary = primary_metric(pane.task)
        value = metrics[primary.name]
        reference = float(baseline.performance.get(primary.name, math.nan))
        performance["primary_metric"] = primary.name
        performance["value"] = value
        performance["baseline_value"] = reference
        performance["drop"] = primary.drop(reference, value)
    performance["label_delay"] = pane.delay.summary(baseline.expected_label_delay_s)
    performance["by_delay"] = _by_delay(pane)
    performance["detections"] = pane.detections
    return {
        "performance": performance,
        "segments": pane.cohorts.section(),
        "fairness": fairness_section(baseline, pane.cohorts),
    }


def _by_delay(pane: OutcomePane) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for b, le in enumerate(bucket_labels()):
        n = int(pane.by_delay_labelled[b])
        if pane.task == "regression":
            terms = pane.by_delay_errors[b]
            out[le] = {"labelled": n, "mae": (terms[0] if terms else 0.0) / n if n else math.nan}
        else:
            out[le] = {
                "labelled": n,
                "accuracy": int(pane.by_delay_correct[b]) / n if n else math.nan,
            }
    return out
