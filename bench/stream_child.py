"""One measured run of the streaming benchmark, in a subprocess of its own (``--child``).

``raw``: aiokafka ``getmany`` + ``orjson.loads`` of every message, nothing else (the limit).
``worker``: the real `PredictionIngestor`, from the first micro-batch to the final flush,
then a check of what it left in Redis. See `bench_stream.py` and bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from stream_labels import join_in_redis, join_problems

# ---------------------------------------------------------------------------------------------
# the measured runs, each in a fresh subprocess (--child)


def _consumer_options() -> dict[str, Any]:
    # The ingestor's own fetch settings (agents/ingest.py make_consumer), so that the raw
    # limit and the worker fetch alike.
    return {"max_partition_fetch_bytes": 8 << 20, "fetch_max_bytes": 32 << 20}


async def child_raw(args: argparse.Namespace) -> dict[str, Any]:
    """aiokafka getmany + orjson.loads of every message, over the whole topic (and, with
    ``--labels-topic``, its labels too, the predictions from ``--boundaries`` on)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap, enable_auto_commit=False, **_consumer_options()
    )
    t_start = time.perf_counter()
    await consumer.start()
    try:
        tps = [TopicPartition(args.topic, p) for p in range(args.partitions)]
        extra = [TopicPartition(args.labels_topic, p) for p in range(args.partitions)]
        consumer.assign(tps + extra if args.labels_topic else tps)
        await consumer.seek_to_beginning()
        starts = _boundaries(args)
        if starts is not None:
            for tp, offset in zip(tps, starts, strict=True):
                consumer.seek(tp, offset)
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
                    if "predictions" in obj:
                        events += len(obj["predictions"])
                    elif "labels" in obj:
                        events += len(obj["labels"])
                    else:
                        events += 1
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


def _boundaries(args: argparse.Namespace) -> list[int] | None:
    return [int(x) for x in args.boundaries.split(",")] if args.boundaries else None


async def child_worker(args: argparse.Namespace) -> dict[str, Any]:
    """The real PredictionIngestor over the topics, until every event is flushed to Redis.

    ``--stage fresh`` (the default): a new namespace, both topics from the start.
    ``--stage warmup``: only the predictions topic, each partition up to its
    ``--boundaries`` offset (what a label mode's labels find pending in Redis).
    ``--stage resume``: the namespace ``--ns`` a warm-up left, both topics from where its
    state says: predictions from the boundaries, labels from the start.
    """
    import redis
    from aiokafka import AIOKafkaProducer
    from aiokafka.abc import ConsumerRebalanceListener
    from prometheus_client import CollectorRegistry

    import agents.app  # noqa: F401  (the heap of `undertow worker`: faust and mode loaded)
    from agents.ingest import PredictionIngestor, tune_gc
    from agents.join_store import JoinStore
    from agents.labels import LabelJoiner
    from agents.metrics import WorkerMetrics
    from agents.pane_store import PaneStore
    from agents.registry import BaselineRegistry
    from agents.settings import Settings
    from agents.settings import Topics as TopicNames
    from streams.baseline import Baseline
    from streams.label_join import TOMBSTONE

    prefix = args.topic.removesuffix("predictions")
    settings = Settings(
        kafka=args.bootstrap,
        redis_url=args.redis,
        topics=TopicNames(prefix),
        partitions=args.partitions,
    )
    client = redis.Redis.from_url(args.redis, socket_timeout=30)
    ns = args.ns or f"bench-{uuid.uuid4().hex[:10]}"  # fresh state and consumer group
    store = PaneStore(client, ns)
    registry = BaselineRegistry(client, namespace=ns)
    if args.stage != "resume" and not args.no_register:
        baseline = Baseline.from_json(Path(args.baseline).read_bytes())
        if args.variant == "no-task":  # no pending entries, no outcome panes: no label join
            baseline = replace(baseline, task=None)
        registry.register(baseline)
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=5, acks="all")
    metrics = WorkerMetrics(CollectorRegistry())
    stopping = asyncio.Event()
    expected, expected_labels = args.events, args.label_messages
    stop_at = _boundaries(args) if args.stage == "warmup" else None
    if stop_at is not None:
        # The warm-up leaves the labels topic alone on purpose: the ingest's error that the
        # labels partitions are not assigned with the predictions ones is expected here.
        logging.getLogger("agents.ingest").setLevel(logging.CRITICAL)
    marks: dict[str, float] = {}
    seen: dict[str, float] = dict.fromkeys(
        ("labels", "batches", "from_redis", "lookups", "looked_up", "lookup_s", "flush_s"), 0
    )
    variant = args.variant
    ingestor: PredictionIngestor | None = None

    def redis_cpu() -> float:
        info = client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def started() -> None:
        if "first" not in marks:
            marks["first"] = time.perf_counter()
            marks["first_cpu"] = time.process_time()
            marks["first_gc"] = gc_time()
            marks["first_redis_cpu"] = redis_cpu()

    def check_done() -> None:
        assert ingestor is not None
        if ingestor.events_seen >= expected and seen["labels"] >= expected_labels:
            stopping.set()

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        def __init__(self, target: PredictionIngestor) -> None:
            self.target = target

        async def on_partitions_revoked(self, revoked: Any) -> None:
            await self.target.revoked(tp.partition for tp in revoked)

        async def on_partitions_assigned(self, assigned: Any) -> None:
            await self.target.assigned(tp.partition for tp in assigned)

    class CountingJoinStore(JoinStore):
        """The real store; it counts the pending entries labels find in Redis."""

        def lookup(self, partition: int, wanted: Any) -> Any:
            t = time.perf_counter()
            found = super().lookup(partition, wanted)
            seen["lookup_s"] += time.perf_counter() - t
            seen["lookups"] += 1
            seen["looked_up"] += sum(len(d) * len(b) for d, b in wanted.values())
            seen["from_redis"] += sum(1 for _, v in found.values() if v != TOMBSTONE)
            return found

    class MeasuredJoiner(LabelJoiner):
        """The real label side; it notes the first batch and counts label messages."""

        async def process(self, part: Any, messages: list[Any]) -> None:
            started()
            await super().process(part, messages)
            seen["labels"] += len(messages)
            check_done()

    class Measured(PredictionIngestor):
        """The real ingestor; it only notes when the first batch and the last flush happen."""

        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.labels = MeasuredJoiner(
                settings, registry, CountingJoinStore(client, ns), metrics, clock=self.clock
            )

        def make_consumer(self) -> Any:
            consumer = super().make_consumer()
            if stop_at is not None:  # the warm-up: predictions only
                consumer.subscribe([self.topic], listener=Listener(self))
            return consumer

        async def assigned(self, partitions: Any) -> None:
            # See README "A race at assignment": fetching goes on while the listener runs,
            # and the listener's flush can then drop a batch's panes; pause it meanwhile.
            paused = list(self.consumer.assignment()) if self.consumer and args.guard else []
            if paused:
                self.consumer.pause(*paused)  # type: ignore[union-attr]
            try:
                await super().assigned(partitions)
            finally:
                if paused:
                    self.consumer.resume(*paused)  # type: ignore[union-attr]

        def process(self, part: Any, messages: list[Any]) -> None:
            if stop_at is not None:
                end = stop_at[part.partition]
                messages = [m for m in messages if m.offset < end]
                if not messages:
                    return
            started()
            seen["batches"] += 1
            super().process(part, messages)
            check_done()

        async def flush(self, partitions: Any = None) -> None:
            t = time.perf_counter()
            await super().flush(partitions)
            if "first" in marks:
                seen["flush_s"] += time.perf_counter() - t
            if stopping.is_set():
                marks["flushed"] = time.perf_counter()
                marks["flushed_cpu"] = time.process_time()
                marks["flushed_gc"] = gc_time()
                marks["flushed_redis_cpu"] = redis_cpu()

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
            f"the worker counted {ingestor.events_seen:,} of {expected:,} predictions and "
            f"{seen['labels']:,} of {expected_labels:,} labels in {args.timeout:g} s"
        ) from None
    else:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile_out)
    finally:
        await producer.stop()
    volume = args.volume if args.volume is not None else expected
    check = verify_state(store, args.partitions)
    joined = join_in_redis(client, ns, args.partitions)
    client.close()
    if check["volume"] != volume or check["next_offsets"] != args.messages:
        raise RuntimeError(
            f"state in Redis does not cover the topic: {check['volume']} events in panes "
            f"(expected {volume}), offsets cover {check['next_offsets']} messages "
            f"(expected {args.messages})"
        )
    labelled = expected_labels if args.stage != "warmup" else 0
    if args.variant == "no-task":
        left = joined["pending_entries"]
        problems = [f"{left} pending entries of a baseline with no task"] if left else []
    else:
        problems = join_problems(joined, volume, labelled)
    if problems:
        raise RuntimeError("the label join is not what it should be: " + "; ".join(problems))
    labels = seen["labels"]
    return {
        "events": ingestor.events_seen + labels,
        "predictions": ingestor.events_seen,
        "labels": labels,
        "messages": args.messages,
        "seconds": marks["flushed"] - marks["first"],
        "cpu_s": marks["flushed_cpu"] - marks["first_cpu"],
        "redis_cpu_s": marks["flushed_redis_cpu"] - marks["first_redis_cpu"],
        "startup_s": marks["first"] - t_start,
        "panes": check["panes"],
        "batches": seen["batches"],
        "gc_s": marks["flushed_gc"] - marks["first_gc"],
        "events_per_batch": ingestor.events_seen / max(1, seen["batches"]),
        "flush_s": seen["flush_s"],
        "join": {
            "lookup_s": seen["lookup_s"],
            "from_redis": seen["from_redis"],
            "held": joined["counts"].get("held", 0),
            "lookups": seen["lookups"],
            "digests_looked_up": seen["looked_up"],
            "outcome_panes": joined["outcome_panes"],
            "pending_entries": joined["pending_entries"],
            "tombstones": joined["tombstones"],
            "counts": joined["counts"],
        },
        "ns": ns,
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
# `--compare no-task` runs it with the baseline's task taken away: predictions leave no
# pending entry and count into no outcome pane, which shows what the label join costs the
# predictions path.

VARIANTS = ("default-gc", "no-task")


def child_main(args: argparse.Namespace) -> int:
    runner = child_raw if args.child == "raw" else child_worker
    result = asyncio.run(runner(args))
    print(json.dumps(result))
    return 0
