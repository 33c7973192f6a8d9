"""The pure parts of the Redis store: key layout, URL redaction, buffering, configuration.

No Redis here: building a store must not connect, so these run without services.
"""

from __future__ import annotations

from typing import Any

import pytest

from agents.stores.buffer import PartitionBuffer
from agents.stores.layout import TableKeys, redact


def test_every_key_of_a_table_shares_one_cluster_slot() -> None:
    from redis.crc import key_slot

    keys = TableKeys.for_table("undertow", "window-state")
    names = [keys.partition(0), keys.partition(31), keys.offsets, keys.partitions]
    names += [keys.backup(5), keys.backup_offsets]
    assert len({key_slot(name.encode()) for name in names}) == 1
    assert len(set(names)) == len(names)
    other = TableKeys.for_table("undertow", "labels")
    assert other.partition(0) != keys.partition(0)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
        ("rediss://user:pw@h:1/2", "rediss://user:***@h:1/2"),
        ("redis://h:1/0?password=pw", "redis://h:1/0?password=***"),
    ],
)
def test_redact_hides_passwords_only(url: str, shown: str) -> None:
    assert redact(url) == shown


class RecordingPipeline:
    """Stands in for a redis-py pipeline: records what would be queued."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


def test_buffer_queues_few_commands_for_many_writes() -> None:
    buf = PartitionBuffer()
    for i in range(12_000):
        buf.put(b"k%d" % i, b"v")
    buf.put(b"k1", None)
    buf.put(b"gone", None)
    buf.offset = 41
    pipe = RecordingPipeline()
    buf.queue(pipe, TableKeys("t"), 3)
    names = [name for name, _, _ in pipe.calls]
    assert names == ["hset", "hset", "hset", "hdel", "hset", "sadd"]
    assert sum(len(kwargs["mapping"]) for _, _, kwargs in pipe.calls[:3]) == 11_999
    assert pipe.calls[3] == ("hdel", ("t:3", b"k1", b"gone"), {})
    assert pipe.calls[4] == ("hset", ("t:offsets", "3", "41"), {})
    assert pipe.calls[5] == ("sadd", ("t:partitions", 3), {})


def test_store_configuration_without_connecting(table: Any) -> None:
    from agents.stores import register

    register()
    store = table._new_store_by_url("redis://:pw@127.0.0.1:1/3?flush_size=7&socket_timeout=2")
    assert store.flush_size == 7
    assert store._client is None  # nothing connects before first use
    assert "pw" not in f"{store!r} {store.label} {store.url}"
    assert store.layout.partition(0) == f"undertow:table:{{{table.app.conf.id}:state}}:0"
    pool_kwargs = store.client.connection_pool.connection_kwargs
    assert pool_kwargs["db"] == 3 and pool_kwargs["socket_timeout"] == 2.0
    assert pool_kwargs["password"] == "pw"
    with pytest.raises(ValueError, match="flush_size"):
        table._new_store_by_url("redis://127.0.0.1:1/0?flush_size=0")


def test_writes_need_the_current_event(table: Any) -> None:
    from agents.stores import register

    register()
    store = table._new_store_by_url("redis://127.0.0.1:1/0")
    with pytest.raises(TypeError, match="outside of stream iteration"):
        store["k"] = 1
