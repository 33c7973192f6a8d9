"""The drift alerts the default alert policy must raise, derived in numpy / scipy.

Nothing here imports the code under test: the rules are re-derived from their documentation
(`streams.alert_drift`, `streams.alert_timing`, `streams.alert_policy`, defaults of
`AlertPolicy`), and the p-values come from scipy on the raw rows of each window:

- bands: info from 0.05, warning from 0.1, critical above 0.25 (PSI);
- multiple testing: a feature's level counts only if its p-value (KS for numeric features,
  chi-square goodness of fit to the reference proportions for categorical ones) survives
  Benjamini–Hochberg at FDR 0.01 over the window's features; the prediction's own KS test
  must have p <= 0.01; a column with fewer than 200 values is no evidence;
- minimum duration: info and warning must hold over 2 windows of distinct data (a run
  reaching a window that starts where the run's first window ended), critical fires at once;
- hysteresis: a level ends below 0.8 of its threshold; cooldown: after a resolve, 5 windows
  in which only critical may fire;
- adaptive bands: once a key has learnt 7 values, its bands are multiplied by
  ``clip((mean + 2 std) / warning, 1, 3)``; values at warning or above, or seen while the key
  fires at warning or above, are learnt only when the episode is over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

LEVELS = ("none", "info", "warning", "critical")
PSI_BANDS = (0.05, 0.1, 0.25)
FDR = 0.01
MIN_COUNT = 200
#: Windows of distinct data each level must hold before it fires (info, warning, critical).
HOLD_WINDOWS = (2, 2, 1)
RESOLVE_RATIO = 0.8
COOLDOWN_WINDOWS = 5
K_STD, MIN_LEARNT, MAX_RAISE = 2.0, 7, 3.0

Event = tuple[str, str, float]  # (status, severity, window_start in seconds)


def level_of(value: float, bands: Sequence[float]) -> int:
    """0 none, 1 info, 2 warning, 3 critical: ``>=`` info / warning, ``>`` critical."""
    if value > bands[2]:
        return 3
    if value >= bands[1]:
        return 2
    return 1 if value >= bands[0] else 0


@dataclass
class PolicyKey:
    """One alert key (a feature's data_drift, or prediction_drift) under the default policy."""

    static: tuple[float, float, float] = PSI_BANDS
    level: int = 0
    #: Window end at which the current run at >= info / warning / critical began.
    runs: list[float | None] = field(default_factory=lambda: [None, None, None])
    cooldown: int = 0
    learnt: list[float] = field(default_factory=list)
    episode: list[float] = field(default_factory=list)

    def bands(self) -> np.ndarray:
        static = np.asarray(self.static)
        if len(self.learnt) < MIN_LEARNT:
            return static
        h = np.asarray(self.learnt)
        scale = np.clip((h.mean() + K_STD * h.std(ddof=1)) / static[1], 1.0, MAX_RAISE)
        return static * scale

    def observe(self, start: float, end: float, value: float, significant: bool) -> Event | None:
        bands = self.bands()
        raised = level_of(value, bands) if significant else 0
        self.runs = [
            (first if first is not None else end) if raised >= lv else None
            for lv, first in zip((1, 2, 3), self.runs, strict=True)
        ]

        def distinct(first: float | None, windows: int) -> bool:
            if first is None:
                return False
            return windows <= 1 or start >= first + (windows - 2) * (end - start) - 1e-9

        ready = [
            lv
            for lv in (1, 2, 3)
            if lv > self.level
            and distinct(self.runs[lv - 1], HOLD_WINDOWS[lv - 1])
            and (self.cooldown == 0 or lv == 3)
        ]
        holds = [lv for lv in (1, 2, 3) if value >= RESOLVE_RATIO * bands[lv - 1]]
        new = self.level
        if ready:
            new = max(ready)
        elif max(holds, default=0) < self.level:
            new = max(holds, default=0)
        self.cooldown = max(self.cooldown - 1, 0)
        if new == 0 and self.level != 0:
            self.cooldown = COOLDOWN_WINDOWS
        if level_of(value, bands) >= 2 or new >= 2:
            self.episode.append(value)
        else:
            self.learnt += [*self.episode, value]
            self.episode = []
        old, self.level = self.level, new
        if new == old:
            return None
        return ("resolved", LEVELS[old], start) if new == 0 else ("firing", LEVELS[new], start)


def ks_pvalue(reference: Sequence[float], values: Sequence[float]) -> float:
    return float(stats.ks_2samp(reference, values, method="asymp").pvalue)


def chi2_pvalue(reference_counts: np.ndarray, counts: np.ndarray) -> float:
    """Goodness of fit of ``counts`` to the reference proportions (an unseen category's
    reference share floored at 1e-4, as PSI floors it); bins empty on both sides dropped."""
    keep = (reference_counts > 0) | (counts > 0)
    ref, cur = reference_counts[keep], counts[keep]
    expected = np.clip(ref / ref.sum(), 1e-4, 1.0)
    expected = expected / expected.sum() * cur.sum()
    return float(stats.chisquare(cur, expected).pvalue)


def bh_significant(pvalues: dict[str, float]) -> dict[str, bool]:
    names = sorted(pvalues)
    adjusted = stats.false_discovery_control([pvalues[n] for n in names])
    return {n: bool(a <= FDR) for n, a in zip(names, adjusted, strict=True)}
