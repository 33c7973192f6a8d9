"""Ground-truth checks beyond the overall accuracy: cohorts, fairness, concept, label delay.

They judge a performance snapshot (`streams.outcome_snapshot`), provisional or final, once it
holds enough labels to say anything (``status: ok``):

- ``accuracy_drop`` per cohort (``segment`` = ``attribute=value``): the cohort's primary
  metric against the cohort's own accuracy in training when the baseline has it (protected
  attributes), else against the model's, in points, with the model's ``accuracy_drop``
  bands, over at least ``min_labelled`` labels of that cohort — "monitoring averages" hides
  a 50 % cohort inside a 90 % model;
- ``fairness`` per protected attribute (``segment`` = the attribute): the demographic parity
  ratio below the lower bound of the baseline's ``fairness_bounds`` (the four-fifths rule,
  0.8) is a warning, below 0.5 critical — the same levels as deploy/prometheus's
  FairnessViolation;
- ``concept_drift``: the snapshot's verdict (performance fell while the inputs held still, or
  the error-stream detector fired), with the size of the drop deciding the level;
- ``label_delay``: the median label delay against the expected one (warning at 2×, critical
  at 4×), and coverage that stalls — a window twice the expected delay old with fewer than
  half its predictions labelled (check ``coverage``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from streams.alert_config import AlertContext, Bands, judge, number
from streams.alert_state import AlertKey, Observation
from streams.performance.primary import primary_metric
from streams.severity import Severity

if TYPE_CHECKING:
    from streams.alert_policy import AlertPolicy

#: Parity ratio below which fairness is critical (the lower bound of the baseline warns).
FAIRNESS_CRITICAL = 0.5
#: Median label delay over the expected one: warning, critical.
LABEL_DELAY_BANDS = Bands(None, 2.0, 4.0)
#: Share of a window labelled once it is twice the expected delay old: warning, critical.
COVERAGE_BANDS = Bands(None, 0.5, 0.1, higher_is_worse=False)
#: Labels a delay median needs before it is judged.
MIN_DELAYS = 20
OTHER_SEGMENT = "__other__"


def outcome_observations(
    policy: AlertPolicy,
    model: str,
    version: str,
    snapshot: Mapping[str, Any],
    context: AlertContext,
) -> list[Observation]:
    performance = snapshot.get("performance") or {}
    if performance.get("status") != "ok":
        return []  # too few labels: insufficient, never a drop
    return [
        *segment_observations(policy, model, version, snapshot, context),
        *fairness_observations(model, version, snapshot),
        *concept_observations(policy, model, version, snapshot),
        *label_delay_observations(model, version, snapshot),
    ]


def segment_observations(
    policy: AlertPolicy,
    model: str,
    version: str,
    snapshot: Mapping[str, Any],
    context: AlertContext,
) -> list[Observation]:
    if context.task not in ("binary", "multiclass", "regression"):
        return []
    metric = primary_metric(context.task)  # type: ignore[arg-type]
    base = number(context.baseline_performance.get(metric.name))
    if base is None:
        return []
    found = []
    segments: Mapping[str, Mapping[str, Any]] = snapshot.get("segments") or {}
    for attribute, values in sorted(segments.items()):
        for value, entry in sorted(values.items()):
            if value == OTHER_SEGMENT:
                continue  # the overflow of many small cohorts: nobody can act on it
            current, labelled = number(entry.get(metric.name)), number(entry.get("labelled"))
            if current is None or labelled is None or labelled < policy.min_labelled:
                continue
            # A group's own training accuracy when the baseline has it: cohorts differ by
            # nature, and a young applicants' cohort that was always harder is no alert.
            own = number((context.cohort_accuracy.get(attribute) or {}).get(value))
            reference = base if own is None or metric.name != "accuracy" else own
            drop = metric.drop(reference, current)
            whose = "" if own is None else " (the cohort in training)"
            if math.isnan(drop):
                continue
            cohort = f"{attribute}={value}"
            found.append(
                judge(
                    AlertKey(model, version, "accuracy_drop", None, segment=cohort),
                    f"{metric.name}_drop",
                    drop,
                    policy.accuracy_drop,
                    f"drop of {metric.name} in cohort {cohort} from the baseline's "
                    f"{reference:.4g}{whose}, in points",
                    note=f"{metric.name} {current:.4g} over {labelled:.0f} labelled predictions",
                )
            )
    return found


def fairness_observations(
    model: str, version: str, snapshot: Mapping[str, Any]
) -> list[Observation]:
    found = []
    fairness: Mapping[str, Mapping[str, Any]] = snapshot.get("fairness") or {}
    for attribute, entry in sorted(fairness.items()):
        ratio = number(entry.get("demographic_parity_ratio"))
        if ratio is None or entry.get("status") not in ("ok", "violated"):
            continue
        bounds = entry.get("bounds") or (0.8, 1.25)
        low = float(bounds[0])
        bands = Bands(None, low, min(FAIRNESS_CRITICAL, low), higher_is_worse=False)
        found.append(
            judge(
                AlertKey(model, version, "fairness", None, segment=attribute),
                "demographic_parity_ratio",
                ratio,
                bands,
                f"demographic parity ratio across {attribute} groups (lowest over highest "
                "positive rate)",
                normal=1.0,
                note=_groups_note(entry),
            )
        )
    return found


def concept_observations(
    policy: AlertPolicy, model: str, version: str, snapshot: Mapping[str, Any]
) -> list[Observation]:
    verdict = snapshot.get("concept_drift") or {}
    if "drift" not in verdict:
        return []
    drop = number(verdict.get("performance_drop"))
    obs = judge(
        AlertKey(model, version, "concept_drift", None),
        "performance_drop",
        0.0 if drop is None else drop,
        policy.accuracy_drop,
        "drop in points while the inputs did not drift",
        note=str(verdict.get("reason", "")),
    )
    if not verdict["drift"]:
        return [dataclasses.replace(obs, severity=Severity.NONE)]
    if obs.severity < Severity.WARNING:  # the detector fired before the drop reached a band
        obs = dataclasses.replace(obs, severity=Severity.WARNING)
    return [obs]


def label_delay_observations(
    model: str, version: str, snapshot: Mapping[str, Any]
) -> list[Observation]:
    performance = snapshot.get("performance") or {}
    delay = performance.get("label_delay") or {}
    expected = number(delay.get("expected"))
    if expected is None or expected <= 0:
        return []  # nobody said how late labels should be
    found = []
    p50, count = number(delay.get("p50")), number(delay.get("count")) or 0.0
    if p50 is not None and count >= MIN_DELAYS:
        found.append(
            judge(
                AlertKey(model, version, "label_delay", None),
                "label_delay_ratio",
                p50 / expected,
                LABEL_DELAY_BANDS,
                "median label delay over the expected delay",
                normal=1.0,
                note=f"median {p50:.0f}s, expected {expected:.0f}s",
            )
        )
    coverage = number(performance.get("coverage"))
    emitted = number(snapshot.get("emitted_at"))
    end = number(snapshot.get("window_end"))
    age = None if emitted is None or end is None else emitted - end
    # Only a window old enough that most of its labels should be in says coverage stalled.
    if coverage is not None and age is not None and age >= 2 * expected:
        found.append(
            judge(
                AlertKey(model, version, "label_delay", None, "coverage"),
                "label_coverage",
                coverage,
                COVERAGE_BANDS,
                f"share labelled of a window {age:.0f}s old",
                normal=1.0,
                percent=True,
                note=f"expected delay {expected:.0f}s",
            )
        )
    return found


def _groups_note(entry: Mapping[str, Any]) -> str:
    groups: Mapping[str, Mapping[str, Any]] = entry.get("groups") or {}
    rates = []
    for name, g in sorted(groups.items()):
        rate = number(g.get("positive_rate"))
        if rate is not None:
            rates.append(f"{name} {rate:.1%}")
    return "positive rate " + ", ".join(rates) if rates else ""
