"""Adaptive thresholds: what a statistic usually looks like for this model and feature.

A feature whose PSI wobbles every weekend (another customer mix, a holiday) is not drifting
in any way that needs a human; static bands page on it every Saturday. `History` keeps the
recent values of one statistic as count, mean and sum of squared deviations per time bucket
(Chan et al.'s mergeable moments), so it is small (one triple per bucket: 30 daily buckets
for the default 30-day horizon, whatever the window rate), serialisable and mergeable, and
`adaptive_scale` turns it into how far the static bands are raised.

The rule (`adaptive_scale`): with at least ``min_observations`` values in the history, the
adaptive level is ``A = mean + k · std`` (sample std). The bands are multiplied by
``clamp(A / static_warning, 1, max_raise)``: the warning level becomes ``max(static, A)``,
info and critical move in proportion. So adaptivity only ever *raises* the bar, never below
the static bands (a flat history cannot make noise alert), and at most ``max_raise`` times
(a noisy feature cannot hide a real shift of any size).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

DAY = 86_400.0


@dataclass(frozen=True)
class AdaptiveConfig:
    """How the history of a statistic raises its static thresholds.

    ``k``: how many standard deviations above the mean count as unusual (2). ``min_observations``:
    values needed before the history takes over from the static bands (7). ``horizon_s``: how
    far back the history reaches (30 days). ``bucket_s``: its time resolution (1 day; the
    horizon is dropped a bucket at a time). ``max_raise``: the most the bands can be
    multiplied by (3: a PSI warning never needs more than 0.3, a critical more than 0.75).
    """

    enabled: bool = True
    k: float = 2.0
    min_observations: int = 7
    horizon_s: float = 30 * DAY
    bucket_s: float = DAY
    max_raise: float = 3.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.k) and self.k >= 0):
            raise ValueError(f"adaptive k must be a non-negative number, not {self.k!r}")
        if self.min_observations < 2:
            raise ValueError("adaptive min_observations must be at least 2 (a std needs two)")
        if not (self.bucket_s > 0 and self.horizon_s >= self.bucket_s):
            raise ValueError("adaptive bucket_s must be positive and horizon_s at least one bucket")
        if not self.max_raise >= 1.0:
            raise ValueError("adaptive max_raise must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AdaptiveConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown adaptive setting(s): {', '.join(unknown)}")
        return cls(**data)


class History:
    """Count, mean and spread of a statistic per time bucket, over a bounded horizon.

    Examples
    --------
    >>> h = History(bucket_s=3600.0, horizon_s=2 * 3600.0)
    >>> for t, x in [(0, 1.0), (10, 3.0), (3600, 2.0), (7300, 4.0)]:
    ...     h.add(t, x)
    >>> h.n, h.mean, len(h.buckets)  # the first hour fell out of the 2-hour horizon
    (2, 3.0, 2)
    >>> round(h.std, 6)
    1.414214
    >>> other = History(bucket_s=3600.0, horizon_s=2 * 3600.0); other.add(7400, 6.0)
    >>> h.merge(other); h.n, h.mean
    (3, 4.0)
    >>> History.from_state(h.to_state()).to_state() == h.to_state()
    True
    """

    __slots__ = ("bucket_s", "buckets", "horizon_s")

    def __init__(self, bucket_s: float = DAY, horizon_s: float = 30 * DAY) -> None:
        if not (bucket_s > 0 and horizon_s >= bucket_s):
            raise ValueError("bucket_s must be positive and horizon_s at least one bucket")
        self.bucket_s = float(bucket_s)
        self.horizon_s = float(horizon_s)
        # bucket index -> [n, mean, m2]
        self.buckets: dict[int, list[float]] = {}

    @classmethod
    def for_config(cls, config: AdaptiveConfig) -> History:
        return cls(config.bucket_s, config.horizon_s)

    def add(self, t: float, value: float) -> None:
        """Count ``value`` observed at time ``t`` (epoch seconds); NaN and ±inf are ignored."""
        if not math.isfinite(value):
            return
        _merge_into(self.buckets, self._index(t), [1.0, float(value), 0.0])
        self._prune()

    def merge(self, other: History) -> None:
        """Add every value ``other`` holds (same bucket size required)."""
        if other.bucket_s != self.bucket_s:
            raise ValueError("histories with different bucket sizes do not merge")
        for index, triple in other.buckets.items():
            _merge_into(self.buckets, index, list(triple))
        self._prune()

    def clear(self) -> None:
        self.buckets.clear()

    @property
    def n(self) -> int:
        return int(sum(b[0] for b in self.buckets.values()))

    @property
    def mean(self) -> float:
        return self._total()[1]

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof = 1): with few values, the wider estimate."""
        n, _, m2 = self._total()
        return math.sqrt(m2 / (n - 1)) if n >= 2 else math.nan

    def bucket_mean(self, t: float) -> float | None:
        """Mean of the values in the bucket holding time ``t``, None when it has none."""
        triple = self.buckets.get(self._index(t))
        return None if triple is None or triple[0] == 0 else triple[1]

    def to_state(self) -> dict[str, Any]:
        return {
            "bucket_s": self.bucket_s,
            "horizon_s": self.horizon_s,
            "buckets": [[i, int(b[0]), b[1], b[2]] for i, b in sorted(self.buckets.items())],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> History:
        h = cls(float(state["bucket_s"]), float(state["horizon_s"]))
        for i, n, mean, m2 in state["buckets"]:
            h.buckets[int(i)] = [float(n), float(mean), float(m2)]
        return h

    def _index(self, t: float) -> int:
        return math.floor(t / self.bucket_s)

    def _prune(self) -> None:
        if not self.buckets:
            return
        keep = math.ceil(self.horizon_s / self.bucket_s)
        newest = max(self.buckets)
        for index in [i for i in self.buckets if i <= newest - keep]:
            del self.buckets[index]

    def _total(self) -> tuple[float, float, float]:
        n, mean, m2 = 0.0, 0.0, 0.0
        for bn, bmean, bm2 in self.buckets.values():
            n, mean, m2 = _chan(n, mean, m2, bn, bmean, bm2)
        return n, (mean if n else math.nan), m2


def adaptive_scale(history: History | None, config: AdaptiveConfig, static_warning: float) -> float:
    """How much the static bands are multiplied by: ``clamp(A / static_warning, 1, max_raise)``.

    ``A = mean + k · std`` of the history; 1 while it holds fewer than ``min_observations``
    values, when adaptivity is off, or when the static warning level is not positive.

    >>> h = History()
    >>> for day in range(10):
    ...     h.add(day * DAY, 0.10 + 0.02 * (day % 2))  # a feature that is always near 0.1
    >>> round(adaptive_scale(h, AdaptiveConfig(), static_warning=0.1), 3)  # 0.11 + 2 · 0.0105
    1.311
    >>> adaptive_scale(h, AdaptiveConfig(min_observations=20), static_warning=0.1)
    1.0
    """
    if history is None or not config.enabled or not static_warning > 0:
        return 1.0
    n, mean, m2 = history._total()
    if n < config.min_observations:
        return 1.0
    level = mean + config.k * math.sqrt(m2 / (n - 1))
    return min(max(level / static_warning, 1.0), config.max_raise)


def _merge_into(buckets: dict[int, list[float]], index: int, triple: list[float]) -> None:
    current = buckets.get(index)
    if current is None:
        buckets[index] = triple
    else:
        buckets[index] = list(_chan(*current, *triple))


def _chan(
    n1: float, mean1: float, m21: float, n2: float, mean2: float, m22: float
) -> tuple[float, float, float]:
    """Moments of the union of two samples (Chan, Golub, LeVeque 1979)."""
    if n2 == 0:
        return n1, mean1, m21
    if n1 == 0:
        return n2, mean2, m22
    n = n1 + n2
    delta = mean2 - mean1
    return n, mean1 + delta * n2 / n, m21 + m22 + delta * delta * n1 * n2 / n
