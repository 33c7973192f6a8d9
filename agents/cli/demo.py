"""`undertow demo`: the whole loop on the embedded stack, with a model whose world changes.

A synthetic credit-scoring model (`agents.synthetic`) publishes predictions at a steady
rate, and their ground truth follows seconds to a minute later (some never comes), the way
chargebacks follow payments. After ``--concept-after`` the concept changes in one region
(the risky-looking applicants there repay, the safe-looking ones default) while the inputs
stay the same: only the labels show it, as ``accuracy_drop`` and ``concept_drift``. The
model also treats age groups unequally from the start (``fairness``). After
``--drift-after`` the inputs change too: incomes shift up, loan amounts spread out, and a
broken upstream join leaves 30 % of credit histories missing. The demo prints alert events
as the workers raise them, says where to look at metrics, and stops by itself, taking down
whatever it started.
"""

from __future__ import annotations

import argparse
import csv
import heapq
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
from agents.synthetic import FEATURES, ConceptPlan, CreditModel, DriftPlan
from streams.durations import parse_duration
from streams.errors import InputError

# Short windows so that drift shows within a minute; a real deployment uses 5m / 1m.
DEMO_ENV = {
    "UNDERTOW_WINDOW": "30s",
    "UNDERTOW_SLIDE": "10s",
    "UNDERTOW_GRACE": "5s",
    "UNDERTOW_IDLE_TIMEOUT": "5s",
    "UNDERTOW_PARTITIONS": "4",
    # Labels on the same scale: seconds for days.
    "UNDERTOW_PERFORMANCE_WINDOW": "30s",
    "UNDERTOW_PERFORMANCE_REFRESH": "5s",
    "UNDERTOW_LABEL_TTL": "60s",
    "UNDERTOW_LABEL_HOLD": "10s",
}
#: The alerts the demo exists to show; it exits 1 when one of them did not fire.
EXPECTED_TYPES = ("data_drift", "accuracy_drop", "concept_drift", "fairness")


def register(sub: Any) -> None:
    cmd = sub.add_parser(
        "demo",
        help="the whole loop on the embedded stack, with a model whose inputs drift",
        description=(
            "Start the embedded stack (broker, Redis, workers) in <state-dir>, register the "
            "baseline of a synthetic credit-scoring model (age_band protected), publish its "
            "predictions at a steady rate and their labels seconds later. After "
            "--concept-after the concept changes in one region (only the labels show it: "
            "accuracy_drop, concept_drift); after --drift-after two of its eight features "
            "drift (income shifts, loan_amount spreads out) and a third goes 30%% missing. "
            "Alerts are printed as they arrive; the demo stops by itself and stops what it "
            "started. Windows are 30s sliding by 10s, performance windows 30s (override with "
            "UNDERTOW_WINDOW / UNDERTOW_SLIDE / UNDERTOW_PERFORMANCE_WINDOW)."
        ),
    )
    cmd.add_argument("--rate", type=positive_int, default=300, help="predictions per second")
    cmd.add_argument(
        "--concept-after",
        type=parse_duration,
        default=40.0,
        metavar="DURATION",
        help="when the concept changes in one region (40s)",
    )
    cmd.add_argument(
        "--drift-after",
        type=parse_duration,
        default=100.0,
        metavar="DURATION",
        help="when the inputs drift (100s)",
    )
    cmd.add_argument(
        "--duration",
        type=parse_duration,
        default=150.0,
        metavar="DURATION",
        help="how long to publish (150s)",
    )
    cmd.add_argument("--workers", type=positive_int, default=2)
    cmd.add_argument(
        "--label-delay",
        type=parse_duration,
        default=4.0,
        metavar="DURATION",
        help="median label delay (4s); 10%% of predictions never get one",
    )
    cmd.add_argument("--state-dir", default=".undertow/demo", metavar="DIR")
    cmd.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from agents.cli import main as cli

    for key, value in DEMO_ENV.items():
        os.environ.setdefault(key, value)
    if args.drift_after >= args.duration or args.concept_after >= args.duration:
        raise InputError("--concept-after and --drift-after must be shorter than --duration")
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
            "--protected",
            "age_band",
            "--expected-label-delay",
            f"{args.label_delay:g}s",
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
    concept = ConceptPlan(starts_at=start + args.concept_after)
    say(
        f"publishing {args.rate} predictions/s of model credit v1 for {args.duration:g}s, "
        f"labels {args.label_delay:g}s later (median); the concept changes in region "
        f"{concept.region} after {args.concept_after:g}s, the inputs drift after "
        f"{args.drift_after:g}s (income, loan_amount, credit_history_months)"
    )
    for worker in record.get("workers", []):
        say(f"metrics: http://127.0.0.1:{worker['port']}/metrics")
    sent = labelled = 0
    announced: set[str] = set()
    waiting: list[tuple[float, int, dict[str, Any]]] = []  # (send at, seq, label)
    with PredictionPublisher(record["kafka"], topics=settings.topics, linger_s=0.2) as pub:
        while (now := time.time()) < start + args.duration or waiting:
            if now < start + args.duration:
                second = np.full(args.rate, now) + np.arange(args.rate) / args.rate
                labels: list[tuple[float, dict[str, object]]] = []
                events = model.events(
                    args.rate, second, plan, id_prefix="demo-", concept=concept, labels=labels
                )
                for event in events:
                    pub.send_raw("predictions", event)
                for delay, label in labels:
                    heapq.heappush(waiting, (now + delay, labelled, label))
                    labelled += 1
                sent += args.rate
            while waiting and waiting[0][0] <= now:
                pub.send_raw("labels", heapq.heappop(waiting)[2])
            if waiting and now >= start + args.duration + 30:
                waiting.clear()  # the tail of the delay distribution: never comes
            for name, after, what in (
                ("concept", args.concept_after, "accuracy_drop and concept_drift"),
                ("drift", args.drift_after, "data_drift and data_quality"),
            ):
                if name not in announced and now - start >= after:
                    say(f"the world changes now ({name}): watch for {what} alerts")
                    announced.add(name)
            time.sleep(max(0.0, min(1.0, start + sent / args.rate - time.time())))
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
    types = {a.get("type") for a in firing}
    missing = [t for t in EXPECTED_TYPES if t not in types]
    if missing:
        say(f"expected alert types that did not fire: {', '.join(missing)}")
    return 0 if expected <= seen and not missing else 1


def _write_reference(model: CreditModel, path: Path, n: int) -> None:
    rows = model.reference_rows(n)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*FEATURES, "prediction", "label", "age_band"])
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
