"""Worker settings, read once from the environment.

Every variable is validated up front, so a typo stops the worker at start-up with the
variable's name, instead of surfacing as a strange window an hour later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from streams.durations import parse_duration

ENV_PREFIX = "UNDERTOW_"
STACK_RECORD = Path(".undertow") / "stack.json"


class SettingsError(ValueError):
    """An environment variable with a value undertow cannot use."""


@dataclass(frozen=True)
class Topics:
    """Topic names, all under one prefix (``UNDERTOW_TOPIC_PREFIX``, default ``undertow.``)."""

    prefix: str = "undertow."

    @property
    def predictions(self) -> str:
        return f"{self.prefix}predictions"

    @property
    def labels(self) -> str:
        return f"{self.prefix}labels"

    @property
    def metrics(self) -> str:
        return f"{self.prefix}metrics"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}alerts"

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}deadletter"


@dataclass(frozen=True)
class Settings:
    """What a worker needs to know; defaults are the production values of DESIGN.md."""

    kafka: str | None = None
    redis_url: str | None = None
    topics: Topics = field(default_factory=Topics)
    partitions: int = 8
    window_s: float = 300.0
    slide_s: float = 60.0
    grace_s: float = 60.0
    idle_timeout_s: float = 30.0
    flush_interval_s: float = 1.0
    metrics_port: int = 8000
    max_message_bytes: int = 1 << 20
    max_models: int = 100
    max_features: int = 200
    #: How long a prediction waits for its label (a baseline's ``label_ttl`` wins).
    label_ttl_s: float = 30 * 86_400.0
    #: How long a label that came before its prediction waits for it.
    label_hold_s: float = 600.0
    #: Performance windows (prediction event time): labels are scarce, so they are longer
    #: than drift windows; tumbling unless a slide is given.
    #: None: the whole number of drift slides nearest to an hour (at least one window).
    performance_window_s: float | None = None
    performance_slide_s: float | None = None
    #: A performance window with new labels is evaluated again at most this often.
    performance_refresh_s: float = 60.0
    #: Expected label delay when a baseline gives none (None: no label-delay alert).
    expected_label_delay_s: float | None = None

    @property
    def window_ms(self) -> int:
        return round(self.window_s * 1000)

    @property
    def slide_ms(self) -> int:
        return round(self.slide_s * 1000)

    @property
    def grace_ms(self) -> int:
        return round(self.grace_s * 1000)

    def label_ttl_ms(self, baseline_ttl_s: float | None) -> int:
        """How long a prediction waits for its label: the baseline's TTL, else the default."""
        return round((baseline_ttl_s or self.label_ttl_s) * 1000)

    @property
    def performance_window_ms(self) -> int:
        if self.performance_window_s is not None:
            return round(self.performance_window_s * 1000)
        slides = max(1, round(3_600_000 / self.slide_ms))
        return max(slides * self.slide_ms, self.window_ms)

    @property
    def performance_slide_ms(self) -> int:
        slide = self.performance_slide_s
        return self.performance_window_ms if slide is None else round(slide * 1000)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(ENV_PREFIX + name, "").strip()
            return value or None

        def duration(name: str, default: float) -> float:
            raw = get(name)
            if raw is None:
                return default
            try:
                return parse_duration(raw)
            except ValueError as exc:
                raise SettingsError(f"{ENV_PREFIX}{name}: {exc}") from None

        def optional_duration(name: str) -> float | None:
            return None if get(name) is None else duration(name, 0.0)

        def integer(name: str, default: int, low: int, high: int) -> int:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise SettingsError(
                    f"{ENV_PREFIX}{name}={raw!r}: expected a whole number"
                ) from None
            if not low <= value <= high:
                raise SettingsError(f"{ENV_PREFIX}{name}={value}: expected {low}..{high}")
            return value

        settings = cls(
            kafka=get("KAFKA"),
            redis_url=get("REDIS_URL"),
            topics=Topics(env.get(ENV_PREFIX + "TOPIC_PREFIX", "undertow.")),
            partitions=integer("PARTITIONS", 8, 1, 1024),
            window_s=duration("WINDOW", 300.0),
            slide_s=duration("SLIDE", 60.0),
            grace_s=duration("GRACE", 60.0),
            idle_timeout_s=duration("IDLE_TIMEOUT", 30.0),
            flush_interval_s=duration("FLUSH_INTERVAL", 1.0),
            metrics_port=integer("METRICS_PORT", 8000, 0, 65535),
            max_message_bytes=integer("MAX_MESSAGE_BYTES", 1 << 20, 1024, 64 << 20),
            max_models=integer("MAX_MODELS", 100, 1, 100_000),
            max_features=integer("MAX_FEATURES", 200, 1, 100_000),
            label_ttl_s=duration("LABEL_TTL", 30 * 86_400.0),
            label_hold_s=duration("LABEL_HOLD", 600.0),
            performance_window_s=optional_duration("PERFORMANCE_WINDOW"),
            performance_slide_s=optional_duration("PERFORMANCE_SLIDE"),
            performance_refresh_s=duration("PERFORMANCE_REFRESH", 60.0),
            expected_label_delay_s=optional_duration("EXPECTED_LABEL_DELAY"),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.slide_ms <= 0:
            raise SettingsError(f"{ENV_PREFIX}SLIDE must be positive")
        if self.window_ms < self.slide_ms or self.window_ms % self.slide_ms:
            raise SettingsError(
                f"{ENV_PREFIX}WINDOW ({self.window_s:g}s) must be a whole multiple of "
                f"{ENV_PREFIX}SLIDE ({self.slide_s:g}s): windows are built from slide-long panes"
            )
        perf, perf_slide = self.performance_window_ms, self.performance_slide_ms
        if perf_slide <= 0 or perf_slide % self.slide_ms or perf < perf_slide or perf % perf_slide:
            raise SettingsError(
                f"{ENV_PREFIX}PERFORMANCE_SLIDE ({perf_slide / 1000:g}s) must be a whole "
                f"multiple of {ENV_PREFIX}SLIDE ({self.slide_s:g}s), and "
                f"{ENV_PREFIX}PERFORMANCE_WINDOW ({perf / 1000:g}s) a whole multiple of it: "
                "performance panes are made of drift panes"
            )
        if self.label_ttl_s <= 0:
            raise SettingsError(f"{ENV_PREFIX}LABEL_TTL must be positive")
        if self.flush_interval_s <= 0:
            raise SettingsError(f"{ENV_PREFIX}FLUSH_INTERVAL must be positive")
