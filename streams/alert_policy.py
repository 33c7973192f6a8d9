"""The alert policy: when a window's figures become an alert, and when the alert ends.

`AlertPolicy` is configuration (one per model, overridable per feature, `to_dict` /
`from_dict` so it can live in the baseline, ``"alert_policy"``) plus the functions that
apply it; `streams.alert_state.AlertTracker(policy=...)` keeps the per-key state and emits
the events. The rules, with their defaults, live with the checks that apply them:

- `streams.alert_drift`: data_drift and prediction_drift (PSI bands info 0.05 / warning 0.1
  / critical 0.25, Benjamini–Hochberg over the window's tests at FDR 0.01, at least 200
  values), data_quality (the baseline's missing-rate bands);
- `streams.alert_performance`: accuracy_drop (2 / 5 points), latency (p95 200 / 500 ms),
  volume (against a day earlier and the baseline rate);
- `streams.alert_health`: monitor_health (baseline age and coverage, no window evaluated,
  alerts nobody acknowledged);
- `streams.alert_timing`: minimum duration, hysteresis and cooldown (`Timing`);
- `streams.alert_config`: the settings themselves (`Bands`, `Timing`, `FeaturePolicy`,
  `HealthPolicy`) and what the evaluator knows beside the snapshot (`AlertContext`).

A level is entered at ``value >= info / warning`` and ``value > critical`` (the
`streams.severity.Thresholds` convention), or below the threshold for bands where lower is
worse (volume drop, coverage).

Adaptive thresholds (`streams.adaptive`, applied here by `AlertPolicy.adapt` / `learn`):
per alert key, the history of the PSI raises the bands to ``mean + k·std`` of that history
(k 2, from 7 observations, 30 days kept in daily buckets), never below the static bands and
at most ``max_raise`` (3) times them. Values of an alert episode are held back and learnt
only once the episode is over, so a recurring pattern (the weekend mix) is learnt while a
persistent shift never teaches the threshold to ignore it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from streams.adaptive import AdaptiveConfig, History, adaptive_scale
from streams.alert_config import (
    HEALTH_TIMING,
    HOUR,
    AlertContext,
    Bands,
    FeaturePolicy,
    HealthPolicy,
    Timing,
    _check_keys,
    _real,
    _whole,
    band_level,
)
from streams.alert_drift import drift_observations
from streams.alert_health import health_observations
from streams.alert_outcomes import outcome_observations
from streams.alert_performance import (
    accuracy_observations,
    latency_observations,
    volume_observations,
)
from streams.alert_state import AlertKey, KeyState, Observation
from streams.alert_timing import hold_level, next_level, resolve_threshold
from streams.severity import Severity, Thresholds

__all__ = [
    "AlertContext",
    "AlertPolicy",
    "Bands",
    "FeaturePolicy",
    "HealthPolicy",
    "Timing",
    "hold_level",
    "resolve_threshold",
]


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
        if self.fdr is not None and not (_real(self.fdr) and 0.0 < self.fdr <= 1.0):
            raise ValueError(f"fdr must be in (0, 1] or null, not {self.fdr!r}")
        if not (_real(self.psi_info) and self.psi_info >= 0):
            raise ValueError("psi_info must be a non-negative number")
        for name in ("min_drift_count", "min_labelled", "min_latency_count"):
            if not _whole(getattr(self, name), 0):
                raise ValueError(f"{name} must be a whole number, not negative")
        if not (_real(self.min_volume_reference) and self.min_volume_reference >= 0):
            raise ValueError("min_volume_reference must be a non-negative number")
        if not (_real(self.volume_bucket_s) and self.volume_bucket_s > 0):
            raise ValueError("volume_bucket_s must be a positive number of seconds")
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

    # -- observations (the checks live in streams.alert_drift / _performance / _health) ---

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
        if snapshot.get("kind") == "performance":  # a performance window: ground truth only
            return [
                *accuracy_observations(self, model, version, snapshot, context),
                *outcome_observations(self, model, version, snapshot, context),
            ]
        return [
            *drift_observations(self, snapshot),
            *accuracy_observations(self, model, version, snapshot, context),
            *latency_observations(self, model, version, snapshot),
            *volume_observations(self, model, version, snapshot, context, volume_reference),
        ]

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
        """``monitor_health`` judgements at wall-clock time ``now`` (`streams.alert_health`)."""
        return health_observations(
            self.health,
            model,
            version,
            now,
            context or AlertContext(),
            keys,
            snapshot=snapshot,
            last_observed_at=last_observed_at,
        )

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
        """The key's severity after window [start, end) (`streams.alert_timing.next_level`)."""
        return next_level(self.timing_for(obs.key.type), state, obs, start, end, correction)

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
