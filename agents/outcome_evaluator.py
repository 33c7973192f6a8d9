"""Performance windows: the evaluator's ground-truth half.

A performance window is a slice of *prediction* event time (``UNDERTOW_PERFORMANCE_WINDOW``,
an hour by default; labels are too scarce for five-minute windows). Its labels arrive from
minutes to ``label_ttl`` after it, so one window gets several snapshots
(`streams.outcome_snapshot`):

* ``closed`` — once the predictions watermark passes its end (coverage may still be 0 %);
* ``labels`` — after labels joined into it, at most once per ``UNDERTOW_PERFORMANCE_REFRESH``
  (the labels of a busy hour arrive continuously; one snapshot per label would flood the
  metrics topic);
* ``final`` — once the watermark passes its end plus the label TTL: no label can join it
  any more. Exactly one per window, claimed in Redis like a drift window's final snapshot.

The same worker that evaluates a model's drift windows (its home-partition owner) evaluates
its performance windows, with the same claims and progress records, so a rebalance neither
skips nor repeats a final snapshot. Provisional snapshots may repeat after a crash; each
carries its ``emitted_at``, and the latest wins.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import redis

from agents.join_store import SEP, JoinStore
from agents.pane_store import earliest_pane
from agents.registry import BaselineRegistry
from agents.settings import Settings
from streams.baseline import Baseline
from streams.outcome_snapshot import evaluate_outcomes
from streams.outcomes import OutcomePane, merge_outcomes
from streams.watermarks import Watermark, combine_watermarks
from streams.windows import WindowSpec, closed_windows

log = logging.getLogger(__name__)

#: Emits a snapshot (and its alerts) for a claim: "done", "skipped" or "busy".
Emit = Callable[[Baseline, dict[str, Any], str], Any]


class OutcomeEvaluator:
    """Finds the performance windows to evaluate and builds their snapshots."""

    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        store: JoinStore,
        registry: BaselineRegistry,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.registry = registry
        self.clock = clock
        self.ns = store.ns
        self.spec = WindowSpec(settings.performance_window_ms, settings.performance_slide_ms, 0)
        self.refresh_s = settings.performance_refresh_s
        self._last_refresh = -math.inf

    # -- what to evaluate -----------------------------------------------------------------

    def plan(
        self,
        baselines: list[Baseline],
        watermark: int,
        mine: Callable[[str], bool],
        partitions: Iterable[int],
    ) -> list[tuple[Baseline, int, str]]:
        """(baseline, window start, kind) to evaluate now, oldest first (runs in a thread)."""
        by_ident = {(b.model, b.version): b for b in baselines}
        refresh: dict[tuple[str, str], set[int]] = {}
        now = self.clock()
        if now - self._last_refresh >= self.refresh_s:
            self._last_refresh = now
            back = []
            for model, version, pane in self.store.take_dirty():
                if (model, version) in by_ident:
                    refresh.setdefault((model, version), set()).update(
                        self.spec.windows_of_pane(pane)
                    )
                elif not mine(model):  # another worker's model: leave it for its evaluator
                    back.append(f"{model}{SEP}{version}{SEP}{pane}")
            if back:
                self.client.sadd(self.store.dirty_key, *back)
        size = self.spec.size_ms
        final_mark = self._final_watermark(watermark, round(now * 1000))
        work: list[tuple[Baseline, int, str]] = []
        for ident, baseline in by_ident.items():
            first = self._first_pane(ident, partitions)
            if first is None:
                continue
            ttl = self.settings.label_ttl_ms(baseline.label_ttl_s)
            progress = self._progress(ident)
            floor = first - first % self.spec.slide_ms - size
            closed_up_to = progress.get("closed", floor)
            final_up_to = progress.get("final", floor)
            for start in closed_windows(self.spec, closed_up_to, watermark):
                if start + size > first:
                    work.append((baseline, start, "closed"))
            for start in closed_windows(self.spec, final_up_to, final_mark - ttl):
                if start + size > first:
                    work.append((baseline, start, "final"))
            closed_now = max(
                [closed_up_to] + [s + size for b, s, k in work if k == "closed" and b is baseline]
            )
            for start in sorted(refresh.get(ident, ())):
                end = start + size
                # Closed (evaluated once at least) and not final: labels update it.
                if end <= closed_now and end + ttl > watermark:
                    work.append((baseline, start, "labels"))
        return work

    def _final_watermark(self, watermark: int, now_ms: int) -> int:
        """How far performance windows may be final: the predictions watermark, held back
        by the labels' (a lagging labels partition still carries joinable labels)."""
        states = self.store.label_watermarks(now_ms)
        marks = [Watermark.from_state(s) for s in states.values()]
        labels = combine_watermarks(marks, now_ms) if marks else None
        return watermark if labels is None else min(watermark, labels)

    def advance(self, baseline: Baseline, kind: str, start: int) -> None:
        """Record that ``kind`` evaluations are done up to the window starting at ``start``."""
        if kind == "labels":
            return
        ident = (baseline.model, baseline.version)
        progress = self._progress(ident)
        end = start + self.spec.size_ms
        if end > progress.get(kind, -(2**62)):
            progress[kind] = end
            self.client.hset(self._progress_key, _field(ident), orjson.dumps(progress))

    # -- one window -----------------------------------------------------------------------

    def snapshot(
        self, baseline: Baseline, start: int, kind: str, partitions: Iterable[int], now: float
    ) -> dict[str, Any]:
        """The performance snapshot of one window (runs in a thread: Redis reads)."""
        raws = self.store.outcome_panes(
            baseline.model, baseline.version, self.spec.panes_of_window(start), partitions
        )
        panes = [OutcomePane.from_state(baseline, orjson.loads(r)) for r in raws]
        merged = merge_outcomes(baseline, panes) if panes else OutcomePane.empty(baseline)
        end = start + self.spec.size_ms
        snapshot = evaluate_outcomes(
            baseline,
            merged,
            start / 1000,
            end / 1000,
            kind == "final",
            input_psi_max=self.input_psi_max(baseline, start, end),
            emitted_at=now,
        )
        delay = snapshot["performance"].get("label_delay")
        fallback = self.settings.expected_label_delay_s
        # The baseline's own expected delay wins over the worker's default.
        if isinstance(delay, dict) and fallback is not None and not baseline.expected_label_delay_s:
            delay["expected"] = fallback
        return snapshot

    # -- the inputs' drift, for the concept-drift check ------------------------------------

    def record_input_psi(self, baseline: Baseline, snapshot: dict[str, Any]) -> None:
        """Keep a final drift window's largest feature PSI for the performance windows."""
        values = [
            float(f["psi"])
            for f in (snapshot.get("features") or {}).values()
            if isinstance(f.get("psi"), int | float) and not math.isnan(f["psi"])
        ]
        if not values:
            return
        key = self._psi_key((baseline.model, baseline.version))
        start_ms = round(float(snapshot["window_start"]) * 1000)
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(key, {f"{start_ms}{SEP}{max(values)!r}": start_ms})
        # Older than any performance window that can still be evaluated: drop.
        horizon = (
            start_ms - self.settings.label_ttl_ms(baseline.label_ttl_s) - 2 * self.spec.size_ms
        )
        pipe.zremrangebyscore(key, "-inf", horizon)
        pipe.execute()

    def input_psi_max(self, baseline: Baseline, start: int, end: int) -> float:
        key = self._psi_key((baseline.model, baseline.version))
        members = self.client.zrangebyscore(key, start, end - self.settings.window_ms)
        values = [float(m.decode().split(SEP)[1]) for m in members]
        return max(values) if values else math.nan

    # -- Redis ----------------------------------------------------------------------------

    @property
    def _progress_key(self) -> str:
        return f"{self.ns}:evaluated"

    def _psi_key(self, ident: tuple[str, str]) -> str:
        return f"{self.ns}:input-psi:{ident[0]}{SEP}{ident[1]}"

    def _progress(self, ident: tuple[str, str]) -> dict[str, int]:
        raw = self.client.hget(self._progress_key, _field(ident))
        return {} if raw is None else dict(orjson.loads(raw))

    def _first_pane(self, ident: tuple[str, str], partitions: Iterable[int]) -> int | None:
        joined = f"{ident[0]}{SEP}{ident[1]}"
        return earliest_pane(
            self.client,
            f"{self.ns}:first-outcome:{joined}",
            (self.store.outcomes_key(p) for p in partitions),
            joined + SEP,
        )


def _field(ident: tuple[str, str]) -> str:
    return f"{ident[0]}{SEP}{ident[1]}{SEP}performance"


async def evaluate_due(
    evaluator: OutcomeEvaluator,
    baselines: list[Baseline],
    watermark: int,
    partitions: list[int],
    mine: Callable[[str], bool],
    emit: Callable[[Baseline, dict[str, Any], str, int], Any],
) -> int:
    """Plan, build and emit; ``emit`` returns "done", "skipped" or "busy" like a drift emit."""
    work = await asyncio.to_thread(evaluator.plan, baselines, watermark, mine, partitions)
    emitted = 0
    blocked: set[tuple[str, str, str]] = set()
    for baseline, start, kind in work:
        ident = (baseline.model, baseline.version, kind)
        if ident in blocked:
            continue
        now = evaluator.clock()
        snapshot = await asyncio.to_thread(
            evaluator.snapshot, baseline, start, kind, partitions, now
        )
        outcome = await emit(baseline, snapshot, kind, start)
        if outcome == "busy":
            blocked.add(ident)  # another worker holds it: retry from here next tick
            continue
        emitted += outcome == "done"
        await asyncio.to_thread(evaluator.advance, baseline, kind, start)
    return emitted
