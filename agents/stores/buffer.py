"""Writes of one table partition held in process until they are flushed with their offset.

Faust writes a table on every event; one Redis round trip per write would cap a worker at
the network's latency. The buffer keeps the last value written to each key (``None``
marks a delete) and the changelog offset faust reported for the partition, and
:meth:`PartitionBuffer.queue` turns them into a handful of commands for one MULTI/EXEC,
so the data and the offset reach Redis together or not at all.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from agents.stores.layout import TableKeys

#: Field/value pairs per HSET (and fields per HDEL): big enough that 10,000 writes are two
#: commands, small enough that no single command makes Redis build a huge argument array.
CHUNK = 5_000


class PartitionBuffer:
    """Pending writes and the pending changelog offset of one partition.

    >>> buf = PartitionBuffer()
    >>> buf.put(b"a", b"1"); buf.put(b"b", None)
    >>> buf.lookup(b"a"), buf.lookup(b"b"), buf.lookup(b"c")
    ((True, b'1'), (True, None), (False, None))
    """

    __slots__ = ("offset", "writes")

    def __init__(self) -> None:
        self.writes: dict[bytes, bytes | None] = {}
        self.offset: int | None = None

    def put(self, key: bytes, value: bytes | None) -> None:
        """Record the latest value of ``key``; ``None`` records a delete (a tombstone)."""
        self.writes[key] = value

    def lookup(self, key: bytes) -> tuple[bool, bytes | None]:
        """``(True, value)`` if the buffer decides ``key`` (``value`` None: deleted here)."""
        if key in self.writes:
            return True, self.writes[key]
        return False, None

    @property
    def dirty(self) -> bool:
        return bool(self.writes) or self.offset is not None

    def queue(self, pipe: Any, keys: TableKeys, partition: int) -> None:
        """Queue this partition's writes and offset on a MULTI/EXEC pipeline.

        Keys are distinct after buffering, so the HSETs and HDELs commute; the offset
        goes in the same transaction, which is the whole point.
        """
        name = keys.partition(partition)
        sets = {k: v for k, v in self.writes.items() if v is not None}
        deletes = [k for k, v in self.writes.items() if v is None]
        items = iter(sets.items())
        while chunk := dict(islice(items, CHUNK)):
            pipe.hset(name, mapping=chunk)
        for start in range(0, len(deletes), CHUNK):
            pipe.hdel(name, *deletes[start : start + CHUNK])
        if self.offset is not None:
            pipe.hset(keys.offsets, str(partition), str(self.offset))
        pipe.sadd(keys.partitions, partition)
