"""``redis://`` faust table store: one Redis hash per table partition, written in batches.

A RocksDB store lives on the worker's disk and dies with its pod; with the tables in Redis,
a worker that takes over a partition finds its state there and only replays the changelog
written since the last flush. Layout: :mod:`agents.stores.layout`.

Writes are buffered per partition (:mod:`agents.stores.buffer`) and reach Redis together
with the partition's changelog offset in one MULTI/EXEC, so after a crash a partition's
hash and its offset always come from the same flush. Reads see the buffer first. When:

- after every offset commit (:mod:`agents.stores.commit_hook`): the commit waited for the
  changelog acks, so the offsets faust reported cover the buffered writes;
- when a partition buffers ``flush_size`` keys, to bound memory;
- after each changelog batch applied during recovery, so recovery progress is durable;
- on stop, while the worker still owns its partitions.

Not on ``set_persisted_offset``: faust calls it once per changelog record acked, which
would be one round trip per table write. Not on revocation either: the buffer of a revoked
partition is dropped, because the new owner may already be reading the hash, and a worker
that was fenced out of the group would overwrite newer state; the changelog holds every
committed write, and the new owner replays it from the last flushed offset.

Data may run ahead of the offset (writes not yet acked), never behind it: at-least-once
recovery replays changelog records after the offset, and replaying a record is idempotent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import redis
from faust.stores import base
from faust.streams import current_event
from faust.types import TP, AppT, CollectionT, EventT
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from yarl import URL

from agents.stores import commit_hook, maintenance
from agents.stores.buffer import PartitionBuffer
from agents.stores.layout import TableKeys, redact
from agents.stores.reads import BufferedReads

DEFAULT_FLUSH_SIZE = 10_000


class RedisStoreError(RuntimeError):
    """Redis was unreachable or refused a command; names the URL, never its password."""


class RedisStore(BufferedReads, base.SerializedStore[Any, Any]):
    """Faust table storage in Redis (``store="redis://host:6379/0"``), at-least-once.

    Options, from the URL query (``?flush_size=5000``) or the table's ``options``:
    ``flush_size``, the buffered keys of one partition that trigger a flush. Other query
    parameters (``socket_timeout``, …) go to redis-py.
    """

    def __init__(
        self,
        url: str | URL,
        app: AppT,
        table: CollectionT,
        *,
        options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(url, app, table, options=options, **kwargs)
        secret = URL(str(url))
        size = secret.query.get("flush_size") or (options or {}).get("flush_size")
        self.flush_size = int(size or DEFAULT_FLUSH_SIZE)
        if self.flush_size < 1:
            raise ValueError(f"flush_size must be at least 1, not {self.flush_size}")
        self._redis_url = str(secret.without_query_params("flush_size"))
        # faust prints store.url in reprs and labels: keep only the redacted form there.
        self.url = URL(redact(secret))
        self.layout = TableKeys.for_table(app.conf.id, self.table_name)
        self._buffers: dict[int, PartitionBuffer] = {}
        # Partitions this worker owns, known from the first rebalance on; until then (tests,
        # tools) every partition in Redis is visible and writable.
        self._active: set[int] | None = None
        self._client: redis.Redis | None = None

    # -- connection

    @property
    def client(self) -> redis.Redis:
        """One client and connection pool per store, created on first use."""
        if self._client is None:
            # Few, short retries: the worker's event loop waits for every call.
            retry = Retry(ExponentialBackoff(cap=1.0, base=0.1), 3)
            pool = redis.ConnectionPool.from_url(
                self._redis_url, socket_connect_timeout=5, socket_timeout=10, retry=retry
            )
            self._client = redis.Redis(connection_pool=pool)
        return self._client

    @contextlib.contextmanager
    def _redis(self, action: str) -> Iterator[None]:
        try:
            yield
        except redis.ConnectionError as exc:
            raise RedisStoreError(
                f"table {self.table_name!r}: Redis at {self.url} is unreachable ({action}): {exc}"
            ) from exc
        except redis.RedisError as exc:
            raise RedisStoreError(
                f"table {self.table_name!r}: {action} failed on Redis at {self.url}: {exc}"
            ) from exc

    def ping(self) -> None:
        """Fail now, naming the URL, rather than at the first event."""
        with self._redis("ping"):
            self.client.ping()

    async def on_start(self) -> None:
        self.ping()
        commit_hook.attach(self.app, self)
        if self.app.in_transaction:
            # faust never calls set_persisted_offset on commit under exactly_once (its
            # pending offsets are keyed by changelog partitions but looked up by source
            # ones), and a flush may hold writes of a transaction that is later aborted.
            self.log.warning("exactly_once: the redis:// store keeps at-least-once state")

    async def on_stop(self) -> None:
        commit_hook.detach(self.app, self)
        try:
            self.flush()
        except RedisStoreError as exc:  # the changelog still has the writes
            self.log.error("final flush failed, recovery will replay the changelog: %s", exc)
        if self._client is not None:
            self._client.close()
            self._client.connection_pool.disconnect()
            self._client = None

    # -- partitions

    def _event_partition(self) -> int | None:
        """The partition a read is confined to, as RocksDBStore decides it."""
        event = current_event()
        if event is None or self.table.is_global or self.table.use_partitioner:
            return None
        return event.message.partition

    def _visible_partitions(self) -> list[int]:
        if self._active is not None:
            parts = set(self._active)
        else:
            with self._redis("list partitions"):
                parts = {int(p) for p in self.client.smembers(self.layout.partitions)}
        return sorted(parts | self._buffers.keys())

    def _buffer(self, partition: int) -> PartitionBuffer:
        buf = self._buffers.get(partition)
        if buf is None:
            buf = self._buffers[partition] = PartitionBuffer()
        return buf

    # -- writes

    def _put(self, partition: int, key: bytes, value: bytes | None) -> None:
        buf = self._buffer(partition)
        buf.put(key, value)
        if len(buf.writes) >= self.flush_size:
            self._flush([partition])

    def _set(self, key: bytes, value: bytes | None) -> None:
        event = current_event()
        if event is None:
            raise TypeError(
                f"table {self.table_name!r}: cannot write outside of stream iteration "
                "(the partition comes from the current event)"
            )
        self._put(event.message.partition, key, value)

    def _del(self, key: bytes) -> None:
        partition = self._event_partition()
        # Without an event the key's partition is unknown: delete it wherever it may be.
        for p in [partition] if partition is not None else self._visible_partitions():
            self._put(p, key, None)

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        """Remember the offset; it is written with the partition's next flush.

        Faust calls this per acked changelog record (not per batch), so it never flushes.
        An offset for a partition this worker no longer owns is late and ignored.
        """
        if self._active is not None and tp.partition not in self._active:
            return
        self._buffer(tp.partition).offset = offset

    def flush(self) -> int:
        """Write every buffered partition with its offset in one MULTI/EXEC."""
        return self._flush(list(self._buffers))

    def _flush(self, partitions: Iterable[int]) -> int:
        dirty = {p: self._buffers[p] for p in partitions if self._buffers[p].dirty}
        if not dirty:
            return 0
        with self._redis("flush"):
            pipe = self.client.pipeline(transaction=True)
            for partition, buf in dirty.items():
                buf.queue(pipe, self.layout, partition)
            pipe.execute()
        for partition in dirty:  # only once Redis has them: a failed flush loses nothing
            del self._buffers[partition]
        return len(dirty)

    def apply_changelog_batch(
        self,
        batch: Iterable[EventT[Any]],
        to_key: Callable[[Any], Any],
        to_value: Callable[[Any], Any],
    ) -> None:
        """Apply changelog records and their offsets in one flush.

        Records of partitions this worker does not own (standby replicas) are skipped: the
        owner writes the same shared hash, and a standby's older flush would undo its newer
        state. Standbys therefore cost nothing but are useless; set
        ``table_standby_replicas=0``.
        """
        offsets: dict[int, int] = {}
        for event in batch:
            message = event.message
            if self._active is not None and message.partition not in self._active:
                continue
            if message.key is None:
                raise TypeError(f"Changelog entry is missing key: {message}")
            self._buffer(message.partition).put(message.key, message.value)
            offsets[message.partition] = max(message.offset, offsets.get(message.partition, -1))
        for partition, offset in offsets.items():
            self._buffers[partition].offset = offset
        self._flush(offsets)

    def persisted_offset(self, tp: TP) -> int | None:
        """The offset this store holds for ``tp``: buffered if any (read-your-writes)."""
        buf = self._buffers.get(tp.partition)
        if buf is not None and buf.offset is not None:
            return buf.offset
        with self._redis("read offset"):
            raw = self.client.hget(self.layout.offsets, str(tp.partition))
        return int(raw) if raw is not None else None

    # -- rebalance and whole-partition operations

    async def on_rebalance(
        self,
        assigned: set[TP],
        revoked: set[TP],
        newly_assigned: set[TP],
        generation_id: int = 0,
    ) -> None:
        """Own the table's active partitions; drop the buffers of the others unflushed.

        Called after the new assignment is known, when another worker may already be
        recovering a revoked partition from Redis: see the module docstring for why its
        buffer is dropped rather than flushed.
        """
        topic = self.table.changelog_topic.get_topic_name()
        standbys = self.app.assignor.assigned_standbys()
        # A global table's every partition is assigned active (and standby) everywhere.
        self._active = {
            tp.partition
            for tp in assigned
            if tp.topic == topic and (self.table.is_global or tp not in standbys)
        }
        for partition in set(self._buffers) - self._active:
            dropped = self._buffers.pop(partition)
            self.log.info(
                "partition %d revoked: dropped %d buffered writes, the changelog has them",
                partition,
                len(dropped.writes),
            )

    def _clear(self) -> None:
        """Delete the visible partitions' data and offsets (``table.clear()``)."""
        partitions = self._visible_partitions()
        self._buffers.clear()
        with self._redis("clear"):
            maintenance.unlink_partitions(self.client, self.layout, partitions)

    def reset_state(self) -> None:
        """Delete all of the table in Redis (``faust reset``); Kafka's changelog stays."""
        partitions = set(self._buffers) | (self._active or set())
        self._buffers.clear()
        with self._redis("reset"):
            maintenance.unlink_table(self.client, self.layout, partitions)

    async def backup_partition(
        self, tp: TP | int, flush: bool = True, purge: bool = False, keep: int = 1
    ) -> None:
        """Copy a partition and its offset to its single backup slot, inside Redis.

        ``purge``/``keep`` have nothing to do: there is one backup per partition.
        """
        if flush:
            self.flush()
        with self._redis("backup"):
            maintenance.backup(self.client, self.layout, _partition(tp))

    def restore_backup(self, tp: TP | int, latest: bool = True, backup_id: int = 0) -> None:
        """Replace a partition (and its offset) with its backup; its buffer is discarded."""
        if not latest and backup_id != 0:
            raise ValueError("the redis store keeps one backup per partition: backup_id 0")
        partition = _partition(tp)
        self._buffers.pop(partition, None)
        with self._redis("restore"):
            maintenance.restore(self.client, self.layout, partition)


def _partition(tp: TP | int) -> int:
    return tp.partition if isinstance(tp, TP) else tp


#: The name faust's entry points and FactoryMapping conventionally look up.
Store = RedisStore
