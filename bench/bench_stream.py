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

The worker is measured in process: each run is a fresh Python subprocess that builds the real
`PredictionIngestor` (Settings, BaselineRegistry, PaneStore, an AIOKafkaProducer,
WorkerMetrics on a fresh CollectorRegistry) and runs its own ``run()`` loop over the topic
until every event is counted and the final flush is done; then it reads Redis back and checks
that the panes hold every event and the offsets cover every message. See bench/README.md.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"

MODEL, VERSION = "bench", "v1"
DEFAULT_EVENTS = 300_000
DEFAULT_ENVELOPE = 500
DEFAULT_PARTITIONS = 8
REFERENCE_ROWS = 50_000
#: Event time runs at the single-event target rate, so a micro-batch spans as much event
#: time as it would in production; the stream starts 6 s before a pane boundary.
EVENT_SPACING_S = 1 / 25_000
T0 = 1_764_151_254.0  # 2025-11-26T10:00:54Z

TARGET_BATCH_RATIO = 0.5
TARGET_SINGLE_EPS = 25_000.0
TARGET_STATE_BYTES = 8 * 1024
#: Events per pane for the memory check: one worker at the single-event target for a minute.
STATE_EVENTS_PER_PANE = 1_500_000

# ---------------------------------------------------------------------------------------------
# the events: 30 features of a credit-scoring model, a binary score, latency and segments

COUNTRIES = ["DE", "FR", "GB", "ES", "IT", "NL", "PL", "SE", "US", "CA", "BR", "IN"]
CHANNELS = ["web", "app", "branch", "partner"]
DEVICES = ["ios", "android", "windows", "mac", "linux"]
PURPOSES = ["car", "home", "education", "travel", "debt", "business", "medical", "other"]
CATEGORIES = {"country": COUNTRIES, "channel": CHANNELS, "device": DEVICES, "purpose": PURPOSES}
BOOLEANS = ["has_guarantor", "is_returning"]
#: 24 numeric features: (name, kind, a, b, rounding); kinds drawn by `_numeric`.
NUMERIC = [
    ("income", "lognormal", 10.5, 0.6, 0),
    ("loan_amount", "lognormal", 9.2, 0.9, 2),
    ("term_months", "choice", 0, 0, 0),
    ("age", "int", 18, 90, 0),
    ("credit_score", "normal", 680, 70, 0),
    ("debt_to_income", "beta", 2.0, 5.0, 4),
    ("utilization", "beta", 1.5, 3.0, 4),
    ("open_accounts", "poisson", 6, 0, 0),
    ("delinquencies", "poisson", 0.3, 0, 0),
    ("inquiries_6m", "poisson", 1.2, 0, 0),
    ("months_employed", "gamma", 2.0, 30.0, 0),
    ("months_at_address", "gamma", 1.5, 40.0, 0),
    ("savings", "lognormal", 8.0, 1.5, 2),
    ("monthly_expenses", "lognormal", 7.5, 0.5, 2),
    ("avg_balance_3m", "normal", 2500, 1800, 2),
    ("max_overdraft", "gamma", 1.2, 300.0, 2),
    ("txn_count_30d", "poisson", 45, 0, 0),
    ("txn_amount_30d", "lognormal", 7.8, 0.8, 2),
    ("late_payments_12m", "poisson", 0.5, 0, 0),
    ("oldest_account_years", "gamma", 3.0, 3.0, 1),
    ("rate_offered", "normal", 7.5, 2.0, 3),
    ("ltv", "beta", 5.0, 3.0, 4),
    ("session_seconds", "lognormal", 5.0, 0.9, 1),
    ("pages_viewed", "poisson", 9, 0, 0),
]
#: Share of nulls in the features that have some (a realistic sprinkle of missing data).
NULLS = {"months_employed": 0.02, "savings": 0.05, "max_overdraft": 0.01}
FEATURE_NAMES = [n for n, *_ in NUMERIC] + list(CATEGORIES) + BOOLEANS
assert len(FEATURE_NAMES) == 30


def _numeric(rng: np.random.Generator, kind: str, a: float, b: float, n: int) -> np.ndarray:
    if kind == "lognormal":
        return rng.lognormal(a, b, n)
    if kind == "normal":
        return rng.normal(a, b, n)
    if kind == "beta":
        return rng.beta(a, b, n)
    if kind == "gamma":
        return rng.gamma(a, b, n)
    if kind == "poisson":
        return rng.poisson(a, n).astype(np.float64)
    if kind == "int":
        return rng.integers(int(a), int(b), n).astype(np.float64)
    if kind == "choice":
        return rng.choice([12.0, 24.0, 36.0, 48.0, 60.0], n)
    raise ValueError(kind)


def draw_columns(n: int, seed: int) -> dict[str, list[Any]]:
    """``n`` events as columns of Python values, as a model service would send them."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list[Any]] = {}
    for name, kind, a, b, digits in NUMERIC:
        x = _numeric(rng, kind, a, b, n)
        if digits == 0:
            values: list[Any] = x.astype(np.int64).tolist()  # JSON integers, as services send
        else:
            values = x.round(digits).tolist()
        share = NULLS.get(name)
        if share:
            for i in np.flatnonzero(rng.random(n) < share).tolist():
                values[i] = None
        cols[name] = values
    for name, cats in CATEGORIES.items():
        p = rng.dirichlet(np.ones(len(cats)) * 2.0)
        cols[name] = rng.choice(cats, n, p=p).tolist()
    for name in BOOLEANS:
        cols[name] = (rng.random(n) < 0.3).tolist()
    cols["prediction"] = rng.beta(1.2, 6.0, n).round(4).tolist()
    cols["latency_ms"] = rng.gamma(2.0, 12.0, n).round(1).tolist()
    cols["region"] = rng.choice(["eu", "na", "latam", "apac"], n).tolist()
    cols["tier"] = rng.choice(["gold", "silver", "bronze"], n).tolist()
    return cols


def make_events(n: int, seed: int) -> list[dict[str, Any]]:
    """Prediction events in wire form, in event-time order (with a little jitter)."""
    cols = draw_columns(n, seed)
    rng = np.random.default_rng(seed + 1)
    jitter = rng.uniform(0, 0.5, n)  # a little out of order, as clocks of many replicas are
    times = (T0 + np.arange(n) * EVENT_SPACING_S + jitter).round(3).tolist()
    features = [
        dict(zip(FEATURE_NAMES, row, strict=True))
        for row in zip(*(cols[name] for name in FEATURE_NAMES), strict=True)
    ]
    return [
        {
            "prediction_id": f"p{seed}-{i:09d}",
            "model": MODEL,
            "model_version": VERSION,
            "timestamp": times[i],
            "features": features[i],
            "prediction": cols["prediction"][i],
            "latency_ms": cols["latency_ms"][i],
            "segments": {"region": cols["region"][i], "tier": cols["tier"][i]},
        }
        for i in range(n)
    ]


def write_reference_csv(path: Path, rows: int, seed: int) -> None:
    """The model version's reference data, drawn from the same generator as the events."""
    cols = draw_columns(rows, seed)
    names = [*FEATURE_NAMES, "prediction"]
    with path.open("w", encoding="ascii") as fh:
        fh.write(",".join(names) + "\n")
        for row in zip(*(cols[c] for c in names), strict=True):
            fh.write(
                ",".join(
                    "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
                    for v in row
                )
                + "\n"
            )


def build_baseline_json(workdir: Path, seed: int) -> bytes:
    from streams.baseline_builder import BuildOptions, build_baseline
    from streams.tabular import TableFile

    ref = workdir / "reference.csv"
    write_reference_csv(ref, REFERENCE_ROWS, seed)
    options = BuildOptions(
        model=MODEL,
        version=VERSION,
        prediction="prediction",
        task="binary",
        categorical=[*CATEGORIES, *BOOLEANS],
    )
    baseline, _ = build_baseline(TableFile(ref), options)
    return baseline.to_json()


# ---------------------------------------------------------------------------------------------
# filling the topics (the parent, once per benchmark)


def partition_of(key: str, partitions: int) -> int:
    from kafka.partitioner.default import murmur2

    # Kafka's default partitioner for a keyed message, as PredictionPublisher chooses it.
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


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
# the measured runs, each in a fresh subprocess (--child)


def _consumer_options() -> dict[str, Any]:
    # The ingestor's own fetch settings (agents/ingest.py make_consumer), so that the raw
    # limit and the worker fetch alike.
    return {"max_partition_fetch_bytes": 8 << 20, "fetch_max_bytes": 32 << 20}


async def child_raw(args: argparse.Namespace) -> dict[str, Any]:
    """aiokafka getmany + orjson.loads of every message, over the whole topic."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap, enable_auto_commit=False, **_consumer_options()
    )
    t_start = time.perf_counter()
    await consumer.start()
    try:
        consumer.assign([TopicPartition(args.topic, p) for p in range(args.partitions)])
        await consumer.seek_to_beginning()
        loads = orjson.loads
        events = messages = 0
        first = None
        while events < args.events:
            batches = await consumer.getmany(timeout_ms=200, max_records=args.max_records)
            if first is None and batches:
                first = time.perf_counter()
                first_cpu = time.process_time()
            for records in batches.values():
                messages += len(records)
                for m in records:
                    obj = loads(m.value)
                    events += len(obj["predictions"]) if "predictions" in obj else 1
        done = time.perf_counter()
        cpu = time.process_time() - first_cpu
    finally:
        await consumer.stop()
    assert first is not None
    return {
        "events": events,
        "messages": messages,
        "seconds": done - first,
        "cpu_s": cpu,
        "startup_s": first - t_start,
    }


async def child_worker(args: argparse.Namespace) -> dict[str, Any]:
    """The real PredictionIngestor over the topic, until every event is flushed to Redis."""
    import redis
    from aiokafka import AIOKafkaProducer
    from prometheus_client import CollectorRegistry

    import agents.app  # noqa: F401  (the heap of `undertow worker`: faust and mode loaded)
    from agents.ingest import PredictionIngestor, tune_gc
    from agents.metrics import WorkerMetrics
    from agents.pane_store import PaneStore
    from agents.registry import BaselineRegistry
    from agents.settings import Settings
    from agents.settings import Topics as TopicNames
    from streams.baseline import Baseline

    prefix = args.topic.removesuffix("predictions")
    settings = Settings(
        kafka=args.bootstrap,
        redis_url=args.redis,
        topics=TopicNames(prefix),
        partitions=args.partitions,
    )
    client = redis.Redis.from_url(args.redis, socket_timeout=30)
    ns = f"bench-{uuid.uuid4().hex[:10]}"  # fresh state and consumer group for every run
    store = PaneStore(client, ns)
    registry = BaselineRegistry(client, namespace=ns)
    registry.register(Baseline.from_json(Path(args.baseline).read_bytes()))
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=5, acks="all")
    metrics = WorkerMetrics(CollectorRegistry())
    stopping = asyncio.Event()
    expected = args.events
    marks: dict[str, float] = {}
    variant = args.variant

    class Measured(PredictionIngestor):
        """The real ingestor; it only notes when the first batch and the last flush happen."""

        def process(self, part: Any, messages: list[Any]) -> None:
            if "first" not in marks:
                marks["first"] = time.perf_counter()
                marks["first_cpu"] = time.process_time()
                marks["first_gc"] = gc_time()
            marks["batches"] = marks.get("batches", 0) + 1
            super().process(part, messages)
            if self.events_seen >= expected:
                stopping.set()

        async def flush(self, partitions: Any = None) -> None:
            await super().flush(partitions)
            if stopping.is_set():
                marks["flushed"] = time.perf_counter()
                marks["flushed_cpu"] = time.process_time()
                marks["flushed_gc"] = gc_time()

    await producer.start()
    ingestor = Measured(settings, registry, store, producer, metrics)
    if variant != "default-gc":
        tune_gc()  # as `undertow worker` does once started
    gc_time = _gc_timer()
    profiler = None
    if args.profile_out:
        import cProfile

        profiler = cProfile.Profile()
    t_start = time.perf_counter()
    try:
        if profiler is not None:
            profiler.enable()
        await asyncio.wait_for(ingestor.run(stopping), timeout=args.timeout)
    except TimeoutError:
        raise RuntimeError(
            f"the worker counted {ingestor.events_seen:,} of {expected:,} events in "
            f"{args.timeout:g} s"
        ) from None
    else:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile_out)
    finally:
        await producer.stop()
    check = verify_state(store, args.partitions)
    client.close()
    if check["volume"] != expected or check["next_offsets"] != args.messages:
        raise RuntimeError(
            f"state in Redis does not cover the topic: {check['volume']} events in panes "
            f"(expected {expected}), offsets cover {check['next_offsets']} messages "
            f"(expected {args.messages})"
        )
    return {
        "events": ingestor.events_seen,
        "messages": args.messages,
        "seconds": marks["flushed"] - marks["first"],
        "cpu_s": marks["flushed_cpu"] - marks["first_cpu"],
        "startup_s": marks["first"] - t_start,
        "panes": check["panes"],
        "batches": int(marks["batches"]),
        "gc_s": marks["flushed_gc"] - marks["first_gc"],
        "events_per_batch": ingestor.events_seen / marks["batches"],
        "verified": True,
    }


def _gc_timer() -> Callable[[], float]:
    """Seconds spent in the garbage collector from now on (a callable that reads them)."""
    import gc

    spent = [0.0, 0.0]

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            spent[1] = time.perf_counter()
        else:
            spent[0] += time.perf_counter() - spent[1]

    gc.callbacks.append(note)
    return lambda: spent[0]


def verify_state(store: Any, partitions: int) -> dict[str, int]:
    """Events counted in the panes and messages covered by the offsets, read from Redis."""
    volume = panes = 0
    for p in range(partitions):
        state = store.load(p)
        for raw in state.panes.values():
            volume += int(orjson.loads(raw)["volume"])
            panes += 1
    offsets = store.client.hgetall(store.offsets_key)
    return {"volume": volume, "panes": panes, "next_offsets": sum(int(v) for v in offsets.values())}


# ---------------------------------------------------------------------------------------------
# variants
#
# `--compare default-gc` also runs the worker with Python's default garbage-collector
# thresholds, to show what the worker's GC tuning (agents.ingest.tune_gc) is worth here.

VARIANTS = ("default-gc",)


def child_main(args: argparse.Namespace) -> int:
    runner = child_raw if args.child == "raw" else child_worker
    result = asyncio.run(runner(args))
    print(json.dumps(result))
    return 0


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
        baseline_json = build_baseline_json(workdir, seed=args.seed + 100)
        baseline_path = workdir / "baseline.json"
        baseline_path.write_bytes(baseline_json)
        log(f"baseline of {MODEL} {VERSION} (30 features) in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        events = make_events(args.events, args.seed)
        topics = asyncio.run(fill_topics(bootstrap, events, args.partitions, args.envelope, run_id))
        del events
        log(
            f"filled {topics.single} ({topics.messages_single:,} messages, "
            f"{topics.bytes_single / topics.messages_single:.0f} B/event) and {topics.batch} "
            f"({topics.messages_batch:,} envelopes of <= {args.envelope}) in "
            f"{time.perf_counter() - t:.1f} s"
        )
        modes = [
            Mode(
                "raw",
                "raw limit (getmany + orjson.loads)",
                "raw",
                topics.single,
                topics.messages_single,
            ),
            Mode("raw_batch", "raw limit, envelopes", "raw", topics.batch, topics.messages_batch),
            Mode(
                "single",
                "undertow worker, single events",
                "worker",
                topics.single,
                topics.messages_single,
            ),
            Mode(
                "batch",
                f"undertow worker, envelopes of {args.envelope}",
                "worker",
                topics.batch,
                topics.messages_batch,
            ),
        ]
        for variant in args.variants:
            for base in ("single", "batch"):
                m = next(m for m in modes if m.name == base)
                modes.append(
                    Mode(
                        f"{base}+{variant}", f"{m.label} [{variant}]", "worker", m.topic, m.messages
                    )
                )
        common = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--bootstrap",
            bootstrap,
            "--redis",
            redis_url,
            "--events",
            str(args.events),
            "--partitions",
            str(args.partitions),
            "--baseline",
            str(baseline_path),
            "--timeout",
            str(args.timeout),
        ]
        runs: dict[str, list[dict[str, Any]]] = {m.name: [] for m in modes}
        # Interleaved, so that a slow spell of the machine hits every mode alike.
        for r in range(args.repeat):
            for m in modes:
                variant = m.name.split("+")[1] if "+" in m.name else "real"
                cmd = [
                    *common,
                    "--child",
                    m.child,
                    "--topic",
                    m.topic,
                    "--messages",
                    str(m.messages),
                    "--variant",
                    variant,
                ]
                res = run_child(cmd, args.timeout)
                res["eps"] = res["events"] / res["seconds"]
                runs[m.name].append(res)
                log(
                    f"  run {r + 1}/{args.repeat} {m.name:<16} {res['eps']:>10,.0f} events/s "
                    f"({res['seconds']:.2f} s, start-up {res['startup_s']:.2f} s)"
                )
        profiles = {}
        if args.profile:
            RESULTS_DIR.mkdir(exist_ok=True)
            for m in modes[2:4]:
                out = RESULTS_DIR / f"profile-{m.name}.prof"
                cmd = [
                    *common,
                    "--child",
                    m.child,
                    "--topic",
                    m.topic,
                    "--messages",
                    str(m.messages),
                    "--variant",
                    "real",
                    "--profile-out",
                    str(out),
                ]
                run_child(cmd, args.timeout)
                profiles[m.name] = str(out)
                log(f"  profile of {m.name}: {out}")
        state = state_size(baseline_json, STATE_EVENTS_PER_PANE, args.partitions, args.seed)
    result: dict[str, Any] = {
        "events": args.events,
        "partitions": args.partitions,
        "envelope": args.envelope,
        "repeat": args.repeat,
        "bytes_per_event": round(topics.bytes_single / topics.messages_single),
        "machine": machine(),
        "modes": {},
        "state": state,
        "profiles": profiles,
    }
    for m in modes:
        eps = [run["eps"] for run in runs[m.name]]
        result["modes"][m.name] = {
            "label": m.label,
            "median_eps": statistics.median(eps),
            "min_eps": min(eps),
            "max_eps": max(eps),
            "startup_s": statistics.median(run["startup_s"] for run in runs[m.name]),
            "cpu_us_per_event": statistics.median(
                run["cpu_s"] / run["events"] * 1e6 for run in runs[m.name]
            ),
            "gc_s": (
                statistics.median(run["gc_s"] for run in runs[m.name])
                if m.child == "worker"
                else None
            ),
            "runs": runs[m.name],
        }
    med = {name: mode["median_eps"] for name, mode in result["modes"].items()}
    result["raw_eps"] = med["raw"]
    result["single_eps"] = med["single"]
    result["batch_eps"] = med["batch"]
    result["targets"] = {
        "batch_ratio": {
            "value": med["batch"] / med["raw"],
            "target": TARGET_BATCH_RATIO,
            "pass": med["batch"] / med["raw"] >= TARGET_BATCH_RATIO,
        },
        "single_eps": {
            "value": med["single"],
            "target": TARGET_SINGLE_EPS,
            "pass": med["single"] >= TARGET_SINGLE_EPS,
        },
        "state_bytes": {
            "value": state["bytes"],
            "target": TARGET_STATE_BYTES,
            "pass": state["bytes"] < TARGET_STATE_BYTES,
        },
    }
    result["pass"] = all(t["pass"] for t in result["targets"].values())
    return result


def write_latest(result: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / "latest.json"
    latest = {
        "raw_eps": round(result["raw_eps"]),
        "single_eps": round(result["single_eps"]),
        "batch_eps": round(result["batch_eps"]),
        "events": result["events"],
        "machine": result["machine"],
    }
    path.write_text(json.dumps(latest, indent=2) + "\n")
    return path


def print_table(result: dict[str, Any]) -> None:
    mach = result["machine"]
    print(
        f"\nundertow streaming: {result['events']:,} events x 30 features "
        f"(~{result['bytes_per_event']} B each), {result['partitions']} partitions, "
        f"{mach['cpus']} CPUs, Python {mach['python']}, median of {result['repeat']}"
    )
    raw = result["raw_eps"]
    header = (
        f"{'':<44} {'events/s':>10} {'min':>9} {'max':>9} {'x raw':>6} {'CPU us/ev':>9} {'GC s':>5}"
    )
    print(header)
    print("-" * len(header))
    for mode in result["modes"].values():
        gc_s = "" if mode["gc_s"] is None else f"{mode['gc_s']:.2f}"
        print(
            f"{mode['label']:<44} {mode['median_eps']:>10,.0f} {mode['min_eps']:>9,.0f} "
            f"{mode['max_eps']:>9,.0f} {mode['median_eps'] / raw:>6.2f} "
            f"{mode['cpu_us_per_event']:>9.1f} {gc_s:>5}"
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
    print()
    t = result["targets"]
    lines = [
        (
            "batch envelopes >= 0.5 x raw limit",
            f"{t['batch_ratio']['value']:.2f} x",
            t["batch_ratio"]["pass"],
        ),
        (
            "single events >= 25,000 events/s",
            f"{t['single_eps']['value']:,.0f}/s",
            t["single_eps"]["pass"],
        ),
        (
            "state of one numeric feature < 8 KB",
            f"{t['state_bytes']['value']:,} B",
            t["state_bytes"]["pass"],
        ),
    ]
    for what, value, ok in lines:
        print(f"{what:<40} {value:>14}   {'PASS' if ok else 'FAIL'}")


# ---------------------------------------------------------------------------------------------
# command line


def positive_int(text: str) -> int:
    value = int(text.replace("_", ""))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=positive_int, default=DEFAULT_EVENTS, help="events")
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
        help="also measure the worker with Python's default GC thresholds (see README)",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    # Internal: one measured run in this subprocess.
    p.add_argument("--child", choices=["raw", "worker"], help=argparse.SUPPRESS)
    for name in ("--bootstrap", "--redis", "--topic", "--baseline"):
        p.add_argument(name, help=argparse.SUPPRESS)
    p.add_argument("--messages", type=int, help=argparse.SUPPRESS)
    p.add_argument("--variant", default="real", help=argparse.SUPPRESS)
    p.add_argument("--max-records", type=int, default=20_000, help=argparse.SUPPRESS)
    p.add_argument("--profile-out", dest="profile_out", help=argparse.SUPPRESS)
    return p.parse_args(argv)


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
