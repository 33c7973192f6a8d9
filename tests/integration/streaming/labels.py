"""A stream of predictions with their delayed ground truth, and what it must produce.

`LabelledStream` publishes, from a background thread, predictions stamped with the wall clock
and, for most of them, a label some seconds later — the way a fraud chargeback or a click
arrives. Some labels are published twice (with the other answer: the first must win), some
before their prediction (held, then joined), some for predictions that never existed
(orphans), some with a value a binary model cannot take (``label_type``). It keeps the
whole truth, so a test can compute every expected figure directly (numpy, scikit-learn).
"""

from __future__ import annotations

import heapq
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .harness import make_events

#: The streaming tests' label settings: seconds instead of days.
LABEL_SETTINGS = {
    "UNDERTOW_PERFORMANCE_WINDOW": "10s",
    "UNDERTOW_PERFORMANCE_REFRESH": "1s",
    "UNDERTOW_LABEL_TTL": "8s",
    "UNDERTOW_LABEL_HOLD": "2s",
}
PERF_WINDOW_MS = 10_000
GENDERS = ("f", "m")
REGIONS = ("north", "south", "east", "west")
REGION_P = (0.32, 0.31, 0.31, 0.06)


@dataclass
class Truth:
    """One published prediction and the fate of its label."""

    prediction_id: str
    timestamp: float
    score: float
    segments: dict[str, str]
    actual: float | None = None  # the first valid label, if one was published


@dataclass(eq=False)  # a thread must stay hashable
class LabelledStream(threading.Thread):
    """Publishes ``per_tick`` predictions every 50 ms for ``seconds``, labels following."""

    bootstrap: str
    prefixes: list[str]
    seconds: float
    per_tick: int = 16
    seed: int = 3
    labelled_share: float = 0.8
    duplicate_share: float = 0.05
    early_share: float = 0.05
    orphan_share: float = 0.02
    misfit_share: float = 0.02
    max_delay_s: float = 3.0
    #: In this region the truth is reversed: the model is wrong where it was right.
    flip_region: str | None = None
    #: Subtracted from the scores of gender "f" (lower positive rate: a parity problem).
    female_shift: float = 0.0
    truth: dict[str, Truth] = field(default_factory=dict)
    duplicates: int = 0
    orphans: int = 0
    misfits: int = 0
    error: BaseException | None = None

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, name="labelled-stream", daemon=True)
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _run(self) -> None:
        from contextlib import ExitStack

        from agents.producer import PredictionPublisher
        from agents.settings import Topics

        rng = np.random.default_rng(self.seed)
        queue: list[tuple[float, int, str, dict[str, Any]]] = []  # (send at, seq, kind, event)
        seq = 0

        def later(at: float, kind: str, event: dict[str, Any]) -> None:
            nonlocal seq
            heapq.heappush(queue, (at, seq, kind, event))
            seq += 1

        with ExitStack() as stack:
            publishers = [
                stack.enter_context(
                    PredictionPublisher(
                        self.bootstrap, topics=Topics(p), batch_size=50, linger_s=0.05
                    )
                )
                for p in self.prefixes
            ]
            start = time.monotonic()
            tick = 0
            while not self.stop.is_set():
                now = time.monotonic()
                publishing = now - start < self.seconds
                if not publishing and not queue:
                    break
                if publishing:
                    self._tick(rng, tick, now, later)
                    tick += 1
                while queue and queue[0][0] <= now:
                    _, _, kind, event = heapq.heappop(queue)
                    for pub in publishers:
                        pub.send_raw(kind, dict(event))
                time.sleep(0.05)

    def _tick(self, rng: np.random.Generator, tick: int, now: float, later: Any) -> None:
        wall_ms = round(time.time() * 1000)
        events = make_events([wall_ms] * self.per_tick, seed=tick, id_prefix=f"t{tick}-")
        for e in events:
            segments = {
                "gender": str(rng.choice(GENDERS)),
                "region": str(rng.choice(REGIONS, p=REGION_P)),
            }
            e["segments"] = segments
            if segments["gender"] == "f" and self.female_shift:
                e["prediction"] = round(min(max(e["prediction"] - self.female_shift, 0.0), 1.0), 6)
            pid = e["prediction_id"]
            truth = Truth(pid, e["timestamp"], e["prediction"], segments)
            self.truth[pid] = truth
            roll = rng.uniform()
            if roll < self.labelled_share:
                actual = float(rng.uniform() < e["prediction"])
                if segments["region"] == self.flip_region:
                    actual = 1.0 - actual
                truth.actual = actual
                label = {"prediction_id": pid, "model": e["model"], "actual": actual}
                if rng.uniform() < self.early_share:
                    # The label goes out first; its prediction a second later.
                    later(now, "labels", {**label, "timestamp": e["timestamp"] + 0.5})
                    later(now + 1.0, "predictions", e)
                else:
                    later(now, "predictions", e)
                    delay = min(float(rng.exponential(1.0)), self.max_delay_s)
                    at = now + delay
                    later(at, "labels", {**label, "timestamp": e["timestamp"] + delay})
                    if rng.uniform() < self.duplicate_share:
                        self.duplicates += 1
                        flipped = {**label, "actual": 1.0 - actual}
                        later(at + 0.3, "labels", {**flipped, "timestamp": e["timestamp"] + delay})
            elif roll < self.labelled_share + self.misfit_share:
                self.misfits += 1
                later(now, "predictions", e)
                bad = {"prediction_id": pid, "model": e["model"], "actual": 0.7}
                later(now + 0.5, "labels", {**bad, "timestamp": e["timestamp"] + 0.5})
            else:
                later(now, "predictions", e)
            if rng.uniform() < self.orphan_share:
                self.orphans += 1
                ghost = {"prediction_id": f"ghost-{pid}", "model": e["model"], "actual": 1.0}
                later(now + 0.2, "labels", {**ghost, "timestamp": e["timestamp"] + 0.2})

    # -- what the worker must report ------------------------------------------------------

    @property
    def joined(self) -> int:
        return sum(t.actual is not None for t in self.truth.values())

    def windows(self) -> dict[int, list[Truth]]:
        """Performance window start (ms) → the predictions made in it."""
        out: dict[int, list[Truth]] = {}
        for t in self.truth.values():
            ms = round(t.timestamp * 1000)
            out.setdefault(ms - ms % PERF_WINDOW_MS, []).append(t)
        return out
