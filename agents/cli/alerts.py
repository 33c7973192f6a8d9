"""`undertow alerts tail`: the alert events of ``<prefix>alerts``, like ``tail`` on a file.

The topic is read with ``assign()`` + ``seek()``, never in a consumer group: a first group
join costs ~20 s (FACTS.md) and a reader of alerts has no offsets to commit.

Where the topic ends. Without ``--follow`` the command stops at the end of the topic, and
the end cannot be taken from ``end_offsets()``: Tansu (the embedded broker) answers
ListOffsets(latest) with the base offset of the last record batch plus one, which is short
whenever the last batch holds more than one record. The high watermark carried by every
fetch response is right on both brokers, so the rule is:

1. caught up when every partition's position has reached the high watermark of the latest
   fetch response for it (kafka-python's ``highwater()``);
2. for a partition no fetch has answered for yet, caught up after ``IDLE_S`` seconds without
   a record once its position has reached ``end_offsets()``, which only ever undercounts;
3. a broker that sends nothing at all for ``STALL_S`` seconds before either is a failure.

"The last N alerts" starts reading at ``end_offsets() - N``; as that end undercounts, it reads
at least N records, keeps the last N, and prints them once caught up.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from agents.cli.render import use_colour
from agents.settings import Settings, SettingsError
from streams.errors import InputError

DEFAULT_LINES = 10
POLL_MS = 200
IDLE_S = 1.5
STALL_S = 15.0
TOPIC_WAIT_S = 1.0
EXIT_STALLED = 1
BOOTSTRAP_TIMEOUT_MS = 10_000

_SEVERITY_COLOURS = {"critical": "\033[1;31m", "warning": "\033[33m", "info": "\033[36m"}
_RESOLVED_COLOUR = "\033[32m"
_RESET = "\033[0m"


def register(sub: Any) -> None:
    alerts = sub.add_parser("alerts", help="alert events")
    actions = alerts.add_subparsers(dest="action", metavar="ACTION", required=True)
    tail = actions.add_parser(
        "tail",
        help="print alert events",
        description=(
            "Print the events of undertow.alerts (prefix from UNDERTOW_TOPIC_PREFIX; broker "
            "from UNDERTOW_KAFKA, else the stack of `undertow dev up`). Like tail(1): by "
            f"default the last {DEFAULT_LINES} alerts (-n), or all of them with "
            "--from-beginning; then it exits at the end of the topic, or with --follow keeps "
            "printing new alerts until Ctrl-C (exit status 130, as every undertow command). "
            "The end of the topic is the high watermark of the broker's fetch responses "
            f"(end_offsets() is wrong on Tansu), or {IDLE_S:g} s without a new alert. "
            "--format json prints each event exactly as on the topic, one per line. "
            f"Exit status 1 if the broker stopped answering for {STALL_S:g} s before the end."
        ),
    )
    tail.add_argument(
        "--from-beginning", action="store_true", help="every alert on the topic, oldest first"
    )
    tail.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new alerts until Ctrl-C"
    )
    tail.add_argument(
        "-n",
        "--lines",
        type=_count,
        default=DEFAULT_LINES,
        metavar="N",
        help=f"how many past alerts to show without --from-beginning ({DEFAULT_LINES})",
    )
    tail.add_argument("--format", choices=("table", "json"), default="table")
    tail.set_defaults(run=run_tail)

    ack = actions.add_parser(
        "ack",
        help="record that someone is handling an alert",
        description=(
            "Record an acknowledgement of ALERT_ID (the alert_id of a firing event) by NAME in "
            "Redis ({ns}:acks), where the meta-monitoring finds it: a critical alert that keeps "
            "firing without an acknowledgement raises a monitor_health alert. Acknowledging "
            "again replaces the earlier record."
        ),
    )
    ack.add_argument("alert_id", metavar="ALERT_ID")
    ack.add_argument("--by", required=True, metavar="NAME", help="who is handling it")
    ack.add_argument("--note", default="", help="what is being done, for the next person")
    ack.set_defaults(run=run_ack)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, not {text!r}")
    return value


# ------------------------------------------------------------------------- end of topic


def caught_up(
    positions: Mapping[Any, int],
    highwaters: Mapping[Any, int | None],
    reported_ends: Mapping[Any, int],
    idle_s: float,
) -> bool:
    """The end-of-topic rule of the module docstring (rules 1 and 2).

    >>> caught_up({0: 30}, {0: 30}, {0: 21}, idle_s=0.0)
    True
    >>> caught_up({0: 21}, {0: 30}, {0: 21}, idle_s=5.0)  # Tansu's end is short
    False
    >>> caught_up({0: 21}, {0: None}, {0: 21}, idle_s=IDLE_S)
    True
    """

    def done(tp: Any, position: int) -> bool:
        highwater = highwaters.get(tp)
        if highwater is not None:
            return position >= highwater
        return idle_s >= IDLE_S and position >= reported_ends[tp]

    return all(done(tp, position) for tp, position in positions.items())


# ------------------------------------------------------------------------------ output


def render_alert(event: Mapping[str, Any], colour: bool = False) -> str:
    """One alert as a line people read.

    >>> print(render_alert({"emitted_at": 1764151502.1, "severity": "critical",
    ...     "status": "firing", "model": "fraud", "model_version": "v2.1.0",
    ...     "type": "data_drift", "feature": "amount", "metric": "psi", "value": 0.41,
    ...     "threshold": 0.25, "message": "amount drifted"}))
    2025-11-26 10:05:02Z  critical  firing    fraud v2.1.0  data_drift  amount  psi=0.41 vs 0.25  amount drifted
    """  # noqa: E501
    severity = str(event.get("severity") or "?")
    status = str(event.get("status") or "?")
    sev_cell, status_cell = f"{severity:<8}", f"{status:<8}"
    if colour:
        sev_cell = f"{_SEVERITY_COLOURS.get(severity, '')}{sev_cell}{_RESET}"
        if status == "resolved":
            status_cell = f"{_RESOLVED_COLOUR}{status_cell}{_RESET}"
    model = " ".join(str(event[k]) for k in ("model", "model_version") if event.get(k))
    where = event.get("feature") or event.get("segment") or "-"
    cells = [
        _when(event.get("emitted_at")),
        sev_cell,
        status_cell,
        model or "?",
        str(event.get("type") or "?"),
        str(where),
        _measure(event),
        str(event.get("message") or ""),
    ]
    return "  ".join(cells).rstrip()


def _when(emitted_at: object) -> str:
    if isinstance(emitted_at, int | float) and not isinstance(emitted_at, bool):
        try:
            return datetime.fromtimestamp(emitted_at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        except (OverflowError, OSError, ValueError):
            pass
    return "?" if emitted_at is None else str(emitted_at)


def _measure(event: Mapping[str, Any]) -> str:
    metric = event.get("metric") or "value"
    value, threshold = event.get("value"), event.get("threshold")
    if value is None:
        return str(metric) if event.get("metric") else "-"
    text = f"{metric}={_number(value)}"
    return text if threshold is None else f"{text} vs {_number(threshold)}"


def _number(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class AlertPrinter:
    """Writes alert messages in one format; a message that is not a JSON object is skipped."""

    def __init__(self, fmt: str, out: TextIO) -> None:
        self.fmt = fmt
        self.out = out
        self.colour = fmt == "table" and use_colour(out)
        self.skipped = 0

    def write(self, values: Iterable[bytes]) -> None:
        for value in values:
            try:
                event = orjson.loads(value)
            except orjson.JSONDecodeError:
                event = None
            if not isinstance(event, dict):
                self.skipped += 1
                print("undertow: warning: skipped a message that is not an alert", file=sys.stderr)
                continue
            if self.fmt == "json":
                # Exactly as on the topic (less surrounding blanks); only a multi-line
                # message is re-serialised (the same JSON, compact): one event per line.
                line = value.strip()
                if b"\n" in line or b"\r" in line:
                    line = orjson.dumps(event)
                self.out.flush()
                self.out.buffer.write(line + b"\n")
            else:
                self.out.write(render_alert(event, self.colour) + "\n")
        self.out.flush()


# -------------------------------------------------------------------------------- tail


def run_tail(args: argparse.Namespace) -> int:
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    from agents.cli.connect import kafka_bootstrap

    try:
        topic = Settings.from_env().topics.alerts
    except SettingsError as exc:
        raise InputError(str(exc)) from None
    bootstrap = kafka_bootstrap()
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "client_id": "undertow-alerts-tail",
        "group_id": None,
        "enable_auto_commit": False,
        "allow_auto_create_topics": False,
    }
    if "bootstrap_timeout_ms" in KafkaConsumer.DEFAULT_CONFIG:  # kafka-python 3; 30 s is long
        config["bootstrap_timeout_ms"] = BOOTSTRAP_TIMEOUT_MS
    try:
        consumer = KafkaConsumer(**config)
    except KafkaError as exc:
        raise InputError(f"cannot reach Kafka at {bootstrap}: {exc}") from None
    printer = AlertPrinter(args.format, sys.stdout)
    try:
        return _tail(consumer, topic, args, printer)
    finally:
        consumer.close()


def _tail(consumer: Any, topic: str, args: argparse.Namespace, printer: AlertPrinter) -> int:
    from kafka import TopicPartition

    partitions = consumer.partitions_for_topic(topic)
    new_topic = False
    while not partitions:
        if not args.follow:
            print(f"undertow: no alerts yet: {topic} does not exist", file=sys.stderr)
            return 0
        time.sleep(TOPIC_WAIT_S)  # the first worker creates it
        partitions = consumer.partitions_for_topic(topic)
        new_topic = True
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    ends = consumer.end_offsets(tps)
    if args.from_beginning or new_topic:
        consumer.seek_to_beginning(*tps)
    else:
        begins = consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(begins[tp], ends[tp] - args.lines))

    # Catch up to the end: stream everything, or keep the last N to print at the end.
    keep_all = args.from_beginning or new_topic
    last: dict[Any, deque[tuple[int, int, int, bytes]]] = {
        tp: deque(maxlen=args.lines) for tp in tps
    }
    quiet_since = time.monotonic()
    while True:
        batch = consumer.poll(timeout_ms=POLL_MS)
        records = [r for rs in batch.values() for r in rs]
        now = time.monotonic()
        if records:
            quiet_since = now
            if keep_all:
                printer.write(r.value for r in records)
            else:
                for r in records:
                    last[TopicPartition(r.topic, r.partition)].append(
                        (r.timestamp, r.partition, r.offset, r.value)
                    )
        positions = {tp: consumer.position(tp) for tp in tps}
        highwaters = {tp: consumer.highwater(tp) for tp in tps}
        if caught_up(positions, highwaters, ends, now - quiet_since):
            break
        if now - quiet_since >= STALL_S:
            print(
                f"undertow: error: {topic}: the broker sent nothing for {STALL_S:g} s before "
                "the end of the topic; what was read is printed",
                file=sys.stderr,
            )
            _print_last(printer, last, args.lines)
            return EXIT_STALLED
    _print_last(printer, last, args.lines)
    if not args.follow:
        return 0
    while True:  # until Ctrl-C
        batch = consumer.poll(timeout_ms=1000)
        printer.write(r.value for rs in batch.values() for r in rs)


def _print_last(
    printer: AlertPrinter, last: Mapping[Any, Iterable[tuple[int, int, int, bytes]]], n: int
) -> None:
    """The last ``n`` alerts over all partitions, by record timestamp."""
    ordered = sorted(record for records in last.values() for record in records)
    if n:
        printer.write(value for *_, value in ordered[-n:])


def run_ack(args: argparse.Namespace) -> int:
    import redis

    from agents.acks import AckLog
    from agents.app import namespace
    from agents.cli.connect import redis_url

    if not args.by.strip():
        raise InputError("--by needs a name")
    client = redis.Redis.from_url(redis_url(), socket_connect_timeout=5)
    try:
        record = AckLog(client, namespace(Settings.from_env())).ack(
            args.alert_id, by=args.by.strip(), note=args.note
        )
    except redis.RedisError as exc:
        raise InputError(f"cannot reach Redis: {exc}") from None
    print(f"acknowledged {args.alert_id} by {record['by']} at {record['at_iso']}")
    return 0
