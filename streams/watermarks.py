"""Watermarks: how far event time has got, per partition and over all of them.

Idle partitions
---------------
A partition that receives nothing holds the minimum back forever. With ``idle_timeout_ms``
set, a partition whose last event arrived (by the wall clock, passed in as ``now_ms``) more
than ``idle_timeout_ms`` ago is *idle*: its frontier advances by the wall-clock time elapsed
since that last event, and it no longer holds the combined watermark back. This assumes that
event time keeps pace with the wall clock while nothing arrives, which holds for producers
whose delay is steady: when such a partition wakes up, its events are on time again. A
partition that has seen no event at all holds the combined watermark back until it has been
idle, counted from when it was assigned. When every partition is idle, the combined
watermark is the minimum over all of them, so the wall clock still closes the last windows
of a stream that stopped.
"""

from __future__ import annotations

from collections.abc import Iterable


class Watermark:
    """The event-time progress of one partition: its frontier, minus the grace.

    ``now_ms`` is the wall clock, passed in so that tests and replays control it; it is only
    needed when ``idle_timeout_ms`` is set. At construction it is when the partition was
    assigned, which starts the idle clock of a partition that never sees an event.

    Examples
    --------
    >>> w = Watermark(grace_ms=1_000, idle_timeout_ms=60_000, now_ms=0)
    >>> w.observe(50_000, now_ms=5_000); w.observe(42_000, now_ms=6_000); w.value
    49000
    >>> w.advance(now_ms=60_000); w.value  # idle for 54 s: not yet
    49000
    >>> w.advance(now_ms=70_000); w.value  # idle for 64 s: 50 s + 64 s - 1 s
    113000
    """

    __slots__ = ("_anchor", "_frontier", "_max_event", "_seen_at", "grace_ms", "idle_timeout_ms")

    def __init__(
        self, grace_ms: int = 0, *, idle_timeout_ms: int | None = None, now_ms: int | None = None
    ) -> None:
        if grace_ms < 0 or (idle_timeout_ms is not None and idle_timeout_ms < 0):
            raise ValueError("grace and idle timeout must be >= 0")
        self.grace_ms = grace_ms
        self.idle_timeout_ms = idle_timeout_ms
        self._max_event: int | None = None
        self._frontier: int | None = None
        self._anchor: int | None = None  # the frontier when the last event arrived
        self._seen_at = now_ms  # wall clock of the last event, or of the assignment

    @property
    def max_event_ms(self) -> int | None:
        """The largest event time observed."""
        return self._max_event

    @property
    def frontier(self) -> int | None:
        """The largest event time observed, or reached by idling."""
        return self._frontier

    @property
    def value(self) -> int | None:
        """The watermark: ``frontier - grace``; None before the first event."""
        return None if self._frontier is None else self._frontier - self.grace_ms

    def observe(self, ts_ms: int, now_ms: int | None = None) -> None:
        """Count an event at ``ts_ms`` that arrived at wall-clock ``now_ms``."""
        if now_ms is None:
            if self.idle_timeout_ms is not None:
                raise ValueError("a watermark with an idle timeout needs now_ms on every event")
        else:
            # Keep what idling gained before the anchor moves: the frontier never goes back.
            self.advance(now_ms)
            self._seen_at = now_ms
        if self._max_event is None or ts_ms > self._max_event:
            self._max_event = ts_ms
        if self._frontier is None or ts_ms > self._frontier:
            self._frontier = ts_ms
        self._anchor = self._frontier

    def is_idle(self, now_ms: int) -> bool:
        """True when nothing arrived for longer than the idle timeout."""
        return (
            self.idle_timeout_ms is not None
            and self._seen_at is not None
            and now_ms - self._seen_at > self.idle_timeout_ms
        )

    def advance(self, now_ms: int) -> None:
        """Apply the idle rule: an idle partition's frontier keeps pace with the wall clock."""
        if self._anchor is not None and self._seen_at is not None and self.is_idle(now_ms):
            reached = self._anchor + (now_ms - self._seen_at)
            if self._frontier is None or reached > self._frontier:
                self._frontier = reached

    def to_state(self) -> dict[str, int | None]:
        return {
            "grace_ms": self.grace_ms,
            "idle_timeout_ms": self.idle_timeout_ms,
            "max_event_ms": self._max_event,
            "frontier_ms": self._frontier,
            "anchor_ms": self._anchor,
            "seen_at_ms": self._seen_at,
        }

    @classmethod
    def from_state(cls, state: dict[str, int | None]) -> Watermark:
        w = cls(state["grace_ms"] or 0, idle_timeout_ms=state["idle_timeout_ms"])
        w._max_event = state["max_event_ms"]
        w._frontier = state["frontier_ms"]
        w._anchor = state["anchor_ms"]
        w._seen_at = state["seen_at_ms"]
        return w


def combine_watermarks(watermarks: Iterable[Watermark], now_ms: int) -> int | None:
    """The minimum watermark over the partitions that are not idle at ``now_ms``.

    A partition without a watermark yet that is not idle holds everything back (None). When
    every partition is idle, the minimum over all of them: with no traffic at all the wall
    clock still closes the last windows. Not monotone by itself; see `CombinedWatermark`.
    """
    active: list[int] = []
    idle: list[int] = []
    for w in watermarks:
        w.advance(now_ms)
        value = w.value
        if w.is_idle(now_ms):
            if value is not None:
                idle.append(value)
        elif value is None:
            return None
        else:
            active.append(value)
    if active:
        return min(active)
    return min(idle) if idle else None


class CombinedWatermark:
    """The watermark of a set of partitions, which only ever moves forward.

    Examples
    --------
    >>> c = CombinedWatermark(grace_ms=0, idle_timeout_ms=10_000)
    >>> c.assign(0, now_ms=0); c.assign(1, now_ms=0)
    >>> c.observe(0, 5_000, now_ms=1_000)
    >>> print(c.value(now_ms=2_000))  # partition 1 has seen nothing, but is not idle yet
    None
    >>> c.value(now_ms=11_000)  # partition 1 idle since its assignment: 0 alone decides
    5000
    >>> c.observe(1, 3_000, now_ms=11_500); c.value(now_ms=11_500)  # never back
    5000
    """

    __slots__ = ("_high", "_partitions", "grace_ms", "idle_timeout_ms")

    def __init__(self, grace_ms: int = 0, *, idle_timeout_ms: int | None = None) -> None:
        self.grace_ms = grace_ms
        self.idle_timeout_ms = idle_timeout_ms
        self._partitions: dict[int, Watermark] = {}
        self._high: int | None = None

    def assign(self, partition: int, now_ms: int | None = None) -> None:
        """Start tracking a partition (a no-op if it is tracked already)."""
        if partition not in self._partitions:
            self._partitions[partition] = Watermark(
                self.grace_ms, idle_timeout_ms=self.idle_timeout_ms, now_ms=now_ms
            )

    def revoke(self, partition: int) -> None:
        """Stop tracking a partition (rebalanced away): it no longer holds anything back."""
        self._partitions.pop(partition, None)

    def __getitem__(self, partition: int) -> Watermark:
        return self._partitions[partition]

    @property
    def partitions(self) -> list[int]:
        return sorted(self._partitions)

    def observe(self, partition: int, ts_ms: int, now_ms: int | None = None) -> None:
        """Count an event on ``partition``, tracking the partition if it is new."""
        self.assign(partition, now_ms)
        self._partitions[partition].observe(ts_ms, now_ms)

    def value(self, now_ms: int) -> int | None:
        """The combined watermark at wall-clock ``now_ms``; None until one is known."""
        combined = combine_watermarks(self._partitions.values(), now_ms)
        if combined is not None and (self._high is None or combined > self._high):
            self._high = combined
        return self._high
