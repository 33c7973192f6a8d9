"""Alert timing: when a key's level may rise, hold and end, window after window.

The rules (`streams.alert_config.Timing`, counted in evaluated windows of one alert key):

- minimum duration (Prometheus ``for:``): info 2, warning 2, critical 1 windows of distinct
  data in a row (2 = 6 consecutive 5-minute windows sliding by 1 minute), see `held`;
- hysteresis: a level ends only when the value falls below ``normal + 0.8 · (threshold −
  normal)`` (PSI warning at 0.1 ends below 0.08; a volume drop warning at 0.5 ends above
  0.6; ``normal`` is 0 for PSI, drop and latency, the reference rate for missing values,
  1 for a volume ratio), see `resolve_threshold`;
- cooldown: for 5 windows after a resolve, nothing but critical fires again for that key.

`next_level` applies them to one key's `KeyState`; `streams.alert_state.AlertTracker` calls
it (through `AlertPolicy.next_level`) for every observation.
"""

from __future__ import annotations

import math

from streams.alert_config import LEVELS, Timing
from streams.alert_state import KeyState, Observation
from streams.severity import Severity


def next_level(
    timing: Timing,
    state: KeyState,
    obs: Observation,
    start: float,
    end: float,
    correction: bool,
) -> Severity:
    """The key's severity after window [start, end): minimum duration, hysteresis, cooldown.

    ``state.severity`` is the level currently firing; the window bookkeeping (where the
    current run at each level began, windows below the resolve threshold, cooldown
    left) is updated in ``state``. A corrected re-evaluation of the latest window
    (``correction``) replaces that window's contribution instead of adding a window.
    """
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
        and held(first, timing.windows_for(lv), start, end)
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


def held(first_end: float | None, windows: int, start: float, end: float) -> bool:
    """Has a run that began with a window ending at ``first_end`` lasted ``windows``
    windows of distinct data, now that it reaches window [start, end)?

    With tumbling windows that is ``windows`` consecutive windows; with sliding ones the
    run must reach a window that shares no row with the run's first (2 windows), or starts
    a whole window length after that (3), and so on: a single odd pane seen by several
    overlapping windows is still one window's worth of evidence.

    >>> held(300.0, 2, 60.0, 360.0), held(300.0, 2, 300.0, 600.0)  # 5-min windows, 1-min slide
    (False, True)
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
