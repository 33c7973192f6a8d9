"""The Faust app ``undertow``: one worker process, configured from the environment.

The app hosts the monitor as a Faust service — the predictions consumer (`agents.ingest`)
and the evaluator (`agents.evaluator`) — and serves ``/metrics``, ``/healthz`` and
``/readyz`` from Faust's web server on ``UNDERTOW_METRICS_PORT`` (8000). Faust tables use
undertow's ``redis://`` store (`agents.stores`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import time
from typing import Any

import faust
import redis
from aiokafka import AIOKafkaProducer
from mode import Service
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from agents.evaluator import Evaluator
from agents.ingest import PredictionIngestor, tune_gc
from agents.metrics import WorkerMetrics
from agents.pane_store import PaneStore
from agents.registry import BaselineRegistry
from agents.settings import Settings
from agents.topics import ensure_topics

log = logging.getLogger(__name__)


def namespace(settings: Settings) -> str:
    """Key prefix in Redis and consumer-group prefix: the topic prefix without its dot."""
    return settings.topics.prefix.rstrip(".") or "undertow"


class Monitor(Service):
    """Ingestor and evaluator of one worker, started and stopped with the Faust worker."""

    def __init__(self, settings: Settings, registry: CollectorRegistry, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}"
        self.registry = registry
        self.metrics = WorkerMetrics(
            registry, max_models=settings.max_models, max_features=settings.max_features
        )
        self.redis = redis.Redis.from_url(
            settings.redis_url or "redis://127.0.0.1:6379/0",
            socket_connect_timeout=5,
            socket_timeout=10,
        )
        self.store = PaneStore(self.redis, namespace(settings))
        self.baselines = BaselineRegistry(self.redis, namespace=namespace(settings))
        self.producer: AIOKafkaProducer | None = None
        self.ingestor: PredictionIngestor | None = None
        self.evaluator: Evaluator | None = None
        self.stopping = asyncio.Event()
        self.started_at = time.time()

    async def on_start(self) -> None:
        counts = await ensure_topics(self.settings)
        partitions = counts[self.settings.topics.predictions]
        if partitions != self.settings.partitions:
            log.info("%s has %d partitions", self.settings.topics.predictions, partitions)
            self.settings = dataclasses.replace(self.settings, partitions=partitions)
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka, linger_ms=5, acks="all"
        )
        await self.producer.start()
        self.ingestor = PredictionIngestor(
            self.settings, self.baselines, self.store, self.producer, self.metrics
        )
        self.evaluator = Evaluator(
            self.settings,
            self.redis,
            self.store,
            self.baselines,
            self.producer,
            self.metrics,
            owned=lambda: list(self.ingestor.owned) if self.ingestor else [],
            worker_id=self.worker_id,
        )
        tune_gc()
        self.add_future(self.ingestor.run(self.stopping))
        self.add_future(self.evaluator.run(self.stopping))

    async def on_stop(self) -> None:
        self.stopping.set()
        # Give the loops a moment to flush and leave the group (a clean exit rebalances
        # at once instead of after the session timeout).
        await asyncio.sleep(0.5)
        if self.producer is not None:
            await self.producer.stop()

    # -- health -----------------------------------------------------------------------------

    def ready(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {}
        try:
            checks["redis"] = bool(self.redis.ping())
        except redis.RedisError as exc:
            checks["redis"] = f"unreachable: {type(exc).__name__}"
        consumer = self.ingestor.consumer if self.ingestor else None
        checks["kafka"] = consumer is not None and bool(consumer.assignment() is not None)
        checks["partitions"] = sorted(self.ingestor.owned) if self.ingestor else []
        checks["group_joined"] = bool(consumer is not None and consumer.assignment())
        ok = checks["redis"] is True and checks["kafka"] and checks["group_joined"]
        return ok, checks


def create_app(settings: Settings | None = None) -> faust.App:
    """The Faust app for ``settings`` (from the environment when not given)."""
    settings = settings or Settings.from_env()
    if not settings.kafka:
        raise RuntimeError(
            "UNDERTOW_KAFKA is not set: point it at a Kafka broker, or start the embedded "
            "stack with `undertow dev up`"
        )
    from agents.stores import register

    register()
    ns = namespace(settings)
    app = faust.App(
        "undertow" if ns == "undertow" else f"undertow-{ns}",
        broker=f"kafka://{settings.kafka}",
        store=_store_url(settings.redis_url),
        topic_partitions=settings.partitions,
        web_port=settings.metrics_port,
        web_bind="0.0.0.0",
        web_host=socket.gethostname(),
        # Tansu reports a partition's end offset low (see FACTS.md); recovery must not
        # treat a Redis offset above it as corruption.
        recovery_consistency_check=False,
        table_standby_replicas=0,
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
        broker_rebalance_timeout=15,
    )
    registry = CollectorRegistry()
    monitor = Monitor(settings, registry, loop=None)
    app.service(monitor)
    app.monitor_service = monitor  # type: ignore[attr-defined]

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        # aiohttp refuses a charset inside content_type=; the header carries it whole.
        body = await asyncio.to_thread(generate_latest, registry)
        return web.bytes(body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        # Answering at all proves the event loop is responsive.
        return web.json({"status": "ok", "uptime_s": round(time.time() - monitor.started_at, 1)})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ok, checks = await asyncio.to_thread(monitor.ready)
        return web.json({"ready": ok, **checks}, status=200 if ok else 503)

    return app


def _store_url(redis_url: str | None) -> str:
    if not redis_url:
        return "memory://"
    # Faust prints its store URL in the worker banner: never hand it a password.
    return redis_url if "@" not in redis_url else "redis://" + redis_url.split("@", 1)[1]
