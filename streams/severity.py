"""Severity levels and the thresholds that map a statistic onto them."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from enum import IntEnum
from typing import Any


class Severity(IntEnum):
    """Ordered so that ``max()`` of several levels is the overall one."""

    NONE = 0
    INFO = 1
    WARNING = 2
    CRITICAL = 3

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(str(s) for s in cls)
            raise ValueError(f"unknown severity {text!r}; expected one of {names}") from None


@dataclass(frozen=True)
class Thresholds:
    """Where a statistic stops being noise. Every value is configurable per model.

    PSI bands are the classic ones (< 0.1 none, 0.1–0.25 warning, > 0.25 critical). Missing
    values are judged by how much the missing rate *rose* over the baseline's, in points.
    """

    psi_warning: float = 0.1
    psi_critical: float = 0.25
    missing_warning: float = 0.05
    missing_critical: float = 0.20

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise ValueError(f"threshold {f.name} must be a non-negative number, not {v!r}")
        if self.psi_critical < self.psi_warning:
            raise ValueError("psi_critical must not be below psi_warning")
        if self.missing_critical < self.missing_warning:
            raise ValueError("missing_critical must not be below missing_warning")

    def psi_severity(self, value: float) -> Severity:
        return _band(value, self.psi_warning, self.psi_critical)

    def missing_severity(self, current_rate: float, reference_rate: float) -> Severity:
        return _band(current_rate - reference_rate, self.missing_warning, self.missing_critical)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Thresholds:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown threshold(s): {', '.join(unknown)}")
        return cls(**data)


def _band(value: float, warning: float, critical: float) -> Severity:
    if math.isnan(value):
        return Severity.NONE
    if value > critical:
        return Severity.CRITICAL
    if value >= warning:
        return Severity.WARNING
    return Severity.NONE
