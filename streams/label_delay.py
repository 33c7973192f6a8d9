"""How long ground truth took to arrive: a mergeable histogram of label delays.

The buckets are fixed (`DELAY_BUCKETS_S`, Prometheus ``le`` bounds), so partials from
partitions and panes merge by adding counts; the sum is exact (`streams.exact_sum`), so it
is the same to the last bit in any grouping, and the smallest and largest delay are kept to
bound the quantile estimates.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from streams.exact_sum import decode_counts, encode_counts, exact_add, exact_sum

FloatArray = npt.NDArray[np.float64]
CountArray = npt.NDArray[np.int64]
IndexArray = npt.NDArray[np.intp]

_HOUR, _DAY = 3_600.0, 86_400.0
#: Upper bounds of the label-delay buckets in seconds (1 s … 30 d), then ``+Inf``; also
#: the buckets of the ``ml_label_delay_seconds`` Prometheus histogram. The seconds at the
#: bottom are for clicks and the demo: without them every delay under a minute is one
#: bucket, and a median of 4 s reads as ~18 s.
DELAY_BUCKETS_S: tuple[float, ...] = (
    1.0,
    5.0,
    15.0,
    30.0,
    60.0,
    300.0,
    900.0,
    _HOUR,
    4 * _HOUR,
    12 * _HOUR,
    _DAY,
    3 * _DAY,
    7 * _DAY,
    14 * _DAY,
    30 * _DAY,
)
_BOUNDS = np.array(DELAY_BUCKETS_S)
#: Buckets, ``+Inf`` included.
N_BUCKETS = len(DELAY_BUCKETS_S) + 1


def bucket_labels() -> list[str]:
    """The ``le`` of each bucket as text, in order: ``"60"``, …, ``"2592000"``, ``"+Inf"``."""
    return [*(f"{b:.0f}" for b in DELAY_BUCKETS_S), "+Inf"]


def delay_buckets(delays: FloatArray) -> IndexArray:
    """Bucket of each finite, non-negative delay: the first whose bound it does not exceed."""
    return np.searchsorted(_BOUNDS, delays, side="left")


def clean_delays(delay_s: FloatArray) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Delays clipped at 0, and which rows have one.

    A label stamped before its prediction is clock skew between producers, not a label from
    the future: it counts as immediate. NaN and ±inf are no delay and are not counted.
    """
    d = np.asarray(delay_s, dtype=np.float64).reshape(-1)
    finite = np.isfinite(d)
    return np.maximum(d, 0.0), finite


class LabelDelay:
    """Counts of label delays per `DELAY_BUCKETS_S` bucket, their exact sum and range.

    A delay ``d`` counts in the first bucket with ``d <= le``, as in a Prometheus histogram.

    Examples
    --------
    >>> h = LabelDelay(); h.update_many(np.array([30.0, 60.0, 61.0, 90_000.0, np.nan]))
    >>> h.count, h.counts[3:6].tolist(), h.sum, h.quantile(0.5)  # le 30, 60 and 300
    (4, [1, 1, 1], 90151.0, 60.0)
    """

    __slots__ = ("_sum", "counts", "maximum", "minimum")

    def __init__(self) -> None:
        self.counts: CountArray = np.zeros(N_BUCKETS, dtype=np.int64)
        self._sum: list[float] = []
        self.minimum = math.inf
        self.maximum = -math.inf

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    @property
    def sum(self) -> float:
        return self._sum[0] if self._sum else 0.0

    def update_many(self, delay_s: FloatArray) -> None:
        """Count a batch of delays in seconds (see `clean_delays` for odd values)."""
        d, finite = clean_delays(delay_s)
        d = d[finite]
        if d.size == 0:
            return
        self.counts += np.bincount(delay_buckets(d), minlength=N_BUCKETS)
        self._sum = exact_add(d, self._sum)
        self.minimum = min(self.minimum, float(d.min()))
        self.maximum = max(self.maximum, float(d.max()))

    def merge(self, other: LabelDelay) -> None:
        self.counts += other.counts
        if other._sum:
            self._sum = exact_sum(other._sum, self._sum)
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)

    def quantile(self, q: float) -> float:
        """The ``q`` quantile, interpolated linearly in the bucket that holds rank ``q · n``.

        This is Prometheus' ``histogram_quantile``, except that the first bucket starts at the
        smallest delay seen rather than 0 and the ``+Inf`` bucket ends at the largest, so the
        estimate never leaves the observed range. It lies in the same bucket as the exact
        quantile, so it is off by at most that bucket's width. NaN when empty.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], not {q}")
        n = self.count
        if n == 0:
            return math.nan
        if q == 0.0:
            return self.minimum
        cumulative = np.cumsum(self.counts)
        rank = q * n
        i = int(np.searchsorted(cumulative, rank, side="left"))
        lower = DELAY_BUCKETS_S[i - 1] if i > 0 else self.minimum
        upper = DELAY_BUCKETS_S[i] if i < len(DELAY_BUCKETS_S) else self.maximum
        lower, upper = max(lower, self.minimum), min(upper, self.maximum)
        before = float(cumulative[i - 1]) if i > 0 else 0.0
        value = lower + (upper - lower) * (rank - before) / float(self.counts[i])
        return min(max(value, self.minimum), self.maximum)

    def prometheus_buckets(self) -> list[tuple[float, int]]:
        """Cumulative ``(le, count)`` pairs, ``+Inf`` last, for a Prometheus histogram."""
        cumulative = np.cumsum(self.counts).tolist()
        return list(zip((*DELAY_BUCKETS_S, math.inf), cumulative, strict=True))

    def summary(self, expected_s: float | None = None) -> dict[str, Any]:
        """The snapshot's ``label_delay``: count, sum, range, p50, p90, per-bucket counts."""
        empty = self.count == 0
        return {
            "count": self.count,
            "sum": self.sum,
            "min": math.nan if empty else self.minimum,
            "max": math.nan if empty else self.maximum,
            "p50": self.quantile(0.5),
            "p90": self.quantile(0.9),
            "expected": math.nan if expected_s is None else expected_s,
            "buckets": dict(zip(bucket_labels(), self.counts.tolist(), strict=True)),
        }

    def to_state(self) -> dict[str, Any]:
        """``{"c": counts, "s": exact sum, "lo", "hi"}``; ``{}`` when empty."""
        if not self.count:
            return {}
        return {
            "c": encode_counts(self.counts),
            "s": list(self._sum),
            "lo": self.minimum,
            "hi": self.maximum,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LabelDelay:
        h = cls()
        if state:
            h.counts = decode_counts(state["c"], N_BUCKETS)
            h._sum = [float(t) for t in state["s"]]
            h.minimum, h.maximum = float(state["lo"]), float(state["hi"])
        return h

    def __repr__(self) -> str:
        return f"LabelDelay(count={self.count}, sum={self.sum})"
