"""The alert policy: when a window's figures become an alert, and when the alert ends.

`AlertPolicy` is configuration (one per model, overridable per feature, `to_dict` /
`from_dict` so it can live in the baseline or in Redis) plus the pure functions that apply
it; `streams.alert_state.AlertTracker(policy=...)` keeps the per-key state and emits the
events. The rules, with their defaults:

Levels (`Bands`): info / warning / critical.
  - data_drift and prediction_drift on PSI: info from 0.05, warning from the snapshot's
    (the baseline's) ``psi_warning`` (0.1), critical above ``psi_critical`` (0.25).
  - accuracy_drop, in points below the baseline (`PrimaryMetric.drop`): warning from 2,
    critical above 5.
  - latency, p95 in ms: warning from 200, critical above 500.
  - volume, window count / reference count: warning below 0.5, critical below 0.1, warning
    above 3 (surge); the reference is the same window one day earlier and the baseline rate.
  - data_quality keeps the baseline's missing-rate bands (rise over the reference rate).
  A level is entered at ``value >= info / warning`` and ``value > critical`` (the
  `streams.severity.Thresholds` convention), or below the threshold for bands where lower
  is worse (volume drop, coverage).

Multiple testing (`fdr`, 0.01): a feature's PSI level counts only if its KS (numeric) or
  chi-square (categorical) p-value survives Benjamini–Hochberg at that false discovery
  rate across the window's features (`streams.multiple_testing`); the prediction's own test
  must have p <= fdr. The PSI level still decides the severity. A column without a p-value
  is judged by PSI alone.

Sample size (`min_drift_count`, 200): a column with fewer non-missing values in the window
  is no evidence either way (its key is left alone). Under ~200 rows the PSI of a 10-bin
  feature is 0.045 on average from sampling alone (9 / n), a 20-category one's 0.1, and
  chi-square p-values of sparse categories are too optimistic: at 100 rows a window the
  stationary simulation raised false criticals through both gates.

Adaptive thresholds (`streams.adaptive`): per alert key, the history of the PSI raises the
  bands to ``mean + k·std`` of that history (k 2, from 7 observations, 30 days kept in daily
  buckets), never below the static bands and at most ``max_raise`` (3) times them. Values of
  an alert episode are held back and learnt only once the episode is over, so a recurring
  pattern (the weekend mix) is learnt while a persistent shift never teaches the threshold
  to ignore it.

Timing (`Timing`, counted in evaluated windows of the key):
  - minimum duration (Prometheus ``for:``): info 2, warning 2, critical 1 windows of
    distinct data in a row (2 = 6 consecutive 5-minute windows sliding by 1 minute);
  - hysteresis: a level ends only when the value falls below ``normal + 0.8 · (threshold −
    normal)`` (PSI warning at 0.1 ends below 0.08; a volume drop warning at 0.5 ends above
    0.6; ``normal`` is 0 for PSI, drop and latency, the reference rate for missing values,
    1 for a volume ratio);
  - cooldown: for 5 windows after a resolve, nothing but critical fires again for that key.

Meta-monitoring (`HealthPolicy`): ``monitor_health`` alerts when the baseline is older
  than 90 days, when a window carries features the baseline does not know (coverage below
  100 %), when no window was evaluated for 15 minutes (warning) / an hour (critical), and
  when warning / critical alerts have fired for 24 h / 1 h without an acknowledgement.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from streams.adaptive import AdaptiveConfig, History, adaptive_scale
from streams.alert_state import AlertKey, KeyState, Observation
from streams.multiple_testing import bh_reject
from streams.performance.primary import primary_metric
from streams.severity import Severity, Thresholds

if TYPE_CHECKING:
    pass
from streams.alert_config import (
    DAY,
    HEALTH_TIMING,
    HOUR,
    LEVELS,
    AlertContext,
    Bands,
    FeaturePolicy,
    HealthPolicy,
    Timing,
    _check_keys,
    band_level,
)


@dataclass(frozen=True)
class AlertPolicy:
    """Per-model alert policy; see the module docstring for the rules and defaults."""

    psi_info: float = 0.05
    psi: Bands | None = None  # None: info from psi_info, warning/critical from the snapshot
    prediction_psi: Bands | None = None  # None: as ``psi``
    accuracy_drop: Bands = Bands(None, 2.0, 5.0)
    latency_p95_ms: Bands = Bands(None, 200.0, 500.0)
    volume_drop: Bands = Bands(None, 0.5, 0.1, higher_is_worse=False)
    volume_surge: Bands = Bands(None, 3.0, None)
    fdr: float | None = 0.01
    timing: Timing = Timing()
    timing_by_type: Mapping[str, Timing] = field(default_factory=dict)  # by alert type
    adaptive: AdaptiveConfig = field(default_factory=AdaptiveConfig)
    adaptive_types: tuple[str, ...] = ("data_drift", "prediction_drift")
    features: Mapping[str, FeaturePolicy] = field(default_factory=dict)
    min_drift_count: int = 200
    min_labelled: int = 100
    min_latency_count: int = 20
    min_volume_reference: float = 30.0
    volume_bucket_s: float = HOUR
    health: HealthPolicy = HealthPolicy()

    def __post_init__(self) -> None:
        if self.fdr is not None and not 0.0 < self.fdr <= 1.0:
            raise ValueError(f"fdr must be in (0, 1] or null, not {self.fdr!r}")
        if not (math.isfinite(self.psi_info) and self.psi_info >= 0):
            raise ValueError("psi_info must be a non-negative number")
        if self.volume_drop.higher_is_worse or not self.volume_surge.higher_is_worse:
            raise ValueError("volume_drop is judged low-is-worse and volume_surge high-is-worse")

    # -- configuration -------------------------------------------------------------------

    def timing_for(self, alert_type: str) -> Timing:
        """The type's own timing if set, else `HEALTH_TIMING` for monitor_health, else the
        policy's."""
        chosen = self.timing_by_type.get(alert_type)
        if chosen is not None:
            return chosen
        return HEALTH_TIMING if alert_type == "monitor_health" else self.timing

    def psi_bands(self, thresholds: Thresholds, feature: str | None = None) -> Bands:
        override = self.features.get(feature) if feature is not None else None
        if override is not None and override.psi is not None:
            return override.psi
        chosen = self.psi if feature is not None else (self.prediction_psi or self.psi)
        if chosen is not None:
            return chosen
        info = self.psi_info if self.psi_info < thresholds.psi_warning else None
        return Bands(info, thresholds.psi_warning, thresholds.psi_critical)

    def is_adaptive(self, alert_type: str, feature: str | None) -> bool:
        override = self.features.get(feature) if feature is not None else None
        if override is not None and override.adaptive is not None:
            return override.adaptive and self.adaptive.enabled
        return self.adaptive.enabled and alert_type in self.adaptive_types

    def to_dict(self) -> dict[str, Any]:
        return {
            "psi_info": self.psi_info,
            "psi": None if self.psi is None else self.psi.to_dict(),
            "prediction_psi": None
            if self.prediction_psi is None
            else self.prediction_psi.to_dict(),
            "accuracy_drop": self.accuracy_drop.to_dict(),
            "latency_p95_ms": self.latency_p95_ms.to_dict(),
            "volume_drop": self.volume_drop.to_dict(),
            "volume_surge": self.volume_surge.to_dict(),
            "fdr": self.fdr,
            "timing": self.timing.to_dict(),
            "timing_by_type": {k: t.to_dict() for k, t in sorted(self.timing_by_type.items())},
            "adaptive": self.adaptive.to_dict(),
            "adaptive_types": list(self.adaptive_types),
            "features": {k: f.to_dict() for k, f in sorted(self.features.items())},
            "min_drift_count": self.min_drift_count,
            "min_labelled": self.min_labelled,
            "min_latency_count": self.min_latency_count,
            "min_volume_reference": self.min_volume_reference,
            "volume_bucket_s": self.volume_bucket_s,
            "health": self.health.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertPolicy:
        """A policy from a (partial) dict: missing keys keep their defaults."""
        _check_keys(cls, data, "alert policy")
        kw: dict[str, Any] = {}
        for name in ("psi", "prediction_psi"):
            if name in data:
                kw[name] = None if data[name] is None else Bands.from_dict(data[name])
        for name in ("accuracy_drop", "latency_p95_ms", "volume_drop", "volume_surge"):
            if name in data:
                kw[name] = Bands.from_dict(data[name])
        for name in ("psi_info", "fdr", "min_drift_count", "min_labelled", "min_latency_count"):
            if name in data:
                kw[name] = data[name]
        for name in ("min_volume_reference", "volume_bucket_s"):
            if name in data:
                kw[name] = float(data[name])
        if "timing" in data:
            kw["timing"] = Timing.from_dict(data["timing"])
        if "timing_by_type" in data:
            kw["timing_by_type"] = {
                str(k): Timing.from_dict(v) for k, v in data["timing_by_type"].items()
            }
        if "adaptive" in data:
            kw["adaptive"] = AdaptiveConfig.from_dict(data["adaptive"])
        if "adaptive_types" in data:
            kw["adaptive_types"] = tuple(str(t) for t in data["adaptive_types"])
        if "features" in data:
            kw["features"] = {
                str(k): FeaturePolicy.from_dict(v) for k, v in data["features"].items()
            }
        if "health" in data:
            kw["health"] = HealthPolicy.from_dict(data["health"])
        return cls(**kw)

    # -- observations --------------------------------------------------------------------

    def observations(
        self,
        snapshot: Mapping[str, Any],
        context: AlertContext | None = None,
        *,
        volume_reference: float | None = None,
    ) -> list[Observation]:
        """Every judgement in a snapshot under this policy, before adaptivity and timing.

        ``volume_reference``: the count of the same window one day earlier as the tracker
        remembers it (``context.volume_day_ago`` wins when given).
        """
        context = context or AlertContext()
        model, version = str(snapshot["model"]), str(snapshot["model_version"])
        t = Thresholds.from_dict(snapshot.get("thresholds") or {})
        features: Mapping[str, Mapping[str, Any]] = snapshot.get("features") or {}
        tests = self._feature_tests(features)
        found: list[Observation] = []
        for name, entry in features.items():
            if self._judged(entry):
                significant, note = tests.get(name, (True, ""))
                found.append(
                    self._observation(
                        AlertKey(model, version, "data_drift", name),
                        "psi",
                        float(entry["psi"]),
                        self.psi_bands(t, name),
                        f"PSI of {name}",
                        significant=significant,
                        adaptive=self.is_adaptive("data_drift", name),
                        note=note,
                    )
                )
            if _has_value(entry.get("missing_rate")) and entry.get("count"):
                found.append(_missing_observation(model, version, name, entry, t))
        prediction = snapshot.get("prediction") or {}
        if self._judged(prediction):
            significant, note = self._single_test(prediction)
            found.append(
                self._observation(
                    AlertKey(model, version, "prediction_drift", None),
                    "psi",
                    float(prediction["psi"]),
                    self.psi_bands(t),
                    "PSI of the prediction",
                    significant=significant,
                    adaptive=self.is_adaptive("prediction_drift", None),
                    note=note,
                )
            )
        found += self._accuracy(model, version, snapshot, context)
        found += self._latency(model, version, snapshot)
        found += self._volume(model, version, snapshot, context, volume_reference)
        return found

    def health_observations(
        self,
        model: str,
        version: str,
        now: float,
        context: AlertContext | None,
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
        context = context or AlertContext()
        h = self.health
        found: list[Observation] = []

        def health(check: str, value: float, bands: Bands, subject: str, **kw: Any) -> None:
            key = AlertKey(model, version, "monitor_health", None, check)
            found.append(self._observation(key, check, value, bands, subject, **kw))

        if context.baseline_created_at is not None and h.baseline_max_age_days is not None:
            age = (now - context.baseline_created_at) / DAY
            bands = Bands(None, h.baseline_max_age_days, h.baseline_critical_age_days)
            health("baseline_age", age, bands, "age of the baseline in days")
        if snapshot is not None and h.coverage:
            known = len(snapshot.get("features") or {})
            quality = snapshot.get("quality") or {}
            unknown = [str(n) for n in quality.get("unknown_feature_names") or []]
            coverage = known / (known + len(unknown)) if known + len(unknown) else 1.0
            note = f"features without a baseline: {', '.join(sorted(unknown)[:10])}"
            health(
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
                health("stale_window", idle, bands, "seconds since a window was last evaluated")
        unacked = self._unacknowledged(now, context.acknowledged, keys)
        if unacked is not None:
            health(
                "unacknowledged",
                float(len(unacked)),
                Bands(None, 1.0, None),
                "alerts firing without acknowledgement",
                note="; ".join(unacked[:10]),
            )
        return found

    # -- adaptivity, timing, learning (called by AlertTracker with the key's state) -------

    def adapt(self, obs: Observation, history: History | None) -> Observation:
        """``obs`` with its bands raised by the key's history (see `streams.adaptive`)."""
        if not obs.adaptive or history is None:
            return obs
        static_warning = obs.thresholds.get(Severity.WARNING, math.nan)
        scale = adaptive_scale(history, self.adaptive, static_warning)
        if scale == 1.0:
            return obs
        thresholds = {level: v * scale for level, v in obs.thresholds.items()}
        level = band_level(obs.value, thresholds, obs.higher_is_worse)
        why = (
            f"bands raised x{scale:.2f} by this key's history "
            f"(mean {history.mean:.3g} + {self.adaptive.k:g} std {history.std:.3g}, "
            f"{history.n} windows)"
        )
        note = f"{obs.note}; {why}" if obs.note else why
        severity = level if obs.significant else Severity.NONE
        return replace(obs, thresholds=thresholds, severity=severity, note=note)

    def resolve_threshold(self, obs: Observation, level: Severity) -> float:
        """Where ``level`` ends for ``obs`` under this policy's hysteresis."""
        return resolve_threshold(obs, level, self.timing_for(obs.key.type).resolve_ratio)

    def next_level(
        self, state: KeyState, obs: Observation, start: float, end: float, correction: bool
    ) -> Severity:
        """The key's severity after window [start, end): minimum duration, hysteresis, cooldown.

        ``state.severity`` is the level currently firing; the window bookkeeping (where the
        current run at each level began, windows below the resolve threshold, cooldown
        left) is updated in ``state``. A corrected re-evaluation of the latest window
        (``correction``) replaces that window's contribution instead of adding a window.
        """
        timing = self.timing_for(obs.key.type)
        if correction and state.before is not None:
            runs, below, cooldown = state.before
        else:
            runs, below, cooldown = state.runs, state.below, state.cooldown
            state.before = (runs, below, cooldown)
        raised = obs.severity
        info, warning, critical = (
            (first if first is not None else end) if raised >= lv else None
            for first, lv in zip(runs, LEVELS, strict=True)
        )
        runs = (info, warning, critical)
        current = state.severity
        hold = min(hold_level(obs, timing.resolve_ratio), current)
        new = current
        ready = [
            lv
            for lv, first in zip(LEVELS, runs, strict=True)
            if lv > current
            and lv in obs.thresholds
            and _held(first, timing.windows_for(lv), start, end)
            and (cooldown == 0 or lv == Severity.CRITICAL)
        ]
        if ready:
            new, below = max(ready), 0
        elif hold < current:
            below += 1
            if below >= timing.resolve_windows:
                new, below = hold, 0
        else:
            below = 0
        cooldown = max(cooldown - 1, 0)
        if new == Severity.NONE and current != Severity.NONE:
            cooldown = timing.cooldown_windows
        state.runs, state.below, state.cooldown = runs, below, cooldown
        return new

    def learn(self, state: KeyState, obs: Observation, severity: Severity, at: float) -> None:
        """Feed the key's history with this window's value (once per window end ``at``).

        A value at warning or above (by the adapted bands) or seen while the key fires at
        warning or above is held back in ``state.pending``; once the key is calm again the
        whole episode joins the history.
        """
        if not obs.adaptive or (state.learned_end is not None and at <= state.learned_end):
            return
        state.learned_end = at
        if state.history is None:
            state.history = History.for_config(self.adaptive)
        unusual = band_level(obs.value, obs.thresholds, obs.higher_is_worse) >= Severity.WARNING
        if unusual or severity >= Severity.WARNING:
            if state.pending is None:
                state.pending = History.for_config(self.adaptive)
            state.pending.add(at, obs.value)
            return
        if state.pending is not None:
            state.history.merge(state.pending)
            state.pending = None
        state.history.add(at, obs.value)

    # -- helpers -------------------------------------------------------------------------

    def _observation(
        self,
        key: AlertKey,
        metric: str,
        value: float,
        bands: Bands,
        subject: str,
        *,
        significant: bool = True,
        adaptive: bool = False,
        note: str = "",
        percent: bool = False,
        normal: float = 0.0,
    ) -> Observation:
        level = bands.level(value)
        return Observation(
            key,
            level if significant else Severity.NONE,
            metric,
            value,
            bands.thresholds(),
            subject,
            percent=percent,
            normal=normal,
            higher_is_worse=bands.higher_is_worse,
            significant=significant,
            adaptive=adaptive,
            note=note,
        )

    def _feature_tests(
        self, features: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, tuple[bool, str]]:
        """Per feature: does its test survive Benjamini–Hochberg, and the note saying so."""
        if self.fdr is None:
            return {}
        family: list[tuple[str, str, float]] = []
        for name, entry in features.items():
            override = self.features.get(name)
            if override is not None and not override.multiple_testing:
                continue
            test, p = _pvalue(entry)
            if test is not None and self._judged(entry):
                family.append((name, test, p))
        if not family:
            return {}
        rejected = bh_reject(np.array([p for _, _, p in family]), self.fdr)
        m = len(family)
        return {
            name: (
                bool(ok),
                f"{test} p-value {p:.2g}, "
                f"{'significant' if ok else 'not significant'} at FDR {self.fdr:g} "
                f"over {m} features",
            )
            for (name, test, p), ok in zip(family, rejected, strict=True)
        }

    def _judged(self, entry: Mapping[str, Any]) -> bool:
        """A PSI, over at least ``min_drift_count`` non-missing values (fewer: no evidence)."""
        if not _has_value(entry.get("psi")):
            return False
        count = _number(entry.get("count"))
        if count is None:
            return True  # a snapshot that does not say: judge it
        missing = _number(entry.get("missing_rate")) or 0.0
        return count * (1.0 - missing) >= self.min_drift_count - 1e-9

    def _single_test(self, entry: Mapping[str, Any]) -> tuple[bool, str]:
        test, p = _pvalue(entry)
        if self.fdr is None or test is None:
            return True, ""
        ok = p <= self.fdr
        return ok, f"{test} p-value {p:.2g}, {'' if ok else 'not '}significant at {self.fdr:g}"

    def _accuracy(
        self, model: str, version: str, snapshot: Mapping[str, Any], context: AlertContext
    ) -> list[Observation]:
        performance = snapshot.get("performance") or {}
        if context.task not in ("binary", "multiclass", "regression"):
            return []
        metric = primary_metric(context.task)  # type: ignore[arg-type]
        base = _number(context.baseline_performance.get(metric.name))
        current = _number(performance.get(metric.name))
        labelled = _number(performance.get("labelled"))
        if base is None or current is None or labelled is None or labelled < self.min_labelled:
            return []
        drop = metric.drop(base, current)
        if math.isnan(drop):
            return []
        subject = f"drop of {metric.name} from the baseline's {base:.4g}, in points"
        key = AlertKey(model, version, "accuracy_drop", None)
        note = f"{metric.name} {current:.4g} over {labelled:.0f} labelled predictions"
        return [
            self._observation(
                key, f"{metric.name}_drop", drop, self.accuracy_drop, subject, note=note
            )
        ]

    def _latency(self, model: str, version: str, snapshot: Mapping[str, Any]) -> list[Observation]:
        latency = snapshot.get("latency") or {}
        p95, count = _number(latency.get("p95")), _number(latency.get("count")) or 0.0
        if p95 is None or count < self.min_latency_count:
            return []
        key = AlertKey(model, version, "latency", None)
        return [
            self._observation(key, "latency_p95_ms", p95, self.latency_p95_ms, "p95 latency in ms")
        ]

    def _volume(
        self,
        model: str,
        version: str,
        snapshot: Mapping[str, Any],
        context: AlertContext,
        remembered: float | None,
    ) -> list[Observation]:
        count = _number(snapshot.get("count"))
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
            if ref is None or not ref >= self.min_volume_reference:
                continue
            ratio = count / ref
            bands = self.volume_drop if ratio < 1.0 else self.volume_surge
            obs = self._observation(
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

    def _unacknowledged(
        self, now: float, acknowledged: frozenset[str], keys: Mapping[AlertKey, KeyState]
    ) -> list[str] | None:
        h = self.health
        after = {
            Severity.WARNING: h.unacknowledged_warning_s,
            Severity.CRITICAL: h.unacknowledged_critical_s,
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


def _held(first_end: float | None, windows: int, start: float, end: float) -> bool:
    """Has a run that began with a window ending at ``first_end`` lasted ``windows``
    windows of distinct data, now that it reaches window [start, end)?

    With tumbling windows that is ``windows`` consecutive windows; with sliding ones the
    run must reach a window that shares no row with the run's first (2 windows), or starts
    a whole window length after that (3), and so on: a single odd pane seen by several
    overlapping windows is still one window's worth of evidence.
    """
    if first_end is None:
        return False
    if windows <= 1:
        return True
    return start >= first_end + (windows - 2) * (end - start) - 1e-9


def resolve_threshold(obs: Observation, level: Severity, ratio: float) -> float:
    """Where ``level`` ends for this observation: ``normal + ratio · (threshold − normal)``."""
    limit = obs.thresholds.get(level, math.nan)
    return obs.normal + ratio * (limit - obs.normal)


def hold_level(obs: Observation, ratio: float) -> Severity:
    """The highest level whose resolve threshold ``obs.value`` has not fallen past."""
    if math.isnan(obs.value):
        return Severity.CRITICAL  # no evidence either way: hold (callers skip NaN anyway)
    for level in (Severity.CRITICAL, Severity.WARNING, Severity.INFO):
        if level not in obs.thresholds:
            continue
        limit = resolve_threshold(obs, level, ratio)
        if obs.value >= limit if obs.higher_is_worse else obs.value < limit:
            return level
    return Severity.NONE


def _missing_observation(
    model: str, version: str, name: str, entry: Mapping[str, Any], t: Thresholds
) -> Observation:
    base = _number(entry.get("reference_missing_rate")) or 0.0
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


def _pvalue(entry: Mapping[str, Any]) -> tuple[str | None, float]:
    for test, field_name in (("KS", "ks_pvalue"), ("chi-square", "chi2_pvalue")):
        p = _number(entry.get(field_name))
        if p is not None:
            return test, min(max(p, 0.0), 1.0)
    return None, math.nan


def _has_value(x: object) -> bool:
    return _number(x) is not None


def _number(x: object) -> float | None:
    """``x`` as a float when it is a number other than NaN (null, NaN, text: None)."""
    if isinstance(x, int | float) and not isinstance(x, bool) and not math.isnan(x):
        return float(x)
    return None


def _key_order(k: AlertKey) -> tuple[str, str, str, str, str]:
    return (k.model, k.model_version, k.type, k.feature or "", k.check or "")
