"""The label join's state in Redis, per partition, written with the pane state it goes with.

The owner of partition ``p`` of the predictions topic also owns partition ``p`` of the
labels topic (same key, same partition count, a range assignor: `agents.ingest`), so it is
the only writer of these keys, and it writes them in the same ``MULTI``/``EXEC`` as the
partition's pane partials and predictions offset (`PaneStore.flush`): the label offset, the
pending entries, held labels, outcome panes and detector state always agree with each other
and with the offsets of both topics.

Layout, under the namespace ``{ns}``:

- ``{ns}:label-offsets`` — hash ``partition`` → next labels offset to read
- ``{ns}:pending:{p}:{model}:{bucket}`` — hash digest(prediction_id) → `PendingEntry` bytes,
  or the empty tombstone once joined (see `streams.label_join`)
- ``{ns}:pending-counts:{p}:{model}:{bucket}`` — hash ``added␟version`` / ``joined␟version``
  → count, so an expiring bucket says exactly how many predictions never got a label
- ``{ns}:pending-buckets:{p}`` — set ``model␟bucket␟width␟ttl`` of the live buckets
- ``{ns}:held:{p}`` — hash digest → a label that came before its prediction (JSON)
- ``{ns}:outcomes:{p}`` — hash ``model␟version␟pane`` → outcome pane state (JSON); panes are
  slices of *prediction* event time, ``UNDERTOW_PERFORMANCE_SLIDE`` long
- ``{ns}:detectors:{p}`` — hash ``model␟version`` → concept-drift detector state (JSON)
- ``{ns}:label-counts`` — hash ``model␟outcome`` → labels by outcome (joined, duplicate,
  orphan, expired, wrong_type), exact across crashes since it moves with the offsets
- ``{ns}:outcome-dirty`` — set ``model␟version␟pane`` of outcome panes changed since the
  evaluator last looked
- ``{ns}:label-watermarks`` — hash ``partition`` → the labels partition's event-time
  watermark (JSON), so a performance window is only final once the labels are past it too
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from agents.pane_store import owner_view

SEP = "\x1f"

#: A live pending bucket: model, start (ms), width (ms), the label TTL it was made for (ms).
Bucket = tuple[str, int, int, int]
#: An outcome pane: model, version, pane start (ms).
OutcomeKey = tuple[str, str, int]


def outcome_field(key: OutcomeKey) -> str:
    return f"{key[0]}{SEP}{key[1]}{SEP}{key[2]}"


def parse_outcome_field(raw: bytes | str) -> OutcomeKey:
    text = raw.decode() if isinstance(raw, bytes) else raw
    model, version, pane = text.split(SEP)
    return model, version, int(pane)


@dataclass
class JoinState:
    """What a new owner of a partition finds of the label join in Redis."""

    next_offset: int | None
    buckets: set[Bucket]
    held: dict[bytes, bytes]
    detectors: dict[tuple[str, str], bytes]


@dataclass
class JoinFlush:
    """One flush's worth of label-join writes for one partition."""

    partition: int
    next_offset: int | None = None
    #: (model, bucket start) → {digest: entry bytes or the tombstone}
    entries: Mapping[tuple[str, int], Mapping[bytes, bytes]] = field(default_factory=dict)
    #: (model, bucket start) → {"added␟v1": n, "joined␟v1": n}
    bucket_counts: Mapping[tuple[str, int], Mapping[str, int]] = field(default_factory=dict)
    new_buckets: Iterable[Bucket] = ()
    expired_buckets: Iterable[Bucket] = ()
    held_added: Mapping[bytes, bytes] = field(default_factory=dict)
    held_removed: Iterable[bytes] = ()
    outcomes: Mapping[OutcomeKey, bytes] = field(default_factory=dict)
    detectors: Mapping[tuple[str, str], bytes] = field(default_factory=dict)
    #: (model, outcome) → count
    counts: Mapping[tuple[str, str], int] = field(default_factory=dict)
    #: The labels partition's watermark state, when it has one.
    labels_mark: Mapping[str, int | None] | None = None

    @property
    def empty(self) -> bool:
        return self.next_offset is None and not (
            self.entries
            or self.held_added
            or self.held_removed
            or self.outcomes
            or self.detectors
            or self.counts
            or self.expired_buckets
        )


class JoinStore:
    """Reads and transactional writes of the label join's state."""

    def __init__(self, client: redis.Redis, namespace: str = "undertow") -> None:
        self.client = client
        self.ns = namespace

    # -- keys -----------------------------------------------------------------------------

    @property
    def offsets_key(self) -> str:
        return f"{self.ns}:label-offsets"

    @property
    def counts_key(self) -> str:
        return f"{self.ns}:label-counts"

    @property
    def dirty_key(self) -> str:
        return f"{self.ns}:outcome-dirty"

    @property
    def watermarks_key(self) -> str:
        return f"{self.ns}:label-watermarks"

    def pending_key(self, partition: int, model: str, bucket: int) -> str:
        return f"{self.ns}:pending:{partition}:{model}:{bucket}"

    def pending_counts_key(self, partition: int, model: str, bucket: int) -> str:
        return f"{self.ns}:pending-counts:{partition}:{model}:{bucket}"

    def buckets_key(self, partition: int) -> str:
        return f"{self.ns}:pending-buckets:{partition}"

    def held_key(self, partition: int) -> str:
        return f"{self.ns}:held:{partition}"

    def outcomes_key(self, partition: int) -> str:
        return f"{self.ns}:outcomes:{partition}"

    def detectors_key(self, partition: int) -> str:
        return f"{self.ns}:detectors:{partition}"

    # -- the owner of a partition ---------------------------------------------------------

    def load(self, partition: int) -> JoinState:
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(self.offsets_key, str(partition))
        pipe.smembers(self.buckets_key(partition))
        pipe.hgetall(self.held_key(partition))
        pipe.hgetall(self.detectors_key(partition))
        offset, members, held, detectors = pipe.execute()
        buckets: set[Bucket] = set()
        for m in members:
            model, start, width, ttl = (m.decode() if isinstance(m, bytes) else m).split(SEP)
            buckets.add((model, int(start), int(width), int(ttl)))
        return JoinState(
            next_offset=None if offset is None else int(offset),
            buckets=buckets,
            held=dict(held),
            detectors={_ident(k): v for k, v in detectors.items()},
        )

    def lookup(
        self, partition: int, wanted: Mapping[str, tuple[list[bytes], list[int]]]
    ) -> dict[tuple[str, bytes], tuple[int, bytes]]:
        """Pending entries by (model, digest): model → (digests, live bucket starts).

        One round trip: an ``HMGET`` of all the digests in every live bucket of their model.
        Returns (model, digest) → (bucket start, entry or tombstone) for those found.
        """
        pipe = self.client.pipeline(transaction=False)
        asked: list[tuple[str, int, list[bytes]]] = []
        for model, (digests, buckets) in wanted.items():
            for b in buckets:
                pipe.hmget(self.pending_key(partition, model, b), digests)
                asked.append((model, b, digests))
        found: dict[tuple[str, bytes], tuple[int, bytes]] = {}
        if not asked:
            return found
        for (model, b, digests), values in zip(asked, pipe.execute(), strict=True):
            for d, v in zip(digests, values, strict=True):
                if v is not None:
                    found[(model, d)] = (b, v)
        return found

    def outcome_states(self, partition: int, keys: list[OutcomeKey]) -> list[bytes | None]:
        if not keys:
            return []
        values: list[bytes | None] = self.client.hmget(
            self.outcomes_key(partition), [outcome_field(k) for k in keys]
        )
        return values

    def bucket_counts(self, partition: int, buckets: list[Bucket]) -> list[dict[str, int]]:
        pipe = self.client.pipeline(transaction=False)
        for model, start, _, _ in buckets:
            pipe.hgetall(self.pending_counts_key(partition, model, start))
        return [
            {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in row.items()}
            for row in pipe.execute()
        ]

    def apply(self, pipe: Any, batch: JoinFlush) -> None:
        """Queue one flush's writes on ``pipe``, the partition's ``MULTI``/``EXEC``."""
        p = batch.partition
        for (model, bucket), entries in batch.entries.items():
            if entries:
                pipe.hset(self.pending_key(p, model, bucket), mapping=dict(entries))
        for (model, bucket), counts in batch.bucket_counts.items():
            key = self.pending_counts_key(p, model, bucket)
            for name, n in counts.items():
                pipe.hincrby(key, name, n)
        new = [_member(b) for b in batch.new_buckets]
        if new:
            pipe.sadd(self.buckets_key(p), *new)
        for b in batch.expired_buckets:
            pipe.delete(self.pending_key(p, b[0], b[1]), self.pending_counts_key(p, b[0], b[1]))
            pipe.srem(self.buckets_key(p), _member(b))
        if batch.held_added:
            pipe.hset(self.held_key(p), mapping=dict(batch.held_added))
        removed = list(batch.held_removed)
        if removed:
            pipe.hdel(self.held_key(p), *removed)
        if batch.outcomes:
            fields = {outcome_field(k): v for k, v in batch.outcomes.items()}
            pipe.hset(self.outcomes_key(p), mapping=fields)
            pipe.sadd(self.dirty_key, *fields)
        if batch.detectors:
            pipe.hset(
                self.detectors_key(p),
                mapping={f"{m}{SEP}{v}": s for (m, v), s in batch.detectors.items()},
            )
        for (model, outcome), n in batch.counts.items():
            pipe.hincrby(self.counts_key, f"{model}{SEP}{outcome}", n)
        if batch.next_offset is not None:
            pipe.hset(self.offsets_key, str(p), str(batch.next_offset))
        if batch.labels_mark is not None:
            pipe.hset(self.watermarks_key, str(p), orjson.dumps(dict(batch.labels_mark)))

    # -- the evaluator and operators --------------------------------------------------------

    def outcome_panes(
        self, model: str, version: str, pane_starts: list[int], partitions: Iterable[int]
    ) -> list[bytes]:
        """Every partition's outcome partial of the given panes, in one round trip."""
        fields = [outcome_field((model, version, p)) for p in pane_starts]
        pipe = self.client.pipeline(transaction=False)
        for partition in partitions:
            pipe.hmget(self.outcomes_key(partition), fields)
        return [v for row in pipe.execute() for v in row if v is not None]

    def label_watermarks(self, now_ms: int | None = None) -> dict[int, dict[str, int | None]]:
        """Every labels partition's watermark state; with ``now_ms``, as its owner last saw it
        (`agents.pane_store.owner_view`, with the heartbeat the same owner writes for the
        predictions partition): a dead or stalled owner's partition does not go idle."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.watermarks_key)
        pipe.hgetall(f"{self.ns}:heartbeats")
        raw, beats = pipe.execute()
        heartbeats = {int(k): int(v) for k, v in beats.items()}
        return {
            int(k): owner_view(orjson.loads(v), heartbeats.get(int(k)), now_ms)
            for k, v in raw.items()
        }

    def take_dirty(self, limit: int = 10_000) -> list[OutcomeKey]:
        raw = self.client.spop(self.dirty_key, limit) or []
        return [parse_outcome_field(r) for r in raw]

    def counts(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for k, v in self.client.hgetall(self.counts_key).items():
            model, outcome = (k.decode() if isinstance(k, bytes) else k).split(SEP)
            out[(model, outcome)] = int(v)
        return out


def _member(b: Bucket) -> str:
    return SEP.join(map(str, b))


def _ident(raw: bytes | str) -> tuple[str, str]:
    model, version = (raw.decode() if isinstance(raw, bytes) else raw).split(SEP)
    return model, version
