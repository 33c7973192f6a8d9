"""The metrics snapshot of one performance window: what ground truth says about the model.

Drift windows (`streams.snapshot`) judge what the model saw; a performance window judges
whether it was right, from the labels joined so far to the predictions made inside it. Its
labels keep arriving long after the window ends, so a performance window is evaluated many
times — when it closes, again whenever labels arrive (``final: false``), and once for good
when its label TTL has passed (``final: true``) — with ``coverage`` saying how much of the
truth is in yet.

The message has the shape of every snapshot on ``undertow.metrics`` (DESIGN.md), with
``"kind": "performance"`` (drift snapshots say ``"drift"``), empty ``features`` and
``prediction`` sections, and a ``concept_drift`` section: the classic check (performance
fell while the inputs held still, `streams.concept_drift.concept_drift_verdict`) plus the
error-stream detector's signals counted in the window.
"""

from __future__ import annotations

import math
from typing import Any

from streams.baseline import Baseline
from streams.concept_drift import concept_drift_verdict
from streams.outcomes import OutcomePane, outcome_sections


def evaluate_outcomes(
    baseline: Baseline,
    pane: OutcomePane,
    window_start: float,
    window_end: float,
    final: bool,
    *,
    input_psi_max: float = math.nan,
    emitted_at: float | None = None,
    min_labelled: int | None = None,
) -> dict[str, Any]:
    """The performance snapshot of a window's merged outcome panes.

    ``input_psi_max``: the largest feature PSI of the drift windows inside this window
    (NaN when unknown), for the concept-drift check.
    """
    sections = outcome_sections(baseline, pane, min_labelled=min_labelled)
    performance = sections["performance"]
    labelled = int(performance.get("labelled") or 0)
    drop = _number(performance.get("drop"))
    detections = int(performance.get("detections") or 0)
    floor = min_labelled if min_labelled is not None else getattr(baseline, "min_labelled", 100)
    verdict = concept_drift_verdict(
        input_psi_max,
        drop,
        detector_fired=detections > 0,
        labelled=labelled,
        min_labelled=floor,
    )
    snapshot: dict[str, Any] = {
        "kind": "performance",
        "model": baseline.model,
        "model_version": baseline.version,
        "window_start": window_start,
        "window_end": window_end,
        "count": pane.predictions,
        "final": final,
        "features": {},
        "prediction": {},
        "performance": performance,
        "segments": sections["segments"],
        "fairness": sections["fairness"],
        "concept_drift": {
            "drift": bool(verdict),
            "reason": verdict.reason,
            "input_psi_max": input_psi_max,
            "performance_drop": drop,
            "detections": detections,
        },
        "thresholds": baseline.thresholds.to_dict(),
    }
    if emitted_at is not None:
        snapshot["emitted_at"] = emitted_at
    return snapshot


def _number(x: object) -> float:
    if isinstance(x, int | float) and not isinstance(x, bool):
        return float(x)
    return math.nan
