"""What only the ``redis://`` store promises: batching, crash consistency, ownership.

Run against the real Redis of the ``redis_url`` fixture; failures are injected in the
client's socket writes, never by replacing Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from store_helpers import changelog_event, in_partition

pytestmark = pytest.mark.integration


@pytest.fixture
def open_store(table: Any, redis_url: str, redis_client: Any) -> Iterator[Any]:
    """``open_store(query="")``: a new RedisStore on the test's table (a new process)."""
    from agents.stores import register

    register()
    opened: list[Any] = []

    def make(query: str = "") -> Any:
        store = table._new_store_by_url(redis_url + query)
        opened.append(store)
        return store

    yield make
    for store in opened:
        if store._client is not None:
            store._client.close()


def tp(partition: int) -> Any:
    from faust.types import TP

    return TP("changelog", partition)


class RoundTrips:
    """Counts the packed writes redis-py makes: one per command or per pipeline."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from redis.connection import AbstractConnection

        self.count = 0
        real = AbstractConnection.send_packed_command

        def counting(conn: Any, command: Any, check_health: bool = True) -> None:
            self.count += 1
            real(conn, command, check_health)

        monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)


def test_writes_stay_in_process_until_flushed(app: Any, open_store: Any, redis_client: Any) -> None:
    store = open_store()
    with in_partition(app, 2):
        store["k"] = 1
    store.set_persisted_offset(tp(2), 5)
    assert redis_client.hlen(store.layout.partition(2)) == 0
    assert redis_client.hget(store.layout.offsets, "2") is None
    assert store.flush() == 1
    assert redis_client.hgetall(store.layout.partition(2)) == {b'"k"': b"1"}
    assert redis_client.hget(store.layout.offsets, "2") == b"5"
    assert redis_client.smembers(store.layout.partitions) == {b"2"}
    assert store.flush() == 0  # nothing left to write


def test_ten_thousand_sets_and_a_flush_are_one_round_trip(
    app: Any, open_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store("?flush_size=50000")
    store.ping()  # connect first: the handshake is not what is measured
    trips = RoundTrips(monkeypatch)
    started = time.perf_counter()
    with in_partition(app, 0):
        for i in range(10_000):
            store._set(f"key-{i}".encode(), b"x" * 64)
    store.set_persisted_offset(tp(0), 9_999)
    buffered = time.perf_counter()
    store.flush()
    flushed = time.perf_counter()
    assert trips.count == 1
    print(
        f"\n10,000 _set: {(buffered - started) * 1e3:.1f} ms, "
        f"flush: {(flushed - buffered) * 1e3:.1f} ms, round trips: {trips.count}"
    )
    assert store.persisted_offset(tp(0)) == 9_999 and len(store) == 10_000


def test_a_full_buffer_flushes_itself(app: Any, open_store: Any, redis_client: Any) -> None:
    store = open_store("?flush_size=100")
    with in_partition(app, 1):
        for i in range(250):
            store[i] = i
    assert redis_client.hlen(store.layout.partition(1)) == 200
    assert len(store) == 250


def test_crash_before_flush_leaves_the_previous_flush(app: Any, open_store: Any) -> None:
    store = open_store()
    with in_partition(app, 3):
        store["a"] = "old"
    store.set_persisted_offset(tp(3), 10)
    store.flush()
    with in_partition(app, 3):
        store["a"], store["b"] = "new", "new"
    store.set_persisted_offset(tp(3), 20)
    del store  # the worker dies: the buffer goes with it

    fresh = open_store()
    assert fresh.persisted_offset(tp(3)) == 10
    assert dict(fresh.items()) == {"a": "old"}


def test_flush_killed_mid_transaction_changes_nothing(
    app: Any, open_store: Any, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis
    from redis.connection import AbstractConnection

    from agents.stores.redis import RedisStoreError

    store = open_store()
    with in_partition(app, 4):
        for i in range(100):
            store[i] = "old"
    store.set_persisted_offset(tp(4), 100)
    store.flush()
    with in_partition(app, 4):
        for i in range(100):
            store[i] = "new"
        store["extra"] = "new"
    store.set_persisted_offset(tp(4), 200)

    real = AbstractConnection.send_packed_command
    cut: list[int] = []

    def dies_half_way(conn: Any, command: Any, check_health: bool = True) -> None:
        chunks = [command] if isinstance(command, bytes | str) else command
        payload = b"".join(c.encode() if isinstance(c, str) else bytes(c) for c in chunks)
        if b"MULTI" not in payload:
            return real(conn, command, check_health)
        # Redis gets MULTI and part of the queued commands, then the connection drops.
        half = payload[: len(payload) // 2]
        cut.append(len(half))
        conn.connect()  # a no-op when connected; redis-py's retries come back disconnected
        conn._sock.sendall(half)
        conn.disconnect()
        raise redis.ConnectionError("killed mid-flush")

    monkeypatch.setattr(AbstractConnection, "send_packed_command", dies_half_way)
    with pytest.raises(RedisStoreError, match="unreachable"):
        store.flush()
    monkeypatch.undo()
    assert cut, "the flush never reached the transaction"

    # Redis still holds the previous flush, data and offset alike.
    assert redis_client.hget(store.layout.offsets, "4") == b"100"
    assert set(redis_client.hvals(store.layout.partition(4))) == {b'"old"'}
    fresh = open_store()
    assert fresh.persisted_offset(tp(4)) == 100
    assert set(dict(fresh.items()).values()) == {"old"} and len(fresh) == 100

    # The worker that survived the error still sees its own writes, and flushes them later.
    assert store.persisted_offset(tp(4)) == 200 and store[7] == "new"
    store.flush()
    again = open_store()
    assert again.persisted_offset(tp(4)) == 200
    assert set(dict(again.items()).values()) == {"new"} and len(again) == 101


def test_rebalance_drops_revoked_buffers_and_standby_records(
    app: Any, table: Any, open_store: Any, redis_client: Any
) -> None:
    store = open_store()
    for partition in (0, 1):
        with in_partition(app, partition):
            store[f"k{partition}"] = partition
    from faust.types import TP

    changelog = table.changelog_topic_name
    owned = {TP(changelog, 0), TP("source", 0)}
    asyncio.run(store.on_rebalance(owned, {TP(changelog, 1)}, set(), 1))
    store.set_persisted_offset(TP(changelog, 1), 99)  # a late ack: no longer ours
    batch = [
        changelog_event(app, table, 0, 5, "from-changelog", 0),
        changelog_event(app, table, 1, 6, "standby-only", 1),
    ]
    store.apply_changelog_batch(batch, to_key=table._to_key, to_value=table._to_value)
    store.flush()
    assert redis_client.exists(store.layout.partition(1)) == 0
    assert redis_client.hget(store.layout.offsets, "1") is None
    assert dict(store.items()) == {"k0": 0, "from-changelog": 0}
    assert store.persisted_offset(TP(changelog, 0)) == 5


def test_commit_flushes_through_the_sensor_hook(app: Any, open_store: Any) -> None:
    from agents.stores import commit_hook

    store = open_store()
    commit_hook.attach(app, store)
    with in_partition(app, 5):
        store["k"] = 1
    store.set_persisted_offset(tp(5), 3)
    # What faust's Consumer.commit does around a successful commit.
    state = app.sensors.on_commit_initiated(None)
    app.sensors.on_commit_completed(None, state)
    assert open_store().persisted_offset(tp(5)) == 3
    commit_hook.detach(app, store)


def test_start_checks_redis_and_stop_flushes(app: Any, open_store: Any) -> None:
    store = open_store()

    async def lifecycle() -> None:
        await store.start()
        with in_partition(app, 6):
            store["k"] = "v"
        store.set_persisted_offset(tp(6), 1)
        await store.stop()

    asyncio.run(lifecycle())
    fresh = open_store()
    assert fresh.persisted_offset(tp(6)) == 1
    with in_partition(app, 6):
        assert fresh["k"] == "v"


def test_backup_and_restore_a_partition(app: Any, open_store: Any) -> None:
    store = open_store()
    with in_partition(app, 7):
        store["k"] = "backed-up"
    store.set_persisted_offset(tp(7), 10)
    asyncio.run(store.backup_partition(7))  # flushes first
    with in_partition(app, 7):
        store["k"], store["later"] = "newer", "newer"
    store.set_persisted_offset(tp(7), 20)
    store.flush()
    with in_partition(app, 7):
        store["buffered"] = "discarded by the restore"

    store.restore_backup(tp(7))
    for reader in (store, open_store()):
        assert reader.persisted_offset(tp(7)) == 10
        assert dict(reader.items()) == {"k": "backed-up"}
    with pytest.raises(LookupError):
        store.restore_backup(6)


def test_an_unreachable_redis_is_named_without_its_password(table: Any) -> None:
    from agents.devstack import free_port
    from agents.stores import register
    from agents.stores.redis import RedisStoreError

    register()
    port = free_port()
    store = table._new_store_by_url(f"redis://:hunter2@127.0.0.1:{port}/0")
    assert "hunter2" not in f"{store!r} {store.label} {store.url}"
    started = time.monotonic()
    with pytest.raises(RedisStoreError) as excinfo:
        store.ping()
    message = str(excinfo.value)
    assert f"redis://:***@127.0.0.1:{port}/0" in message and "unreachable" in message
    assert "hunter2" not in message
    assert time.monotonic() - started < 5  # a few short retries, not redis-py's ten


def test_no_keys_command_is_ever_sent(app: Any, open_store: Any, redis_client: Any) -> None:
    before = redis_client.info("commandstats").get("cmdstat_keys", {}).get("calls", 0)
    store = open_store()
    for partition in range(3):
        with in_partition(app, partition):
            for i in range(300):
                store[f"{partition}-{i}"] = i
    store.flush()
    assert len(store) == len(list(store.items())) == 900
    store.clear()
    store.reset_state()
    after = redis_client.info("commandstats").get("cmdstat_keys", {}).get("calls", 0)
    assert after == before
