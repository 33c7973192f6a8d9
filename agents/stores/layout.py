"""Where a table lives in Redis, and how its URL may be shown.

One hash per table partition holds the serialized keys and values faust hands the store;
beside it, one hash maps partition → last changelog offset written with that data, and a
set lists the partitions that were ever flushed (so ``reset_state`` and tools can find
every hash without ``KEYS``). Every key of a table shares the hash tag ``{app:table}``:
on Redis Cluster they land in one slot, which MULTI/EXEC across them requires.

>>> keys = TableKeys.for_table("undertow", "window-state")
>>> keys.partition(3)
'undertow:table:{undertow:window-state}:3'
>>> keys.offsets
'undertow:table:{undertow:window-state}:offsets'
>>> redact("redis://:s3cret@redis:6379/0")
'redis://:***@redis:6379/0'
>>> redact("redis://redis:6379/0?password=s3cret&socket_timeout=3")
'redis://redis:6379/0?password=***&socket_timeout=3'
"""

from __future__ import annotations

from dataclasses import dataclass

from yarl import URL

ROOT = "undertow:table"


@dataclass(frozen=True)
class TableKeys:
    """The Redis key names of one table (``prefix`` ends with the ``{app:table}`` tag)."""

    prefix: str

    @classmethod
    def for_table(cls, app_id: str, table: str, root: str = ROOT) -> TableKeys:
        return cls(f"{root}:{{{app_id}:{table}}}")

    def partition(self, partition: int) -> str:
        """Hash of the table's data in one partition: field = key bytes, value = value bytes."""
        return f"{self.prefix}:{partition}"

    @property
    def offsets(self) -> str:
        """Hash partition → last changelog offset whose effect is in that partition's hash."""
        return f"{self.prefix}:offsets"

    @property
    def partitions(self) -> str:
        """Set of the partitions that have a hash (written in the same MULTI as the data)."""
        return f"{self.prefix}:partitions"

    def backup(self, partition: int) -> str:
        """Copy of one partition's hash taken by ``backup_partition``."""
        return f"{self.prefix}:backup:{partition}"

    @property
    def backup_offsets(self) -> str:
        """Hash partition → offset of the backup (empty string: the partition had none)."""
        return f"{self.prefix}:backup:offsets"


def redact(url: str | URL) -> str:
    """The URL with its password (userinfo or ``?password=``, which redis-py also reads)
    replaced by ``***``: the only form that may be logged."""
    parsed = URL(str(url))
    if parsed.password:
        parsed = parsed.with_password("***")
    if "password" in parsed.query:
        parsed = parsed.update_query(password="***")
    return str(parsed)
