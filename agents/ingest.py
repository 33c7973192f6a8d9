"""The predictions consumer: events in, pane partials and offsets out, exactly once.

Why not a plain Faust agent: on this machine a Faust agent that does nothing but count
reaches ~6,600–12,000 events/s, while aiokafka ``getmany`` + ``orjson.loads`` on the same
topic reaches ~90,000–200,000 (FACTS.md, and `bench/`): Faust's per-message consumer path
is the bottleneck, not the work. So the predictions topic is read by this service, which the
Faust app runs (`agents.app`), with its own aiokafka consumer group (``{ns}.ingest``) and
micro-batches from ``getmany``.

Exactly-once without Kafka transactions: each owned partition's pane partials are written
to Redis together with the offset of the next message in one MULTI/EXEC (`PaneStore`), and a
partition is always resumed from the offset Redis holds. A worker killed at any moment
leaves state and offset in agreement; its successor re-reads exactly what is missing.
Dead letters are produced before the flush that moves the offset past them, so a crash can
repeat a dead letter but never lose one.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import uuid
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from operator import attrgetter
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from agents.deadletter import dead_letters, event_letter
from agents.join_state import PartitionJoin
from agents.join_store import JoinFlush, JoinStore, OutcomeKey
from agents.labels import LabelJoiner
from agents.metrics import WorkerMetrics
from agents.pane_store import OwnershipLost, PaneKey, PaneStore, PartitionFlush
from agents.registry import BaselineRegistry
from agents.settings import Settings
from streams.baseline import Baseline
from streams.events import Prediction, Rejection, decode_predictions, encode_prediction
from streams.outcomes import OutcomePane
from streams.pane import PaneState, columns_from_predictions
from streams.watermarks import Watermark, combine_watermarks
from streams.windows import (
    WindowSpec,
    windows_to_reevaluate,
)

log = logging.getLogger(__name__)


def tune_gc() -> None:
    """Garbage-collector settings for a worker, applied once start-up is done.

    Each micro-batch keeps a few objects per event alive until it is counted, so the default
    collector runs dozens of times per batch and frees nothing: 12-15 % of the worker's CPU
    (`bench/bench_stream.py --compare default-gc`). Freeze what start-up built and collect
    young objects only once a batch's worth has piled up.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


@dataclass
class OwnedPartition:
    """What this worker holds for one partition it owns, between two flushes."""

    partition: int
    watermark: Watermark
    next_offset: int | None = None
    flushed_offset: int | None = None
    panes: dict[PaneKey, PaneState] = field(default_factory=dict)
    dirty: set[PaneKey] = field(default_factory=set)
    reevaluate: set[tuple[str, str, int]] = field(default_factory=set)
    letters: list[bytes] = field(default_factory=list)
    #: The watermark changed other than by events (a new owner's view): write it.
    announce: bool = False
    #: The same partition of the labels topic: the label join (`agents.labels`).
    join: PartitionJoin | None = None
    #: This ownership's fencing token (`agents.pane_store`); flushes commit only with it.
    token: str | None = None

    @property
    def pending(self) -> bool:
        return (
            self.next_offset != self.flushed_offset
            or self.announce
            or bool(self.dirty or self.letters)
            or (self.join is not None and self.join.pending)
        )


class PredictionIngestor:
    """Consumes ``undertow.predictions`` into Redis-backed window panes."""

    def __init__(
        self,
        settings: Settings,
        registry: BaselineRegistry,
        store: PaneStore,
        producer: AIOKafkaProducer,
        metrics: WorkerMetrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.store = store
        self.producer = producer
        self.metrics = metrics
        self.clock = clock
        self.spec = WindowSpec(settings.window_ms, settings.slide_ms, settings.grace_ms)
        self.topic = settings.topics.predictions
        self.labels_topic = settings.topics.labels
        self.labels = LabelJoiner(
            settings, registry, JoinStore(store.client, store.ns), metrics, clock=clock
        )
        self.owned: dict[int, OwnedPartition] = {}
        #: The combined watermark of all partitions, refreshed from Redis at each flush.
        self.global_watermark: int | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self._flush_lock = asyncio.Lock()
        self.events_seen = 0

    # -- the loop -------------------------------------------------------------------------

    def make_consumer(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka,
            group_id=f"{self.store.ns}.ingest",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=32 << 20,
            # Fast failover (FACTS.md: ~15 s with these instead of ~100 s with defaults).
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
            max_poll_interval_ms=300_000,
            # The range assignor gives partition p of every topic to one member when the
            # topics have equal partition counts (checked at start-up): a label and its
            # prediction, keyed alike, meet in one worker. Round-robin would split them.
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        consumer.subscribe([self.topic, self.labels_topic], listener=_Rebalance(self))
        self.consumer = consumer
        return consumer

    async def run(self, stopping: asyncio.Event) -> None:
        consumer = self.consumer or self.make_consumer()
        await consumer.start()
        last_flush = time.monotonic()
        try:
            while not stopping.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=20_000)
                # Rebalance callbacks flush and drop partitions from another task, and a
                # flush awaits Redis half-way: a batch counted meanwhile would be marked
                # written without being written. So a batch and a flush never interleave.
                async with self._flush_lock:
                    await self._consume(batches)
                if time.monotonic() - last_flush >= self.settings.flush_interval_s:
                    await self.flush()
                    last_flush = time.monotonic()
            await self.flush()
        finally:
            await consumer.stop()

    async def _consume(self, batches: dict[TopicPartition, list[Any]]) -> None:
        labels = []
        for tp, messages in batches.items():
            part = self.owned.get(tp.partition)
            if part is None or not messages:
                continue
            if tp.topic == self.topic:
                self.process(part, messages)
            else:  # predictions first: a label finds a prediction of the same batch
                labels.append((part, messages))
        for part, messages in labels:
            if part.join is not None:
                await self.labels.process(part.join, messages)

    # -- processing (CPU only, no I/O) ----------------------------------------------------

    def process(self, part: OwnedPartition, messages: list[ConsumerRecord[Any, Any]]) -> None:
        """Validate a batch of one partition's messages and count them into their panes.

        The per-event Python work is only decoding; times, panes and lateness are numpy over
        the whole micro-batch, which is almost always one model version in one pane. Only
        rejected and late events are handled one by one.
        """
        now_ms = round(self.clock() * 1000)
        max_bytes = self.settings.max_message_bytes
        batch: list[Prediction] = []
        starts: list[int] = []  # where each message's events start in `batch`
        offsets: list[int] = []
        for m in messages:
            raw = m.value if m.value is not None else b""
            events, rejections = decode_predictions(raw, max_bytes)
            if rejections:
                self._reject(part, raw, rejections, m.offset)
            if events:
                starts.append(len(batch))
                offsets.append(m.offset)
                batch.extend(events)
        part.next_offset = messages[-1].offset + 1
        if not batch:
            return

        def offset_of(i: int) -> int:
            return offsets[bisect_right(starts, i) - 1]

        by_ident: dict[tuple[str, str], Sequence[int]]
        models = set(map(attrgetter("model"), batch))
        versions = set(map(attrgetter("model_version"), batch))
        if len(models) == 1 and len(versions) == 1:  # two C-level passes tell the usual case
            by_ident = {(models.pop(), versions.pop()): range(len(batch))}
        else:
            grouped: dict[tuple[str, str], list[int]] = {}
            for i, ident in enumerate(map(attrgetter("model", "model_version"), batch)):
                grouped.setdefault(ident, []).append(i)
            by_ident = dict(grouped)
        spec = self.spec
        watermark = self.global_watermark
        max_ts: int | None = None
        for (model, version), index in by_ident.items():
            baseline = self.registry.get(model, version)
            if baseline is None:
                for i in index:
                    detail = f"no baseline registered for {model} {version}"
                    self._reject_event(part, batch[i], offset_of(i), "unknown_model", detail)
                continue
            events = batch if len(index) == len(batch) else [batch[i] for i in index]
            ts = np.fromiter(map(attrgetter("timestamp"), events), np.float64, len(events))
            ts_ms = np.rint(ts * 1000.0).astype(np.int64)  # like round(): half to even
            panes = ts_ms - ts_ms % spec.slide_ms
            keep = None
            if watermark is not None:
                # The rules of streams.windows.classify, over the whole batch at once.
                too_late = panes + spec.size_ms <= watermark
                if too_late.any():
                    keep = ~too_late
                    for j in np.flatnonzero(too_late).tolist():
                        self._reject_late(part, events[j], offset_of(index[j]), watermark)
                late = panes + spec.slide_ms <= watermark + spec.grace_ms
                if keep is not None:
                    late &= keep
                for pane_start in np.unique(panes[late]).tolist():
                    part.reevaluate.update(
                        (model, version, w)
                        for w in windows_to_reevaluate(spec, pane_start, watermark)
                    )
            if keep is not None:
                kept = np.flatnonzero(keep)
                if not kept.size:
                    continue
                events = [events[j] for j in kept.tolist()]
                panes, ts_ms = panes[kept], ts_ms[kept]
            top = int(ts_ms.max())
            max_ts = top if max_ts is None else max(max_ts, top)
            if panes.min() == panes.max():  # the common case: the batch is inside one pane
                groups = {int(panes[0]): events}
            else:
                groups = {
                    int(p): [events[j] for j in np.flatnonzero(panes == p).tolist()]
                    for p in np.unique(panes)
                }
            for pane_start, group in groups.items():
                self._count(part, baseline, (model, version, pane_start), group)
        if max_ts is not None:
            part.watermark.observe(max_ts, now_ms)

    def _count(
        self, part: OwnedPartition, baseline: Baseline, key: PaneKey, group: list[Prediction]
    ) -> None:
        pane = part.panes.get(key)
        if pane is None:
            pane = part.panes[key] = PaneState.empty(baseline)
        pane.update(columns_from_predictions(baseline, group))
        part.dirty.add(key)
        if baseline.task is not None and part.join is not None:  # it expects ground truth
            self.labels.remember(part.join, baseline, key[2], group)
        latency = np.array(
            [e.latency_ms for e in group if e.latency_ms is not None], dtype=np.float64
        )
        self.metrics.traffic.record(key[0], key[1], len(group), latency / 1000.0)
        self.events_seen += len(group)

    def _reject_late(
        self, part: OwnedPartition, event: Prediction, offset: int, watermark: int
    ) -> None:
        self.metrics.late.labels(self.metrics.models(event.model)).inc()
        self._reject_event(
            part,
            event,
            offset,
            "late",
            f"event time {event.timestamp} is behind the watermark {watermark / 1000} by "
            "more than every window that contains it",
        )

    def _reject(
        self, part: OwnedPartition, raw: bytes, rejections: list[Rejection], offset: int
    ) -> None:
        for r in rejections:
            self.metrics.invalid.labels(r.reason).inc()
        part.letters.extend(
            dead_letters(
                raw,
                rejections,
                topic=self.topic,
                partition=part.partition,
                offset=offset,
                envelope="predictions",
            )
        )

    def _reject_event(
        self, part: OwnedPartition, event: Prediction, offset: int, reason: str, detail: str
    ) -> None:
        self.metrics.invalid.labels(reason).inc()
        part.letters.extend(
            event_letter(
                encode_prediction(event),
                reason,
                detail,
                topic=self.topic,
                partition=part.partition,
                offset=offset,
                envelope="predictions",
            )
        )

    # -- flushing (I/O) -------------------------------------------------------------------

    async def flush(self, partitions: Iterable[int] | None = None) -> None:
        """Dead letters first, then panes + offset + watermark per partition, atomically."""
        async with self._flush_lock:
            chosen = list(self.owned) if partitions is None else list(partitions)
            now_ms = round(self.clock() * 1000)
            quiet = []
            for p in chosen:
                part = self.owned.get(p)
                if part is None:
                    continue
                part.watermark.advance(now_ms)
                settled = part.join is not None and self.labels.due(
                    part.join, part.watermark.value, now_ms
                )
                if not part.pending and not settled and part.next_offset is not None:
                    quiet.append(p)
                    continue
                await self._flush_partition(part, now_ms, settled)
            if quiet:
                # Polled, nothing new: the heartbeat is what lets readers count it as idle.
                await asyncio.to_thread(self.store.heartbeat, quiet, now_ms)
            await self._refresh_global_watermark(now_ms)

    async def _flush_partition(self, part: OwnedPartition, now_ms: int, settled: bool) -> None:
        """``settled``: time alone has settled something of the label join (`LabelJoiner.due`)."""
        join = part.join
        join_batch: JoinFlush | None = None
        outcomes: dict[OutcomeKey, OutcomePane] = {}
        if join is not None and (join.pending or settled):
            # Settles held labels and expired buckets too, which can add dead letters.
            join_batch, outcomes = await self.labels.prepare_flush(
                join, part.watermark.value, now_ms
            )
        letters = part.letters + (join.letters if join is not None else [])
        if letters:
            sends = [
                await self.producer.send(
                    self.settings.topics.deadletter, letter, key=str(part.partition).encode()
                )
                for letter in letters
            ]
            await asyncio.gather(*sends)
            part.letters.clear()
            if join is not None:
                join.letters.clear()
        panes = {k: orjson.dumps(part.panes[k].to_state()) for k in part.dirty}
        dropped = self._expired(part)
        offset = part.next_offset if part.next_offset is not None else 0
        batch = PartitionFlush(
            partition=part.partition,
            next_offset=offset,
            watermark=part.watermark.to_state(),
            panes=panes,
            dropped=dropped,
            reevaluate=sorted(part.reevaluate),
            as_of_ms=now_ms,
            extra=None
            if join_batch is None
            else partial(self.labels.store.apply, batch=join_batch),
            token=part.token,
        )
        try:
            await asyncio.to_thread(self.store.flush, batch)
        except OwnershipLost:
            # Evicted while paused, and taken over: what this worker holds is older than
            # what the new owner has. Drop it; the rebalance will tell the consumer.
            log.warning(
                "partition %d belongs to another worker now (this one was evicted, probably "
                "paused past the session timeout); its unflushed state is dropped, the new "
                "owner re-reads it from the offsets in Redis",
                part.partition,
            )
            self.owned.pop(part.partition, None)
            return
        if join is not None and join_batch is not None:
            self.labels.flushed(join, join_batch, outcomes, part.watermark.value)
        part.flushed_offset = offset
        part.announce = False
        part.dirty.clear()
        part.reevaluate.clear()
        for key in dropped:
            part.panes.pop(key, None)
        if self.consumer is not None and part.next_offset is not None:
            # Kafka's committed offset is for lag dashboards and autoscalers only; Redis
            # holds the offset the state agrees with.
            offsets = {TopicPartition(self.topic, part.partition): part.next_offset}
            if join is not None and join.next_offset is not None:
                offsets[TopicPartition(self.labels_topic, part.partition)] = join.next_offset
            try:
                await self.consumer.commit(offsets)
            except Exception as exc:  # a rebalance in flight: the next flush commits
                log.debug("offset commit for partition %d deferred: %s", part.partition, exc)

    def _expired(self, part: OwnedPartition) -> list[PaneKey]:
        """Panes every window of which closed long ago (a full window past the grace)."""
        wm = self.global_watermark
        if wm is None:
            return []
        horizon = wm - 2 * self.spec.size_ms
        return [k for k in part.panes if k[2] + self.spec.size_ms <= horizon]

    async def _refresh_global_watermark(self, now_ms: int) -> None:
        states = await asyncio.to_thread(self.store.watermarks, now_ms)
        marks = [Watermark.from_state(s) for s in states.values()]
        value = combine_watermarks(marks, now_ms) if marks else None
        if value is not None and (self.global_watermark is None or value > self.global_watermark):
            self.global_watermark = value

    # -- rebalancing ----------------------------------------------------------------------

    async def assigned(self, partitions: Iterable[int]) -> None:
        # Records fetched before a partition's seek to the Redis offset would be counted
        # from the wrong place: no fetching until every new partition is loaded and placed.
        paused = list(self.consumer.assignment()) if self.consumer is not None else []
        if paused:
            self.consumer.pause(*paused)  # type: ignore[union-attr]
        try:
            await self._assigned(partitions)
        finally:
            if paused:
                self.consumer.resume(*paused)  # type: ignore[union-attr]

    async def _assigned(self, partitions: Iterable[int]) -> None:
        now_ms = round(self.clock() * 1000)
        partitions = sorted(set(partitions) - set(self.owned))  # both topics name each one
        for p in partitions:
            # Fence off a former owner before reading the state it might still overwrite.
            token = uuid.uuid4().hex
            await asyncio.to_thread(self.store.claim_ownership, p, token)
            # Its watermark as the previous owner last saw it: the time nobody owned it
            # is not idleness (see `owner_view`).
            state = await asyncio.to_thread(self.store.load, p, now_ms)
            wm = (
                Watermark.from_state(state.watermark)
                if state.watermark
                else Watermark(
                    self.spec.grace_ms,
                    idle_timeout_ms=round(self.settings.idle_timeout_s * 1000),
                    now_ms=now_ms,
                )
            )
            part = OwnedPartition(
                p,
                wm,
                next_offset=state.next_offset,
                flushed_offset=state.next_offset,
                announce=True,
                join=await asyncio.to_thread(self.labels.load, p),
                token=token,
            )
            for key, raw in state.panes.items():
                baseline = self.registry.get(key[0], key[1])
                if baseline is not None:
                    part.panes[key] = PaneState.from_state(baseline, orjson.loads(raw))
            self.owned[p] = part
            if self.consumer is not None:
                # Redis, not Kafka's committed offset, says where the state stops.
                tp = TopicPartition(self.topic, p)
                if state.next_offset is None:
                    await self.consumer.seek_to_beginning(tp)
                else:
                    self.consumer.seek(tp, state.next_offset)
                ltp = TopicPartition(self.labels_topic, p)
                label_offset = part.join.next_offset if part.join is not None else None
                if ltp not in self.consumer.assignment():
                    log.error(
                        "partition %d of %s is assigned without the same partition of %s: "
                        "its labels cannot be joined here (are the topics co-partitioned?)",
                        p,
                        self.topic,
                        self.labels_topic,
                    )
                elif label_offset is None:
                    await self.consumer.seek_to_beginning(ltp)
                else:
                    self.consumer.seek(ltp, label_offset)
            log.info("partition %d assigned; resuming at offset %s", p, state.next_offset)
        # A newly owned partition announces its watermark at once, so it cannot hold the
        # combined watermark back longer than the idle timeout.
        await self.flush(partitions)

    async def revoked(self, partitions: Iterable[int]) -> None:
        chosen = sorted({p for p in partitions if p in self.owned})
        await self.flush(chosen)
        for p in chosen:
            self.owned.pop(p, None)
            log.info("partition %d revoked", p)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, ingestor: PredictionIngestor) -> None:
        self.ingestor = ingestor

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.ingestor.revoked(tp.partition for tp in revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.ingestor.assigned(tp.partition for tp in assigned)
