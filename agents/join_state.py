"""What the label join holds for one owned partition between two flushes (`agents.labels`).

Everything here is in memory only; `agents.labels.LabelJoiner.prepare_flush` turns it into
one transaction's writes (`agents.join_store.JoinFlush`), and a new owner rebuilds it from
Redis (`JoinStore.load`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import orjson

from agents.join_store import Bucket, OutcomeKey
from streams.concept_drift import PageHinkley
from streams.events import Label, decode_labels, encode_label
from streams.label_join import PendingEntry
from streams.outcomes import OutcomePane
from streams.watermarks import Watermark

#: Outcomes a label can end in, plus ``held`` (not an end: counted when a label waits).
OUTCOMES = ("joined", "duplicate", "orphan", "wrong_type", "held", "expired")


@dataclass
class Held:
    """A label that came before its prediction."""

    label: Label
    held_at_ms: int
    offset: int

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "label": encode_label(self.label),
                "held_at_ms": self.held_at_ms,
                "offset": self.offset,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> Held:
        data = orjson.loads(raw)
        labels, _ = decode_labels(orjson.dumps(data["label"]))
        return cls(labels[0], int(data["held_at_ms"]), int(data["offset"]))


@dataclass
class Joined:
    """A label matched to its prediction, before it is counted into an outcome pane."""

    model: str
    bucket: int
    entry: PendingEntry
    actual: float | str
    label_ts: float


@dataclass
class PartitionJoin:
    """The label side of one owned partition, between two flushes."""

    partition: int
    next_offset: int | None = None
    flushed_offset: int | None = None
    buckets: set[Bucket] = field(default_factory=set)
    new_buckets: set[Bucket] = field(default_factory=set)
    #: digest → (model, bucket start, entry): pending entries not flushed yet.
    fresh: dict[bytes, tuple[str, int, bytes]] = field(default_factory=dict)
    #: digest → (model, bucket start): joined since the last flush (tombstones to write).
    spent: dict[bytes, tuple[str, int]] = field(default_factory=dict)
    held: dict[bytes, Held] = field(default_factory=dict)
    held_added: set[bytes] = field(default_factory=set)
    held_removed: set[bytes] = field(default_factory=set)
    #: (model, bucket start) → {"added␟v1": n, "joined␟v1": n}
    bucket_counts: dict[tuple[str, int], Counter[str]] = field(default_factory=dict)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Outcome-pane changes since the last flush (merged into the stored panes then).
    deltas: dict[OutcomeKey, OutcomePane] = field(default_factory=dict)
    #: Full outcome panes recently written, so a flush need not read them back.
    cache: dict[OutcomeKey, OutcomePane] = field(default_factory=dict)
    detectors: dict[tuple[str, str], PageHinkley] = field(default_factory=dict)
    detectors_dirty: set[tuple[str, str]] = field(default_factory=set)
    letters: list[bytes] = field(default_factory=list)
    #: Event-time progress of this labels partition (label timestamps), idling forward with
    #: the wall clock when no label comes; None until the first label since assignment.
    labels_mark: Watermark | None = None
    assigned_ms: int = 0

    @property
    def pending(self) -> bool:
        return (
            self.next_offset != self.flushed_offset
            or bool(self.fresh or self.spent or self.held_added or self.held_removed)
            or bool(self.deltas or self.counts or self.letters or self.detectors_dirty)
        )
