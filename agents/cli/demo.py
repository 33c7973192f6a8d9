"""`undertow demo`: the whole loop on the embedded stack, with a model whose inputs drift.

A synthetic credit-scoring model (`agents.synthetic`) publishes predictions at a steady
rate. After ``--drift-after`` its world changes: incomes shift up, loan amounts spread out,
and a broken upstream join leaves 30 % of credit histories missing. The demo prints alert
events as the workers raise them, says where to look at metrics, and stops by itself,
taking down whatever it started.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from agents.cli.alerts import render_alert
from agents.cli.options import positive_int
from agents.cli.render import use_colour
from agents.synthetic import FEATURES, CreditModel, DriftPlan
from streams.durations import parse_duration
from streams.errors import InputError

# Short windows so that drift shows within a minute; a real deployment uses 5m / 1m.
DEMO_ENV = {
    "UNDERTOW_WINDOW": "30s",
    "UNDERTOW_SLIDE": "10s",
    "UNDERTOW_GRACE": "5s",
    "UNDERTOW_IDLE_TIMEOUT": "5s",
    "UNDERTOW_PARTITIONS": "4",
}


def register(sub: Any) -> None:
    cmd = sub.add_parser(
        "demo",
        help="the whole loop on the embedded stack, with a model whose inputs drift",
        description=(
            "Start the embedded stack (broker, Redis, workers) in <state-dir>, register the "
            "baseline of a synthetic credit-scoring model, publish its predictions at a steady "
            "rate, and after --drift-after make two of its eight features drift (income shifts, "
            "loan_amount spreads out) and a third go 30%% missing. Alerts are printed as they "
            "arrive; the demo stops by itself and stops what it started. Windows are 30s "
            "sliding by 10s (override with UNDERTOW_WINDOW / UNDERTOW_SLIDE)."
        ),
    )
    cmd.add_argument("--rate", type=positive_int, default=300, help="predictions per second")
    cmd.add_argument("--drift-after", type=parse_duration, default=60.0, metavar="DURATION")
    cmd.add_argument(
        "--duration",
        type=parse_duration,
        default=150.0,
        metavar="DURATION",
        help="how long to publish (150s)",
    )
    cmd.add_argument("--workers", type=positive_int, default=2)
    cmd.add_argument("--state-dir", default=".undertow/demo", metavar="DIR")
    cmd.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from agents.cli import main as cli

    for key, value in DEMO_ENV.items():
        os.environ.setdefault(key, value)
    if args.drift_after >= args.duration:
        raise InputError("--drift-after must be shorter than --duration")
    state = Path(args.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    say(f"starting the embedded stack with {args.workers} worker(s) in {state} ...")
    code = cli(["dev", "up", "--workers", str(args.workers), "--state-dir", str(state)])
    if code != 0:
        return code
    record = orjson.loads((state / "stack.json").read_bytes())
    os.environ["UNDERTOW_KAFKA"] = record["kafka"]
    os.environ["UNDERTOW_REDIS_URL"] = record["redis"]
    try:
        return _run(args, state, record)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        say("stopping the demo stack ...")
        cli(["dev", "down", "--state-dir", str(state)])


def _run(args: argparse.Namespace, state: Path, record: dict[str, Any]) -> int:
    from agents.cli import main as cli
    from agents.producer import PredictionPublisher
    from agents.settings import Settings

    model = CreditModel(seed=int(time.time()))
    reference = state / "credit-reference.csv"
    _write_reference(model, reference, 20_000)
    baseline = state / "credit-v1.baseline.json"
    for argv in (
        [
            "baseline",
            "create",
            "--data",
            str(reference),
            "--model",
            "credit",
            "--version",
            "v1",
            "--out",
            str(baseline),
        ],
        ["baseline", "register", str(baseline)],
    ):
        if cli(argv) != 0:
            return 1

    settings = Settings.from_env()
    stop = threading.Event()
    alerts: list[dict[str, Any]] = []
    reader = threading.Thread(
        target=_follow_alerts,
        args=(record["kafka"], settings.topics.alerts, stop, alerts),
        daemon=True,
    )
    reader.start()
    start = time.time()
    plan = DriftPlan(starts_at=start + args.drift_after)
    say(
        f"publishing {args.rate} predictions/s of model credit v1 for {args.duration:g}s; "
        f"drift begins after {args.drift_after:g}s (income, loan_amount, "
        "credit_history_months)"
    )
    for worker in record.get("workers", []):
        say(f"metrics: http://127.0.0.1:{worker['port']}/metrics")
    sent = 0
    announced = False
    with PredictionPublisher(record["kafka"], topics=settings.topics, linger_s=0.2) as pub:
        while (now := time.time()) < start + args.duration:
            second = np.full(args.rate, now) + np.arange(args.rate) / args.rate
            for event in model.events(args.rate, second, plan, id_prefix="demo-"):
                pub.send_raw("predictions", event)
            sent += args.rate
            if not announced and now - start >= args.drift_after:
                say("the world changes now: watch for data_drift and data_quality alerts")
                announced = True
            time.sleep(max(0.0, start + sent / args.rate - time.time()))
    drain = parse_duration(os.environ["UNDERTOW_WINDOW"]) + 20
    say(f"published {sent:,} predictions; waiting {drain:g}s for the last windows to close ...")
    time.sleep(drain)
    stop.set()
    reader.join(timeout=10)
    firing = [a for a in alerts if a.get("status") == "firing"]
    say(
        f"done: {len(firing)} alert(s) fired, {len(alerts) - len(firing)} resolved. "
        "Try `undertow check` on a file, or run the stack yourself with `undertow dev up`."
    )
    expected = {"income", "loan_amount", "credit_history_months"}
    seen = {a.get("feature") for a in firing}
    return 0 if expected <= seen else 1


def _write_reference(model: CreditModel, path: Path, n: int) -> None:
    rows = model.reference_rows(n)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*FEATURES, "prediction", "label"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})


def _follow_alerts(
    bootstrap: str, topic: str, stop: threading.Event, seen: list[dict[str, Any]]
) -> None:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        colour = use_colour(sys.stdout)
        while not stop.is_set():
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    event = orjson.loads(r.value)
                    seen.append(event)
                    print(render_alert(event, colour=colour), flush=True)
    finally:
        consumer.close()


def say(text: str) -> None:
    print(f"undertow demo: {text}", file=sys.stderr, flush=True)
