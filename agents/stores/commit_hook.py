"""Flush the Redis table stores of an app each time the worker commits its offsets.

Faust gives a store no commit callback in at-least-once mode: ``TableManager.on_commit``
only replays offsets queued by ``persist_offset_on_commit`` (exactly-once), and even those
are keyed by changelog partitions while ``on_commit`` is called with source partitions,
so they never match. What faust does call on every commit is the sensor hook
``on_commit_completed``, after the producer was flushed and the source offsets
committed: by then every changelog record of the committed events has been acked, so the
offsets faust reported to the store cover its buffered writes, and a flush at that moment
writes data and offsets that agree. One sensor serves all Redis stores of an app, since
every sensor costs a few no-op calls per event.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any

from faust.sensors import Sensor

if TYPE_CHECKING:
    from faust.types import AppT

    from agents.stores.redis import RedisStore

logger = logging.getLogger(__name__)

_HOOKS: weakref.WeakKeyDictionary[Any, CommitFlush] = weakref.WeakKeyDictionary()


class CommitFlush(Sensor):
    """A faust sensor whose only behaviour is flushing stores after each commit."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stores: weakref.WeakSet[RedisStore] = weakref.WeakSet()

    def on_commit_completed(self, consumer: Any, state: Any) -> None:
        for store in list(self.stores):
            try:
                store.flush()
            except Exception as exc:  # the commit itself succeeded; retry at the next one
                # The message names the URL without its password (RedisStoreError).
                logger.error("table %r: flush after commit failed: %s", store.table_name, exc)


def attach(app: AppT, store: RedisStore) -> None:
    """Flush ``store`` after every commit of ``app`` (one sensor per app)."""
    hook = _HOOKS.get(app)
    if hook is None:
        hook = _HOOKS[app] = CommitFlush()
        # Added when the first table starts, before the consumer can commit: a sensor added
        # during a commit would miss its entry in the state that on_commit_initiated built.
        app.sensors.add(hook)
    hook.stores.add(store)


def detach(app: AppT, store: RedisStore) -> None:
    """Stop flushing ``store`` on commit (the sensor stays for the app's other stores)."""
    hook = _HOOKS.get(app)
    if hook is not None:
        hook.stores.discard(store)
