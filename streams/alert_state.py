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

Without a policy (``AlertTracker()``) a key's severity is the one the snapshot reports
(`next_severity`) and the events follow every change, as above. With one
(``AlertTracker(policy=AlertPolicy())``, `streams.alert_policy`) the policy judges each
snapshot instead: more alert types (accuracy_drop, latency, volume, monitor_health), an
info level, multiple-testing control across features, adaptive thresholds learnt from each
key's history, a minimum duration, hysteresis and a cooldown; the transition bookkeeping
(ids, events, old windows, corrections, restarts) stays here and is the same for both.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from streams.adaptive import History
from streams.severity import Severity, Thresholds

if TYPE_CHECKING:
    from streams.alert_config import AlertContext
    from streams.alert_policy import AlertPolicy

FORMAT = "undertow.alert-state/1"
DAY = 86_400.0
Runs = tuple[float | None, float | None, float | None]


@dataclass(frozen=True)
class AlertKey:
    model: str
    model_version: str
    type: str
    feature: str | None
    check: str | None = None  # which monitor_health check (baseline_age, stale_window, ...)
    segment: str | None = None  # a cohort ("region=south") or a protected attribute

    def alert_id(self, window_start: float) -> str:
        """Deterministic id of the alert that fired for this key in the given window."""
        parts: list[str | None] = [self.model, self.model_version, self.type, self.feature]
        if self.check is not None:  # keys without a check keep the ids they always had
            parts.append(self.check)
        if self.segment is not None:
            parts.append(f"segment:{self.segment}")
        raw = orjson.dumps(parts)
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
    # Set by an AlertPolicy; the defaults are the policy-free behaviour.
    normal: float = 0.0  # the value's calm level: hysteresis is a fraction of the way to it
    higher_is_worse: bool = True
    significant: bool = True  # survived the multiple-testing control (else severity NONE)
    adaptive: bool = False  # thresholds are raised by the key's history
    note: str = ""  # appended to the message: the test, the adaptive bands, ...


@dataclass
class KeyState:
    """Where one key stands: its severity, the latest window seen, the firing alert's id."""

    severity: Severity
    window_end: float
    alert_id: str | None = None
    since: float | None = None  # window_start of the window that made it fire
    # Policy bookkeeping (untouched without a policy):
    fired_at: float | None = None  # wall clock of the latest firing event
    runs: Runs = (None, None, None)  # window_end where the run at >= info/warning/critical began
    below: int = 0  # windows in a row under the current level's resolve threshold
    cooldown: int = 0  # windows left before a non-critical level may fire again
    before: tuple[Runs, int, int] | None = None  # the three above, before the latest window
    history: History | None = None  # adaptive thresholds: the calm values of the statistic
    pending: History | None = None  # values of the current episode, learnt once it is over
    learned_end: float | None = None  # window_end of the latest window learnt from

    def policy_state(self) -> dict[str, Any]:
        """The policy bookkeeping that differs from a fresh key, for `to_state`."""
        out: dict[str, Any] = {}
        if self.fired_at is not None:
            out["fired_at"] = self.fired_at
        if self.runs != (None, None, None):
            out["runs"] = list(self.runs)
        if self.below:
            out["below"] = self.below
        if self.cooldown:
            out["cooldown"] = self.cooldown
        if self.before is not None:
            runs, below, cooldown = self.before
            out["before"] = [list(runs), below, cooldown]
        if self.history is not None:
            out["history"] = self.history.to_state()
        if self.pending is not None:
            out["pending"] = self.pending.to_state()
        if self.learned_end is not None:
            out["learned_end"] = self.learned_end
        return out

    def load_policy_state(self, entry: Mapping[str, Any]) -> None:
        if entry.get("fired_at") is not None:
            self.fired_at = float(entry["fired_at"])
        if "runs" in entry:
            self.runs = _runs(entry["runs"])
        self.below = int(entry.get("below", 0))
        self.cooldown = int(entry.get("cooldown", 0))
        if entry.get("before") is not None:
            runs, below, cooldown = entry["before"]
            self.before = (_runs(runs), int(below), int(cooldown))
        if entry.get("history") is not None:
            self.history = History.from_state(entry["history"])
        if entry.get("pending") is not None:
            self.pending = History.from_state(entry["pending"])
        if entry.get("learned_end") is not None:
            self.learned_end = float(entry["learned_end"])


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

    def __init__(self, *, final_only: bool = True, policy: AlertPolicy | None = None) -> None:
        self.final_only = final_only
        self.policy = policy
        self.keys: dict[AlertKey, KeyState] = {}
        # With a policy: window counts by hour (volume vs a day earlier) and the latest
        # window evaluated (staleness, and where periodic health events point).
        self.volume: History | None = None
        self.volume_end: float | None = None
        self.last: dict[str, Any] | None = None

    def observe(
        self,
        snapshot: Mapping[str, Any],
        emitted_at: float,
        context: AlertContext | None = None,
    ) -> list[dict[str, Any]]:
        """Alert events (DESIGN.md format) for the state changes ``snapshot`` brings.

        ``context`` (policy only): what the evaluator knows beside the snapshot, see
        `streams.alert_policy.AlertContext`.
        """
        # A performance window's final snapshot comes a label TTL (30 days) after it: its
        # provisional ones, as labels arrive, are what alerts are about.
        if (
            self.final_only
            and not snapshot.get("final", False)
            and snapshot.get("kind") != "performance"
        ):
            return []
        start = float(snapshot["window_start"])
        end = float(snapshot["window_end"])
        if self.policy is not None:
            return self._observe_with_policy(self.policy, snapshot, start, end, emitted_at, context)
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
            events.append(self._transition(obs, state, severity, start, end, emitted_at))
        for event in events:
            event["emitted_at"] = emitted_at
        return events

    def check_health(self, now: float, context: AlertContext | None = None) -> list[dict[str, Any]]:
        """``monitor_health`` events due at wall-clock time ``now`` with no new window.

        Call it periodically (every evaluator tick): it is the only way to notice that no
        window was evaluated for a while, and that firing alerts went unacknowledged. Needs
        a policy and at least one window observed before (else nothing to say).
        """
        if self.policy is None or self.last is None:
            return []
        last = self.last
        found = self.policy.health_observations(
            last["model"],
            last["model_version"],
            now,
            context,
            self.keys,
            last_observed_at=float(last["observed_at"]),
        )
        start, end = float(last["window_start"]), float(last["window_end"])
        events: list[dict[str, Any]] = []
        for obs in found:
            self._apply(self.policy, obs, start, end, now, events)
        for event in events:
            event["emitted_at"] = now
        return events

    def next_severity(self, previous: Severity, observation: Observation) -> Severity:
        """Without a policy: the observed severity (the policy's `next_level` refines it)."""
        return observation.severity

    def firing(self) -> dict[AlertKey, KeyState]:
        """The keys currently firing."""
        return {k: s for k, s in self.keys.items() if s.severity != Severity.NONE}

    def to_state(self) -> dict[str, Any]:
        keys = []
        for k, s in sorted(self.keys.items(), key=_sort_key):
            entry: dict[str, Any] = {
                "model": k.model,
                "model_version": k.model_version,
                "type": k.type,
                "feature": k.feature,
                "severity": str(s.severity),
                "window_end": s.window_end,
                "alert_id": s.alert_id,
                "since": s.since,
            }
            if k.check is not None:
                entry["check"] = k.check
            if k.segment is not None:
                entry["segment"] = k.segment
            entry.update(s.policy_state())
            keys.append(entry)
        state: dict[str, Any] = {"format": FORMAT, "keys": keys}
        if self.volume is not None:
            state["volume"] = self.volume.to_state()
            state["volume_end"] = self.volume_end
        if self.last is not None:
            state["last"] = dict(self.last)
        return state

    @classmethod
    def from_state(
        cls,
        state: Mapping[str, Any],
        *,
        final_only: bool = True,
        policy: AlertPolicy | None = None,
    ) -> AlertTracker:
        if state.get("format") != FORMAT:
            raise ValueError(f"alert state format {state.get('format')!r} is not {FORMAT!r}")
        tracker = cls(final_only=final_only, policy=policy)
        for entry in state["keys"]:
            feature, check, segment = entry["feature"], entry.get("check"), entry.get("segment")
            key = AlertKey(
                str(entry["model"]),
                str(entry["model_version"]),
                str(entry["type"]),
                None if feature is None else str(feature),
                None if check is None else str(check),
                None if segment is None else str(segment),
            )
            key_state = KeyState(
                severity=Severity.parse(entry["severity"]),
                window_end=float(entry["window_end"]),
                alert_id=entry.get("alert_id"),
                since=None if entry.get("since") is None else float(entry["since"]),
            )
            key_state.load_policy_state(entry)
            tracker.keys[key] = key_state
        if state.get("volume") is not None:
            tracker.volume = History.from_state(state["volume"])
            volume_end = state.get("volume_end")
            tracker.volume_end = None if volume_end is None else float(volume_end)
        if state.get("last") is not None:
            tracker.last = dict(state["last"])
        return tracker

    # -- with a policy ---------------------------------------------------------------------

    def _observe_with_policy(
        self,
        policy: AlertPolicy,
        snapshot: Mapping[str, Any],
        start: float,
        end: float,
        emitted_at: float,
        context: AlertContext | None,
    ) -> list[dict[str, Any]]:
        model, version = str(snapshot["model"]), str(snapshot["model_version"])
        events: list[dict[str, Any]] = []
        if snapshot.get("kind") == "performance":
            # Ground truth, on its own (longer) windows: no volume memory, no staleness or
            # coverage bookkeeping — those belong to the drift windows.
            for obs in policy.observations(snapshot, context):
                self._apply(policy, obs, start, end, emitted_at, events, learn=False)
            for event in events:
                event["emitted_at"] = emitted_at
            return events
        remembered = self._remember_volume(policy, snapshot, start, end)
        final = bool(snapshot.get("final", False))  # only final windows teach the history
        for obs in policy.observations(snapshot, context, volume_reference=remembered):
            self._apply(policy, obs, start, end, emitted_at, events, learn=final)
        if self.last is None or end >= float(self.last["window_end"]):
            self.last = {
                "model": model,
                "model_version": version,
                "window_start": start,
                "window_end": end,
                "observed_at": emitted_at,
            }
        health = policy.health_observations(
            model, version, emitted_at, context, self.keys, snapshot=snapshot
        )
        for obs in health:
            self._apply(policy, obs, start, end, emitted_at, events)
        for event in events:
            event["emitted_at"] = emitted_at
        return events

    def _apply(
        self,
        policy: AlertPolicy,
        obs: Observation,
        start: float,
        end: float,
        emitted_at: float,
        events: list[dict[str, Any]],
        *,
        learn: bool = True,
    ) -> None:
        state = self.keys.get(obs.key)
        if state is None:
            state = self.keys[obs.key] = KeyState(Severity.NONE, end)
        elif end < state.window_end:
            return  # an older window: never move the current state backwards
        correction = end == state.window_end and state.before is not None
        state.window_end = end
        obs = policy.adapt(obs, state.history)
        previous = state.severity
        severity = policy.next_level(state, obs, start, end, correction)
        if learn:
            policy.learn(state, obs, severity, end)
        if severity == previous:
            return
        if severity < previous:  # quote where the level it left ends
            threshold = policy.resolve_threshold(obs, previous)
        else:
            threshold = obs.thresholds.get(severity, math.nan)
        event = self._transition(obs, state, severity, start, end, emitted_at, threshold)
        events.append(event)

    def _remember_volume(
        self, policy: AlertPolicy, snapshot: Mapping[str, Any], start: float, end: float
    ) -> float | None:
        """This window's count a day earlier (mean over that hour), then remember this one."""
        if self.volume is None:
            self.volume = History(policy.volume_bucket_s, DAY + 2 * policy.volume_bucket_s)
        reference = self.volume.bucket_mean(start - DAY)
        count = snapshot.get("count")
        final = bool(snapshot.get("final", False))
        fresh = self.volume_end is None or end > self.volume_end
        if isinstance(count, int | float) and final and fresh:
            self.volume.add(start, float(count))
            self.volume_end = end
        return reference

    # -- shared ----------------------------------------------------------------------------

    def _transition(
        self,
        obs: Observation,
        state: KeyState,
        severity: Severity,
        start: float,
        end: float,
        emitted_at: float,
        threshold: float | None = None,
    ) -> dict[str, Any]:
        previous = state.severity
        if severity == Severity.NONE:
            alert_id = state.alert_id or obs.key.alert_id(state.since or start)
            event = _event(obs, "resolved", previous, alert_id, start, end, threshold)
            state.alert_id, state.since, state.fired_at = None, None, None
        else:
            state.alert_id, state.since = obs.key.alert_id(start), start
            state.fired_at = emitted_at
            # With a policy, a step down (critical -> warning) says where the old level ended.
            down = previous if threshold is not None and severity < previous else None
            event = _event(obs, "firing", severity, state.alert_id, start, end, threshold, down)
        state.severity = severity
        return event


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
    obs: Observation,
    status: str,
    severity: Severity,
    alert_id: str,
    start: float,
    end: float,
    threshold: float | None = None,
    stepped_down_from: Severity | None = None,
) -> dict[str, Any]:
    key = obs.key
    if threshold is None:
        # Firing quotes the band it entered; resolved, the lowest band, which it is now under.
        band = severity if status == "firing" else Severity.WARNING
        threshold = obs.thresholds.get(band, obs.thresholds.get(Severity.WARNING, math.nan))
    value, limit = _show(obs.value, obs.percent), _show(threshold, obs.percent)
    window = f"in window {_instant(start)} to {_instant(end)}"
    above, under = ("above", "under") if obs.higher_is_worse else ("below", "above")
    if status == "firing" and stepped_down_from is not None:
        was = f"was {stepped_down_from}, now {severity}"
        message = f"{obs.subject} is {value}, back {under} {limit} ({was}) {window}"
    elif status == "firing":
        message = f"{obs.subject} is {value} ({severity} {above} {limit}) {window}"
    else:
        message = f"{obs.subject} is {value}, back {under} {limit} (was {severity}) {window}"
    if obs.note:
        message += f"; {obs.note}"
    event: dict[str, Any] = {
        "alert_id": alert_id,
        "type": key.type,
        "severity": str(severity),
        "status": status,
        "model": key.model,
        "model_version": key.model_version,
        "feature": key.feature,
        "segment": key.segment,
        "metric": obs.metric,
        "value": obs.value,
        "threshold": threshold,
        "window_start": start,
        "window_end": end,
        "message": message,
        "runbook_url": f"docs/runbooks/{key.type.replace('_', '-')}.md",
    }
    if key.check is not None:
        event["check"] = key.check
    return event


def _has_value(x: object) -> bool:
    return isinstance(x, int | float) and not math.isnan(x)


def _show(x: float, percent: bool) -> str:
    if percent:
        return f"{x:.1%}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.2f}" if abs(x) >= 0.1 else f"{x:.2g}"


def _instant(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sort_key(item: tuple[AlertKey, KeyState]) -> tuple[str, str, str, str, str]:
    k = item[0]
    return (k.model, k.model_version, k.type, k.feature or "", (k.check or "") + (k.segment or ""))


def _runs(values: Any) -> Runs:
    a, b, c = (None if v is None else float(v) for v in values)
    return (a, b, c)
