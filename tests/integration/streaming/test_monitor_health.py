"""monitor_health on the real loop: acknowledgements, unknown features, a stalled evaluation,
and health events sent once however many evaluators look at a model.

Each test registers its baseline with an ``alert_policy`` whose health thresholds are
seconds instead of hours — through ``undertow baseline register``, as a user would — so the
checks fire within the test. Real broker, real Redis, real ``undertow worker`` processes
(the last test runs two evaluators in-process, against the same broker and Redis).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from agents.acks import AckLog
from agents.cli import main
from agents.pane_store import SEP
from streams.baseline import Baseline

from .conftest import Launch
from .harness import (
    MODEL,
    SLIDE_S,
    VERSION,
    Record,
    TopicTail,
    Windows,
    drift_stream,
    final_snapshots,
    publish,
    read_topic,
    wait_assignment,
)

pytestmark = pytest.mark.integration

#: Alerts firing this long without an acknowledgement are reported (default: 1 h / 24 h).
NAG_S = 10.0
#: No window evaluated for this long: warning, then critical (default: 15 min / 1 h).
STALE_WARNING_S, STALE_CRITICAL_S = 3.0, 6.0
WAIT_S = 90.0


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    # Not the flushing `redis_client`: each test keeps to its own namespace, like the workers.
    c = redis.Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=10)
    try:
        yield c
    finally:
        c.close()


def register_with_policy(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    redis_url: str,
    prefix: str,
    baseline: Baseline,
    policy: dict[str, Any],
) -> Baseline:
    """The baseline file with an ``alert_policy`` added, registered by the CLI."""
    document = orjson.loads(baseline.to_json())
    document["alert_policy"] = policy
    path = tmp_path / "baseline-with-policy.json"
    path.write_bytes(orjson.dumps(document))
    monkeypatch.setenv("UNDERTOW_REDIS_URL", redis_url)
    monkeypatch.setenv("UNDERTOW_TOPIC_PREFIX", prefix)
    assert main(["baseline", "register", str(path)]) == 0
    return Baseline.from_dict(document)


def health(records: list[Record], check: str) -> list[dict[str, Any]]:
    events = [r.json() for r in records]
    return [e for e in events if e["type"] == "monitor_health" and e.get("check") == check]


def still_firing(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The latest firing event of each alert key at warning or above, in topic order."""
    latest: dict[tuple[str, str | None], dict[str, Any]] = {}
    for e in events:
        if e["type"] != "monitor_health":
            latest[e["type"], e["feature"]] = e
    return [
        e
        for e in latest.values()
        if e["status"] == "firing" and e["severity"] in ("warning", "critical")
    ]


def first(
    records: list[Record], predicate: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    return next((e for e in (r.json() for r in records) if predicate(e)), None)


def test_acknowledged_alerts_are_not_reported_and_unknown_features_are(
    kafka_bootstrap: str,
    redis_url: str,
    unique_name: Callable[[str], str],
    launch: Launch,
    reference: tuple[Any, dict[str, list[Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    client: redis.Redis,
) -> None:
    baseline, _ = reference
    prefix = unique_name("acks") + "."
    nag = {"unacknowledged_warning_s": NAG_S, "unacknowledged_critical_s": NAG_S}
    register_with_policy(monkeypatch, tmp_path, redis_url, prefix, baseline, {"health": nag})
    [worker] = launch(1, prefix)
    wait_assignment([worker])

    # amount and merchant drift from t0+16 s to the end, so their alerts keep firing; from
    # t0+24 s every event also carries device_score, which the baseline does not know.
    stream = drift_stream(drift_s=(16, 44))
    unknown_from = stream.t0 + 24
    for event in stream.events:
        if event["timestamp"] >= unknown_from:
            event["features"]["device_score"] = 0.5
    publisher = threading.Thread(target=publish, args=(kafka_bootstrap, prefix, stream))
    publisher.start()
    try:
        with TopicTail(kafka_bootstrap, prefix + "alerts") as tail:

            def merchant(e: dict[str, Any]) -> bool:
                return e["feature"] == "merchant" and e["status"] == "firing"

            tail.wait_for(lambda rs: first(rs, merchant) is not None, WAIT_S, "merchant fires")
            acked = first(tail.records, merchant)
            assert acked is not None
            assert main(["alerts", "ack", acked["alert_id"], "--by", "dana"]) == 0
            # Well inside the delay, so the report cannot rightly name it.
            assert time.time() - acked["emitted_at"] < NAG_S / 2

            tail.wait_for(
                lambda rs: bool(health(rs, "unacknowledged")), NAG_S + WAIT_S, "the report"
            )
            [report] = health(tail.records, "unacknowledged")
            events = [r.json() for r in tail.records]
            # Expected: every warning / critical alert still firing when the report was
            # made, fired NAG_S or more before it, and not acknowledged.
            firing = still_firing(e for e in events if e["emitted_at"] <= report["emitted_at"])
            due = {
                e["alert_id"]
                for e in firing
                if report["emitted_at"] - e["emitted_at"] >= NAG_S
                and e["alert_id"] != acked["alert_id"]
            }
            named = {e["alert_id"] for e in events if e["alert_id"] in report["message"]}
            assert due and named == due
            assert (report["status"], report["severity"], report["value"]) == (
                "firing",
                "warning",
                float(len(due)),
            )
            assert acked["alert_id"] not in report["message"]

            # Acknowledging the rest (read at every tick) ends the report.
            rest = {e["alert_id"] for e in still_firing(r.json() for r in tail.records)}
            for alert_id in sorted(rest - {acked["alert_id"]}):
                assert main(["alerts", "ack", alert_id, "--by", "lee"]) == 0
            tail.wait_for(
                lambda rs: len(health(rs, "unacknowledged")) == 2, WAIT_S, "the report ends"
            )
            assert health(tail.records, "unacknowledged")[1]["status"] == "resolved"

            # device_score: the first window holding it reports the coverage of 6 features
            # out of 7; the first window holding none of it again ends the report.
            tail.wait_for(lambda rs: len(health(rs, "baseline_coverage")) == 2, WAIT_S, "coverage")
            fired, resolved = health(tail.records, "baseline_coverage")
    finally:
        publisher.join(timeout=WAIT_S)
    windows = Windows()
    first_ts = min(e["timestamp"] for e in stream.events if "device_score" in e["features"])
    last_ts = max(e["timestamp"] for e in stream.events)
    assert (fired["status"], fired["severity"]) == ("firing", "warning")
    assert fired["value"] == pytest.approx(6 / 7)
    assert "features without a baseline: device_score" in fired["message"]
    assert round(fired["window_start"] * 1000) == min(windows.starts_containing(first_ts))
    assert resolved["status"] == "resolved"
    assert round(resolved["window_start"] * 1000) == max(windows.starts_containing(last_ts)) + (
        SLIDE_S * 1000
    )
    assert AckLog(client, prefix.rstrip(".")).acknowledged() == rest | {acked["alert_id"]}


def test_a_stalled_evaluation_is_reported_once_and_cleared_when_it_resumes(
    kafka_bootstrap: str,
    redis_url: str,
    unique_name: Callable[[str], str],
    launch: Launch,
    reference: tuple[Any, dict[str, list[Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    client: redis.Redis,
) -> None:
    baseline, _ = reference
    prefix = unique_name("stall") + "."
    ns = prefix.rstrip(".")
    stale = {"stale_warning_s": STALE_WARNING_S, "stale_critical_s": STALE_CRITICAL_S}
    register_with_policy(monkeypatch, tmp_path, redis_url, prefix, baseline, {"health": stale})
    [worker] = launch(1, prefix)
    wait_assignment([worker])

    # A worker hung in the middle of emitting holds the claims of every final window from
    # t0+4 s on (a claim dated an hour ahead never goes stale within the test).
    stream = drift_stream(n=4_800, span_s=20, drift_s=(0, 0))
    blocked_from = round(stream.t0 * 1000) + 4_000
    ghost = f"claimed ghost-worker {time.time() + 3600}"
    claims = [
        f"{ns}:claim:{MODEL}{SEP}{VERSION}{SEP}{start}{SEP}final"
        for start in range(blocked_from, blocked_from + 120_000, SLIDE_S * 1000)
    ]
    client.mset(dict.fromkeys(claims, ghost))
    publish(kafka_bootstrap, prefix, stream)

    with TopicTail(kafka_bootstrap, prefix + "alerts") as tail:
        tail.wait_for(
            lambda rs: any(e["severity"] == "critical" for e in health(rs, "stale_window")),
            WAIT_S,
            "the stalled evaluation's critical report",
        )
        client.delete(*claims)  # the hung worker is gone: evaluation resumes
        tail.wait_for(
            lambda rs: any(e["status"] == "resolved" for e in health(rs, "stale_window")),
            WAIT_S,
            "evaluation resumes",
        )
        tail.drain(quiet_s=2.0, max_s=10.0)
        events = health(tail.records, "stale_window")
    # Once each, though the check ran every half second in between.
    assert [(e["status"], e["severity"]) for e in events] == [
        ("firing", "warning"),
        ("firing", "critical"),
        ("resolved", "critical"),
    ]
    warning, critical, resolved = events
    # The metrics topic never goes quiet (empty windows keep closing): read up to the final
    # snapshot of the window that cleared the report.
    with TopicTail(kafka_bootstrap, prefix + "metrics") as metrics:
        metrics.wait_for(
            lambda rs: any(
                round(s["window_start"] * 1000) == blocked_from for s in final_snapshots(rs)
            ),
            WAIT_S,
            "the held window's final snapshot",
        )
        finals = sorted(final_snapshots(metrics.records), key=lambda s: s["window_start"])
    before = [s for s in finals if s["emitted_at"] < warning["emitted_at"]]
    last = before[-1]
    assert round(last["window_start"] * 1000) == blocked_from - SLIDE_S * 1000
    # The value is the time since that last window was evaluated, by the wall clock.
    for event, limit in ((warning, STALE_WARNING_S), (critical, STALE_CRITICAL_S)):
        assert event["value"] == pytest.approx(event["emitted_at"] - last["emitted_at"])
        assert event["value"] >= limit
        assert event["window_start"] == last["window_start"]
    # Cleared by the first window evaluated after the stall: the one that was held.
    assert round(resolved["window_start"] * 1000) == blocked_from
    assert resolved["alert_id"] == critical["alert_id"]


def test_two_evaluators_of_one_model_send_each_health_event_once(
    kafka_bootstrap: str,
    redis_url: str,
    unique_name: Callable[[str], str],
    reference: tuple[Any, dict[str, list[Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    client: redis.Redis,
) -> None:
    """During a rebalance two workers can both own a model's home partition for a moment.
    Here two evaluators both own it for good and tick concurrently while an alert is
    acknowledged and un-acknowledged: each change is reported exactly once."""
    from prometheus_client import CollectorRegistry

    from agents.evaluator import Evaluator
    from agents.metrics import WorkerMetrics
    from agents.pane_store import PaneStore
    from agents.registry import BaselineRegistry
    from agents.settings import Settings, Topics
    from agents.topics import ensure_topics
    from streams.alert_state import AlertTracker

    baseline, _ = reference
    prefix = unique_name("twice") + "."
    ns = prefix.rstrip(".")
    policy = {"health": {"unacknowledged_warning_s": 1.0, "unacknowledged_critical_s": 1.0}}
    with_policy = register_with_policy(monkeypatch, tmp_path, redis_url, prefix, baseline, policy)
    client.sadd(f"{ns}:models", f"{MODEL}{SEP}{VERSION}")
    # Set-up, not expectation: a critical drift alert that fired a minute ago.
    seed = AlertTracker(policy=with_policy.alert_policy)
    window = {
        "model": MODEL,
        "model_version": VERSION,
        "window_start": time.time() - 70,
        "window_end": time.time() - 60,
        "final": True,
        "count": 1000,
        "features": {"amount": {"psi": 0.9, "ks_pvalue": 1e-12, "count": 1000}},
    }
    [drift] = seed.observe(window, time.time() - 60)
    client.hset(f"{ns}:alert-state", f"{MODEL}{SEP}{VERSION}", orjson.dumps(seed.to_state()))
    acks = AckLog(client, ns)

    settings = Settings(
        kafka=kafka_bootstrap, redis_url=redis_url, topics=Topics(prefix), partitions=4
    )

    async def run() -> None:
        from aiokafka import AIOKafkaProducer

        await ensure_topics(settings)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        clients = [redis.Redis.from_url(redis_url, socket_timeout=10) for _ in range(2)]
        try:
            evaluators = [
                Evaluator(
                    settings,
                    c,
                    PaneStore(c, ns),
                    BaselineRegistry(c, namespace=ns),
                    producer,
                    WorkerMetrics(CollectorRegistry()),
                    owned=lambda: range(4),
                    worker_id=f"evaluator-{i}",
                )
                for i, c in enumerate(clients)
            ]
            for round_ in range(6):
                if round_ % 2:
                    acks.ack(drift["alert_id"], by="dana")
                else:
                    client.hdel(acks.key, drift["alert_id"])
                for _ in range(3):
                    await asyncio.gather(*(e.tick() for e in evaluators))
        finally:
            await producer.stop()
            for c in clients:
                c.close()

    asyncio.run(asyncio.wait_for(run(), timeout=WAIT_S))
    events = [r.json() for r in read_topic(kafka_bootstrap, prefix + "alerts")]
    assert [(e.get("check"), e["status"]) for e in events] == [
        ("unacknowledged", "firing"),
        ("unacknowledged", "resolved"),
    ] * 3
    assert all(drift["alert_id"] in e["message"] for e in events[::2])
