"""Group fairness of a binary classifier: demographic parity and equalized odds per attribute.

For each protected attribute (``Baseline.protected``) the groups are its segment values.
From a group's cohort counts (`streams.cohorts`):

* positive rate = predicted positive / predictions with a score (all predictions, labelled
  or not: it needs no ground truth);
* TPR = TP / (TP + FN) and FPR = FP / (FP + TN), over the joined labels.

Then, over the groups whose rate rests on at least ``min_group_size`` rows (its own
denominator: scored predictions for the positive rate, labelled positives for TPR,
labelled negatives for FPR), `OTHER_SEGMENT` left out since it mixes groups:

* demographic parity ratio = min / max of the positive rates (fairlearn's
  ``demographic_parity_ratio``); NaN with fewer than two groups or when no group gets a
  positive decision;
* equalized-odds differences = max − min of the TPRs, and of the FPRs (the two halves of
  fairlearn's ``equalized_odds_difference``, which reports their maximum).

The status is ``"violated"`` when the parity ratio leaves ``fairness_bounds`` (the
four-fifths rule, 0.8, by default), ``"insufficient"`` when fewer than two groups qualify,
else ``"ok"``; the equalized-odds differences are reported, not judged. Other tasks have no
positive decision: their groups carry volume and accuracy (or MAE) only, with the status
``"not_applicable"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from streams.baseline import Baseline, FairnessReference
from streams.cohorts import OTHER_SEGMENT, Cohorts, figures, ratio


def group_rates(r: Mapping[str, int]) -> dict[str, Any]:
    """Volume, labels and rates of one group from its binary cohort record."""
    tp, fp, tn, fn = r["tp"], r["fp"], r["tn"], r["fn"]
    return {
        "predictions": r["predictions"],
        "labelled": tp + fp + tn + fn,
        "positive_rate": ratio(r["positive"], r["scored"]),
        "tpr": ratio(tp, tp + fn),
        "fpr": ratio(fp, fp + tn),
    }


def _qualifying(
    records: Mapping[str, Mapping[str, int]], rate: str, min_group_size: int
) -> list[float]:
    parts = _DENOMINATORS[rate]
    return [
        group_rates(r)[rate]
        for group, r in records.items()
        if group != OTHER_SEGMENT and sum(r[k] for k in parts) >= max(min_group_size, 1)
    ]


#: The counts each rate is a share of.
_DENOMINATORS = {"positive_rate": ("scored",), "tpr": ("tp", "fn"), "fpr": ("fp", "tn")}


def parity(records: Mapping[str, Mapping[str, int]], min_group_size: int) -> dict[str, float | int]:
    """Demographic parity ratio and equalized-odds differences over qualifying groups."""
    rates = _qualifying(records, "positive_rate", min_group_size)
    tprs = _qualifying(records, "tpr", min_group_size)
    fprs = _qualifying(records, "fpr", min_group_size)
    top = max(rates, default=0.0)
    return {
        "demographic_parity_ratio": min(rates) / top if len(rates) >= 2 and top > 0 else math.nan,
        "equalized_odds_tpr_difference": max(tprs) - min(tprs) if len(tprs) >= 2 else math.nan,
        "equalized_odds_fpr_difference": max(fprs) - min(fprs) if len(fprs) >= 2 else math.nan,
        "groups_compared": len(rates),
    }


def fairness_section(baseline: Baseline, cohorts: Cohorts) -> dict[str, dict[str, Any]]:
    """The snapshot's ``fairness``: one entry per protected attribute of the baseline."""
    section: dict[str, dict[str, Any]] = {}
    lo, hi = baseline.fairness_bounds
    for attr in baseline.protected:
        records = {value: r for value, r, _ in cohorts.records(attr)}
        entry: dict[str, Any]
        if baseline.task == "binary":
            entry = {"groups": {value: group_rates(r) for value, r in records.items()}}
            entry.update(parity(records, baseline.min_group_size))
            dpr = entry["demographic_parity_ratio"]
            if entry["groups_compared"] < 2:
                status = "insufficient"
            elif math.isnan(dpr):  # no group gets a positive decision: none is favoured
                status = "ok"
            else:
                status = "ok" if lo <= dpr <= hi else "violated"
        else:
            entry = {
                "groups": {
                    value: figures(baseline.task, r, e) for value, r, e in cohorts.records(attr)
                },
                "demographic_parity_ratio": math.nan,
                "equalized_odds_tpr_difference": math.nan,
                "equalized_odds_fpr_difference": math.nan,
            }
            status = "not_applicable"
        entry["bounds"] = [lo, hi]
        entry["min_group_size"] = baseline.min_group_size
        entry["status"] = status
        entry["reference"] = baseline.fairness_reference.get(attr)
        section[attr] = entry
    return section


def fairness_reference(
    cohorts: Cohorts, attributes: Iterable[str], max_values: int, *, binary: bool
) -> FairnessReference:
    """Reference group statistics for the baseline, from cohorts fed the whole training set.

    The ``max_values`` most frequent groups of each attribute are kept (ties by name); the
    rest are pooled as `OTHER_SEGMENT`. Rates are None where undefined, or when the task is
    not binary (``n`` alone is kept then).
    """
    reference: FairnessReference = {}
    for attr in attributes:
        records = {value: dict(r) for value, r, _ in cohorts.records(attr)}
        ranked = sorted(records, key=lambda v: (v == OTHER_SEGMENT, -records[v]["predictions"], v))
        kept, pooled = ranked[:max_values], ranked[max_values:]
        if pooled:
            other = {k: sum(records[v][k] for v in pooled) for k in records[pooled[0]]}
            kept.append(OTHER_SEGMENT)
            records[OTHER_SEGMENT] = other
        groups: dict[str, dict[str, Any]] = {}
        for value in kept:
            r = records[value]
            rates = group_rates(r) if binary else {}
            groups[value] = {
                k: _json_rate(rates.get(k, math.nan)) for k in ("positive_rate", "tpr", "fpr")
            }
            # The group's own accuracy in training: what its accuracy_drop is judged against.
            if binary:
                labelled = r["tp"] + r["fp"] + r["tn"] + r["fn"]
                groups[value]["accuracy"] = _json_rate(ratio(r["tp"] + r["tn"], labelled))
            groups[value]["n"] = r["predictions"]
        reference[attr] = groups
    return reference


def _json_rate(value: float) -> float | None:
    return None if math.isnan(value) else value
