"""The labels stream of the streaming benchmark: which prediction each label is for, where
it goes, and how to tell from Redis that the join really happened.

The stream of the label mode is ``W`` *warm-up* predictions, then ``M`` *measured*
predictions, and ``M`` labels that arrive alongside the measured predictions (1:1). Label
``k`` arrives with measured prediction ``W + k`` and is for

- with probability ``1 - short_share`` a warm-up prediction (a *long delay*: the warm-up is
  ingested by an earlier worker run, so its pending entry is in Redis and the label is
  joined from there, as labels days or weeks late are in production);
- otherwise a measured prediction at most ``max_lag`` events before it (a *short delay*:
  the prediction is often still in the worker's memory, not flushed yet, and sometimes not
  read yet, so the label waits for it as a held label).

Every label is for a different prediction, is keyed by its ``prediction_id`` and goes to the
partition Kafka's default partitioner picks for that key, the partition of its prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

#: Share of labels for a recent prediction of the measured part (the rest: the warm-up).
DEFAULT_SHORT_SHARE = 0.1
#: The most events a short-delay label comes after its prediction (0.8 s of event time at
#: the stream's 25,000 events/s, about one flush interval).
DEFAULT_MAX_LAG = 20_000


def partition_of(key: str, partitions: int) -> int:
    """Kafka's default partitioner for a keyed message, as `PredictionPublisher` picks it."""
    from kafka.partitioner.default import murmur2

    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def plan_labels(
    warmup: int,
    measured: int,
    *,
    short_share: float = DEFAULT_SHORT_SHARE,
    max_lag: int = DEFAULT_MAX_LAG,
    seed: int = 0,
) -> np.ndarray:
    """The prediction each label is for: ``targets[k]`` for the label arriving ``k``-th.

    Indices ``< warmup`` are warm-up predictions; every target is distinct.

    >>> t = plan_labels(1_000, 1_000, seed=1)
    >>> len(t), len(set(t.tolist())), int((t < 1_000).sum()) > 850
    (1000, 1000, True)
    """
    rng = np.random.default_rng(seed)
    short = rng.random(measured) < short_share
    n_long = int(measured - short.sum())
    if n_long > warmup:
        raise ValueError(f"{n_long} long-delay labels need at least as many warm-up predictions")
    targets = np.empty(measured, dtype=np.int64)
    targets[~short] = rng.choice(warmup, n_long, replace=False)
    used: set[int] = set()
    lags = rng.integers(0, max(1, max_lag), measured)
    end = warmup + measured
    for k in np.flatnonzero(short).tolist():
        j = wanted = max(warmup, warmup + k - int(lags[k]))
        d = 0
        while j in used:  # taken by an earlier label: the nearest free measured prediction
            d += 1
            free = [c for c in (wanted - d, wanted + d) if warmup <= c < end and c not in used]
            j = free[0] if free else j
        used.add(j)
        targets[k] = j
    return targets


def make_labels(
    events: Sequence[dict[str, Any]], targets: np.ndarray, arrivals: Sequence[float], seed: int
) -> list[dict[str, Any]]:
    """The label events, in arrival order: label ``k`` is for ``events[targets[k]]`` and
    comes at event time ``arrivals[k]`` (never before its prediction); its ground truth is
    drawn from the prediction's score."""
    rng = np.random.default_rng(seed)
    draws = rng.random(len(targets))
    labels = []
    for k, j in enumerate(targets.tolist()):
        prediction = events[j]
        arrives = arrivals[k]
        labels.append(
            {
                "prediction_id": prediction["prediction_id"],
                "model": prediction["model"],
                "actual": int(draws[k] < prediction["prediction"]),
                "timestamp": round(max(arrives, prediction["timestamp"]) + 0.25, 3),
            }
        )
    return labels


@dataclass
class LabelTopics:
    """The label mode's topics, as filled."""

    predictions: str
    labels: str
    warmup: int
    measured: int
    label_messages: int
    #: Per partition: offset of the first measured prediction (= warm-up messages there).
    boundaries: list[int]
    bytes_predictions: int
    bytes_labels: int
    short_labels: int


async def fill_label_topics(
    bootstrap: str,
    events: Sequence[dict[str, Any]],
    targets: np.ndarray,
    labels: Sequence[dict[str, Any]],
    warmup: int,
    partitions: int,
    prefix: str,
) -> LabelTopics:
    """Predictions (warm-up then measured, in stream order) and labels (in arrival order),
    single-event messages, each in the partition of its ``prediction_id``."""
    from agents.settings import Settings
    from agents.settings import Topics as TopicNames
    from agents.topics import ensure_topics

    settings = Settings(kafka=bootstrap, topics=TopicNames(prefix), partitions=partitions)
    await ensure_topics(settings)
    place = [partition_of(e["prediction_id"], partitions) for e in events]
    boundaries = [0] * partitions
    preds: list[list[tuple[bytes, bytes]]] = [[] for _ in range(partitions)]
    for i, e in enumerate(events):
        preds[place[i]].append((e["prediction_id"].encode(), orjson.dumps(e)))
        if i < warmup:
            boundaries[place[i]] += 1
    labs: list[list[tuple[bytes, bytes]]] = [[] for _ in range(partitions)]
    for j, label in zip(targets.tolist(), labels, strict=True):
        labs[place[j]].append((label["prediction_id"].encode(), orjson.dumps(label)))
    bytes_p = await send_partitioned(bootstrap, settings.topics.predictions, preds)
    bytes_l = await send_partitioned(bootstrap, settings.topics.labels, labs)
    return LabelTopics(
        predictions=settings.topics.predictions,
        labels=settings.topics.labels,
        warmup=warmup,
        measured=len(events) - warmup,
        label_messages=len(labels),
        boundaries=boundaries,
        bytes_predictions=bytes_p,
        bytes_labels=bytes_l,
        short_labels=int((targets >= warmup).sum()),
    )


async def send_partitioned(
    bootstrap: str, topic: str, per_partition: Sequence[Sequence[tuple[bytes, bytes]]]
) -> int:
    """Produce ``(key, value)`` messages to their partitions, in order; returns the bytes."""
    import asyncio

    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=20,
        max_batch_size=1 << 20,
        max_request_size=8 << 20,
        acks="all",
    )
    await producer.start()
    size = 0
    try:
        pending = []
        for p, messages in enumerate(per_partition):
            for key, value in messages:
                size += len(value)
                pending.append(await producer.send(topic, value, key=key, partition=p))
                if len(pending) >= 20_000:
                    await asyncio.gather(*pending)
                    pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return size


# --- the check: did the join happen? -----------------------------------------------------


def join_in_redis(client: Any, ns: str, partitions: int) -> dict[str, Any]:
    """What Redis holds of the label join under ``ns``: the exact outcome counts, label
    offsets, outcome panes (predictions and labelled rows), pending entries and tombstones."""
    from agents.join_store import JoinStore

    store = JoinStore(client, ns)
    counts: dict[str, int] = {}
    for (_, outcome), n in store.counts().items():
        counts[outcome] = counts.get(outcome, 0) + n
    label_offsets = sum(int(v) for v in client.hgetall(store.offsets_key).values())
    panes = predicted = labelled = 0
    for p in range(partitions):
        for raw in client.hvals(store.outcomes_key(p)):
            state = orjson.loads(raw)
            panes += 1
            predicted += int(state.get("predictions", 0))
            labelled += int(state.get("labelled", 0))
    entries = tombstones = keys = 0
    for key in client.scan_iter(match=f"{ns}:pending:*", count=1000):
        keys += 1
        for _, value in client.hscan_iter(key, count=10_000):
            entries += 1
            tombstones += value == b""
    return {
        "counts": counts,
        "label_offsets": label_offsets,
        "outcome_panes": panes,
        "outcome_predictions": predicted,
        "outcome_labelled": labelled,
        "pending_keys": keys,
        "pending_entries": entries,
        "tombstones": tombstones,
    }


def join_problems(found: dict[str, Any], predictions: int, labels: int) -> list[str]:
    """Why ``found`` (`join_in_redis`) is not a complete join of ``labels`` labels to
    ``predictions`` pending predictions (empty: it is).

    >>> ok = {"counts": {"joined": 5, "held": 1}, "label_offsets": 5, "outcome_panes": 2,
    ...       "outcome_predictions": 9, "outcome_labelled": 5, "pending_entries": 9,
    ...       "tombstones": 5}
    >>> join_problems(ok, 9, 5)
    []
    >>> join_problems({**ok, "counts": {"joined": 4, "orphan": 1}}, 9, 5)
    ['label-counts joined = 4, expected 5', 'label-counts orphan = 1, expected 0']
    """
    problems = []
    counts = found["counts"]
    if counts.get("joined", 0) != labels:
        problems.append(f"label-counts joined = {counts.get('joined', 0)}, expected {labels}")
    for outcome in ("duplicate", "orphan", "wrong_type", "expired"):
        if counts.get(outcome, 0):
            problems.append(f"label-counts {outcome} = {counts[outcome]}, expected 0")
    expected = {
        "label_offsets": labels,
        "outcome_predictions": predictions,
        "outcome_labelled": labels,
        "pending_entries": predictions,
        "tombstones": labels,
    }
    for name, want in expected.items():
        if found[name] != want:
            problems.append(f"{name} = {found[name]}, expected {want}")
    if not found["outcome_panes"]:
        problems.append("no outcome pane")
    return problems
