"""Helpers of the store tests: an event context (a store takes a write's partition from
the current event), changelog records, and the backends the contract suite runs over.

Imported by the tests as ``store_helpers`` (a unique name: ``conftest`` is ambiguous
next to the root conftest). faust is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


@contextlib.contextmanager
def in_partition(app: Any, partition: int, offset: int = 0) -> Iterator[None]:
    """Run the body as if faust were processing an event from ``partition``."""
    from faust.events import Event
    from faust.streams import _current_event
    from faust.types import Message

    message = Message(
        topic="source",
        partition=partition,
        offset=offset,
        timestamp=0.0,
        timestamp_type=0,
        headers=None,
        key=None,
        value=None,
        checksum=None,
    )
    event = Event(app, None, None, None, message)  # held here: faust keeps a weakref
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def changelog_event(app: Any, table: Any, partition: int, offset: int, key: Any, value: Any) -> Any:
    """A changelog record as recovery hands it to ``apply_changelog_batch``."""
    from faust.events import Event
    from faust.types import Message

    serializers = app.serializers
    raw_value = None if value is None else serializers.dumps_value(None, value, serializer="json")
    message = Message(
        topic=table.changelog_topic_name,
        partition=partition,
        offset=offset,
        timestamp=0.0,
        timestamp_type=0,
        headers=None,
        key=serializers.dumps_key(None, key, serializer="json"),
        value=raw_value,
        checksum=None,
    )
    return Event(app, key, value, None, message)


@dataclass
class Backend:
    """One store backend of the contract suite.

    ``open()`` builds a new store object on the same table, as a new worker process
    would; ``durable`` says whether data and offsets outlive the object.
    """

    name: str
    open: Callable[[], Any]
    durable: bool

    def flush(self, store: Any) -> None:
        if hasattr(store, "flush"):
            store.flush()
