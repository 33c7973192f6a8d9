"""Acknowledgements: who is handling which alert, kept in Redis.

``{ns}:acks`` is a hash ``alert_id`` → ``{"by", "at", "at_iso", "note"}``. The evaluator's
meta-monitoring reads it to tell an alert someone is working on from one nobody has seen
(``monitor_health`` / ``unacknowledged``): each tick it asks only about the alerts a model
has firing (`AckLog.acknowledged` with ``among``), so the cost does not grow with the
hash, which keeps every acknowledgement ever made.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
import redis


class AckLog:
    def __init__(self, client: redis.Redis, namespace: str = "undertow") -> None:
        self.client = client
        self.key = f"{namespace}:acks"

    def ack(
        self, alert_id: str, *, by: str, note: str = "", at: float | None = None
    ) -> dict[str, Any]:
        stamp = time.time() if at is None else at
        record = {
            "by": by,
            "at": stamp,
            "at_iso": datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "note": note,
        }
        self.client.hset(self.key, alert_id, orjson.dumps(record))
        return record

    def get(self, alert_id: str) -> dict[str, Any] | None:
        raw = self.client.hget(self.key, alert_id)
        return None if raw is None else dict(orjson.loads(raw))

    def acknowledged(self, among: Iterable[str] | None = None) -> set[str]:
        """Ids with an acknowledgement: every one, or those of ``among`` (one HMGET)."""
        if among is None:
            return {k.decode() if isinstance(k, bytes) else k for k in self.client.hkeys(self.key)}
        ids = list(among)
        if not ids:
            return set()
        found = self.client.hmget(self.key, ids)
        return {alert_id for alert_id, record in zip(ids, found, strict=True) if record is not None}
