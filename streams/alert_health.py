"""Health checks (``monitor_health``): is the monitor itself still watching this model?

`HealthPolicy` sets the thresholds (``None`` switches a check off); each check is its own
alert key (``check``: baseline_age, baseline_coverage, stale_window, unacknowledged), timed
by `HEALTH_TIMING` (facts, not noisy estimates: no delay, no hysteresis, no cooldown).

- ``baseline_age``: the baseline is older than 90 days (warning);
- ``baseline_coverage``: a window carries features the baseline does not know (the share of
  features covered falls below 100 %: warning, naming them);
- ``stale_window``: no window was evaluated for 15 minutes (warning) / an hour (critical),
  by the wall clock; only a periodic check (`AlertTracker.check_health`) can see it, and
  the next evaluated window ends it;
- ``unacknowledged``: warning / critical alerts have been firing for 24 h / 1 h without
  an acknowledgement (`AlertContext.acknowledged`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from streams.alert_config import DAY, HOUR, AlertContext, Bands, HealthPolicy, judge
from streams.alert_state import AlertKey, KeyState, Observation
from streams.severity import Severity


def health_observations(
    health: HealthPolicy,
    model: str,
    version: str,
    now: float,
    context: AlertContext,
    keys: Mapping[AlertKey, KeyState],
    *,
    snapshot: Mapping[str, Any] | None = None,
    last_observed_at: float | None = None,
) -> list[Observation]:
    """``monitor_health`` judgements at wall-clock time ``now``.

    With a snapshot (a window was just evaluated): baseline age, feature coverage,
    unacknowledged alerts, and a staleness of 0 (which ends a staleness alert). Without
    one (a periodic check): baseline age, unacknowledged alerts and the time since the
    last evaluated window, ``last_observed_at`` (wall clock).
    """
    h = health
    found: list[Observation] = []

    def check(name: str, value: float, bands: Bands, subject: str, **kw: Any) -> None:
        key = AlertKey(model, version, "monitor_health", None, name)
        found.append(judge(key, name, value, bands, subject, **kw))

    if context.baseline_created_at is not None and h.baseline_max_age_days is not None:
        age = (now - context.baseline_created_at) / DAY
        bands = Bands(None, h.baseline_max_age_days, h.baseline_critical_age_days)
        check("baseline_age", age, bands, "age of the baseline in days")
    if snapshot is not None and h.coverage:
        known = len(snapshot.get("features") or {})
        quality = snapshot.get("quality") or {}
        unknown = [str(n) for n in quality.get("unknown_feature_names") or []]
        coverage = known / (known + len(unknown)) if known + len(unknown) else 1.0
        note = f"features without a baseline: {', '.join(sorted(unknown)[:10])}"
        check(
            "baseline_coverage",
            coverage,
            Bands(None, 1.0, None, higher_is_worse=False),
            "share of the model's features covered by the baseline",
            percent=True,
            normal=1.0,
            note=note if unknown else "",
        )
    if h.stale_warning_s is not None or h.stale_critical_s is not None:
        if snapshot is not None:
            idle = 0.0
        elif last_observed_at is not None:
            idle = max(now - last_observed_at, 0.0)
        else:
            idle = math.nan
        if not math.isnan(idle):
            bands = Bands(None, h.stale_warning_s, h.stale_critical_s)
            check("stale_window", idle, bands, "seconds since a window was last evaluated")
    unacked = unacknowledged(h, now, context.acknowledged, keys)
    if unacked is not None:
        check(
            "unacknowledged",
            float(len(unacked)),
            Bands(None, 1.0, None),
            "alerts firing without acknowledgement",
            note="; ".join(unacked[:10]),
        )
    return found


def unacknowledged(
    health: HealthPolicy,
    now: float,
    acknowledged: frozenset[str],
    keys: Mapping[AlertKey, KeyState],
) -> list[str] | None:
    """The alerts firing past their limit with no acknowledgement (None: check off)."""
    after = {
        Severity.WARNING: health.unacknowledged_warning_s,
        Severity.CRITICAL: health.unacknowledged_critical_s,
    }
    if all(v is None for v in after.values()):
        return None
    found = []
    for key, state in sorted(keys.items(), key=lambda kv: _key_order(kv[0])):
        limit = after.get(state.severity)
        if key.type == "monitor_health" or limit is None or state.alert_id is None:
            continue
        if state.fired_at is None or state.alert_id in acknowledged:
            continue
        if now - state.fired_at >= limit:
            hours = (now - state.fired_at) / HOUR
            what = key.type if key.feature is None else f"{key.type} {key.feature}"
            found.append(f"{what} ({state.severity}, {hours:.1f} h, {state.alert_id})")
    return found


def _key_order(k: AlertKey) -> tuple[str, str, str, str, str]:
    return (k.model, k.model_version, k.type, k.feature or "", (k.check or "") + (k.segment or ""))
