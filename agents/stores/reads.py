"""The read path of the Redis table store: the buffer decides first, Redis the rest.

Reads must see the store's own unflushed writes, deletes included, or an agent that does
``table[k] += 1`` twice between flushes would count once. A key the buffer knows costs no
round trip; the others cost one (a pipeline when the partition is not known).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, cast

import redis

from agents.stores.buffer import PartitionBuffer
from agents.stores.layout import TableKeys

SCAN_COUNT = 1_000


class BufferedReads:
    """``SerializedStore`` reads over per-partition buffers and per-partition hashes.

    A mixin of :class:`agents.stores.redis.RedisStore`, which provides the attributes
    declared here.
    """

    layout: TableKeys
    _buffers: dict[int, PartitionBuffer]
    _redis: Callable[[str], contextlib.AbstractContextManager[None]]
    _event_partition: Callable[[], int | None]
    _visible_partitions: Callable[[], list[int]]

    if TYPE_CHECKING:

        @property
        def client(self) -> redis.Redis: ...

    def _get(self, key: bytes) -> bytes | None:
        partition = self._event_partition()
        candidates = [partition] if partition is not None else self._visible_partitions()
        unknown = []
        for p in candidates:
            buf = self._buffers.get(p)
            known, value = buf.lookup(key) if buf is not None else (False, None)
            if value is not None:
                return value
            if not known:
                unknown.append(p)
        if not unknown:
            return None
        with self._redis("read"):
            pipe = self.client.pipeline(transaction=False)
            for p in unknown:
                pipe.hget(self.layout.partition(p), key)
            return next((v for v in pipe.execute() if v is not None), None)

    def _contains(self, key: bytes) -> bool:
        return self._get(key) is not None

    def _iteritems(self) -> Iterator[tuple[bytes, bytes]]:
        for partition in self._visible_partitions():
            yield from self._partition_items(partition)

    def _partition_items(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        buf = self._buffers.get(partition)
        pending = dict(buf.writes) if buf is not None else {}
        # HSCAN may return a field twice if the hash is rehashed while we iterate.
        seen: set[bytes] = set()
        name, cursor = self.layout.partition(partition), 0
        while True:
            with self._redis("scan"):
                cursor, chunk = self.client.hscan(name, cursor, count=SCAN_COUNT)
            for key, value in cast(dict[bytes, bytes], chunk).items():
                if key not in pending and key not in seen:
                    seen.add(key)
                    yield key, value
            if cursor == 0:
                break
        yield from ((k, v) for k, v in pending.items() if v is not None)

    def _iterkeys(self) -> Iterator[bytes]:
        return (key for key, _ in self._iteritems())

    def _itervalues(self) -> Iterator[bytes]:
        return (value for _, value in self._iteritems())

    def _size(self) -> int:
        """HLEN of each partition, corrected for buffered keys, in one round trip."""
        partitions = self._visible_partitions()
        pending = [
            (p, list(getattr(self._buffers.get(p), "writes", {}).items())) for p in partitions
        ]
        pipe = self.client.pipeline(transaction=False)
        for partition, writes in pending:
            pipe.hlen(self.layout.partition(partition))
            for key, _ in writes:
                pipe.hexists(self.layout.partition(partition), key)
        with self._redis("size"):
            replies = iter(pipe.execute())
        total = 0
        for _, writes in pending:
            total += next(replies)
            # zip pulls from `writes` first, so it stops before the next partition's HLEN.
            for (_, value), in_redis in zip(writes, replies, strict=False):
                total += int(value is not None) - int(bool(in_redis))
        return total
