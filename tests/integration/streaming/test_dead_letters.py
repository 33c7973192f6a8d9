"""Bad inputs are dead-lettered with the right reason; the valid events around them all count.

Messages are produced raw (kafka-python, one per Kafka message, keyed by prediction id), so
nothing is validated on the way in: undertow's own publisher would refuse the bad ones.
"""

from __future__ import annotations

import base64
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from .conftest import Launch
from .harness import (
    MODEL,
    VERSION,
    TopicTail,
    Windows,
    make_events,
    register_baseline,
    sample,
    scrape,
    wait_assignment,
)
from .test_end_to_end import data_windows, wait_for_last_window

pytestmark = pytest.mark.integration

MAX_BYTES = 4096  # UNDERTOW_MAX_MESSAGE_BYTES of this test's worker
GOOD = 600  # valid single-event messages, over ~6 s of event time


def test_bad_inputs_are_dead_lettered_with_their_reason_and_valid_events_all_count(
    kafka_bootstrap: str,
    redis_url: str,
    unique_name: Callable[[str], str],
    launch: Launch,
    reference: tuple[Any, dict[str, list[Any]]],
) -> None:
    from kafka import KafkaProducer

    baseline, _ = reference
    prefix = unique_name("dlq") + "."
    topic = prefix + "predictions"
    register_baseline(redis_url, prefix, baseline)
    [worker] = launch(1, prefix, {"UNDERTOW_MAX_MESSAGE_BYTES": str(MAX_BYTES)})
    wait_assignment([worker])

    now_ms = round(time.time() * 1000)
    stamps = [now_ms - 6_000 + 10 * i for i in range(GOOD)]
    good = make_events(stamps, seed=3, id_prefix="good-")
    extra = make_events([now_ms - 3_000] * 8, seed=4, id_prefix="extra-")

    def event(i: int, **changes: Any) -> dict[str, Any]:
        e: dict[str, Any] = orjson.loads(orjson.dumps(extra[i]))
        for k, v in changes.items():
            if v is ...:
                del e[k]
            else:
                e[k] = v
        return e

    in_envelope = [event(0), event(1, model=...), event(2)]
    iso = datetime.fromtimestamp((now_ms - 2_000) / 1000, UTC).isoformat()
    bad: list[tuple[str, bytes, int | None]] = [  # (reason, message, index in envelope)
        ("not_json", b'{"prediction_id": "broken", "model": ', None),
        ("not_object", b"[1, 2, 3]", None),
        ("missing_field", orjson.dumps(event(3, timestamp=...)), None),
        ("wrong_type", orjson.dumps(event(4, prediction_id=12345)), None),
        ("bad_timestamp", orjson.dumps(event(5, timestamp="yesterday at noon")), None),
        ("bad_timestamp", orjson.dumps(event(6, timestamp=1e12)), None),  # milliseconds
        ("unknown_model", orjson.dumps(event(7, model_version="v999")), None),
        (
            "too_large",
            orjson.dumps({**event(0, prediction_id="huge"), "pad": "x" * MAX_BYTES}),
            None,
        ),
        ("empty_envelope", b'{"predictions": []}', None),
        ("missing_field", orjson.dumps({"predictions": in_envelope}), 1),
    ]
    # Valid events that are not plain floats-in-a-message: an ISO-8601 timestamp, and the
    # two good elements of the envelope above.
    iso_event = {**event(0, prediction_id="iso-time"), "timestamp": iso}
    valid_times = [e["timestamp"] for e in good]
    valid_times += [in_envelope[0]["timestamp"], in_envelope[2]["timestamp"]]
    valid_times.append(datetime.fromisoformat(iso).timestamp())

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5)
    sources: list[tuple[str, int, int, int | None, bytes]] = []
    try:
        pending = []
        step = GOOD // (len(bad) + 1)
        for i, e in enumerate(good):
            producer.send(topic, key=e["prediction_id"].encode(), value=orjson.dumps(e))
            if i % step == step - 1 and i // step < len(bad):
                reason, raw, index = bad[i // step]
                pending.append((reason, index, raw, producer.send(topic, key=b"bad", value=raw)))
        producer.send(topic, key=b"iso", value=orjson.dumps(iso_event))
        producer.flush(timeout=30)
        for reason, index, raw, future in pending:
            meta = future.get(timeout=10)
            sources.append((reason, meta.partition, meta.offset, index, raw))

        # Too late: once windows are closing, an event older than every open window.
        with TopicTail(kafka_bootstrap, prefix + "metrics") as tail:
            tail.wait_for(lambda rs: any(r.json()["final"] for r in rs), 60, "a final window")
        time.sleep(1.5)  # the worker refreshes its watermark at each flush (1 s)
        late = event(0, prediction_id="too-late", timestamp=(now_ms - 120_000) / 1000)
        meta = producer.send(topic, key=b"late", value=orjson.dumps(late)).get(timeout=10)
        sources.append(("late", meta.partition, meta.offset, None, orjson.dumps(late)))
        producer.flush(timeout=10)
    finally:
        producer.close(timeout=10)

    members = Windows().members(valid_times)
    snapshots = data_windows(wait_for_last_window(kafka_bootstrap, prefix, max(members)))
    with TopicTail(kafka_bootstrap, prefix + "deadletter") as tail:
        tail.wait_for(lambda rs: len(rs) >= len(sources), 30, f"{len(sources)} dead letters")
        letters = [r.json() for r in tail.drain(quiet_s=1.0, max_s=10.0)]

    # Every valid event counted, in its windows, and nothing else.
    assert {w: s["count"] for w, s in snapshots.items()} == {
        w: len(ix) for w, ix in members.items()
    }

    # One dead letter per bad input, with its reason, source and bytes.
    assert len(letters) == len(sources), Counter(d["reason"] for d in letters)
    got = sorted((d["reason"], d["partition"], d["offset"], d["index"]) for d in letters)
    expected = sorted((reason, p, o, index) for reason, p, o, index, _ in sources)
    assert got == expected
    by_source = {(d["partition"], d["offset"], d["index"]): d for d in letters}
    for reason, p, o, index, raw in sources:
        letter = by_source[(p, o, index)]
        assert letter["topic"] == topic
        assert letter["detail"]
        payload = base64.b64decode(letter["payload_b64"])
        if index is not None:  # the bad element alone, not the whole envelope
            assert orjson.loads(payload) == orjson.loads(raw)["predictions"][index]
        elif reason in ("unknown_model", "late"):  # the validated event, re-encoded
            decoded = orjson.loads(payload)
            assert decoded["prediction_id"] == orjson.loads(raw)["prediction_id"]
            assert decoded["timestamp"] == orjson.loads(raw)["timestamp"]
        else:
            assert payload == raw

    # Prometheus counts them by reason; the worker is still up.
    metrics = scrape(worker)
    for reason, n in Counter(reason for reason, *_ in sources).items():
        assert sample(metrics, "ml_invalid_events_total", reason=reason) == n, reason
    assert sample(metrics, "ml_late_events_total", model_name=MODEL) == 1
    counted = sample(metrics, "ml_predictions_total", model_name=MODEL, model_version=VERSION)
    assert counted == len(valid_times)
    worker.check_alive()
