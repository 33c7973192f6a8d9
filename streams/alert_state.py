"""Alert state: what is firing, at which severity, and the events each change emits.

An `AlertTracker` turns the stream of window snapshots (`streams.snapshot.evaluate_window`)
into alert events in the DESIGN.md format, one per state change, not one per window:

- ``firing`` when a key's severity rises from none, or changes level (warning → critical and
  back are each a new ``firing`` event carrying the new severity);
- ``resolved`` when it returns to none (with the severity that was firing and its id);
- nothing while it stays where it is.

A key is (model, model_version, type, feature). Types so far: ``data_drift`` (a feature's PSI
status), ``prediction_drift`` (the prediction's PSI status, feature null) and
``data_quality`` (a feature's missing-rate status). A statistic without a value (an empty
window, a column with no values) is no evidence either way and leaves its key alone.

Which snapshots count:

- only final ones (``"final": true``) by default: a provisional look at an open window must
  not page anyone; ``final_only=False`` takes them too;
- a corrected re-evaluation of the latest window a key has seen (same ``window_end``) does
  count: late events can confirm, raise or clear an alert;
- a snapshot of a window *older* than the latest one a key has seen is ignored for that key,
  so a late re-evaluation never flips the current state backwards.

``alert_id`` is a hash of the key and the ``window_start`` of the window whose snapshot made
it fire, so evaluating that window again (or replaying after a restart) gives the same id.
The state round-trips through `to_state` / `from_state` (stored in Redis by the runtime).
Hysteresis, adaptive thresholds and more alert types will change `next_severity` and
`observations`; the transition bookkeeping stays here.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.severity import Severity, Thresholds

FORMAT = "undertow.alert-state/1"


@dataclass(frozen=True)
class AlertKey:
    model: str
    model_version: str
    type: str
    feature: str | None

    def alert_id(self, window_start: float) -> str:
        """Deterministic id of the alert that fired for this key in the given window."""
        raw = orjson.dumps([self.model, self.model_version, self.type, self.feature])
        return hashlib.sha256(raw + repr(float(window_start)).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Observation:
    """One key's judgement in one snapshot, with what an alert needs to explain it."""

    key: AlertKey
    severity: Severity
    metric: str
    value: float
    thresholds: Mapping[Severity, float]
    subject: str  # "PSI of amount"
    percent: bool = False  # show value and thresholds as percentages


@dataclass
class KeyState:
    """Where one key stands: its severity, the latest window seen, the firing alert's id."""

    severity: Severity
    window_end: float
    alert_id: str | None = None
    since: float | None = None  # window_start of the window that made it fire


class AlertTracker:
    """Current severity per (model, version, type, feature) and the events its changes emit.

    Examples
    --------
    >>> tracker = AlertTracker()
    >>> snapshot = {"model": "fraud", "model_version": "v2", "window_start": 0.0,
    ...     "window_end": 300.0, "final": True, "prediction": {},
    ...     "features": {"amount": {"psi": 0.41, "drift_status": "critical",
    ...         "missing_rate": 0.0, "quality_status": "none", "count": 10}}}
    >>> [(e["type"], e["status"], e["severity"]) for e in tracker.observe(snapshot, 301.0)]
    [('data_drift', 'firing', 'critical')]
    >>> tracker.observe({**snapshot, "window_start": 60.0, "window_end": 360.0}, 361.0)
    []
    >>> calm = {"psi": 0.03, "drift_status": "none", "missing_rate": 0.0,
    ...     "quality_status": "none", "count": 10}
    >>> later = {**snapshot, "window_start": 120.0, "window_end": 420.0,
    ...     "features": {"amount": calm}}
    >>> [resolved] = tracker.observe(later, 421.0)
    >>> resolved["status"], resolved["severity"], resolved["threshold"]
    ('resolved', 'critical', 0.1)
    >>> resolved["message"].split(" in window")[0]
    'PSI of amount is 0.03, back under 0.10 (was critical)'
    """

    def __init__(self, *, final_only: bool = True) -> None:
        self.final_only = final_only
        self.keys: dict[AlertKey, KeyState] = {}

    def observe(self, snapshot: Mapping[str, Any], emitted_at: float) -> list[dict[str, Any]]:
        """Alert events (DESIGN.md format) for the state changes ``snapshot`` brings."""
        if self.final_only and not snapshot.get("final", False):
            return []
        start = float(snapshot["window_start"])
        end = float(snapshot["window_end"])
        events = []
        for obs in observations(snapshot):
            state = self.keys.get(obs.key)
            if state is None:
                state = self.keys[obs.key] = KeyState(Severity.NONE, end)
            elif end < state.window_end:
                continue  # an older window: never move the current state backwards
            state.window_end = end
            previous = state.severity
            severity = self.next_severity(previous, obs)
            if severity == previous:
                continue
            if severity == Severity.NONE:
                alert_id = state.alert_id or obs.key.alert_id(state.since or start)
                events.append(_event(obs, "resolved", previous, alert_id, start, end))
                state.alert_id, state.since = None, None
            else:
                state.alert_id, state.since = obs.key.alert_id(start), start
                events.append(_event(obs, "firing", severity, state.alert_id, start, end))
            state.severity = severity
        for event in events:
            event["emitted_at"] = emitted_at
        return events

    def next_severity(self, previous: Severity, observation: Observation) -> Severity:
        """The key's new severity: the observed one (hysteresis will refine this)."""
        return observation.severity

    def firing(self) -> dict[AlertKey, KeyState]:
        """The keys currently firing."""
        return {k: s for k, s in self.keys.items() if s.severity != Severity.NONE}

    def to_state(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "keys": [
                {
                    "model": k.model,
                    "model_version": k.model_version,
                    "type": k.type,
                    "feature": k.feature,
                    "severity": str(s.severity),
                    "window_end": s.window_end,
                    "alert_id": s.alert_id,
                    "since": s.since,
                }
                for k, s in sorted(self.keys.items(), key=_sort_key)
            ],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], *, final_only: bool = True) -> AlertTracker:
        if state.get("format") != FORMAT:
            raise ValueError(f"alert state format {state.get('format')!r} is not {FORMAT!r}")
        tracker = cls(final_only=final_only)
        for entry in state["keys"]:
            feature = entry["feature"]
            key = AlertKey(
                str(entry["model"]),
                str(entry["model_version"]),
                str(entry["type"]),
                None if feature is None else str(feature),
            )
            tracker.keys[key] = KeyState(
                severity=Severity.parse(entry["severity"]),
                window_end=float(entry["window_end"]),
                alert_id=entry.get("alert_id"),
                since=None if entry.get("since") is None else float(entry["since"]),
            )
        return tracker


def observations(snapshot: Mapping[str, Any]) -> list[Observation]:
    """Every judgement in a snapshot that an alert can be about, in a stable order."""
    model, version = str(snapshot["model"]), str(snapshot["model_version"])
    t = Thresholds.from_dict(snapshot.get("thresholds") or {})
    psi_bands = {Severity.WARNING: t.psi_warning, Severity.CRITICAL: t.psi_critical}
    found: list[Observation] = []
    for name, entry in snapshot.get("features", {}).items():
        if _has_value(entry.get("psi")):
            found.append(
                Observation(
                    AlertKey(model, version, "data_drift", name),
                    Severity.parse(entry["drift_status"]),
                    "psi",
                    float(entry["psi"]),
                    psi_bands,
                    f"PSI of {name}",
                )
            )
        if _has_value(entry.get("missing_rate")) and entry.get("count"):
            reference = entry.get("reference_missing_rate")
            base = float(reference) if _has_value(reference) else 0.0
            found.append(
                Observation(
                    AlertKey(model, version, "data_quality", name),
                    Severity.parse(entry["quality_status"]),
                    "missing_rate",
                    float(entry["missing_rate"]),
                    {
                        Severity.WARNING: base + t.missing_warning,
                        Severity.CRITICAL: base + t.missing_critical,
                    },
                    f"missing rate of {name}",
                    percent=True,
                )
            )
    prediction = snapshot.get("prediction") or {}
    if _has_value(prediction.get("psi")):
        found.append(
            Observation(
                AlertKey(model, version, "prediction_drift", None),
                Severity.parse(prediction["drift_status"]),
                "psi",
                float(prediction["psi"]),
                psi_bands,
                "PSI of the prediction",
            )
        )
    return found


def _event(
    obs: Observation, status: str, severity: Severity, alert_id: str, start: float, end: float
) -> dict[str, Any]:
    key = obs.key
    # Firing quotes the band it entered; resolved, the lowest band, which it is now under.
    band = severity if status == "firing" else Severity.WARNING
    threshold = obs.thresholds.get(band, obs.thresholds.get(Severity.WARNING, math.nan))
    value, limit = _show(obs.value, obs.percent), _show(threshold, obs.percent)
    window = f"in window {_instant(start)} to {_instant(end)}"
    if status == "firing":
        message = f"{obs.subject} is {value} ({severity} above {limit}) {window}"
    else:
        message = f"{obs.subject} is {value}, back under {limit} (was {severity}) {window}"
    return {
        "alert_id": alert_id,
        "type": key.type,
        "severity": str(severity),
        "status": status,
        "model": key.model,
        "model_version": key.model_version,
        "feature": key.feature,
        "segment": None,
        "metric": obs.metric,
        "value": obs.value,
        "threshold": threshold,
        "window_start": start,
        "window_end": end,
        "message": message,
        "runbook_url": f"docs/runbooks/{key.type.replace('_', '-')}.md",
    }


def _has_value(x: object) -> bool:
    return isinstance(x, int | float) and not math.isnan(x)


def _show(x: float, percent: bool) -> str:
    if percent:
        return f"{x:.1%}"
    return f"{x:.2f}" if abs(x) >= 0.1 else f"{x:.2g}"


def _instant(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sort_key(item: tuple[AlertKey, KeyState]) -> tuple[str, str, str, str]:
    k = item[0]
    return (k.model, k.model_version, k.type, k.feature or "")
