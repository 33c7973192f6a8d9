"""`undertow worker`: one Faust worker of the monitor, configured from the environment."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from agents.settings import Settings, SettingsError
from streams.errors import InputError


def register(sub: Any) -> None:
    cmd = sub.add_parser(
        "worker",
        help="run one monitor worker (settings from UNDERTOW_* environment variables)",
        description=(
            "Run one worker: it consumes undertow.predictions and undertow.labels in the "
            "consumer group, keeps window state and the label join in Redis and evaluates the "
            "drift and performance windows of the models whose home partition it owns. "
            "Settings come from the environment (defaults in brackets): "
            "UNDERTOW_KAFKA and UNDERTOW_REDIS_URL [the embedded stack of `undertow dev up`], "
            "UNDERTOW_TOPIC_PREFIX [undertow.], "
            "UNDERTOW_PARTITIONS [8], UNDERTOW_WINDOW [5m], UNDERTOW_SLIDE [1m], "
            "UNDERTOW_GRACE [1m], UNDERTOW_IDLE_TIMEOUT [30s], UNDERTOW_FLUSH_INTERVAL [1s], "
            "UNDERTOW_METRICS_PORT [8000], UNDERTOW_MAX_MESSAGE_BYTES [1048576], "
            "UNDERTOW_MAX_MODELS [100], UNDERTOW_MAX_FEATURES [200 per model], "
            "UNDERTOW_LABEL_TTL [30d; a baseline's label TTL wins], UNDERTOW_LABEL_HOLD [10m], "
            "UNDERTOW_PERFORMANCE_WINDOW [the whole number of slides nearest 1h], "
            "UNDERTOW_PERFORMANCE_SLIDE [the performance window], "
            "UNDERTOW_PERFORMANCE_REFRESH [1m], "
            "UNDERTOW_EXPECTED_LABEL_DELAY [none; a baseline's wins]."
        ),
    )
    cmd.add_argument(
        "--loglevel", default="info", choices=("crit", "error", "warn", "info", "debug")
    )
    cmd.set_defaults(run=run_worker)


def run_worker(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise InputError(str(exc)) from None
    # Without UNDERTOW_KAFKA / UNDERTOW_REDIS_URL, the embedded stack of `undertow dev up`.
    from agents.cli.connect import kafka_bootstrap, redis_url

    settings = dataclasses.replace(
        settings,
        kafka=settings.kafka or kafka_bootstrap(),
        redis_url=settings.redis_url or redis_url(),
    )
    import asyncio

    import faust

    from agents.app import create_app
    from agents.topics import TopicLayoutError, ensure_topics

    # The topic layout is checked before Faust starts: a mismatch is the operator's to fix,
    # and deserves one line, not a service crash in the log.
    try:
        asyncio.run(ensure_topics(settings))
    except TopicLayoutError as exc:
        raise InputError(f"cannot start: {exc}") from None

    app = create_app(settings)
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0 if sys.exc_info()[0] is None else 1
