"""The evaluator: closed windows in, metrics snapshots and alert events out.

Each model version is evaluated by exactly one worker: the one that owns its *home
partition* (crc32 of the model name modulo the partition count) in the ingest group. Windows
are found from the combined watermark of all partitions (read from Redis, so it does not
matter who owns them): a window is *due* — evaluated provisionally, ``final: false`` — once
the frontier passes its end, and *closed* — evaluated for good, ``final: true`` — once the
watermark (frontier minus grace) does. Late events inside the grace re-open their windows
(`PaneStore.take_reevaluations`) and produce a corrected, still provisional snapshot.

No skip, no duplicate across rebalances: progress per model version lives in Redis
(``{ns}:evaluated``) and each (window, final) evaluation is claimed with ``SET NX`` before it
is emitted. A worker that dies between claim and emission leaves a claim that expires, and
the next owner emits it; a claim only ever lets one worker through.

Alerts follow the model version's policy (`streams.alert_policy`, carried by its baseline,
else the defaults). Its tracker state (``{ns}:alert-state``, field ``model␟version``) is
the memory of every alert: levels, durations, cooldowns, adaptive histories, and which
``monitor_health`` events were already sent. Every step that moves it — a final window
observed, or the health check run at every tick for each model this worker evaluates —
is computed from the stored state, published, and only then stored, under a lease
(``{ns}:claim:model␟version␟alert-state``) so that two workers briefly owning the same home
partition cannot both send it. A health check that sends nothing takes no lease and
writes nothing. A worker that dies after publishing and before storing leaves the old
state and the lease, which goes stale: the next owner sends the same events again (same
``alert_id``), never none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import redis
from aiokafka import AIOKafkaProducer

from agents.acks import AckLog
from agents.join_store import JoinStore
from agents.metrics import WorkerMetrics
from agents.outcome_evaluator import OutcomeEvaluator, evaluate_due
from agents.pane_store import SEP, PaneStore, earliest_pane
from agents.registry import BaselineRegistry
from agents.settings import Settings
from streams.alert_policy import AlertContext, AlertPolicy
from streams.alert_state import AlertTracker
from streams.baseline import Baseline
from streams.pane import PaneState, merge_panes
from streams.snapshot import evaluate_window
from streams.watermarks import Watermark, combine_watermarks
from streams.windows import WindowSpec, closed_windows, due_windows

log = logging.getLogger(__name__)

#: A claim not marked done after this long belongs to a worker that died mid-emission.
CLAIM_STALE_S = 60.0
#: How long claims are kept: longer than any window can stay open.
CLAIM_KEEP_S = 7 * 86_400
#: How long the claim of a provisional performance snapshot is kept (see _emit_performance).
PROVISIONAL_CLAIM_KEEP_S = 2 * round(CLAIM_STALE_S)
#: The alert policy of a model version whose baseline carries none.
DEFAULT_POLICY = AlertPolicy()

Alerts = list[dict[str, Any]]
#: One step of a tracker: ``observe`` a snapshot, or ``check_health``.
AlertStep = Callable[[AlertTracker, AlertContext], Alerts]


def home_partition(model: str, partitions: int) -> int:
    """The partition whose owner evaluates ``model`` (stable across processes and runs)."""
    return zlib.crc32(model.encode()) % partitions


@dataclass
class AlertChange:
    """A model version's alert state moved by one step: held under ``lease`` until its
    ``events`` are published and ``state`` is stored."""

    ident: str
    lease: str
    state: bytes
    events: Alerts


class Evaluator:
    """Evaluates the windows of the model versions whose home partition this worker owns."""

    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        store: PaneStore,
        registry: BaselineRegistry,
        producer: AIOKafkaProducer,
        metrics: WorkerMetrics,
        owned: Callable[[], Iterable[int]],
        *,
        worker_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.registry = registry
        self.producer = producer
        self.metrics = metrics
        self.owned = owned
        self.worker_id = worker_id
        self.clock = clock
        self.spec = WindowSpec(settings.window_ms, settings.slide_ms, settings.grace_ms)
        self.ns = store.ns
        self.acks = AckLog(client, self.ns)
        self.alert_state_key = f"{self.ns}:alert-state"
        self.last_run: float | None = None
        self.outcomes = OutcomeEvaluator(
            settings, client, JoinStore(client, store.ns), registry, clock=clock
        )

    # -- the timer ------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        interval = max(0.2, min(self.settings.slide_s / 4, 5.0))
        while not stopping.is_set():
            try:
                await self.tick()
            except Exception:  # a bad tick must not end evaluation for good
                log.exception("evaluation tick failed; retrying next tick")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=interval)

    async def tick(self) -> int:
        """Evaluate whatever became due or closed; returns the number of snapshots emitted."""
        mine = set(self.owned())
        partitions_total = self.settings.partitions
        self.metrics.drift.forget(lambda model: home_partition(model, partitions_total) in mine)
        self.metrics.performance.forget(
            lambda model: home_partition(model, partitions_total) in mine
        )
        if not mine:
            return 0
        now_ms = round(self.clock() * 1000)
        states = await asyncio.to_thread(self.store.watermarks, now_ms)
        marks = [Watermark.from_state(s) for s in states.values()]
        watermark = combine_watermarks(marks, now_ms) if marks else None
        partitions = sorted(states)
        emitted = 0
        models = await asyncio.to_thread(self.store.models)
        reevaluate: dict[tuple[str, str], set[int]] = {}
        if watermark is not None:
            reevaluate = await asyncio.to_thread(self._reevaluations, mine)
        evaluated: list[Baseline] = []
        for model, version in models:
            if home_partition(model, self.settings.partitions) not in mine:
                continue
            baseline = self.registry.get(model, version)
            if baseline is None:
                continue
            evaluated.append(baseline)
            if watermark is not None:
                emitted += await self._evaluate_model(
                    baseline, watermark, partitions, reevaluate.get((model, version), set())
                )
            # Whether or not a window closed: a stalled watermark is what the staleness
            # check is for, and acknowledgements arrive by the wall clock.
            await self._check_health(baseline)
        if watermark is not None:
            # Ground truth: the performance windows of the same model versions.
            emitted += await evaluate_due(
                self.outcomes,
                [b for b in evaluated if b.task is not None],
                watermark,
                partitions,
                lambda model: home_partition(model, partitions_total) in mine,
                self._emit_performance,
            )
        self.last_run = self.clock()
        return emitted

    # -- one model version ----------------------------------------------------------------

    async def _evaluate_model(
        self, baseline: Baseline, watermark: int, partitions: list[int], late: set[int]
    ) -> int:
        ident = f"{baseline.model}{SEP}{baseline.version}"
        progress = await asyncio.to_thread(self._progress, ident)
        first = await asyncio.to_thread(self._first_pane, baseline, partitions)
        if first is None:
            return 0
        emitted = 0
        size = self.spec.size_ms
        for start in sorted(late):
            if start + size > watermark:  # still open: a correction, not a final result
                emitted += await self._emit(baseline, start, partitions, "correction") == "done"
        for kind, windows in (("due", due_windows), ("final", closed_windows)):
            done_up_to = progress.get(kind, first - self.spec.grace_ms)
            reached = max(done_up_to, watermark)
            for start in windows(self.spec, done_up_to, watermark):
                if start + size <= first:
                    continue  # before the stream began: nothing to say
                if kind == "due" and start + size <= watermark:
                    continue  # already closed: the final evaluation says it once
                outcome = await self._emit(baseline, start, partitions, kind)
                if outcome == "busy":
                    # Another worker holds the claim: come back to this window next tick.
                    reached = start + size - (0 if kind == "final" else self.spec.grace_ms) - 1
                    break
                emitted += outcome == "done"
            progress[kind] = reached
        await asyncio.to_thread(
            self.client.hset, f"{self.ns}:evaluated", ident, orjson.dumps(progress)
        )
        return emitted

    async def _emit(self, baseline: Baseline, start: int, partitions: list[int], kind: str) -> str:
        """Evaluate and publish one window: "done", "skipped" (done before) or "busy"."""
        end = start + self.spec.size_ms
        claim = f"{self.ns}:claim:{baseline.model}{SEP}{baseline.version}{SEP}{start}{SEP}{kind}"
        if kind == "correction":
            claim += f"{SEP}{self.clock():.6f}"
        verdict = await asyncio.to_thread(self._claim, claim)
        if verdict != "won":
            return verdict
        window = await asyncio.to_thread(self._window, baseline, start, partitions)
        emitted_at = self.clock()
        final = kind == "final"
        snapshot = evaluate_window(
            baseline, window, start / 1000, end / 1000, final, emitted_at=emitted_at
        )
        alerts = await self._publish(baseline, snapshot, emitted_at, claim)
        if alerts is None:
            return "busy"
        if final:  # the concept-drift check of performance windows reads the inputs' drift
            await asyncio.to_thread(self.outcomes.record_input_psi, baseline, snapshot)
        self.metrics.drift.update(snapshot)
        model_label = self.metrics.models(baseline.model)
        self.metrics.evaluations.labels(model_label, str(final).lower()).inc()
        log.info(
            "evaluated %s %s window %s (%s): %d events, %d alert event(s)",
            baseline.model,
            baseline.version,
            start / 1000,
            kind,
            snapshot["count"],
            len(alerts),
        )
        return "done"

    async def _emit_performance(
        self, baseline: Baseline, snapshot: dict[str, Any], kind: str, start: int
    ) -> str:
        """Publish one performance snapshot: "done", "skipped" (done before) or "busy"."""
        claim = (
            f"{self.ns}:claim:{baseline.model}{SEP}{baseline.version}{SEP}{start}{SEP}perf-{kind}"
        )
        keep_s = CLAIM_KEEP_S
        if kind != "final":
            # Provisional ones may repeat, each a new fact: their claims only keep two
            # workers from emitting the same one at once, so they need not outlive a minute
            # (a busy window is refreshed every minute for a month: 40,000 keys of 200 B).
            claim += f"{SEP}{snapshot['emitted_at']:.6f}"
            keep_s = PROVISIONAL_CLAIM_KEEP_S
        verdict = await asyncio.to_thread(self._claim, claim, keep_s)
        if verdict != "won":
            return verdict
        alerts = await self._publish(baseline, snapshot, snapshot["emitted_at"], claim, keep_s)
        if alerts is None:
            return "busy"
        self.metrics.performance.update(snapshot)
        perf = snapshot["performance"]
        log.info(
            "evaluated %s %s performance window %s (%s): %s labelled of %d, %d alert event(s)",
            baseline.model,
            baseline.version,
            start / 1000,
            kind,
            perf.get("labelled"),
            snapshot["count"],
            len(alerts),
        )
        return "done"

    def _claim(self, claim: str, keep_s: int = CLAIM_KEEP_S) -> str:
        """ "won" when this worker may emit; "skipped" when it was emitted; else "busy"."""
        now = self.clock()
        if self.client.set(claim, f"claimed {self.worker_id} {now}", nx=True, ex=keep_s):
            return "won"
        holder = self.client.get(claim)
        text = holder.decode() if isinstance(holder, bytes) else str(holder or "")
        if text.startswith("done"):
            return "skipped"
        parts = text.split()
        stale = len(parts) == 3 and now - float(parts[2]) > CLAIM_STALE_S
        if stale or (len(parts) >= 2 and parts[1] == self.worker_id):
            # Its holder died between claim and emission: take it over.
            self.client.set(claim, f"claimed {self.worker_id} {now}", ex=keep_s)
            return "won"
        return "busy"

    # -- alerts ---------------------------------------------------------------------------

    async def _publish(
        self,
        baseline: Baseline,
        snapshot: dict[str, Any],
        emitted_at: float,
        claim: str,
        keep_s: int = CLAIM_KEEP_S,
    ) -> Alerts | None:
        """Publish a snapshot and the alert events it brings, store the alert state, mark the
        claim done; returns the events, or None when another worker is moving this model's
        alert state (a rebalance): then nothing was sent, the claim stays ours, and the next
        tick emits the window from the state they leave."""

        def observe(tracker: AlertTracker, context: AlertContext) -> Alerts:
            return tracker.observe(snapshot, emitted_at, context)

        # Final drift snapshots move alerts, and each one moves the state even when it sends
        # nothing: durations, histories, the last window. So do performance snapshots with
        # enough labels, final or not: a performance window is final only a label TTL (a
        # month) after it, and ground truth that arrived is worth acting on now.
        judged = snapshot.get("final") or (
            snapshot.get("kind") == "performance"
            and (snapshot.get("performance") or {}).get("status") == "ok"
        )
        change: AlertChange | Literal["busy"] | None = None
        if judged:
            change = await asyncio.to_thread(
                self._alert_change, baseline, observe, store_silent=True
            )
        if change == "busy":
            return None
        alerts = [] if change is None else change.events
        metrics = self.settings.topics.metrics
        sends = [
            await self.producer.send(metrics, orjson.dumps(snapshot), key=baseline.model.encode()),
            *await self._send_alerts(baseline, alerts),
        ]
        await asyncio.gather(*sends)
        if change is not None:
            await asyncio.to_thread(self._commit, change)
        await asyncio.to_thread(self.client.set, claim, f"done {self.worker_id}", ex=keep_s)
        return alerts

    async def _check_health(self, baseline: Baseline) -> int:
        """Publish the monitor_health events due now; returns how many."""
        now = self.clock()

        def check(tracker: AlertTracker, context: AlertContext) -> Alerts:
            return tracker.check_health(now, context)

        change = await asyncio.to_thread(self._alert_change, baseline, check, store_silent=False)
        if change is None or change == "busy":
            return 0  # nothing new, or another worker holds the lease and says it
        await asyncio.gather(*await self._send_alerts(baseline, change.events))
        await asyncio.to_thread(self._commit, change)
        for event in change.events:
            log.info(
                "%s %s: monitor_health %s %s %s",
                baseline.model,
                baseline.version,
                event.get("check"),
                event["status"],
                event["severity"],
            )
        return len(change.events)

    async def _send_alerts(self, baseline: Baseline, alerts: Alerts) -> list[Any]:
        """Hand ``alerts`` to the producer; returns the futures of their acknowledgements."""
        key, topic = baseline.model.encode(), self.settings.topics.alerts
        sends = []
        for alert in alerts:
            sends.append(await self.producer.send(topic, orjson.dumps(alert), key=key))
            severity = alert["severity"] if alert["status"] == "firing" else "none"
            self.metrics.alerts.labels(alert["type"], severity).inc()
        return sends

    def _alert_change(
        self, baseline: Baseline, step: AlertStep, store_silent: bool
    ) -> AlertChange | Literal["busy"] | None:
        """``step`` applied to the model version's stored tracker, under its lease.

        None when there is nothing to send or store: read only, no lease taken. That is
        every health check that sends nothing (``store_silent`` False): whatever bookkeeping
        it did is derived again from the same stored state at the next tick. "busy" when
        another worker holds the lease: this worker sends nothing.
        """
        ident = f"{baseline.model}{SEP}{baseline.version}"
        raw = self.client.hget(self.alert_state_key, ident)
        outcome = self._apply(baseline, raw, step, store_silent)
        if outcome is None:
            return None
        lease = f"{self.ns}:claim:{ident}{SEP}alert-state"
        if self._claim(lease) != "won":
            return "busy"
        current = self.client.hget(self.alert_state_key, ident)
        if current != raw:  # another worker stored a step between our read and the lease
            outcome = self._apply(baseline, current, step, store_silent)
            if outcome is None:
                self.client.delete(lease)
                return None
        state, events = outcome
        return AlertChange(ident, lease, state, events)

    def _apply(
        self, baseline: Baseline, raw: bytes | str | None, step: AlertStep, store_silent: bool
    ) -> tuple[bytes, Alerts] | None:
        """The tracker state after ``step`` and its events, or None (see `_alert_change`)."""
        policy = baseline.alert_policy or DEFAULT_POLICY
        if raw is None:
            tracker = AlertTracker(policy=policy)
        else:
            tracker = AlertTracker.from_state(orjson.loads(raw), policy=policy)
        # Only the alerts firing now can be "unacknowledged": ask about those, not every id.
        firing = [s.alert_id for s in tracker.firing().values() if s.alert_id is not None]
        acknowledged = self.acks.acknowledged(among=firing)
        events = step(tracker, AlertContext.from_baseline(baseline, acknowledged=acknowledged))
        if not events and not store_silent:
            return None
        return orjson.dumps(tracker.to_state()), events

    def _commit(self, change: AlertChange) -> bool:
        """Store the new state and end the lease in one transaction, if the lease is still
        this worker's (a lease taken over while we were stalled belongs to its new holder)."""
        with self.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(change.lease)  # type: ignore[no-untyped-call]
                holder = pipe.get(change.lease)
                text = holder.decode() if isinstance(holder, bytes) else str(holder or "")
                parts = text.split()
                if len(parts) < 2 or parts[1] != self.worker_id:
                    log.warning("alert state of %r: lease lost to %r", change.ident, text)
                    return False
                pipe.multi()
                pipe.hset(self.alert_state_key, change.ident, change.state)
                pipe.delete(change.lease)
                pipe.execute()
                return True
            except redis.WatchError:
                log.warning("alert state of %r: lease taken over while storing", change.ident)
                return False

    # -- Redis reads (run in a thread) ------------------------------------------------------

    def _progress(self, ident: str) -> dict[str, int]:
        raw = self.client.hget(f"{self.ns}:evaluated", ident)
        return {} if raw is None else dict(orjson.loads(raw))

    def _first_pane(self, baseline: Baseline, partitions: list[int]) -> int | None:
        """The earliest pane with data, so evaluation starts where the stream does."""
        ident = f"{baseline.model}{SEP}{baseline.version}"
        return earliest_pane(
            self.client,
            f"{self.ns}:first:{ident}",
            (f"{self.ns}:panes:{p}" for p in partitions),
            ident + SEP,
        )

    def _window(self, baseline: Baseline, start: int, partitions: list[int]) -> PaneState:
        raws = self.store.panes(
            baseline.model, baseline.version, self.spec.panes_of_window(start), partitions
        )
        panes = [PaneState.from_state(baseline, orjson.loads(r)) for r in raws]
        return merge_panes(baseline, panes) if panes else PaneState.empty(baseline)

    def _reevaluations(self, mine: set[int]) -> dict[tuple[str, str], set[int]]:
        out: dict[tuple[str, str], set[int]] = {}
        for model, version, start in self.store.take_reevaluations():
            if home_partition(model, self.settings.partitions) in mine:
                out.setdefault((model, version), set()).add(start)
            else:  # another worker's model: put it back for its evaluator
                self.client.sadd(self.store.reevaluate_key, f"{model}{SEP}{version}{SEP}{start}")
        return out
