"""Concept drift: online change detectors for a stream of per-prediction errors, and the verdict.

Data drift says the inputs moved; concept drift says the inputs mean something else now, so
the model is wrong on data that looks familiar. Two signals point at it: a change detector
on the joined stream of per-prediction errors (0/1 misclassifications, absolute errors),
and the classic check that performance fell while the inputs did not move.

The detectors follow river's shape: ``update(x) -> None``, then read ``drift_detected``
(true for the one update that found a change); ``to_state`` / ``from_state`` persist them as
small JSON-ready dicts. Unlike the counters in `streams.performance` they are sequential
and do not merge: run one per stream of errors, in arrival order. Non-finite values are
ignored.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

Mode = Literal["up", "down", "both"]


class PageHinkley:
    """The Page-Hinkley test for a change in the mean of a stream.

    With ``x̄_t`` the running mean, it accumulates ``m_T = α·m_{T-1} + (x_T − x̄_T − δ)`` and
    signals an increase when ``m_T − min_t m_t > λ`` (a decrease symmetrically, with ``+δ``
    and the maximum). ``δ`` is the magnitude of change that is tolerated, ``λ`` (the
    threshold) trades detection delay for false alarms, ``α`` slowly forgets the sum, and
    nothing is signalled before ``min_instances`` values. Defaults are river's. After a
    detection the test starts afresh. ``λ`` is in the units of ``x``: the default suits a
    0/1 error stream; scale it with the spread of other inputs.

    For an error stream only a rise is bad news: use ``mode="up"``.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(7)
    >>> ph = PageHinkley(mode="up")
    >>> errors = [float(rng.random() < 0.1) for _ in range(2000)]  # 10 % wrong, then 50 %
    >>> errors += [float(rng.random() < 0.5) for _ in range(500)]
    >>> for t, e in enumerate(errors):
    ...     ph.update(e)
    ...     if ph.drift_detected:
    ...         print(f"change detected at {t}")
    change detected at 2107

    References
    ----------
    Page, E. S. (1954). Continuous inspection schemes. Biometrika 41(1/2), 100–115.
    Mouss, H. et al. (2004). Test of Page-Hinkley, an approach for fault detection in an
    agro-alimentary production system. Asian Control Conference.
    """

    def __init__(
        self,
        min_instances: int = 30,
        delta: float = 0.005,
        threshold: float = 50.0,
        alpha: float = 1 - 0.0001,
        mode: Mode = "both",
    ) -> None:
        if mode not in ("up", "down", "both"):
            raise ValueError(f"mode must be 'up', 'down' or 'both', not {mode!r}")
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self.mode: Mode = mode
        self.n_detections = 0
        self._drift = False
        self._restart()

    def _restart(self) -> None:
        self.n = 0
        self.mean = 0.0
        self._sum_up = self._sum_down = 0.0
        self._min_up = math.inf
        self._max_down = -math.inf

    @property
    def drift_detected(self) -> bool:
        return self._drift

    @property
    def statistic(self) -> float:
        """The test value compared with the threshold (0 before the first value)."""
        if self.n == 0:
            return 0.0
        up, down = self._sum_up - self._min_up, self._max_down - self._sum_down
        return up if self.mode == "up" else down if self.mode == "down" else max(up, down)

    def update(self, x: float) -> None:
        self._drift = False
        if not math.isfinite(x):
            return
        self.n += 1
        self.mean += (x - self.mean) / self.n
        deviation = x - self.mean
        self._sum_up = self.alpha * self._sum_up + deviation - self.delta
        self._sum_down = self.alpha * self._sum_down + deviation + self.delta
        self._min_up = min(self._min_up, self._sum_up)
        self._max_down = max(self._max_down, self._sum_down)
        if self.n >= self.min_instances and self.statistic > self.threshold:
            self._drift = True
            self.n_detections += 1
            self._restart()

    def to_state(self) -> dict[str, Any]:
        return {
            "min_instances": self.min_instances,
            "delta": self.delta,
            "threshold": self.threshold,
            "alpha": self.alpha,
            "mode": self.mode,
            "n": self.n,
            "mean": self.mean,
            "sum_up": self._sum_up,
            "sum_down": self._sum_down,
            # ±inf (nothing seen yet) is not JSON.
            "min_up": self._min_up if self.n else None,
            "max_down": self._max_down if self.n else None,
            "drift": self._drift,
            "detections": self.n_detections,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PageHinkley:
        ph = cls(
            int(state["min_instances"]),
            float(state["delta"]),
            float(state["threshold"]),
            float(state["alpha"]),
            state["mode"],
        )
        ph.n = int(state["n"])
        ph.mean = float(state["mean"])
        ph._sum_up = float(state["sum_up"])
        ph._sum_down = float(state["sum_down"])
        if ph.n:
            ph._min_up = float(state["min_up"])
            ph._max_down = float(state["max_down"])
        ph._drift = bool(state["drift"])
        ph.n_detections = int(state["detections"])
        return ph


class ADWIN:
    """ADWIN (ADaptive WINdowing): a window that drops its past when the mean has changed.

    The window W is kept as an exponential histogram (ADWIN2): buckets of 1, 2, 4, …
    values, at most ``max_buckets`` of each size, each holding the sum and the sum of
    squared deviations of its values; two buckets of a full size merge into one of the
    next. Memory is O(max_buckets · log(|W| / max_buckets)) whatever the stream length.

    Every ``clock`` values (once |W| > ``grace_period``) each split of W at a bucket
    boundary into an older W0 and a newer W1, both at least ``min_window_length`` long, is
    tested; while some split has ``|μ̂0 − μ̂1| > ε_cut``, the oldest bucket is dropped, and
    the update that dropped any reports a drift. As in the paper's practical version,

        ε_cut = sqrt(2/m · σ²_W · ln(2/δ')) + 2/(3m) · ln(2/δ'),

    with m = 1 / (1/n0 + 1/n1) (the harmonic mean of the two lengths), σ²_W the variance
    of W and δ' = δ / ln |W|, since ADWIN2 tests O(log |W|) splits rather than |W|. MOA's
    and river's versions shrink m a little further (n − min_window_length + 1 for each n);
    this one keeps the paper's m. ``clock=1`` tests after every value, as the paper does;
    the default 32 (MOA's and river's) adds a delay of at most 31 values.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(7)
    >>> adwin = ADWIN()
    >>> errors = [float(rng.random() < 0.1) for _ in range(2000)]  # 10 % wrong, then 50 %
    >>> errors += [float(rng.random() < 0.5) for _ in range(500)]
    >>> for t, e in enumerate(errors):
    ...     adwin.update(e)
    ...     if adwin.drift_detected:
    ...         print(f"change detected at {t}, window now {adwin.width} long")
    change detected at 2047, window now 224 long
    change detected at 2079, window now 160 long
    change detected at 2271, window now 288 long

    References
    ----------
    Bifet, A. and Gavaldà, R. (2007). Learning from time-changing data with adaptive
    windowing. Proceedings of the 2007 SIAM International Conference on Data Mining, 443–448.
    """

    def __init__(
        self,
        delta: float = 0.002,
        clock: int = 32,
        max_buckets: int = 5,
        min_window_length: int = 5,
        grace_period: int = 10,
    ) -> None:
        if not 0 < delta < 1 or clock < 1 or max_buckets < 2 or min_window_length < 1:
            raise ValueError("need 0 < delta < 1, clock >= 1, max_buckets >= 2, min_window >= 1")
        self.delta = delta
        self.clock = clock
        self.max_buckets = max_buckets
        self.min_window_length = min_window_length
        self.grace_period = grace_period
        # rows[i]: buckets of 2**i values as (sum, sum of squared deviations), oldest first;
        # every bucket of row i+1 is older than every bucket of row i.
        self._rows: list[list[tuple[float, float]]] = []
        self.width = 0
        self.n_detections = 0
        self._tick = 0
        self._drift = False

    @property
    def drift_detected(self) -> bool:
        return self._drift

    @property
    def n_buckets(self) -> int:
        return sum(len(row) for row in self._rows)

    @property
    def estimation(self) -> float:
        """Mean of the values in the window (NaN when empty)."""
        return self._summary()[1] / self.width if self.width else math.nan

    @property
    def variance(self) -> float:
        """Population variance of the values in the window (NaN when empty)."""
        return self._summary()[2] / self.width if self.width else math.nan

    def update(self, x: float) -> None:
        self._drift = False
        if not math.isfinite(x):
            return
        self._insert(float(x))
        self._tick += 1
        if self._tick % self.clock or self.width <= self.grace_period:
            return
        while self._change_found():
            self._drop_oldest()
            self._drift = True
        self.n_detections += self._drift

    def _insert(self, x: float) -> None:
        if not self._rows:
            self._rows.append([])
        self._rows[0].append((x, 0.0))
        self.width += 1
        i = 0
        while len(self._rows[i]) > self.max_buckets:
            (t1, v1), (t2, v2) = self._rows[i][:2]
            del self._rows[i][:2]
            size = 2**i
            # Chan et al.: two halves of equal size s add s/2 · (μ1 − μ2)² to the deviations.
            merged = (t1 + t2, v1 + v2 + (t1 - t2) ** 2 / (2 * size))
            if i + 1 == len(self._rows):
                self._rows.append([])
            self._rows[i + 1].append(merged)
            i += 1

    def _drop_oldest(self) -> None:
        top = len(self._rows) - 1
        del self._rows[top][0]
        self.width -= 2**top
        if not self._rows[top]:
            self._rows.pop()

    def _buckets(self) -> list[tuple[int, float, float]]:
        """(size, sum, squared deviations) of every bucket, oldest first."""
        return [(2**i, t, v) for i in range(len(self._rows) - 1, -1, -1) for t, v in self._rows[i]]

    def _summary(self) -> tuple[int, float, float]:
        """Length, sum and squared deviations of the whole window (Chan et al.)."""
        n, total, mean, m2 = 0, 0.0, 0.0, 0.0
        for size, t, v in self._buckets():
            delta = t / size - mean
            n += size
            total += t
            mean += delta * size / n
            m2 += v + delta * delta * size * (n - size) / n
        return n, total, m2

    def _change_found(self) -> bool:
        n, total, m2 = self._summary()
        if n < 2 * self.min_window_length:
            return False
        variance = m2 / n
        log_term = math.log(2 * math.log(n) / self.delta)  # ln(2 / δ')
        n0, u0 = 0, 0.0
        for size, t, _ in self._buckets()[:-1]:
            n0 += size
            u0 += t
            n1 = n - n0
            if n1 < self.min_window_length:
                break
            if n0 < self.min_window_length:
                continue
            inv_m = 1 / n0 + 1 / n1
            epsilon = math.sqrt(2 * inv_m * variance * log_term) + 2 / 3 * inv_m * log_term
            if abs(u0 / n0 - (total - u0) / n1) > epsilon:
                return True
        return False

    def to_state(self) -> dict[str, Any]:
        return {
            "delta": self.delta,
            "clock": self.clock,
            "max_buckets": self.max_buckets,
            "min_window_length": self.min_window_length,
            "grace_period": self.grace_period,
            "rows": [[list(b) for b in row] for row in self._rows],
            "width": self.width,
            "tick": self._tick,
            "drift": self._drift,
            "detections": self.n_detections,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ADWIN:
        a = cls(
            float(state["delta"]),
            int(state["clock"]),
            int(state["max_buckets"]),
            int(state["min_window_length"]),
            int(state["grace_period"]),
        )
        a._rows = [[(float(t), float(v)) for t, v in row] for row in state["rows"]]
        a.width = int(state["width"])
        if a.width != sum(len(row) << i for i, row in enumerate(a._rows)):
            raise ValueError("ADWIN buckets do not add up to the window width")
        a._tick = int(state["tick"])
        a._drift = bool(state["drift"])
        a.n_detections = int(state["detections"])
        return a


class ConceptDriftVerdict(NamedTuple):
    """Whether a window shows concept drift, and why (for the alert message)."""

    drift: bool
    reason: str

    def __bool__(self) -> bool:
        return self.drift


def concept_drift_verdict(
    input_psi_max: float,
    performance_drop: float,
    *,
    psi_threshold: float = 0.1,
    drop_threshold: float = 5.0,
    detector_fired: bool = False,
    labelled: int | None = None,
    min_labelled: int = 100,
) -> ConceptDriftVerdict:
    """The classic check: performance fell while the inputs did not move → concept drift.

    ``input_psi_max`` is the largest PSI over the window's input features against the
    baseline; below ``psi_threshold`` (default 0.1, the end of the "no drift" band) the
    inputs count as stable. ``performance_drop`` is `PrimaryMetric.drop` of the window
    (points worse than the baseline); at ``drop_threshold`` or more (the warning level of
    ``accuracy_drop``), or when an error-stream detector fired (``detector_fired``),
    performance counts as fallen. A window with fewer than ``min_labelled`` labels, or with
    either figure unknown (NaN), never gives a verdict of drift.

    Concept drift means retraining, not a pipeline fix; when the inputs moved too, the
    ``data_drift`` alert already explains the drop and this one stays quiet.

    >>> verdict = concept_drift_verdict(0.03, 8.2)
    >>> bool(verdict), verdict.reason
    (True, 'inputs stable (max PSI 0.030 < 0.1) while performance fell 8.2 points')
    >>> bool(concept_drift_verdict(0.41, 8.2))
    False
    """
    if labelled is not None and labelled < min_labelled:
        return ConceptDriftVerdict(False, f"{labelled} labels, fewer than {min_labelled}")
    if math.isnan(input_psi_max):
        return ConceptDriftVerdict(False, "input drift unknown")
    if math.isnan(performance_drop) and not detector_fired:
        return ConceptDriftVerdict(False, "performance unknown")
    fell = detector_fired or performance_drop >= drop_threshold
    if not fell:
        return ConceptDriftVerdict(False, f"performance held (drop {performance_drop:.1f} points)")
    how = (
        f"performance fell {performance_drop:.1f} points"
        if not math.isnan(performance_drop) and performance_drop >= drop_threshold
        else "the error-rate detector signalled a change"
    )
    if input_psi_max >= psi_threshold:
        return ConceptDriftVerdict(
            False, f"inputs drifted (max PSI {input_psi_max:.3f}) and {how}: data drift"
        )
    return ConceptDriftVerdict(
        True, f"inputs stable (max PSI {input_psi_max:.3f} < {psi_threshold:g}) while {how}"
    )
