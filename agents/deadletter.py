"""Dead letters: what could not be used, why, and where it came from — nothing is lost.

One record per rejection on ``undertow.deadletter``:

```json
{"reason": "missing_field", "detail": "field 'timestamp' is missing",
 "topic": "undertow.predictions", "partition": 3, "offset": 1289, "index": 4,
 "payload_b64": "eyJwcmVkaWN0aW9uX2lkIjog…", "received_at": 1764151502.1}
```

``payload_b64`` is the original message; for one bad element of a batch envelope it is that
element alone (``index`` says which), so replaying dead letters never replays the good events
of the same envelope twice.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable
from typing import Any

import orjson

from streams.events import Rejection


def event_letter(
    event: dict[str, Any],
    reason: str,
    detail: str,
    *,
    topic: str,
    partition: int,
    offset: int,
    envelope: str,
) -> list[bytes]:
    """The dead letter of one event refused after decoding, re-encoded on its own: replaying
    it never replays the good events of the envelope it came in."""
    return dead_letters(
        orjson.dumps(event),
        [Rejection(reason, detail)],
        topic=topic,
        partition=partition,
        offset=offset,
        envelope=envelope,
    )


def dead_letters(
    raw: bytes,
    rejections: Iterable[Rejection],
    *,
    topic: str,
    partition: int,
    offset: int,
    envelope: str,
    received_at: float | None = None,
) -> list[bytes]:
    """The dead-letter records for one source message's rejections."""
    rejections = list(rejections)
    if not rejections:
        return []
    stamp = time.time() if received_at is None else received_at
    items = _envelope_items(raw, envelope) if any(r.index is not None for r in rejections) else []
    out = []
    for r in rejections:
        payload = raw
        if r.index is not None and r.index < len(items):
            payload = orjson.dumps(items[r.index])
        record: dict[str, Any] = {
            "reason": r.reason,
            "detail": r.detail,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "index": r.index,
            "payload_b64": base64.b64encode(payload).decode("ascii"),
            "received_at": stamp,
        }
        out.append(orjson.dumps(record))
    return out


def late_letter(
    raw: bytes, *, detail: str, topic: str, partition: int, offset: int, index: int | None
) -> bytes:
    """A dead letter for an event later than the allowed lateness."""
    return dead_letters(
        raw,
        [Rejection("late", detail, index)],
        topic=topic,
        partition=partition,
        offset=offset,
        envelope="predictions",
    )[0]


def _envelope_items(raw: bytes, envelope: str) -> list[Any]:
    # The rare path: parse again rather than carry every element's bytes on the hot path.
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return []
    items = message.get(envelope) if isinstance(message, dict) else None
    return items if isinstance(items, list) else []
