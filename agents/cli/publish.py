"""`undertow publish predictions|labels FILE`: JSON Lines onto the input topics.

Each line is one event in the wire format of DESIGN.md, or a batch envelope
(``{"predictions": [...]}`` / ``{"labels": [...]}``). Every event is validated exactly as a
worker would validate it; a bad one is reported with its line number and never sent, so
nothing this command publishes ends up in the dead-letter topic. Good events go through
`PredictionPublisher`, which batches them per partition like the SDK does.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import orjson

from agents.cli.options import positive_int
from agents.settings import Settings, SettingsError
from streams.errors import InputError
from streams.events import Rejection, json_kind, validate_label, validate_prediction

KINDS = ("predictions", "labels")
EXIT_REJECTED = 1
#: Problems reported one by one; past this only the count grows.
MAX_REPORTED = 20


def register(sub: Any) -> None:
    cmd = sub.add_parser(
        "publish",
        help="send predictions or labels from a JSON Lines file",
        description=(
            "Send JSON Lines to undertow.predictions or undertow.labels (topic prefix from "
            "UNDERTOW_TOPIC_PREFIX; broker from UNDERTOW_KAFKA, else the stack of `undertow "
            'dev up`). One event per line, or a batch envelope {"predictions": [...]}; '
            "blank lines are skipped. Invalid events are reported on stderr (line number and "
            "reason) and not sent; the rest are. Missing topics are created with "
            "UNDERTOW_PARTITIONS partitions, as the workers would. Exit status: 0 when every "
            "event was sent, 1 when some were rejected (the valid ones were still sent), "
            "2 when the file cannot be read or the broker cannot be reached."
        ),
    )
    cmd.add_argument("kind", choices=KINDS, help="which topic")
    cmd.add_argument("file", metavar="FILE", help="JSON Lines, or - for standard input")
    cmd.add_argument(
        "--batch-size",
        type=positive_int,
        default=500,
        metavar="N",
        help="events per Kafka message (batch envelope) at most (500)",
    )
    cmd.add_argument(
        "--rate",
        type=_rate,
        metavar="EVENTS_PER_S",
        help="send at most this many events per second (default: as fast as possible)",
    )
    cmd.set_defaults(run=run_publish)


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected events per second, not {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, not {text!r}")
    return value


@dataclass(frozen=True)
class LineProblem:
    """An event that was not sent: where it was and why."""

    line: int
    rejection: Rejection

    def describe(self) -> str:
        where = f"line {self.line}"
        if self.rejection.index is not None:
            where += f" [{self.rejection.index}]"
        return f"{where}: {self.rejection.reason}: {self.rejection.detail}"


def parse_line(kind: str, raw: bytes, line: int) -> tuple[list[dict[str, Any]], list[LineProblem]]:
    """The valid events of one line (as written) and the problems of the others.

    >>> good, bad = parse_line("labels", b'{"labels": [{"prediction_id": "p1", "model": '
    ...     b'"fraud", "actual": 1, "timestamp": 1766743200}, 7]}', 3)
    >>> good[0]["prediction_id"], [p.describe() for p in bad]
    ('p1', ['line 3 [1]: not_object: expected a JSON object, got number'])
    """
    validate = validate_prediction if kind == "predictions" else validate_label
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return [], [LineProblem(line, Rejection("not_json", f"not valid JSON: {exc}"))]
    if not isinstance(message, dict):
        detail = f"expected a JSON object, got {json_kind(message)}"
        return [], [LineProblem(line, Rejection("not_object", detail))]
    if kind not in message:
        items, envelope = [message], False
    else:
        items, envelope = message[kind], True
        if not isinstance(items, list):
            detail = f"field {kind!r} must be a list of events"
            return [], [LineProblem(line, Rejection("wrong_type", detail))]
        if not items:
            detail = f"field {kind!r} is an empty list"
            return [], [LineProblem(line, Rejection("empty_envelope", detail))]
    good: list[dict[str, Any]] = []
    bad: list[LineProblem] = []
    for position, item in enumerate(items):
        index = position if envelope else None
        if not isinstance(item, dict):
            detail = f"expected a JSON object, got {json_kind(item)}"
            bad.append(LineProblem(line, Rejection("not_object", detail, index)))
            continue
        result = validate(item, index)
        if isinstance(result, Rejection):
            bad.append(LineProblem(line, result))
        else:
            good.append(item)
    return good, bad


@contextmanager
def open_lines(path: str) -> Iterator[IO[bytes]]:
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below, after the caller is done
    except FileNotFoundError:
        raise InputError("no such file", path=path) from None
    except OSError as exc:
        raise InputError(f"cannot read it: {exc.strerror}", path=path) from None
    with f:
        yield f


def run_publish(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    with open_lines(args.file) as lines:  # a missing file is reported before any connection
        publisher, topic = _connect(args)
        try:
            sent, rejected = _send(lines, publisher, args.kind, args.rate)
        except OSError as exc:
            raise InputError(f"cannot read it: {exc.strerror}", path=args.file) from None
        finally:
            try:
                publisher.close()
            except KafkaError as exc:
                raise InputError(f"could not deliver to {topic}: {exc}") from None
    if rejected > MAX_REPORTED:
        print(f"undertow: ... and {rejected - MAX_REPORTED} more rejected", file=sys.stderr)
    print(f"sent {sent} {args.kind} to {topic}; rejected {rejected}")
    return EXIT_REJECTED if rejected else 0


def _connect(args: argparse.Namespace) -> tuple[Any, str]:
    """A publisher on the broker of the environment or of `dev up`, topics created."""
    from aiokafka.errors import KafkaError as AIOKafkaError
    from kafka.errors import KafkaError

    from agents.cli.connect import kafka_bootstrap
    from agents.producer import PredictionPublisher
    from agents.topics import TopicLayoutError, ensure_topics

    try:
        settings = dataclasses.replace(Settings.from_env(), kafka=kafka_bootstrap())
    except SettingsError as exc:
        raise InputError(str(exc)) from None
    bootstrap = settings.kafka or ""
    try:
        # As the workers would create them: a topic auto-created by the first send could
        # get a partition count that breaks the label join.
        asyncio.run(ensure_topics(settings))
        publisher = PredictionPublisher(
            bootstrap, topics=settings.topics, batch_size=args.batch_size
        )
    except TopicLayoutError as exc:
        raise InputError(str(exc)) from None
    except (KafkaError, AIOKafkaError, OSError) as exc:
        raise InputError(f"cannot reach Kafka at {bootstrap}: {exc}") from None
    return publisher, getattr(settings.topics, args.kind)


def _send(lines: Iterable[bytes], publisher: Any, kind: str, rate: float | None) -> tuple[int, int]:
    """Send the valid events of ``lines``; report the others. Returns (sent, rejected)."""
    sent = rejected = 0
    started = time.monotonic()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        events, problems = parse_line(kind, raw, number)
        for problem in problems:
            if rejected < MAX_REPORTED:
                print(f"undertow: rejected {problem.describe()}", file=sys.stderr)
            rejected += 1
        for event in events:
            if rate is not None:
                _pace(started, sent, rate)
            publisher.send_raw(kind, event)
            sent += 1
    return sent, rejected


def _pace(started: float, sent: int, rate: float) -> None:
    """Sleep until event number ``sent`` is due at ``rate`` events per second."""
    delay = started + sent / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
