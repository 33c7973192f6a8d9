"""Window state in Redis: pane partials, source offsets and watermarks, per partition.

The worker that owns a partition of the predictions topic is the only writer of that
partition's keys, and it writes a micro-batch's pane partials together with the offset of
the next message to read and the partition's watermark in ONE ``MULTI``/``EXEC``. After a
crash or a rebalance the new owner reads the offset back and seeks there, so every event is
counted exactly once: the state never holds an event its offset does not cover, and the
offset never covers an event the state lacks.

Layout, under a namespace (the topic prefix without its dot, ``undertow`` by default):

- ``{ns}:panes:{partition}`` — hash ``model␟version␟pane_start_ms`` → pane state (JSON)
- ``{ns}:offsets`` — hash ``partition`` → next offset to read
- ``{ns}:watermarks`` — hash ``partition`` → watermark state (JSON)
- ``{ns}:heartbeats`` — hash ``partition`` → wall clock (ms) of its owner's last flush, written
  at every flush even when the partition had nothing new (see `owner_view`)
- ``{ns}:models`` — set of ``model␟version`` that have panes, for the evaluator
- ``{ns}:reevaluate`` — set of ``model␟version␟window_start_ms`` touched by late events

Every other partition's state is a plain read away, which is what lets one evaluator merge
the partials of all partitions whichever workers own them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

SEP = "\x1f"  # ASCII unit separator: cannot appear in a model name someone typed

PaneKey = tuple[str, str, int]  # model, version, pane start (ms)


def pane_field(key: PaneKey) -> str:
    model, version, pane = key
    return f"{model}{SEP}{version}{SEP}{pane}"


def parse_pane_field(raw: bytes | str) -> PaneKey:
    text = raw.decode() if isinstance(raw, bytes) else raw
    model, version, pane = text.split(SEP)
    return model, version, int(pane)


def earliest_pane(
    client: redis.Redis, cache_key: str, hashes: Iterable[str], prefix: str
) -> int | None:
    """The earliest pane start among the fields ``prefix…␟pane`` of ``hashes``, cached at
    ``cache_key`` once found: evaluation starts where a model version's stream does, not at
    the epoch. Drift panes and outcome panes both use it."""
    cached = client.get(cache_key)
    if cached is not None:
        return int(cached)
    first: int | None = None
    for key in hashes:
        for name, _ in client.hscan_iter(key, match=prefix + "*"):
            pane = int((name.decode() if isinstance(name, bytes) else name).rsplit(SEP, 1)[1])
            first = pane if first is None else min(first, pane)
    if first is not None:
        client.set(cache_key, str(first), nx=True)
    return first


class OwnershipLost(RuntimeError):
    """Another worker owns the partition now: this worker's state for it is stale."""


@dataclass
class PartitionState:
    """What a new owner of a partition finds in Redis."""

    next_offset: int | None
    watermark: dict[str, int | None] | None
    panes: dict[PaneKey, bytes] = field(default_factory=dict)
    heartbeat_ms: int | None = None


@dataclass
class PartitionFlush:
    """One micro-batch of one partition, to be written atomically."""

    partition: int
    next_offset: int
    watermark: Mapping[str, int | None]
    panes: Mapping[PaneKey, bytes] = field(default_factory=dict)
    dropped: Iterable[PaneKey] = ()
    reevaluate: Iterable[tuple[str, str, int]] = ()
    #: Wall clock of this flush, recorded as the partition's heartbeat.
    as_of_ms: int | None = None
    #: More writes for the same transaction (the label join's, `agents.join_store`).
    extra: Callable[[Any], None] | None = None
    #: The owner's fencing token (see the module docstring); None writes unfenced.
    token: str | None = None


def owner_view(
    state: dict[str, int | None], heartbeat_ms: int | None, now_ms: int | None
) -> dict[str, int | None]:
    """A partition's watermark state as its owner last saw it (at ``heartbeat_ms``).

    Only an owner that keeps polling a partition and finds nothing makes it idle. From the
    last flush of an owner that died (or was revoked) to the first flush of the next one,
    nobody looks at the partition: that gap is not idleness, and counting it as such would
    let the combined watermark run ahead of the events waiting in the partition, which the
    next owner would then find too late and dead-letter. So the idle clock is moved forward
    by the time since the heartbeat (``seen_at`` + gap): the partition stays as idle, or as
    active, as it was when last looked at. For a live owner the gap is one flush interval.
    """
    seen = state.get("seen_at_ms")
    if heartbeat_ms is None or now_ms is None or seen is None or now_ms <= heartbeat_ms:
        return state
    return {**state, "seen_at_ms": seen + (now_ms - heartbeat_ms)}


class PaneStore:
    """Reads and atomic writes of the streaming window state."""

    def __init__(self, client: redis.Redis, namespace: str = "undertow") -> None:
        self.client = client
        self.ns = namespace

    def _panes_key(self, partition: int) -> str:
        return f"{self.ns}:panes:{partition}"

    @property
    def offsets_key(self) -> str:
        return f"{self.ns}:offsets"

    @property
    def watermarks_key(self) -> str:
        return f"{self.ns}:watermarks"

    @property
    def heartbeats_key(self) -> str:
        return f"{self.ns}:heartbeats"

    @property
    def models_key(self) -> str:
        return f"{self.ns}:models"

    @property
    def reevaluate_key(self) -> str:
        return f"{self.ns}:reevaluate"

    # -- the owner of a partition ---------------------------------------------------------

    def load(self, partition: int, now_ms: int | None = None) -> PartitionState:
        """The partition's state; with ``now_ms``, its watermark as seen by `owner_view`."""
        offset = self.client.hget(self.offsets_key, str(partition))
        wm = self.client.hget(self.watermarks_key, str(partition))
        beat = self.client.hget(self.heartbeats_key, str(partition))
        panes: dict[PaneKey, bytes] = {}
        for name, value in self.client.hscan_iter(self._panes_key(partition), count=500):
            panes[parse_pane_field(name)] = value
        heartbeat = None if beat is None else int(beat)
        return PartitionState(
            next_offset=None if offset is None else int(offset),
            watermark=None if wm is None else owner_view(orjson.loads(wm), heartbeat, now_ms),
            panes=panes,
            heartbeat_ms=heartbeat,
        )

    def owner_key(self, partition: int) -> str:
        return f"{self.ns}:owner:{partition}"

    def claim_ownership(self, partition: int, token: str) -> None:
        """Make ``token`` the partition's owner: flushes with any other token fail from now."""
        self.client.set(self.owner_key(partition), token)

    def flush(self, batch: PartitionFlush) -> None:
        """Panes, offset and watermark of one partition in one transaction.

        With a ``token``, the transaction only commits while the token owns the partition;
        otherwise it raises `OwnershipLost` and writes nothing.
        """
        if batch.token is None:
            self._flush(self.client.pipeline(transaction=True), batch)
            return
        owner = self.owner_key(batch.partition)
        with self.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(owner)
                current = pipe.get(owner)
                if (current.decode() if isinstance(current, bytes) else current) != batch.token:
                    raise OwnershipLost(f"partition {batch.partition} has another owner")
                pipe.multi()
                self._flush(pipe, batch)
            except redis.WatchError:
                raise OwnershipLost(
                    f"partition {batch.partition} changed owner during the flush"
                ) from None

    def _flush(self, pipe: Any, batch: PartitionFlush) -> None:
        key = self._panes_key(batch.partition)
        if batch.panes:
            pipe.hset(key, mapping={pane_field(k): v for k, v in batch.panes.items()})
            models = {f"{m}{SEP}{v}" for m, v, _ in batch.panes}
            pipe.sadd(self.models_key, *models)
        dropped = [pane_field(k) for k in batch.dropped]
        if dropped:
            pipe.hdel(key, *dropped)
        reeval = [f"{m}{SEP}{v}{SEP}{w}" for m, v, w in batch.reevaluate]
        if reeval:
            pipe.sadd(self.reevaluate_key, *reeval)
        pipe.hset(self.offsets_key, str(batch.partition), str(batch.next_offset))
        pipe.hset(self.watermarks_key, str(batch.partition), orjson.dumps(dict(batch.watermark)))
        if batch.as_of_ms is not None:
            pipe.hset(self.heartbeats_key, str(batch.partition), str(batch.as_of_ms))
        if batch.extra is not None:
            batch.extra(pipe)
        pipe.execute()

    def heartbeat(self, partitions: Iterable[int], now_ms: int) -> None:
        """Record that the owner of ``partitions`` polled them at ``now_ms`` (nothing new)."""
        chosen = [str(p) for p in partitions]
        if chosen:
            self.client.hset(self.heartbeats_key, mapping=dict.fromkeys(chosen, str(now_ms)))

    # -- the evaluator --------------------------------------------------------------------

    def watermarks(self, now_ms: int | None = None) -> dict[int, dict[str, int | None]]:
        """Every partition's watermark state; with ``now_ms``, as `owner_view` sees it."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.watermarks_key)
        pipe.hgetall(self.heartbeats_key)
        raw, beats = pipe.execute()
        heartbeats = {int(k): int(v) for k, v in beats.items()}
        return {
            int(k): owner_view(orjson.loads(v), heartbeats.get(int(k)), now_ms)
            for k, v in raw.items()
        }

    def models(self) -> list[tuple[str, str]]:
        members = self.client.smembers(self.models_key)
        out = []
        for m in members:
            model, version = (m.decode() if isinstance(m, bytes) else m).split(SEP)
            out.append((model, version))
        return sorted(out)

    def panes(
        self, model: str, version: str, pane_starts: list[int], partitions: Iterable[int]
    ) -> list[bytes]:
        """Every partition's partial of the given panes, in one round trip."""
        fields = [pane_field((model, version, p)) for p in pane_starts]
        pipe = self.client.pipeline(transaction=False)
        for partition in partitions:
            pipe.hmget(self._panes_key(partition), fields)
        return [v for row in pipe.execute() for v in row if v is not None]

    def take_reevaluations(self) -> list[tuple[str, str, int]]:
        """Windows touched by late events since the last call (removed as they are read)."""
        raw = self.client.spop(self.reevaluate_key, 10_000) or []
        out = []
        for r in raw:
            model, version, start = (r.decode() if isinstance(r, bytes) else r).split(SEP)
            out.append((model, version, int(start)))
        return out

    def known_partitions(self) -> list[int]:
        return sorted(int(k) for k in self.client.hkeys(self.offsets_key))
