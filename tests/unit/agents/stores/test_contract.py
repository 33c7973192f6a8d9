"""The table-store contract, run unchanged over every backend (as quix-streams does).

faust's own ``memory://`` store is the reference for what a table sees; ``redis://``
must behave the same through the public mapping API, before and after a flush, and in
addition keep data and offsets across store objects (a new worker process). Cases that
only a durable backend can satisfy are skipped for ``memory://``.
"""

from __future__ import annotations

from typing import Any

import pytest
from store_helpers import Backend, changelog_event, in_partition

TP_NAME = "changelog"


def tp(partition: int) -> Any:
    from faust.types import TP

    return TP(TP_NAME, partition)


def test_get_set_del_contains(app: Any, backend: Backend) -> None:
    store = backend.open()
    with in_partition(app, 0):
        store["a"] = 1
        store["b"] = {"nested": [1, 2]}
        assert store["a"] == 1 and store["b"] == {"nested": [1, 2]}
        assert "a" in store and "missing" not in store
        assert store.get("missing", "default") == "default"
        del store["a"]
        assert "a" not in store
        with pytest.raises(KeyError):
            store["a"]
        store["b"] = "overwritten"
        assert store["b"] == "overwritten"


def test_iteration_and_size_match_a_dict(app: Any, backend: Backend) -> None:
    store = backend.open()
    model: dict[str, int] = {}
    with in_partition(app, 2):
        for i in range(50):
            store[f"k{i}"] = model[f"k{i}"] = i
        backend.flush(store)
        for i in range(0, 50, 3):
            del store[f"k{i}"]
            del model[f"k{i}"]
        for i in range(50, 60):
            store[f"k{i}"] = model[f"k{i}"] = i
        store["k1"] = model["k1"] = 100
    for _ in range(2):  # before and after the buffered half is flushed
        assert len(store) == len(model)
        assert sorted(store.keys()) == sorted(model)
        assert sorted(store.values()) == sorted(model.values())
        assert dict(store.items()) == model
        backend.flush(store)


def test_reads_see_unflushed_writes_and_deletes(app: Any, backend: Backend) -> None:
    store = backend.open()
    with in_partition(app, 1):
        store["kept"], store["gone"] = 1, 2
        backend.flush(store)
        del store["gone"]
        store["new"] = 3
        store["kept"] = 10
        assert "gone" not in store and store.get("gone") is None
        assert store["new"] == 3 and store["kept"] == 10
    assert dict(store.items()) == {"kept": 10, "new": 3}
    assert len(store) == 2


def test_delete_then_set_again(app: Any, backend: Backend) -> None:
    store = backend.open()
    with in_partition(app, 3):
        store["k"] = 1
        del store["k"]
        store["k"] = 2  # within one buffer
        assert store["k"] == 2
        backend.flush(store)
        del store["k"]
        backend.flush(store)
        assert "k" not in store
        store["k"] = 3  # across flushes
        assert store["k"] == 3
        backend.flush(store)
        assert store["k"] == 3
    assert dict(store.items()) == {"k": 3}


def test_offsets_are_kept_with_the_data(app: Any, backend: Backend) -> None:
    store = backend.open()
    with in_partition(app, 4):
        store["k"] = "v"
    store.set_persisted_offset(tp(4), 41)
    store.set_persisted_offset(tp(4), 42)
    if not backend.durable:
        assert store.persisted_offset(tp(4)) is None  # memory:// never persists
        return
    assert store.persisted_offset(tp(4)) == 42  # before the flush, from the buffer
    assert store.persisted_offset(tp(5)) is None
    backend.flush(store)
    fresh = backend.open()
    assert fresh.persisted_offset(tp(4)) == 42
    with in_partition(app, 4):
        assert fresh["k"] == "v"


def test_clear_empties_the_table(app: Any, backend: Backend) -> None:
    store = backend.open()
    for partition in (0, 1):
        with in_partition(app, partition):
            store[f"flushed-{partition}"] = 1
    backend.flush(store)
    with in_partition(app, 1):
        store["buffered"] = 2
    store.clear()
    assert len(store) == 0 and list(store.items()) == []
    with in_partition(app, 1):
        assert "flushed-1" not in store and "buffered" not in store
        store["after"] = 3
    assert dict(store.items()) == {"after": 3}


def test_reset_state_forgets_data_and_offsets(app: Any, backend: Backend) -> None:
    if not backend.durable:
        pytest.skip("memory:// keeps no state outside the process to reset")
    store = backend.open()
    with in_partition(app, 6):
        store["k"] = 1
    store.set_persisted_offset(tp(6), 9)
    backend.flush(store)
    backend.open().reset_state()
    fresh = backend.open()
    assert len(fresh) == 0
    assert fresh.persisted_offset(tp(6)) is None


def test_many_partitions(app: Any, backend: Backend) -> None:
    store = backend.open()
    for partition in range(8):
        with in_partition(app, partition):
            for i in range(20):
                store[f"p{partition}-{i}"] = partition * 100 + i
        store.set_persisted_offset(tp(partition), 1000 + partition)
    backend.flush(store)
    expected = {f"p{p}-{i}": p * 100 + i for p in range(8) for i in range(20)}
    for reader in [store, backend.open()] if backend.durable else [store]:
        assert len(reader) == len(expected)
        assert dict(reader.items()) == expected
        assert reader["p5-7"] == 507  # outside an event: found in whichever partition
        with in_partition(app, 3):
            assert reader["p3-19"] == 319
        if backend.durable:
            assert [reader.persisted_offset(tp(p)) for p in range(8)] == [
                1000 + p for p in range(8)
            ]


def test_large_batch(app: Any, backend: Backend) -> None:
    store = backend.open()
    n = 10_000
    with in_partition(app, 0):
        for i in range(n):
            store[i] = {"count": i}
        backend.flush(store)
        for i in range(0, n, 2):
            store[i] = {"count": -i}  # half overwritten, buffered over the flushed hash
        assert store[4] == {"count": -4} and store[5] == {"count": 5}
    items = dict(store.items())
    assert len(items) == len(store) == n
    assert items[9_998] == {"count": -9_998} and items[9_999] == {"count": 9_999}


def test_apply_changelog_batch(app: Any, table: Any, backend: Backend) -> None:
    store = backend.open()
    batch = [
        changelog_event(app, table, 0, 10, "a", 1),
        changelog_event(app, table, 1, 20, "b", 2),
        changelog_event(app, table, 0, 11, "a", 5),
        changelog_event(app, table, 1, 21, "c", 3),
        changelog_event(app, table, 1, 22, "b", None),  # tombstone
    ]
    store.apply_changelog_batch(batch, to_key=table._to_key, to_value=table._to_value)
    assert dict(store.items()) == {"a": 5, "c": 3}
    if backend.durable:
        fresh = backend.open()
        assert dict(fresh.items()) == {"a": 5, "c": 3}
        assert fresh.persisted_offset(tp(0)) == 11
        assert fresh.persisted_offset(tp(1)) == 22
