"""Whole-partition operations of the Redis table store: clear, reset, backup, restore.

Each one is a single MULTI/EXEC, so a partition's hash and its offset change together
here too. Deletes use UNLINK: Redis frees a large hash in a background thread instead of
blocking every other client while it does.

Backups: Redis has its own persistence (AOF, RDB, replicas), and Kafka keeps the
changelog, so a backup is not what makes the table durable. It is a server-side COPY of a
partition's hash and offset to a backup slot, for taking a known-good state aside before
a risky operation (a reprocessing, a migration) and going back to it; restoring puts the
backup's offset back too, so recovery replays the changelog written since the backup.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import redis

from agents.stores.layout import TableKeys

_WATCH_ATTEMPTS = 5


def unlink_partitions(client: redis.Redis, keys: TableKeys, partitions: Collection[int]) -> None:
    """Delete the hashes and offsets of ``partitions`` (the table's other ones stay)."""
    if not partitions:
        return
    fields = [str(p) for p in partitions]
    pipe = client.pipeline(transaction=True)
    pipe.unlink(*(keys.partition(p) for p in partitions))
    pipe.hdel(keys.offsets, *fields)
    pipe.srem(keys.partitions, *fields)
    pipe.execute()


def unlink_table(client: redis.Redis, keys: TableKeys, partitions: Collection[int]) -> None:
    """Delete everything of the table: every partition ever flushed, offsets, backups.

    ``partitions`` adds partitions Redis may not list yet (buffered, or assigned).
    """
    known = {int(p) for p in client.smembers(keys.partitions)}
    backed_up = {int(p) for p in client.hkeys(keys.backup_offsets)}
    names = [keys.partition(p) for p in known | set(partitions)]
    names += [keys.backup(p) for p in backed_up]
    pipe = client.pipeline(transaction=True)
    pipe.unlink(*names, keys.offsets, keys.partitions, keys.backup_offsets)
    pipe.execute()


def backup(client: redis.Redis, keys: TableKeys, partition: int) -> None:
    """Copy the partition's hash and offset to its backup slot (replacing the last one)."""
    field = str(partition)

    def copy(pipe: redis.client.Pipeline) -> None:
        offset = pipe.hget(keys.offsets, field)
        pipe.multi()
        pipe.unlink(keys.backup(partition))  # COPY of a missing hash would keep the old one
        pipe.copy(keys.partition(partition), keys.backup(partition), replace=True)
        pipe.hset(keys.backup_offsets, field, offset if offset is not None else b"")

    _watched(client, copy, keys.offsets, keys.partition(partition))


def restore(client: redis.Redis, keys: TableKeys, partition: int) -> None:
    """Put the partition's backup (hash and offset) back in place.

    Raises LookupError when the partition was never backed up.
    """
    field = str(partition)

    def put_back(pipe: redis.client.Pipeline) -> None:
        offset = pipe.hget(keys.backup_offsets, field)
        if offset is None:
            raise LookupError(f"{keys.prefix}: partition {partition} has no backup")
        pipe.multi()
        pipe.unlink(keys.partition(partition))
        pipe.copy(keys.backup(partition), keys.partition(partition), replace=True)
        if offset:
            pipe.hset(keys.offsets, field, offset)
        else:
            pipe.hdel(keys.offsets, field)
        pipe.sadd(keys.partitions, partition)

    _watched(client, put_back, keys.backup_offsets, keys.backup(partition))


def _watched(
    client: redis.Redis, body: Callable[[redis.client.Pipeline], None], *watch: str
) -> None:
    """Run ``body`` as a transaction that aborts and retries if ``watch`` keys change.

    The offset is read before MULTI; WATCH makes sure no flush landed in between, so a
    copy never pairs one flush's data with another flush's offset.
    """
    for _ in range(_WATCH_ATTEMPTS):
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(*watch)  # type: ignore[no-untyped-call]
                body(pipe)
                pipe.execute()
                return
            except redis.WatchError:
                continue
    raise redis.WatchError(f"{watch[0]} kept changing during {_WATCH_ATTEMPTS} attempts")
