"""Publishing predictions and labels from a model service, with one call per event.

```python
from agents.producer import PredictionPublisher

with PredictionPublisher("kafka:9092") as publish:
    publish.prediction(prediction_id=req_id, model="fraud", model_version="v2.1.0",
                       features=features, prediction=score, latency_ms=elapsed_ms)
```

Events are micro-batched into ``{"predictions": [...]}`` envelopes (up to ``batch_size``
events or ``linger_s`` seconds, whichever comes first): one Kafka message per batch is what
lets a worker keep up with a busy model. Batches are kept per partition, chosen from each
event's ``prediction_id`` exactly as Kafka's default partitioner would choose it for a
single-event message, so a prediction and its label always meet in the same partition
(the label join relies on co-partitioned topics).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.partitioner.default import murmur2

from agents.settings import Topics
from streams.events import Rejection, validate_label, validate_prediction


class PublishError(ValueError):
    """An event that would be dead-lettered: refused before it leaves the process."""


class PredictionPublisher:
    """Validates, batches and sends predictions and labels (kafka-python underneath)."""

    def __init__(
        self,
        bootstrap: str,
        *,
        topics: Topics | None = None,
        batch_size: int = 500,
        linger_s: float = 0.2,
        producer: KafkaProducer | None = None,
    ) -> None:
        self.topics = topics or Topics()
        self.batch_size = batch_size
        self.linger_s = linger_s
        self._producer = producer or KafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=20, acks="all", compression_type=None
        )
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self._oldest: dict[tuple[str, int], float] = {}
        self._partitions: dict[str, int] = {}
        # A quiet service must not leave its last events waiting for the next one.
        self._closed = threading.Event()
        self._ticker = threading.Thread(target=self._linger, name="undertow-publish", daemon=True)
        self._ticker.start()

    # -- one call per event --------------------------------------------------------------

    def prediction(
        self,
        *,
        model: str,
        model_version: str,
        features: Mapping[str, Any],
        prediction: float | str | None,
        prediction_id: str | None = None,
        timestamp: float | None = None,
        latency_ms: float | None = None,
        segments: Mapping[str, Any] | None = None,
    ) -> str:
        """Queue one prediction; returns its ``prediction_id`` (generated when not given)."""
        event: dict[str, Any] = {
            "prediction_id": prediction_id or uuid.uuid4().hex,
            "model": model,
            "model_version": model_version,
            "timestamp": time.time() if timestamp is None else timestamp,
            "features": dict(features),
            "prediction": prediction,
        }
        if latency_ms is not None:
            event["latency_ms"] = latency_ms
        if segments:
            event["segments"] = dict(segments)
        self.send_raw("predictions", event)
        return str(event["prediction_id"])

    def label(
        self, *, prediction_id: str, model: str, actual: float | str, timestamp: float | None = None
    ) -> None:
        event = {
            "prediction_id": prediction_id,
            "model": model,
            "actual": actual,
            "timestamp": time.time() if timestamp is None else timestamp,
        }
        self.send_raw("labels", event)

    def send_raw(self, kind: str, event: dict[str, Any]) -> None:
        """Queue an event dict as it would appear on the wire (validated first)."""
        check = validate_prediction if kind == "predictions" else validate_label
        result = check(event)
        if isinstance(result, Rejection):
            raise PublishError(f"{result.reason}: {result.detail}")
        slot = (kind, self._partition(kind, str(event["prediction_id"])))
        with self._lock:
            queue = self._pending.setdefault(slot, [])
            if not queue:
                self._oldest[slot] = time.monotonic()
            queue.append(event)
            due = len(queue) >= self.batch_size or (
                time.monotonic() - self._oldest[slot] >= self.linger_s
            )
            if due:
                self._send_batch(slot)

    # -- batching ------------------------------------------------------------------------

    def flush(self, timeout: float | None = 30.0) -> None:
        with self._lock:
            for slot in list(self._pending):
                self._send_batch(slot)
        self._producer.flush(timeout=timeout)

    def close(self) -> None:
        self._closed.set()
        self._ticker.join(timeout=5)
        self.flush()
        self._producer.close()

    def _linger(self) -> None:
        while not self._closed.wait(self.linger_s / 2):
            now = time.monotonic()
            with self._lock:
                for slot in [s for s, t in self._oldest.items() if now - t >= self.linger_s]:
                    self._send_batch(slot)

    def __enter__(self) -> PredictionPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _topic(self, kind: str) -> str:
        return self.topics.predictions if kind == "predictions" else self.topics.labels

    def _partition(self, kind: str, key: str) -> int:
        topic = self._topic(kind)
        count = self._partitions.get(topic)
        if count is None:
            found = self._producer.partitions_for(topic)  # waits for metadata once
            count = self._partitions[topic] = len(found)
        # Kafka's default partitioner for a keyed message (murmur2, positive, modulo).
        return (murmur2(key.encode()) & 0x7FFFFFFF) % count

    def _send_batch(self, slot: tuple[str, int]) -> None:
        queue = self._pending.pop(slot, [])
        self._oldest.pop(slot, None)
        if not queue:
            return
        kind, partition = slot
        key = str(queue[0]["prediction_id"]).encode()
        value = orjson.dumps({kind: queue})
        self._producer.send(self._topic(kind), key=key, value=value, partition=partition)
