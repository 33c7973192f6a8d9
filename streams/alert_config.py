"""Alert policy settings: bands, timing, per-feature and health settings, and context.

Plain, serialisable objects (``to_dict`` / ``from_dict``), so a policy can live in a
baseline or in Redis; `streams.alert_policy` applies them. `judge` is where every check
(`streams.alert_drift`, `streams.alert_performance`, `streams.alert_health`) turns a value
and its bands into an `Observation`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from streams.alert_state import AlertKey, Observation
from streams.severity import Severity

if TYPE_CHECKING:
    from streams.baseline import Baseline


LEVELS = (Severity.INFO, Severity.WARNING, Severity.CRITICAL)
HOUR = 3600.0
DAY = 86_400.0


def _real(x: object) -> bool:
    """A finite int or float (not a bool, not text)."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _whole(x: object, low: int) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= low


@dataclass(frozen=True)
class Bands:
    """Where one statistic becomes info, warning and critical (None: level not used).

    >>> b = Bands(0.05, 0.1, 0.25)
    >>> [str(b.level(x)) for x in (0.02, 0.05, 0.1, 0.25, 0.26)]
    ['none', 'info', 'warning', 'warning', 'critical']
    >>> str(Bands(warning=0.5, critical=0.1, higher_is_worse=False).level(0.3))
    'warning'
    """

    info: float | None = None
    warning: float | None = None
    critical: float | None = None
    higher_is_worse: bool = True

    def __post_init__(self) -> None:
        present = [v for v in (self.info, self.warning, self.critical) if v is not None]
        for v in present:
            if not (isinstance(v, int | float) and math.isfinite(v)):
                raise ValueError(f"band threshold must be a finite number, not {v!r}")
        ordered = present if self.higher_is_worse else present[::-1]
        if ordered != sorted(ordered):
            word = "rise" if self.higher_is_worse else "fall"
            raise ValueError(f"band thresholds must {word} from info to critical: {self}")

    def thresholds(self) -> dict[Severity, float]:
        levels = zip(LEVELS, (self.info, self.warning, self.critical), strict=True)
        return {level: float(v) for level, v in levels if v is not None}

    def level(self, value: float) -> Severity:
        return band_level(value, self.thresholds(), self.higher_is_worse)

    def to_dict(self) -> dict[str, Any]:
        return {
            "info": self.info,
            "warning": self.warning,
            "critical": self.critical,
            "higher_is_worse": self.higher_is_worse,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Bands:
        _check_keys(cls, data, "band")
        return cls(**data)


@dataclass(frozen=True)
class Timing:
    """Minimum duration, hysteresis and cooldown, in windows of one alert key.

    ``for_*`` (the Prometheus ``for:``) counts windows of *distinct data*: the level must
    hold in every window of a run that reaches ``for_*`` windows sharing no row with each
    other. With tumbling windows that is ``for_*`` consecutive windows; with the default
    5-minute windows sliding by 1 minute, ``for_warning = 2`` is 6 consecutive windows
    (10 minutes of data). Counting overlapping windows would count one odd minute of data
    five times: in the stationary simulation that was where the remaining false warnings
    came from.

    Defaults, and why:

    - ``for_critical`` 1: a critical level has passed both the effect-size band and the
      significance test; waiting costs detection time on a page for little gain (the
      stationary simulations never reach critical above 200 rows a window).
    - ``for_warning`` / ``for_info`` 2: chat-level alerts can afford a second, independent
      window of evidence (5 more minutes at the defaults, the order of the Prometheus
      rules' ``for: 10m``), which removes the blips that survive the significance test.
    - ``resolve_ratio`` 0.8: the classic "resolve a 0.1 PSI warning below 0.08"; the gap is
      wider than the window-to-window noise of a level sitting on its threshold.
    - ``resolve_windows`` 1: hysteresis already stops flapping; resolving late only delays
      the all-clear.
    - ``cooldown_windows`` 5: one window length at the defaults, so an alert that comes back
      is about data the resolved one never saw; critical ignores the cooldown.
    """

    for_info: int = 2
    for_warning: int = 2
    for_critical: int = 1
    resolve_windows: int = 1
    cooldown_windows: int = 5
    resolve_ratio: float = 0.8

    def __post_init__(self) -> None:
        for name in ("for_info", "for_warning", "for_critical", "resolve_windows"):
            if not _whole(getattr(self, name), 1):
                raise ValueError(f"timing {name} must be a whole number of windows, at least 1")
        if not _whole(self.cooldown_windows, 0):
            raise ValueError("timing cooldown_windows must be a whole number, not negative")
        if not (_real(self.resolve_ratio) and 0.0 < self.resolve_ratio <= 1.0):
            raise ValueError("timing resolve_ratio must be in (0, 1]")

    def windows_for(self, level: Severity) -> int:
        if level == Severity.CRITICAL:
            return self.for_critical
        return self.for_warning if level == Severity.WARNING else self.for_info

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Timing:
        _check_keys(cls, data, "timing")
        return cls(**data)


#: Health checks are facts, not noisy estimates: no delay, no hysteresis, no cooldown.
HEALTH_TIMING = Timing(1, 1, 1, resolve_windows=1, cooldown_windows=0, resolve_ratio=1.0)


@dataclass(frozen=True)
class FeaturePolicy:
    """Per-feature overrides: PSI bands, adaptivity, membership of the multiple-testing family."""

    psi: Bands | None = None
    adaptive: bool | None = None
    multiple_testing: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "psi": None if self.psi is None else self.psi.to_dict(),
            "adaptive": self.adaptive,
            "multiple_testing": self.multiple_testing,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeaturePolicy:
        _check_keys(cls, data, "feature policy")
        psi = data.get("psi")
        return cls(
            psi=None if psi is None else Bands.from_dict(psi),
            adaptive=data.get("adaptive"),
            multiple_testing=bool(data.get("multiple_testing", True)),
        )


@dataclass(frozen=True)
class HealthPolicy:
    """Meta-monitoring thresholds (``None`` switches a check off)."""

    baseline_max_age_days: float | None = 90.0
    baseline_critical_age_days: float | None = None
    stale_warning_s: float | None = 900.0
    stale_critical_s: float | None = 3600.0
    coverage: bool = True
    unacknowledged_warning_s: float | None = DAY
    unacknowledged_critical_s: float | None = HOUR

    def __post_init__(self) -> None:
        # Checked here, not when a check runs: a typo in a baseline's policy must fail its
        # registration, not every evaluator tick.
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "coverage":
                if not isinstance(value, bool):
                    raise ValueError("health coverage must be true or false")
            elif value is not None and not (_real(value) and value > 0):
                raise ValueError(f"health {f.name} must be a positive number or null")
        for low, high in (
            ("baseline_max_age_days", "baseline_critical_age_days"),
            ("stale_warning_s", "stale_critical_s"),
        ):
            a, b = getattr(self, low), getattr(self, high)
            if a is not None and b is not None and a > b:
                raise ValueError(f"health {low} must not exceed {high}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HealthPolicy:
        _check_keys(cls, data, "health policy")
        return cls(**data)


@dataclass(frozen=True)
class AlertContext:
    """What the evaluator knows beside the snapshot (every field optional).

    ``baseline_created_at``: epoch seconds (baseline age check). ``task`` and
    ``baseline_performance``: the baseline's, for ``accuracy_drop``. ``baseline_rate``:
    expected events per second (volume vs the baseline rate). ``volume_day_ago``: the count
    of the same window one day earlier, model-wide if the evaluator has it (otherwise the
    tracker's own memory of this version's windows is used). ``acknowledged``: ids of the
    alerts someone acknowledged. ``cohort_accuracy``: the training data's accuracy per
    attribute and group, where the baseline has it (protected attributes), so a cohort is
    judged against its own past, not against the model as a whole.
    """

    baseline_created_at: float | None = None
    task: str | None = None
    baseline_performance: Mapping[str, float] = field(default_factory=dict)
    baseline_rate: float | None = None
    volume_day_ago: float | None = None
    acknowledged: frozenset[str] = frozenset()
    cohort_accuracy: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    @classmethod
    def from_baseline(
        cls,
        baseline: Baseline,
        *,
        acknowledged: Iterable[str] = (),
        baseline_rate: float | None = None,
        volume_day_ago: float | None = None,
    ) -> AlertContext:
        return cls(
            baseline_created_at=baseline.created_at,
            task=baseline.task,
            baseline_performance=dict(baseline.performance),
            baseline_rate=baseline_rate,
            volume_day_ago=volume_day_ago,
            acknowledged=frozenset(acknowledged),
            cohort_accuracy={
                attr: {
                    group: float(rates["accuracy"])
                    for group, rates in groups.items()
                    if isinstance(rates.get("accuracy"), int | float)
                }
                for attr, groups in baseline.fairness_reference.items()
            },
        )


def band_level(
    value: float, thresholds: Mapping[Severity, float], higher_is_worse: bool
) -> Severity:
    """The level ``value`` enters: ``>=`` info / warning and ``>`` critical (mirrored when
    lower is worse); NONE for NaN."""
    if math.isnan(value):
        return Severity.NONE
    for level in (Severity.CRITICAL, Severity.WARNING, Severity.INFO):
        limit = thresholds.get(level)
        if limit is None:
            continue
        strict = level == Severity.CRITICAL
        if higher_is_worse and (value > limit if strict else value >= limit):
            return level
        if not higher_is_worse and value < limit:
            return level
    return Severity.NONE


def judge(
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
    """``value`` judged by ``bands``: its level, or none when its test is not significant."""
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


def number(x: object) -> float | None:
    """``x`` as a float when it is a number other than NaN (null, NaN, text: None)."""
    if isinstance(x, int | float) and not isinstance(x, bool) and not math.isnan(x):
        return float(x)
    return None


def _check_keys(cls: type, data: Mapping[str, Any], what: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} setting(s): {', '.join(unknown)}")
