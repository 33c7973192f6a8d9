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
    return _configured_or_recorded(
        Settings.from_env().kafka,
        "kafka",
        "no broker: set UNDERTOW_KAFKA=host:port, or start the embedded stack with "
        "`undertow dev up`",
    )


def redis_url() -> str:
    return _configured_or_recorded(
        Settings.from_env().redis_url,
        "redis",
        "no Redis: set UNDERTOW_REDIS_URL=redis://host:port/0, or start the embedded stack "
        "with `undertow dev up`",
    )


def _configured_or_recorded(configured: str | None, key: str, missing: str) -> str:
    """The environment's value, else the one `undertow dev up` recorded, else an error."""
    if configured:
        return configured
    record = stack_record()
    if record and record.get(key):
        return str(record[key])
    raise InputError(missing)
