"""Drift and data-quality checks: what the model sees and what it says, window by window.

- ``data_drift`` and ``prediction_drift`` on PSI: info from the policy's ``psi_info``
  (0.05), warning from the snapshot's (the baseline's) ``psi_warning`` (0.1), critical above
  ``psi_critical`` (0.25); `AlertPolicy.psi_bands` and per-feature overrides can change them.
- Multiple testing (``fdr``, 0.01): a feature's PSI level counts only if its KS (numeric) or
  chi-square (categorical) p-value survives Benjamini–Hochberg at that false discovery
  rate across the window's features (`streams.multiple_testing`); the prediction's own test
  must have p <= fdr. The PSI level still decides the severity. A column without a p-value
  is judged by PSI alone.
- Sample size (``min_drift_count``, 200): a column with fewer non-missing values in the
  window is no evidence either way (its key is left alone). Under ~200 rows the PSI of a
  10-bin feature is 0.045 on average from sampling alone (9 / n), a 20-category one's 0.1,
  and chi-square p-values of sparse categories are too optimistic: at 100 rows a window the
  stationary simulation raised false criticals through both gates.
- ``data_quality`` keeps the baseline's missing-rate bands (a rise over the reference rate
  of ``missing_warning`` / ``missing_critical`` points).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from streams.alert_config import band_level, judge, number
from streams.alert_state import AlertKey, Observation
from streams.multiple_testing import bh_reject
from streams.severity import Severity, Thresholds

if TYPE_CHECKING:
    from streams.alert_policy import AlertPolicy


def drift_observations(policy: AlertPolicy, snapshot: Mapping[str, Any]) -> list[Observation]:
    """data_drift and data_quality per feature, then prediction_drift, in a stable order."""
    model, version = str(snapshot["model"]), str(snapshot["model_version"])
    t = Thresholds.from_dict(snapshot.get("thresholds") or {})
    features: Mapping[str, Mapping[str, Any]] = snapshot.get("features") or {}
    tests = feature_tests(policy, features)
    found: list[Observation] = []
    for name, entry in features.items():
        if judged(policy, entry):
            significant, note = tests.get(name, (True, ""))
            found.append(
                judge(
                    AlertKey(model, version, "data_drift", name),
                    "psi",
                    float(entry["psi"]),
                    policy.psi_bands(t, name),
                    f"PSI of {name}",
                    significant=significant,
                    adaptive=policy.is_adaptive("data_drift", name),
                    note=note,
                )
            )
        if number(entry.get("missing_rate")) is not None and entry.get("count"):
            found.append(missing_observation(model, version, name, entry, t))
    prediction = snapshot.get("prediction") or {}
    if judged(policy, prediction):
        significant, note = single_test(policy, prediction)
        found.append(
            judge(
                AlertKey(model, version, "prediction_drift", None),
                "psi",
                float(prediction["psi"]),
                policy.psi_bands(t),
                "PSI of the prediction",
                significant=significant,
                adaptive=policy.is_adaptive("prediction_drift", None),
                note=note,
            )
        )
    return found


def feature_tests(
    policy: AlertPolicy, features: Mapping[str, Mapping[str, Any]]
) -> dict[str, tuple[bool, str]]:
    """Per feature: does its test survive Benjamini–Hochberg, and the note saying so."""
    if policy.fdr is None:
        return {}
    family: list[tuple[str, str, float]] = []
    for name, entry in features.items():
        override = policy.features.get(name)
        if override is not None and not override.multiple_testing:
            continue
        test, p = pvalue(entry)
        if test is not None and judged(policy, entry):
            family.append((name, test, p))
    if not family:
        return {}
    rejected = bh_reject(np.array([p for _, _, p in family]), policy.fdr)
    m = len(family)
    return {
        name: (
            bool(ok),
            f"{test} p-value {p:.2g}, "
            f"{'significant' if ok else 'not significant'} at FDR {policy.fdr:g} "
            f"over {m} features",
        )
        for (name, test, p), ok in zip(family, rejected, strict=True)
    }


def judged(policy: AlertPolicy, entry: Mapping[str, Any]) -> bool:
    """A PSI, over at least ``min_drift_count`` non-missing values (fewer: no evidence)."""
    if number(entry.get("psi")) is None:
        return False
    count = number(entry.get("count"))
    if count is None:
        return True  # a snapshot that does not say: judge it
    missing = number(entry.get("missing_rate")) or 0.0
    return count * (1.0 - missing) >= policy.min_drift_count - 1e-9


def single_test(policy: AlertPolicy, entry: Mapping[str, Any]) -> tuple[bool, str]:
    """The prediction's own test, alone: significant when p <= fdr."""
    test, p = pvalue(entry)
    if policy.fdr is None or test is None:
        return True, ""
    ok = p <= policy.fdr
    return ok, f"{test} p-value {p:.2g}, {'' if ok else 'not '}significant at {policy.fdr:g}"


def missing_observation(
    model: str, version: str, name: str, entry: Mapping[str, Any], t: Thresholds
) -> Observation:
    """data_quality: the missing rate against the reference's, in the baseline's bands."""
    base = number(entry.get("reference_missing_rate")) or 0.0
    rate = float(entry["missing_rate"])
    thresholds = {
        Severity.WARNING: base + t.missing_warning,
        Severity.CRITICAL: base + t.missing_critical,
    }
    status = entry.get("quality_status")
    reported = Severity.parse(status) if isinstance(status, str) else Severity.NONE
    return Observation(
        AlertKey(model, version, "data_quality", name),
        max(band_level(rate, thresholds, True), reported),
        "missing_rate",
        rate,
        thresholds,
        f"missing rate of {name}",
        percent=True,
        normal=base,
    )


def pvalue(entry: Mapping[str, Any]) -> tuple[str | None, float]:
    """The column's test and its p-value (KS for numeric, chi-square for categorical)."""
    for test, field_name in (("KS", "ks_pvalue"), ("chi-square", "chi2_pvalue")):
        p = number(entry.get(field_name))
        if p is not None:
            return test, min(max(p, 0.0), 1.0)
    return None, math.nan
