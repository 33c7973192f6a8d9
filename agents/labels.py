"""The label join: ground truth, arriving minutes to weeks late, matched to its prediction.

The ingest (`agents.ingest`) reads partition ``p`` of both topics in one consumer, so the
prediction and the label of one ``prediction_id`` (the key of both) meet in one worker.
This module is the label side of that worker:

* a prediction of a model that expects labels (its baseline declares a task) leaves a
  pending entry (`streams.label_join.PendingEntry`) and is counted into the outcome pane of
  its event time (volume, segments);
* a label finds its entry — in memory when it is recent, else with one ``HMGET`` per live
  bucket for the whole micro-batch — and is counted into the outcome pane of the
  *prediction's* event time, with its delay; the entry becomes a tombstone;
* a label with no entry yet is held (``{ns}:held:{p}``) for ``UNDERTOW_LABEL_HOLD``: its
  prediction may still be on its way (the two topics are read side by side, and producers
  do not coordinate). It joins when the prediction comes, or becomes an orphan;
* a second label for a joined prediction is a duplicate: the first one wins;
* a label that cannot be ground truth for the model's task (0.7 for a binary model) is
  dead-lettered as ``label_type``; the prediction stays pending for a corrected label;
* an orphan (no prediction, or one that expired after ``label_ttl``) is dead-lettered as
  ``unknown_prediction``.

Every outcome is counted exactly (``{ns}:label-counts``, written with the offsets) and in
``ml_labels_total``. Nothing here writes to Redis: the ingest flushes it all, with the
partition's pane partials and both offsets, in one transaction (`agents.join_store`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from agents.deadletter import dead_letters, event_letter
from agents.join_state import Held, Joined, PartitionJoin
from agents.join_store import Bucket, JoinFlush, JoinState, JoinStore, OutcomeKey
from agents.metrics import WorkerMetrics
from agents.registry import BaselineRegistry
from agents.settings import Settings
from streams.baseline import Baseline
from streams.concept_drift import PageHinkley
from streams.events import Label, Prediction, decode_labels, encode_label
from streams.label_join import (
    TOMBSTONE,
    PendingEntry,
    bucket_expired,
    bucket_width_ms,
    digest,
    encode_entry,
    entry_suffix,
    error_of,
    label_misfit,
)
from streams.outcomes import OutcomePane
from streams.watermarks import Watermark

log = logging.getLogger(__name__)


class LabelJoiner:
    """The label side of the ingest: pending predictions, the join, outcome panes."""

    def __init__(
        self,
        settings: Settings,
        registry: BaselineRegistry,
        store: JoinStore,
        metrics: WorkerMetrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.topic = settings.topics.labels
        self.pane_ms = settings.performance_slide_ms
        self.hold_ms = round(settings.label_hold_s * 1000)
        self.idle_ms = round(settings.idle_timeout_s * 1000)
        #: Encoded (version, segments) suffixes of pending entries (`entry_suffix`).
        self._suffixes: dict[tuple[Any, ...], bytes] = {}

    # -- ownership ------------------------------------------------------------------------

    def load(self, partition: int) -> PartitionJoin:
        state: JoinState = self.store.load(partition)
        part = PartitionJoin(
            partition,
            next_offset=state.next_offset,
            flushed_offset=state.next_offset,
            buckets=state.buckets,
            assigned_ms=round(self.clock() * 1000),
        )
        for d, raw in state.held.items():
            try:
                part.held[d] = Held.decode(raw)
            except (ValueError, KeyError, IndexError):  # written by a newer version
                log.warning("partition %d: unreadable held label dropped", partition)
                part.held_removed.add(d)
        for ident, raw in state.detectors.items():
            part.detectors[ident] = PageHinkley.from_state(orjson.loads(raw))
        return part

    # -- predictions ----------------------------------------------------------------------

    def remember(
        self, part: PartitionJoin, baseline: Baseline, pane_start: int, group: list[Prediction]
    ) -> None:
        """Pending entries and outcome-pane volume for a group of one drift pane.

        ``pane_start`` is the group's drift pane; performance panes are a whole number of
        drift panes (`Settings.validate`), so the group lies in one performance pane.
        """
        model, version = baseline.model, baseline.version
        ttl = self.settings.label_ttl_ms(baseline.label_ttl_s)
        width = bucket_width_ms(ttl)
        fresh, held = part.fresh, part.held
        added: Counter[tuple[str, int]] = Counter()
        joins: list[Joined] = []
        suffixes = self._suffixes
        if len(suffixes) > 10_000:  # many distinct segment combinations: start over
            suffixes.clear()
        for e in group:
            ts = round(e.timestamp * 1000)
            bucket = ts - ts % width
            d = digest(e.prediction_id)
            key = (version, *e.segments.items())
            suffix = suffixes.get(key)
            if suffix is None:
                entry = PendingEntry(version, ts, e.prediction, e.segments)
                suffix = suffixes[key] = entry_suffix(entry)
            waiting = held.get(d) if held else None
            if waiting is not None and waiting.label.model == model:
                del held[d]
                part.held_removed.add(d)
                part.held_added.discard(d)
                misfit = label_misfit(baseline.task, waiting.label.actual)
                if misfit is not None:  # the prediction stays pending for a corrected label
                    self._count(part, model, "wrong_type")
                    self._letter(part, waiting.label, waiting.offset, "label_type", misfit)
                    fresh[d] = (model, bucket, encode_entry(ts, e.prediction, suffix))
                    added[(model, bucket)] += 1
                    continue
                # Its label came first and waited: join now, leave only a tombstone.
                part.spent[d] = (model, bucket)
                entry = PendingEntry(version, ts, e.prediction, e.segments)
                joins.append(
                    Joined(model, bucket, entry, waiting.label.actual, waiting.label.timestamp)
                )
            else:
                fresh[d] = (model, bucket, encode_entry(ts, e.prediction, suffix))
            added[(model, bucket)] += 1
        for (m, b), n in added.items():
            self._bucket(part, (m, b, width, ttl))
            part.bucket_counts.setdefault((m, b), Counter())[f"added\x1f{version}"] += n
        perf_pane = pane_start - pane_start % self.pane_ms
        self._delta(part, baseline, perf_pane).count_predictions(
            [e.prediction for e in group], [e.segments for e in group]
        )
        if joins:
            self._join(part, joins)

    def _bucket(self, part: PartitionJoin, bucket: Bucket) -> None:
        if bucket not in part.buckets:
            part.buckets.add(bucket)
            part.new_buckets.add(bucket)

    def _delta(self, part: PartitionJoin, baseline: Baseline, pane: int) -> OutcomePane:
        key = (baseline.model, baseline.version, pane)
        delta = part.deltas.get(key)
        if delta is None:
            delta = part.deltas[key] = OutcomePane.empty(baseline)
        return delta

    # -- labels ---------------------------------------------------------------------------

    async def process(self, part: PartitionJoin, messages: list[Any]) -> None:
        """Join a micro-batch of one labels partition."""
        now_ms = round(self.clock() * 1000)
        items: list[tuple[Label, bytes, int]] = []
        for m in messages:
            raw = m.value if m.value is not None else b""
            labels, rejections = decode_labels(raw, self.settings.max_message_bytes)
            if rejections:
                for r in rejections:
                    self.metrics.invalid.labels(r.reason).inc()
                part.letters.extend(
                    dead_letters(
                        raw,
                        rejections,
                        topic=self.topic,
                        partition=part.partition,
                        offset=m.offset,
                        envelope="labels",
                    )
                )
            items.extend((lab, digest(lab.prediction_id), m.offset) for lab in labels)
        if not items:
            part.next_offset = messages[-1].offset + 1
            return
        newest = round(max(lab.timestamp for lab, _, _ in items) * 1000)
        if part.labels_mark is None:
            part.labels_mark = Watermark(0, idle_timeout_ms=self.idle_ms, now_ms=now_ms)
        part.labels_mark.observe(newest, now_ms)
        wanted: dict[str, tuple[list[bytes], list[int]]] = {}
        for lab, d, _ in items:
            if d in part.fresh or d in part.spent or d in part.held:
                continue
            if lab.model not in wanted:
                starts = sorted(b[1] for b in part.buckets if b[0] == lab.model)
                if not starts:
                    continue
                wanted[lab.model] = ([], starts)
            wanted[lab.model][0].append(d)
        found = await asyncio.to_thread(self.store.lookup, part.partition, wanted) if wanted else {}
        joins: list[Joined] = []
        for lab, d, offset in items:
            model = lab.model
            spent = part.spent.get(d)
            if spent is not None and spent[0] == model:
                self._count(part, model, "duplicate")
                continue
            located: tuple[int, bytes] | None = None
            fresh = part.fresh.get(d)
            if fresh is not None and fresh[0] == model:
                located = (fresh[1], fresh[2])
            else:
                located = found.get((model, d))
            if located is not None:
                bucket, raw = located
                if raw == TOMBSTONE:
                    self._count(part, model, "duplicate")
                    continue
                entry = PendingEntry.decode(raw)
                baseline = self.registry.get(model, entry.version)
                misfit = label_misfit(None if baseline is None else baseline.task, lab.actual)
                if misfit is not None:
                    self._count(part, model, "wrong_type")
                    self._letter(part, lab, offset, "label_type", misfit)
                    continue
                part.fresh.pop(d, None)
                part.spent[d] = (model, bucket)
                joins.append(Joined(model, bucket, entry, lab.actual, lab.timestamp))
            elif d in part.held:
                self._count(part, model, "duplicate")  # two labels before the prediction
            else:
                part.held[d] = Held(lab, now_ms, offset)
                part.held_added.add(d)
                part.held_removed.discard(d)
                self._count(part, model, "held")
        if joins:
            self._join(part, joins)
        # Only now: the offset never covers a label whose join is not in the state.
        part.next_offset = messages[-1].offset + 1

    def _join(self, part: PartitionJoin, joins: list[Joined]) -> None:
        """Count joined labels into the outcome panes of their predictions' event times."""
        groups: dict[tuple[str, str, int], list[Joined]] = {}
        for j in joins:
            ts = j.entry.timestamp_ms
            groups.setdefault((j.model, j.entry.version, ts - ts % self.pane_ms), []).append(j)
        for (model, version, pane), group in groups.items():
            baseline = self.registry.get(model, version)
            if baseline is None:  # its baseline was removed since: nothing to score against
                self._count(part, model, "orphan", len(group))
                continue
            delay = np.fromiter(
                (j.label_ts - j.entry.timestamp_ms / 1000 for j in group), np.float64, len(group)
            )
            np.maximum(delay, 0.0, out=delay)  # clocks disagree by a little: not a delay
            delta = self._delta(part, baseline, pane)
            delta.join(
                [j.entry.predicted for j in group],
                [j.actual for j in group],
                delay,
                [j.entry.segments for j in group],
            )
            counts = part.bucket_counts
            for j in group:
                counts.setdefault((model, j.bucket), Counter())[f"joined\x1f{version}"] += 1
            self._count(part, model, "joined", len(group))
            self.metrics.labels.observe_delay(model, delay)
            self._detect(part, baseline, pane, group)

    def _detect(
        self, part: PartitionJoin, baseline: Baseline, pane: int, group: list[Joined]
    ) -> None:
        ident = (baseline.model, baseline.version)
        detector = part.detectors.get(ident)
        if detector is None:
            detector = part.detectors[ident] = PageHinkley(mode="up")
        fired = 0
        for j in group:
            e = error_of(baseline.task, j.entry.predicted, j.actual, baseline.threshold)
            if math.isnan(e):
                continue
            detector.update(e)
            fired += detector.drift_detected
        part.detectors_dirty.add(ident)
        if fired:
            self._delta(part, baseline, pane).add_detections(fired)

    def _count(self, part: PartitionJoin, model: str, outcome: str, n: int = 1) -> None:
        part.counts[(model, outcome)] += n

    def _letter(
        self, part: PartitionJoin, label: Label, offset: int, reason: str, detail: str
    ) -> None:
        self.metrics.invalid.labels(reason).inc()
        part.letters.extend(
            event_letter(
                encode_label(label),
                reason,
                detail,
                topic=self.topic,
                partition=part.partition,
                offset=offset,
                envelope="labels",
            )
        )

    # -- flushing -------------------------------------------------------------------------

    async def prepare_flush(
        self, part: PartitionJoin, watermark_ms: int | None, now_ms: int
    ) -> tuple[JoinFlush, dict[OutcomeKey, OutcomePane]]:
        """Everything one flush writes for the label side of ``part`` (reads Redis).

        Also settles what time has decided: held labels whose prediction can no longer come
        become orphans, and buckets older than their TTL expire, counted per model.
        """
        self._release_held(part, watermark_ms, now_ms)
        expired = await self._expire(part, self.expiry_watermark(part, watermark_ms, now_ms))
        entries: dict[tuple[str, int], dict[bytes, bytes]] = {}
        for d, (model, bucket, raw) in part.fresh.items():
            entries.setdefault((model, bucket), {})[d] = raw
        for d, (model, bucket) in part.spent.items():
            entries.setdefault((model, bucket), {})[d] = TOMBSTONE
        outcomes = await self._merged_outcomes(part)
        batch = JoinFlush(
            partition=part.partition,
            next_offset=part.next_offset,
            entries=entries,
            bucket_counts={k: dict(v) for k, v in part.bucket_counts.items()},
            new_buckets=sorted(part.new_buckets - set(expired)),
            expired_buckets=expired,
            held_added={d: part.held[d].encode() for d in part.held_added if d in part.held},
            held_removed=sorted(part.held_removed),
            outcomes={k: orjson.dumps(v.to_state()) for k, v in outcomes.items()},
            detectors={
                ident: orjson.dumps(part.detectors[ident].to_state())
                for ident in part.detectors_dirty
            },
            counts=dict(part.counts),
            labels_mark=None if part.labels_mark is None else part.labels_mark.to_state(),
        )
        return batch, outcomes

    def flushed(
        self,
        part: PartitionJoin,
        batch: JoinFlush,
        outcomes: dict[OutcomeKey, OutcomePane],
        watermark_ms: int | None,
    ) -> None:
        """Forget what ``batch`` wrote; keep recent outcome panes to skip reading them back."""
        for (model, outcome), n in batch.counts.items():
            self.metrics.labels.count(model, outcome, n)
        part.flushed_offset = batch.next_offset
        part.buckets.difference_update(batch.expired_buckets)
        for store in (part.fresh, part.spent, part.bucket_counts, part.counts, part.deltas):
            store.clear()
        for s in (part.new_buckets, part.held_added, part.held_removed, part.detectors_dirty):
            s.clear()
        part.cache.update(outcomes)
        if watermark_ms is not None:
            horizon = watermark_ms - 2 * self.settings.performance_window_ms
            for key in [k for k in part.cache if k[2] < horizon]:
                del part.cache[key]

    def expiry_watermark(
        self, part: PartitionJoin, watermark_ms: int | None, now_ms: int
    ) -> int | None:
        """How far pending predictions may expire: both topics must be past the TTL.

        The predictions watermark alone would expire a bucket while its labels are still
        queued in a lagging labels partition (a backlog, a slow worker): joinable labels
        would become orphans. So the labels' own event-time progress bounds it too, idling
        forward with the wall clock when the label source is quiet; a partition where no
        label came since it was assigned (a model nobody labels) is bounded by the
        predictions alone once the idle timeout has passed.
        """
        if watermark_ms is None:
            return None
        mark = part.labels_mark
        if mark is None:
            return watermark_ms if now_ms - part.assigned_ms > self.idle_ms else None
        mark.advance(now_ms)
        labels_ms = mark.value
        return None if labels_ms is None else min(watermark_ms, labels_ms)

    def due(self, part: PartitionJoin, watermark_ms: int | None, now_ms: int) -> bool:
        """Whether time alone has settled something (a held label, an expired bucket)."""
        expiry = self.expiry_watermark(part, watermark_ms, now_ms)
        if expiry is not None and any(
            bucket_expired(b[1], b[2], b[3], expiry) for b in part.buckets
        ):
            return True
        return any(self._releasable(h, watermark_ms, now_ms) for h in part.held.values())

    def _releasable(self, h: Held, watermark_ms: int | None, now_ms: int) -> bool:
        if now_ms - h.held_at_ms < self.hold_ms:
            return False
        return watermark_ms is None or watermark_ms >= h.label.timestamp * 1000

    def _release_held(self, part: PartitionJoin, watermark_ms: int | None, now_ms: int) -> None:
        """Held labels whose prediction can no longer come: dead letters, as orphans.

        Both conditions must hold: the label waited ``UNDERTOW_LABEL_HOLD``, and the
        partition's predictions watermark passed the label's own time — a prediction comes
        before its label, so once the predictions stream is past that time (late events
        included) the prediction is not on its way. The second condition is what keeps a
        backlog replay, where labels can run ahead of predictions, from orphaning them all.
        """
        for d, h in list(part.held.items()):
            if not self._releasable(h, watermark_ms, now_ms):
                continue
            del part.held[d]
            part.held_added.discard(d)
            part.held_removed.add(d)
            self._count(part, h.label.model, "orphan")
            self._letter(
                part,
                h.label,
                h.offset,
                "unknown_prediction",
                f"no prediction {h.label.prediction_id!r} of model {h.label.model!r} in "
                f"partition {part.partition}: never published, published with another key, "
                f"or expired after its label TTL (the label waited "
                f"{(now_ms - h.held_at_ms) / 1000:.0f}s)",
            )

    async def _expire(self, part: PartitionJoin, watermark_ms: int | None) -> list[Bucket]:
        if watermark_ms is None:
            return []
        due = [b for b in part.buckets if bucket_expired(b[1], b[2], b[3], watermark_ms)]
        if not due:
            return []
        stored = await asyncio.to_thread(self.store.bucket_counts, part.partition, due)
        for b, counts in zip(due, stored, strict=True):
            model, start = b[0], b[1]
            total: Counter[str] = Counter(counts)
            total.update(part.bucket_counts.pop((model, start), {}))
            added = sum(n for k, n in total.items() if k.startswith("added"))
            joined = sum(n for k, n in total.items() if k.startswith("joined"))
            if added > joined:
                self._count(part, model, "expired", added - joined)
            for d in [d for d, v in part.fresh.items() if v[0] == model and v[1] == start]:
                del part.fresh[d]
            for d in [d for d, v in part.spent.items() if v == (model, start)]:
                del part.spent[d]
        return sorted(due)

    async def _merged_outcomes(self, part: PartitionJoin) -> dict[OutcomeKey, OutcomePane]:
        missing = [k for k in part.deltas if k not in part.cache]
        raws = await asyncio.to_thread(self.store.outcome_states, part.partition, missing)
        loaded: dict[OutcomeKey, OutcomePane] = {}
        for key, raw in zip(missing, raws, strict=True):
            baseline = self.registry.get(key[0], key[1])
            if baseline is None:
                continue
            loaded[key] = (
                OutcomePane.empty(baseline)
                if raw is None
                else OutcomePane.from_state(baseline, orjson.loads(raw))
            )
        merged: dict[OutcomeKey, OutcomePane] = {}
        for key, delta in part.deltas.items():
            base = part.cache.get(key) or loaded.get(key)
            if base is None:
                continue
            pane = base.copy()
            pane.merge(delta)
            merged[key] = pane
        return merged
