"""Streaming benchmark: undertow's worker against the raw consumer limit, on one broker.

The issue's performance criterion: on one machine, in one process tree, over one pre-filled
topic of realistic prediction events (30 features), measure

- the raw limit: aiokafka ``getmany`` + ``orjson.loads`` of every message, nothing else;
- undertow's worker end to end (consumed -> window state flushed to Redis), for single-event
  messages and for batch envelopes;

and print events/s and the ratio to the raw limit, median of 3 runs each. Targets: batch
envelopes >= 0.5 x the raw limit, single events >= 25,000 events/s per worker. It also checks
the memory target: the serialized state of one numeric feature of one model version across a
5-minute window with a 1-minute slide stays under 8 KB.

The label join (`agents.labels`): the same worker over predictions *and* labels, one label
per prediction, most of them for predictions an earlier run left pending in Redis
(`stream_labels`); target: predictions + labels per second at most 30 % below the
predictions-only figure of the same run. ``--pending-memory`` measures the Redis memory a
pending prediction takes, and again once its label joined (`pending_memory`); target
<= 150 bytes.

The worker is measured in process: each run is a fresh Python subprocess that builds the real
`PredictionIngestor` (Settings, BaselineRegistry, PaneStore, an AIOKafkaProducer,
WorkerMetrics on a fresh CollectorRegistry) and runs its own ``run()`` loop over the topic
until every event is counted and the final flush is done; then it reads Redis back and checks
that the panes hold every event, the offsets cover every message and the label join left
what it should (pending entries, tombstones, exact label counts, outcome panes). See
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from pending_memory import TARGET_PENDING_BYTES, measure_pending_memory, print_pending_memory
from stream_child import VARIANTS, child_main
from stream_events import (
    MODEL,
    VERSION,
    build_baseline_json,
    label_ttl_for,
    make_events,
)
from stream_labels import (
    DEFAULT_MAX_LAG,
    DEFAULT_SHORT_SHARE,
    LabelTopics,
    fill_label_topics,
    make_labels,
    partition_of,
    plan_labels,
)

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"

DEFAULT_EVENTS = 300_000
DEFAULT_ENVELOPE = 500
DEFAULT_PARTITIONS = 8

TARGET_BATCH_RATIO = 0.5
TARGET_SINGLE_EPS = 25_000.0
TARGET_STATE_BYTES = 8 * 1024
#: Predictions + labels per second, as a share of predictions only (at most 30 % below).
TARGET_LABELS_RATIO = 0.7
DEFAULT_PENDING_EVENTS = 200_000
#: Events per pane for the memory check: one worker at the single-event target for a minute.
STATE_EVENTS_PER_PANE = 1_500_000

# ---------------------------------------------------------------------------------------------
# filling the topics (the parent, once per benchmark)


@dataclass
class Topics:
    single: str
    batch: str
    messages_single: int
    messages_batch: int
    bytes_single: int
    bytes_batch: int


async def fill_topics(
    bootstrap: str, events: list[dict[str, Any]], partitions: int, envelope: int, run_id: str
) -> Topics:
    """The same events, in the same partitions, as single-event messages and as envelopes."""
    from aiokafka import AIOKafkaProducer

    from agents.settings import Settings
    from agents.settings import Topics as TopicNames
    from agents.topics import ensure_topics

    names = {}
    for mode in ("single", "batch"):
        prefix = f"bench-{run_id}-{mode}."
        settings = Settings(kafka=bootstrap, topics=TopicNames(prefix), partitions=partitions)
        await ensure_topics(settings)
        names[mode] = settings.topics.predictions
    per_partition: list[list[dict[str, Any]]] = [[] for _ in range(partitions)]
    for event in events:
        per_partition[partition_of(event["prediction_id"], partitions)].append(event)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=20,
        max_batch_size=1 << 20,
        max_request_size=8 << 20,
        acks="all",
    )
    await producer.start()
    sizes = {"single": 0, "batch": 0}
    counts = {"single": 0, "batch": 0}
    try:
        pending = []
        for p, chunk in enumerate(per_partition):
            for event in chunk:
                value = orjson.dumps(event)
                sizes["single"] += len(value)
                counts["single"] += 1
                key = event["prediction_id"].encode()
                pending.append(await producer.send(names["single"], value, key=key, partition=p))
                if len(pending) >= 20_000:
                    await asyncio.gather(*pending)
                    pending.clear()
            for start in range(0, len(chunk), envelope):
                part = chunk[start : start + envelope]
                value = orjson.dumps({"predictions": part})
                sizes["batch"] += len(value)
                counts["batch"] += 1
                key = part[0]["prediction_id"].encode()
                pending.append(await producer.send(names["batch"], value, key=key, partition=p))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return Topics(
        names["single"],
        names["batch"],
        counts["single"],
        counts["batch"],
        sizes["single"],
        sizes["batch"],
    )


# ---------------------------------------------------------------------------------------------
# the memory target


def state_size(
    baseline_json: bytes, events_per_pane: int, partitions: int, seed: int
) -> dict[str, Any]:
    """Bytes of one numeric feature's state over a 5-minute window of 1-minute panes.

    Each pane holds ``events_per_pane`` values of the feature (one worker at the single-event
    target for a minute), distributed like the reference (a multinomial draw over its bins,
    plus one outlier on each side, so that every field of the state is there), stored as the
    worker stores it (`to_compact_state`, JSON). The numeric feature with the largest state
    decides. ``bytes`` is the window as one partition holds it (5 pane partials); also given:
    the merged window the evaluator builds, the counts' memory, and the total over
    ``partitions`` partitions when the same traffic is spread over them.
    """
    from streams.baseline import Baseline, NumericReference
    from streams.histogram import NumericHistogram

    baseline = Baseline.from_json(baseline_json)
    rng = np.random.default_rng(seed)

    def partial(ref: NumericReference, n: int) -> NumericHistogram:
        h = ref.empty_histogram()
        h.update_many(np.array([h.edges[0] - 1.0, h.edges[-1] + 1.0]))
        shares = ref.histogram.counts / ref.histogram.counts.sum()
        h.counts += rng.multinomial(n, shares)
        h.missing += int(rng.binomial(n, min(max(ref.missing_rate, 0.0), 1.0)))
        return h

    def size(h: NumericHistogram) -> int:
        return len(orjson.dumps(h.to_compact_state()))

    worst: dict[str, Any] = {"bytes": 0}
    for name, ref in baseline.features.items():
        if not isinstance(ref, NumericReference):
            continue
        panes = [partial(ref, events_per_pane) for _ in range(5)]
        window = panes[0].copy()
        for h in panes[1:]:
            window.merge(h)
        total = sum(size(h) for h in panes)
        if total > worst["bytes"]:
            spread = [partial(ref, events_per_pane // partitions) for _ in range(5 * partitions)]
            worst = {
                "feature": name,
                "bins": panes[0].n_bins,
                "bytes": total,
                "pane_bytes": max(size(h) for h in panes),
                "merged_window_bytes": size(window),
                "memory_bytes": sum(int(h.counts.nbytes) for h in panes),
                "all_partitions_bytes": sum(size(h) for h in spread),
            }
    worst["events_per_pane"] = events_per_pane
    worst["partitions"] = partitions
    return worst


# ---------------------------------------------------------------------------------------------
# the parent: stack, data, runs, report


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def stack() -> Iterator[tuple[str, str]]:
    from agents.devstack import DevStack, external_services

    ext = external_services()
    if ext.kafka and ext.redis_url:
        yield ext.kafka, ext.redis_url
        return
    dev = DevStack().start()
    try:
        yield ext.kafka or dev.bootstrap, ext.redis_url or dev.redis_url
    finally:
        dev.stop()


def run_child(cmd: list[str], timeout: float) -> dict[str, Any]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 60)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
        raise RuntimeError(f"{' '.join(cmd[:4])} … exited with {proc.returncode}:\n{tail}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


@dataclass
class Mode:
    name: str
    label: str
    child: str
    topic: str
    messages: int
    events: int
    extra: list[str] = field(default_factory=list)
    #: Arguments of a worker run that prepares the mode's namespace before each run.
    warmup: list[str] | None = None


def fill_label_stream(bootstrap: str, args: argparse.Namespace, run_id: str) -> LabelTopics:
    """The label mode's topics: ``--events`` warm-up and as many measured predictions, and
    one label per measured prediction (`stream_labels`)."""
    warmup = measured = args.events
    events = make_events(warmup + measured, args.seed + 7)
    targets = plan_labels(
        warmup, measured, short_share=args.short_share, max_lag=DEFAULT_MAX_LAG, seed=args.seed
    )
    arrivals = [events[warmup + k]["timestamp"] for k in range(measured)]
    labels = make_labels(events, targets, arrivals, args.seed + 8)
    return asyncio.run(
        fill_label_topics(
            bootstrap, events, targets, labels, warmup, args.partitions, f"bench-{run_id}-labels."
        )
    )


def stream_modes(args: argparse.Namespace, topics: Topics, lt: LabelTopics | None) -> list[Mode]:
    n = args.events
    modes = [
        Mode("raw", "raw limit (getmany + orjson.loads)", "raw", topics.single,
             topics.messages_single, n),
        Mode("raw_batch", "raw limit, envelopes", "raw", topics.batch, topics.messages_batch, n),
        Mode("single", "undertow worker, single events", "worker", topics.single,
             topics.messages_single, n),
        Mode("batch", f"undertow worker, envelopes of {args.envelope}", "worker", topics.batch,
             topics.messages_batch, n),
    ]  # fmt: skip
    for variant in args.variants:
        for base in ("single", "batch"):
            m = next(m for m in modes if m.name == base)
            modes.append(replace(m, name=f"{base}+{variant}", label=f"{m.label} [{variant}]"))
    if lt is not None:
        bounds = ",".join(map(str, lt.boundaries))
        both = lt.measured + lt.label_messages
        total = lt.warmup + lt.measured
        modes.append(
            Mode("raw_labels", "raw limit, predictions + labels", "raw", lt.predictions, both,
                 both, ["--labels-topic", lt.labels, "--boundaries", bounds])
        )  # fmt: skip
        modes.append(
            Mode(
                "labels",
                "undertow worker, predictions + labels 1:1",
                "worker",
                lt.predictions,
                total,
                lt.measured,
                [
                    *("--stage", "resume", "--volume", str(total)),
                    *("--label-messages", str(lt.label_messages)),
                ],
                warmup=[
                    *("--stage", "warmup", "--events", str(lt.warmup)),
                    *("--messages", str(lt.warmup), "--boundaries", bounds),
                ],
            )
        )
    return modes


def measure(args: argparse.Namespace) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    with (
        tempfile.TemporaryDirectory(prefix="undertow-bench-stream-") as tmp,
        stack() as (
            bootstrap,
            redis_url,
        ),
    ):
        workdir = Path(tmp)
        t = time.perf_counter()
        # The warm-up's span: its labels are looked up in 8-9 live buckets (`label_ttl_for`).
        label_ttl = label_ttl_for(args.events)
        baseline_json = build_baseline_json(workdir, seed=args.seed + 100, label_ttl_s=label_ttl)
        baseline_path = workdir / "baseline.json"
        baseline_path.write_bytes(baseline_json)
        log(
            f"baseline of {MODEL} {VERSION} (30 features, binary, label TTL {label_ttl:g} s) in "
            f"{time.perf_counter() - t:.1f} s"
        )
        topics: Topics | None = None
        label_topics: LabelTopics | None = None
        modes: list[Mode] = []
        if not args.skip_throughput:
            t = time.perf_counter()
            events = make_events(args.events, args.seed)
            topics = asyncio.run(
                fill_topics(bootstrap, events, args.partitions, args.envelope, run_id)
            )
            del events
            log(
                f"filled {topics.single} ({topics.messages_single:,} messages, "
                f"{topics.bytes_single / topics.messages_single:.0f} B/event) and {topics.batch} "
                f"({topics.messages_batch:,} envelopes of <= {args.envelope}) in "
                f"{time.perf_counter() - t:.1f} s"
            )
            if args.labels:
                t = time.perf_counter()
                label_topics = fill_label_stream(bootstrap, args, run_id)
                lt = label_topics
                log(
                    f"filled {lt.predictions} ({lt.warmup:,} warm-up + {lt.measured:,} "
                    f"predictions) and {lt.labels} ({lt.label_messages:,} labels, "
                    f"{lt.bytes_labels / lt.label_messages:.0f} B each, "
                    f"{lt.short_labels / lt.label_messages:.0%} for recent predictions) in "
                    f"{time.perf_counter() - t:.1f} s"
                )
            modes = stream_modes(args, topics, label_topics)
        common = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--bootstrap",
            bootstrap,
            "--redis",
            redis_url,
            "--partitions",
            str(args.partitions),
            "--baseline",
            str(baseline_path),
            "--timeout",
            str(args.timeout),
            *([] if args.guard else ["--no-assign-guard"]),
        ]

        def run_mode(m: Mode, variant: str, *more: str) -> dict[str, Any]:
            ns: list[str] = []
            if m.warmup is not None:
                ns = ["--ns", f"bench-{uuid.uuid4().hex[:10]}"]
                run_child(
                    [*common, "--child", "worker", "--topic", m.topic, *m.warmup, *ns],
                    args.timeout,
                )
            cmd = [*common, "--child", m.child, "--topic", m.topic]
            cmd += ["--messages", str(m.messages), "--events", str(m.events)]
            cmd += ["--variant", variant, *m.extra, *ns, *more]
            return run_child(cmd, args.timeout)

        runs: dict[str, list[dict[str, Any]]] = {m.name: [] for m in modes}
        # Interleaved, so that a slow spell of the machine hits every mode alike.
        for r in range(args.repeat):
            for m in modes:
                variant = m.name.split("+")[1] if "+" in m.name else "real"
                res = run_mode(m, variant)
                res["eps"] = res["events"] / res["seconds"]
                runs[m.name].append(res)
                log(
                    f"  run {r + 1}/{args.repeat} {m.name:<16} {res['eps']:>10,.0f} events/s "
                    f"({res['seconds']:.2f} s, start-up {res['startup_s']:.2f} s)"
                )
        profiles = {}
        if args.profile:
            RESULTS_DIR.mkdir(exist_ok=True)
            for m in modes:
                if m.name not in ("single", "batch", "labels"):
                    continue
                out = RESULTS_DIR / f"profile-{m.name}.prof"
                run_mode(m, "real", "--profile-out", str(out))
                profiles[m.name] = str(out)
                log(f"  profile of {m.name}: {out}")
        state = state_size(baseline_json, STATE_EVENTS_PER_PANE, args.partitions, args.seed)
        pending = None
        if args.pending_memory:
            pending = pending_memory_run(args, bootstrap, redis_url, baseline_json, common, run_id)
    result: dict[str, Any] = {
        "events": args.events,
        "partitions": args.partitions,
        "envelope": args.envelope,
        "repeat": args.repeat,
        "bytes_per_event": round(topics.bytes_single / topics.messages_single) if topics else None,
        "label_ttl_s": label_ttl,
        "machine": machine(),
        "modes": {},
        "state": state,
        "profiles": profiles,
    }
    for m in modes:
        result["modes"][m.name] = summarize(m, runs[m.name])
    med = {name: mode["median_eps"] for name, mode in result["modes"].items()}
    targets: dict[str, dict[str, Any]] = {}
    if modes:
        result["raw_eps"] = med["raw"]
        result["single_eps"] = med["single"]
        result["batch_eps"] = med["batch"]
        targets["batch_ratio"] = {
            "value": med["batch"] / med["raw"],
            "target": TARGET_BATCH_RATIO,
            "pass": med["batch"] / med["raw"] >= TARGET_BATCH_RATIO,
        }
        targets["single_eps"] = {
            "value": med["single"],
            "target": TARGET_SINGLE_EPS,
            "pass": med["single"] >= TARGET_SINGLE_EPS,
        }
    targets["state_bytes"] = {
        "value": state["bytes"],
        "target": TARGET_STATE_BYTES,
        "pass": state["bytes"] < TARGET_STATE_BYTES,
    }
    if label_topics is not None:
        result["labels"] = label_summary(label_topics, runs["labels"], med)
        ratio = result["labels"]["ratio"]
        targets["labels_ratio"] = {
            "value": ratio,
            "target": TARGET_LABELS_RATIO,
            "pass": ratio >= TARGET_LABELS_RATIO,
        }
    if pending is not None:
        result["pending_memory"] = pending
        targets["pending_bytes"] = {
            "value": pending["pending"]["per_prediction"],
            "target": TARGET_PENDING_BYTES,
            "pass": pending["pass"],
        }
    result["targets"] = targets
    result["pass"] = all(t["pass"] for t in targets.values())
    return result


def summarize(m: Mode, runs: list[dict[str, Any]]) -> dict[str, Any]:
    eps = [run["eps"] for run in runs]
    worker = m.child == "worker"
    return {
        "label": m.label,
        "median_eps": statistics.median(eps),
        "min_eps": min(eps),
        "max_eps": max(eps),
        "startup_s": statistics.median(run["startup_s"] for run in runs),
        "cpu_us_per_event": statistics.median(run["cpu_s"] / run["events"] * 1e6 for run in runs),
        "redis_cpu_us_per_event": (
            statistics.median(run["redis_cpu_s"] / run["events"] * 1e6 for run in runs)
            if worker
            else None
        ),
        "gc_s": statistics.median(run["gc_s"] for run in runs) if worker else None,
        "runs": runs,
    }


def label_summary(
    lt: LabelTopics, runs: list[dict[str, Any]], med: dict[str, float]
) -> dict[str, Any]:
    """The label mode against predictions only, and how its labels were joined."""

    def median_of(f: Callable[[dict[str, Any]], float]) -> float:
        return statistics.median(f(r) for r in runs)

    from_redis = median_of(lambda r: r["join"]["from_redis"] / r["labels"])
    held = median_of(lambda r: r["join"]["held"] / r["labels"])
    return {
        "eps": med["labels"],
        "predictions_only_eps": med["single"],
        "ratio": med["labels"] / med["single"],
        "x_raw": med["labels"] / med["raw"],
        "x_raw_labels": med["labels"] / med["raw_labels"],
        "predictions_eps": median_of(lambda r: r["predictions"] / r["seconds"]),
        "labels_eps": median_of(lambda r: r["labels"] / r["seconds"]),
        "warmup": lt.warmup,
        "measured": lt.measured,
        "labels": lt.label_messages,
        "short_share": lt.short_labels / lt.label_messages,
        "bytes_per_label": lt.bytes_labels / lt.label_messages,
        "from_redis_share": from_redis,
        "held_share": held,
        "in_memory_share": 1.0 - from_redis - held,
        "lookups": median_of(lambda r: r["join"]["lookups"]),
        "digests_per_label": median_of(lambda r: r["join"]["digests_looked_up"] / r["labels"]),
        "outcome_panes": median_of(lambda r: r["join"]["outcome_panes"]),
        "verified": all(r["verified"] for r in runs),
    }


def pending_memory_run(
    args: argparse.Namespace,
    bootstrap: str,
    redis_url: str,
    baseline_json: bytes,
    common: list[str],
    run_id: str,
) -> dict[str, Any]:
    import redis

    from streams.baseline import Baseline

    def run_stage(topic: str, stage: list[str]) -> dict[str, Any]:
        return run_child([*common, "--child", "worker", "--topic", topic, *stage], args.timeout)

    client = redis.Redis.from_url(redis_url, socket_timeout=60)
    try:
        return measure_pending_memory(
            client=client,
            bootstrap=bootstrap,
            baseline=Baseline.from_json(baseline_json),
            events=make_events(args.pending_events, args.seed + 21),
            partitions=args.partitions,
            prefix=f"bench-{run_id}-memory.",
            ns=f"bench-{uuid.uuid4().hex[:10]}",
            seed=args.seed + 22,
            run_stage=run_stage,
            log=log,
        )
    finally:
        client.close()


def write_latest(result: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / "latest.json"
    latest: dict[str, Any] = {
        key: round(result[key]) for key in ("raw_eps", "single_eps", "batch_eps") if key in result
    }
    if "labels" in result:
        latest["labels_eps"] = round(result["labels"]["eps"])
        latest["labels_ratio"] = round(result["labels"]["ratio"], 3)
    if "pending_memory" in result:
        pm = result["pending_memory"]
        latest["pending_bytes"] = round(pm["pending"]["per_prediction"], 1)
        latest["tombstone_bytes"] = round(pm["joined"]["per_prediction"], 1)
    latest["events"] = result["events"]
    latest["machine"] = result["machine"]
    path.write_text(json.dumps(latest, indent=2) + "\n")
    return path


def print_table(result: dict[str, Any]) -> None:
    mach = result["machine"]
    if result["modes"]:
        print(
            f"\nundertow streaming: {result['events']:,} events x 30 features "
            f"(~{result['bytes_per_event']} B each), {result['partitions']} partitions, "
            f"{mach['cpus']} CPUs, Python {mach['python']}, median of {result['repeat']}"
        )
        raw = result["raw_eps"]
        header = (
            f"{'':<44} {'events/s':>10} {'min':>9} {'max':>9} {'x raw':>6} {'CPU us/ev':>9} "
            f"{'Redis us/ev':>11} {'GC s':>5}"
        )
        print(header)
        print("-" * len(header))
        for mode in result["modes"].values():
            gc_s = "" if mode["gc_s"] is None else f"{mode['gc_s']:.2f}"
            rcpu = mode["redis_cpu_us_per_event"]
            print(
                f"{mode['label']:<44} {mode['median_eps']:>10,.0f} {mode['min_eps']:>9,.0f} "
                f"{mode['max_eps']:>9,.0f} {mode['median_eps'] / raw:>6.2f} "
                f"{mode['cpu_us_per_event']:>9.1f} {'' if rcpu is None else f'{rcpu:.1f}':>11} "
                f"{gc_s:>5}"
            )
    if "labels" in result:
        lab = result["labels"]
        print(
            f"\nlabel join: {lab['warmup']:,} predictions pending in Redis from a warm-up run, "
            f"then {lab['measured']:,} predictions and {lab['labels']:,} labels (1:1, "
            f"{lab['bytes_per_label']:.0f} B each)\nread together; {lab['short_share']:.0%} of "
            f"the labels are for a prediction <= {DEFAULT_MAX_LAG:,} events before them, the "
            f"rest for the warm-up's;\nlabel TTL {result['label_ttl_s']:g} s, the warm-up's "
            f"span: {lab['digests_per_label']:.1f} pending buckets looked up per label"
        )
        print(
            f"  predictions + labels   {lab['eps']:>10,.0f}/s   ({lab['predictions_eps']:,.0f} "
            f"predictions/s + {lab['labels_eps']:,.0f} labels/s)\n"
            f"  predictions only       {lab['predictions_only_eps']:>10,.0f}/s   (same run)\n"
            f"  ratio                  {lab['ratio']:>10.2f} x   ({lab['x_raw']:.2f} x the raw "
            f"limit of predictions, {lab['x_raw_labels']:.2f} x the raw limit of both)\n"
            f"  labels joined from Redis {lab['from_redis_share']:.1%}, from entries not flushed "
            f"yet {lab['in_memory_share']:.1%}, held until their prediction came "
            f"{lab['held_share']:.1%};\n  every run checked: label-counts joined = labels, no "
            f"orphan or duplicate, tombstones = labels, outcome panes labelled = labels"
        )
    st = result["state"]
    print(
        f"\nstate of one numeric feature over a 5-min window of 1-min panes ({st['feature']}, "
        f"{st['bins']} bins, {st['events_per_pane']:,} events/pane):\n"
        f"  {st['bytes']:,} B serialized in one partition (largest pane {st['pane_bytes']:,} B); "
        f"merged window {st['merged_window_bytes']:,} B; counts in memory "
        f"{st['memory_bytes']:,} B;\n  {st['all_partitions_bytes']:,} B when the same traffic "
        f"is spread over {st['partitions']} partitions ({5 * st['partitions']} pane partials)"
    )
    if "pending_memory" in result:
        print_pending_memory(result["pending_memory"])
    print()
    t = result["targets"]
    shown = {
        "batch_ratio": ("batch envelopes >= 0.5 x raw limit", "{:.2f} x"),
        "single_eps": ("single events >= 25,000 events/s", "{:,.0f}/s"),
        "labels_ratio": ("predictions + labels >= 0.7 x predictions", "{:.2f} x"),
        "state_bytes": ("state of one numeric feature < 8 KB", "{:,} B"),
        "pending_bytes": ("Redis per pending prediction <= 150 B", "{:.1f} B"),
    }
    for key, (what, fmt) in shown.items():
        if key in t:
            value = fmt.format(t[key]["value"])
            print(f"{what:<44} {value:>12}   {'PASS' if t[key]['pass'] else 'FAIL'}")


# ---------------------------------------------------------------------------------------------
# command line


def positive_int(text: str) -> int:
    value = int(text.replace("_", ""))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def count(text: str) -> int:
    value = int(text.replace("_", ""))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=count, default=DEFAULT_EVENTS, help="events")
    p.add_argument("--repeat", type=positive_int, default=3, help="runs per mode (median)")
    p.add_argument(
        "--envelope", type=positive_int, default=DEFAULT_ENVELOPE, help="events per batch envelope"
    )
    p.add_argument("--partitions", type=positive_int, default=DEFAULT_PARTITIONS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("--no-fail", action="store_true", help="exit 0 even when a target is missed")
    p.add_argument(
        "--profile",
        action="store_true",
        help="also run each worker mode once under cProfile (bench/results/*.prof)",
    )
    p.add_argument(
        "--compare",
        dest="variants",
        action="append",
        default=[],
        choices=VARIANTS,
        help="also measure the worker with Python's default GC thresholds (default-gc) or "
        "with no task in its baseline, so no label join (no-task); see README",
    )
    p.add_argument(
        "--no-labels",
        dest="labels",
        action="store_false",
        help="leave out the label mode (predictions + labels)",
    )
    p.add_argument(
        "--short-share",
        type=share,
        default=DEFAULT_SHORT_SHARE,
        help="share of labels for a recent prediction (the rest: pending in Redis)",
    )
    p.add_argument(
        "--pending-memory",
        action="store_true",
        help="also measure the Redis memory per pending prediction",
    )
    p.add_argument(
        "--pending-events",
        type=positive_int,
        default=DEFAULT_PENDING_EVENTS,
        help="predictions for --pending-memory",
    )
    p.add_argument(
        "--skip-throughput",
        action="store_true",
        help="no events/s modes (with --pending-memory: the memory figures only)",
    )
    p.add_argument(
        "--no-assign-guard",
        dest="guard",
        action="store_false",
        help="do not pause fetching while partitions are assigned (see README: a race)",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    # Internal: one measured run in this subprocess.
    p.add_argument("--child", choices=["raw", "worker"], help=argparse.SUPPRESS)
    for name in ("--bootstrap", "--redis", "--topic", "--baseline", "--labels-topic", "--ns"):
        p.add_argument(name, help=argparse.SUPPRESS)
    p.add_argument("--boundaries", help=argparse.SUPPRESS)
    p.add_argument("--stage", choices=["fresh", "warmup", "resume"], default="fresh",
                   help=argparse.SUPPRESS)  # fmt: skip
    p.add_argument("--messages", type=int, help=argparse.SUPPRESS)
    p.add_argument("--volume", type=int, help=argparse.SUPPRESS)
    p.add_argument("--label-messages", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--no-register", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--variant", default="real", help=argparse.SUPPRESS)
    p.add_argument("--max-records", type=int, default=20_000, help=argparse.SUPPRESS)
    p.add_argument("--profile-out", dest="profile_out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.child and args.events <= 0:
        p.error("--events must be > 0")
    if args.skip_throughput and not args.pending_memory:
        p.error("--skip-throughput leaves nothing to measure without --pending-memory")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    try:
        result = measure(args)
    except Exception as exc:  # a crash or a wrong state: no figure is meaningful
        log(f"bench_stream: error: {exc}")
        return 2
    path = write_latest(result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
        print(f"\nwritten {path.relative_to(BENCH_DIR.parent)}")
    return 0 if result["pass"] or args.no_fail else 1


if __name__ == "__main__":
    sys.exit(main())
