"""Where the command line finds Kafka and Redis: the environment, else the embedded stack."""

from __future__ import annotations

import json
from pathlib import Path

from agents.settings import STACK_RECORD, Settings
from streams.errors import InputError


def stack_record(path: Path = STACK_RECORD) -> dict[str, object] | None:
    """The record `undertow dev up` left, or None when no embedded stack is up."""
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):
        return None


def kafka_bootstrap() -> str:
    settings = Settings.from_env()
    if settings.kafka:
        return settings.kafka
    record = stack_record()
    if record and record.get("kafka"):
        return str(record["kafka"])
    raise InputError(
        "no broker: set UNDERTOW_KAFKA=host:port, or start the embedded stack with "
        "`undertow dev up`"
    )


def redis_url() -> str:
    settings = Settings.from_env()
    if settings.redis_url:
        return settings.redis_url
    record = stack_record()
    if record and record.get("redis"):
        return str(record["redis"])
    raise InputError(
        "no Redis: set UNDERTOW_REDIS_URL=redis://host:port/0, or start the embedded stack "
        "with `undertow dev up`"
    )
