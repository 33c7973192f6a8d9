"""The topics undertow reads and writes, created with the partition counts it expects."""

from __future__ import annotations

import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from agents.settings import Settings

log = logging.getLogger(__name__)


class TopicLayoutError(RuntimeError):
    """The topics exist with a layout undertow cannot work with."""


async def ensure_topics(settings: Settings) -> dict[str, int]:
    """Create missing topics; return every topic's partition count.

    Predictions and labels must have the same partition count: a label is joined to its
    prediction in the partition both keys hash to. A mismatch stops the worker with a
    message that says how to fix it, instead of joining nothing.
    """
    t = settings.topics
    wanted = {
        t.predictions: settings.partitions,
        t.labels: settings.partitions,
        t.metrics: settings.partitions,
        t.alerts: 1,  # one ordered stream of alert events, for people and pagers
        t.deadletter: settings.partitions,
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka, request_timeout_ms=15_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, n, 1) for name, n in wanted.items() if name not in existing]
        if missing:
            # Another worker may create them first; that is as good.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
            log.info("created topics: %s", ", ".join(m.name for m in missing))
        described = await admin.describe_topics(list(wanted))
    finally:
        await admin.close()
    counts = {d["topic"]: len(d["partitions"]) for d in described}
    if counts.get(t.predictions) != counts.get(t.labels):
        raise TopicLayoutError(
            f"{t.predictions} has {counts.get(t.predictions)} partitions but {t.labels} has "
            f"{counts.get(t.labels)}: labels are joined to predictions partition by partition, "
            "so both topics need the same partition count"
        )
    return counts
