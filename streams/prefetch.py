"""Run an iterator one step ahead in a background thread.

Parsing a block (pyarrow, orjson) and binning the previous one (numpy) both release the
GIL for most of their time, so on two cores reading overlaps with counting.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


def prefetch(source: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Yield what ``source`` yields, producing up to ``depth`` items ahead.

    An exception in ``source`` is raised in the consumer at the position it happened.
    Closing the generator early stops the producer at its next item.

    >>> list(prefetch(iter(range(5))))
    [0, 1, 2, 3, 4]
    """
    items: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            items.put(exc)

    worker = threading.Thread(target=produce, name="undertow-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join(timeout=5)
