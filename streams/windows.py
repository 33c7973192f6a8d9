"""Event-time windows and watermarks, in integer milliseconds.

Windows
-------
A `WindowSpec` describes hopping windows ``[start, start + size)`` whose starts are multiples
of ``slide``, with ``size`` a multiple of ``slide``. Every window is then the union of
``size / slide`` consecutive tumbling *panes* ``[k * slide, (k + 1) * slide)``, and every pane
lies in exactly ``size / slide`` windows. State is kept per pane (one mergeable partial each)
and a window's figures merge its panes, so an event is counted once however much the windows
overlap. Tumbling windows are the case ``slide == size``.

Watermarks
----------
A partition's *frontier* is the largest event time it has seen; its *watermark* is the
frontier minus the grace period. Over several partitions the watermark is the minimum over
the active ones (`CombinedWatermark`): a window is complete only once every partition has
passed it. Watermarks never move backwards. For a window ``[s, e)``:

- it is *due* once ``e <= watermark + grace`` (the frontier has passed its end): the evaluator
  computes it and emits a provisional result. See `due_windows`.
- it is *closed* once ``e <= watermark``: the grace is over, the result is final, and a pane
  can be dropped once the last window containing it is closed. See `closed_windows`.

Both lists come from two successive watermarks, so each window is due once and closed once,
in order.

Late events
-----------
An event at ``ts`` lies in pane ``p = pane_start(ts)``; the windows containing it end at
``p + slide, p + 2 * slide, ..., p + size``. Against a watermark ``w`` (`classify`):

- ``too_late`` when ``p + size <= w``: even the last window containing it is closed. It is
  dead-lettered with reason ``late``.
- ``late_within_grace`` when it is not too late and ``p + slide <= w + grace`` (its pane is
  before the frontier's pane): the first window containing it is already due, so at least
  one window containing it has been evaluated. The event updates its pane as usual, and
  `windows_to_reevaluate` lists the evaluated windows that are not closed yet: the evaluator
  recomputes them and emits a correction (same window, later ``emitted_at``).
- ``on_time`` otherwise: no window containing it is due yet. Events out of order inside the
  panes the frontier has not passed are normal, not late.

With ``grace >= slide`` a ``late_within_grace`` event always has a window to re-evaluate. With
less grace it may have none. In general an event that is not too late may also fall in
windows that are closed already: those stay as emitted, and it counts in the others.

Classify against the watermark the evaluator closes windows with (the combined one), so that
an event is refused exactly when every window it could change is final.

Watermarks per partition and combined live in `streams.watermarks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from streams.durations import parse_duration_ms

Lateness = Literal["on_time", "late_within_grace", "too_late"]


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """Windows ``size_ms`` long starting every ``slide_ms``, open to late events ``grace_ms`` more.

    Examples
    --------
    >>> spec = WindowSpec(size_ms=300_000, slide_ms=60_000, grace_ms=30_000)
    >>> spec.pane_start(1_764_151_234_567)
    1764151200000
    >>> spec.windows_of_pane(600_000)
    [360000, 420000, 480000, 540000, 600000]
    >>> spec.panes_of_window(360_000)
    [360000, 420000, 480000, 540000, 600000]
    >>> WindowSpec.parse("5m", "1m", "30s") == spec
    True
    """

    size_ms: int
    slide_ms: int
    grace_ms: int = 0

    def __post_init__(self) -> None:
        for name in ("size_ms", "slide_ms", "grace_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int of milliseconds, got {value!r}")
        if self.slide_ms <= 0 or self.size_ms <= 0:
            raise ValueError(f"size and slide must be positive, got {self.size_ms}/{self.slide_ms}")
        if self.size_ms % self.slide_ms:
            raise ValueError(
                f"size {self.size_ms} ms is not a multiple of slide {self.slide_ms} ms: "
                "windows must be whole numbers of panes"
            )
        if self.grace_ms < 0:
            raise ValueError(f"grace must be >= 0, got {self.grace_ms}")

    @classmethod
    def parse(
        cls, size: str | float, slide: str | float | None = None, grace: str | float = 0
    ) -> WindowSpec:
        """A spec from durations as written in flags (``"5m"``); tumbling when no slide."""
        size_ms = parse_duration_ms(size)
        slide_ms = size_ms if slide is None else parse_duration_ms(slide)
        return cls(size_ms, slide_ms, parse_duration_ms(grace))

    @property
    def panes_per_window(self) -> int:
        return self.size_ms // self.slide_ms

    def pane_start(self, ts_ms: int) -> int:
        """Start of the pane holding ``ts_ms`` (floor to a multiple of slide)."""
        return ts_ms - ts_ms % self.slide_ms

    def window_end(self, start: int) -> int:
        """Exclusive end of the window starting at ``start``."""
        return start + self.size_ms

    def panes_of_window(self, window_start: int) -> list[int]:
        """The pane starts a window is made of, in order."""
        self._check_aligned(window_start, "window start")
        return list(range(window_start, window_start + self.size_ms, self.slide_ms))

    def windows_of_pane(self, pane_start: int) -> list[int]:
        """The starts of the windows containing a pane, in order."""
        self._check_aligned(pane_start, "pane start")
        return list(range(pane_start - self.size_ms + self.slide_ms, pane_start + 1, self.slide_ms))

    def windows_of(self, ts_ms: int) -> list[int]:
        """The starts of the windows containing the instant ``ts_ms``."""
        return self.windows_of_pane(self.pane_start(ts_ms))

    def _check_aligned(self, start: int, what: str) -> None:
        if start % self.slide_ms:
            raise ValueError(f"{what} {start} is not a multiple of slide {self.slide_ms} ms")


def closed_windows(spec: WindowSpec, previous_watermark: int, new_watermark: int) -> list[int]:
    """Starts of the windows whose end is in ``(previous_watermark, new_watermark]``, in order.

    Called with each watermark and the one before it, this yields every window exactly once,
    when it closes; nothing when the watermark did not move forward. A window holding an event
    ends after it, so an evaluator starting up can take the earliest event time it holds,
    minus the grace, as its first ``previous_watermark``.

    Examples
    --------
    >>> spec = WindowSpec(size_ms=300, slide_ms=100)
    >>> closed_windows(spec, 350, 620), closed_windows(spec, 620, 620)
    ([100, 200, 300], [])
    """
    if new_watermark <= previous_watermark:
        return []
    # Window ends are multiples of slide, because size is one.
    first_end = previous_watermark - previous_watermark % spec.slide_ms + spec.slide_ms
    last_end = new_watermark - new_watermark % spec.slide_ms
    return list(range(first_end - spec.size_ms, last_end - spec.size_ms + 1, spec.slide_ms))


def due_windows(spec: WindowSpec, previous_watermark: int, new_watermark: int) -> list[int]:
    """Starts of the windows that became due (end ``<= watermark + grace``), in order.

    Examples
    --------
    >>> spec = WindowSpec(size_ms=300, slide_ms=100, grace_ms=100)
    >>> due_windows(spec, 350, 620), closed_windows(spec, 350, 620)
    ([200, 300, 400], [100, 200, 300])
    """
    return closed_windows(spec, previous_watermark + spec.grace_ms, new_watermark + spec.grace_ms)


def classify(spec: WindowSpec, ts_ms: int, watermark: int | None) -> Lateness:
    """Whether an event is on time, late but inside the grace, or too late to count.

    See the module docstring for the rules. Without a watermark yet, everything is on time.

    Examples
    --------
    >>> spec = WindowSpec(size_ms=300, slide_ms=100, grace_ms=100)
    >>> # watermark 500: frontier 600, windows ending <= 600 due, <= 500 closed
    >>> [classify(spec, ts, 500) for ts in (650, 599, 450, 350, 250)]
    ['on_time', 'late_within_grace', 'late_within_grace', 'late_within_grace', 'too_late']
    """
    if watermark is None:
        return "on_time"
    pane = spec.pane_start(ts_ms)
    if pane + spec.size_ms <= watermark:
        return "too_late"
    if pane + spec.slide_ms <= watermark + spec.grace_ms:
        return "late_within_grace"
    return "on_time"


def windows_to_reevaluate(spec: WindowSpec, ts_ms: int, evaluated_up_to: int | None) -> list[int]:
    """Starts of the evaluated, not yet closed windows that a late event at ``ts_ms`` changes.

    ``evaluated_up_to`` is the watermark of the evaluator's last run: the windows ending at or
    before ``evaluated_up_to + grace`` have been evaluated, those ending at or before
    ``evaluated_up_to`` are final and stay as they were emitted.

    Examples
    --------
    >>> spec = WindowSpec(size_ms=300, slide_ms=100, grace_ms=100)
    >>> windows_to_reevaluate(spec, 450, 500), windows_to_reevaluate(spec, 650, 500)
    ([300], [])
    """
    if evaluated_up_to is None:
        return []
    return [
        start
        for start in spec.windows_of(ts_ms)
        if evaluated_up_to < start + spec.size_ms <= evaluated_up_to + spec.grace_ms
    ]
