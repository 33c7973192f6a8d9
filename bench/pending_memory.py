"""Redis memory per pending prediction, for `bench_stream.py --pending-memory`.

A prediction of a model with a task leaves a pending entry in a Redis hash until its label
comes (`streams.label_join`): 16-byte digest field, compact binary value. With labels
coming days or weeks late, a worker keeps millions of them, so their size decides the Redis
bill. This measures it on the real ingest:

1. register a binary model's baseline (the default label TTL of 30 days: one pending bucket
   per partition, as large as production's) under a fresh namespace and read ``INFO
   memory``;
2. run the worker over ``N`` predictions with 2 segment attributes, predictions only, then
   read ``used_memory`` again: (after - before) / N is what one pending prediction costs,
   everything the ingest wrote included (pane partials, outcome panes, counts, offsets);
3. ``MEMORY USAGE`` (every field sampled) of the pending hashes alone, per entry;
4. run the worker over one label per prediction (all of them joined from Redis) and measure
   both again: a joined prediction leaves a tombstone (an empty value) until its bucket
   expires.

Both runs are child processes of the benchmark, so their connections are gone when the
parent reads the figures. The Redis must be the benchmark's own: ``used_memory`` counts
every client's writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from stream_labels import fill_label_topics, make_labels

#: The issue's target: at most this many bytes of Redis per pending prediction.
TARGET_PENDING_BYTES = 150


def used_memory(client: Any) -> int:
    return int(client.info("memory")["used_memory"])


def key_kinds(client: Any, ns: str) -> dict[str, dict[str, int]]:
    """``MEMORY USAGE`` of every key under ``ns``, summed by kind (``pending``, ``panes``…)."""
    kinds: dict[str, dict[str, int]] = {}
    for key in client.scan_iter(match=f"{ns}:*", count=1000):
        name = key.decode()[len(ns) + 1 :].split(":")[0]
        kind = kinds.setdefault(name, {"keys": 0, "bytes": 0})
        kind["keys"] += 1
        kind["bytes"] += int(client.memory_usage(key, samples=0) or 0)
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1]["bytes"]))


def pending_hashes(client: Any, ns: str) -> list[dict[str, Any]]:
    """Each pending bucket hash: entries, bytes, encoding, and the size of one value."""
    rows = []
    for key in sorted(client.scan_iter(match=f"{ns}:pending:*", count=1000)):
        entries = int(client.hlen(key))
        usage = int(client.memory_usage(key, samples=0) or 0)
        field = client.hrandfield(key)
        rows.append(
            {
                "key": key.decode(),
                "entries": entries,
                "bytes": usage,
                "bytes_per_entry": usage / entries if entries else None,
                "encoding": _text(client.object("encoding", key)),
                "value_bytes": int(client.hstrlen(key, field)) if field else None,
                "field_bytes": len(field) if field else None,
            }
        )
    return rows


def snapshot(client: Any, ns: str, before: int, n: int) -> dict[str, Any]:
    hashes = pending_hashes(client, ns)
    in_hashes = sum(h["bytes"] for h in hashes)
    after = used_memory(client)
    return {
        "used_memory_delta": after - before,
        "per_prediction": (after - before) / n,
        "pending_hash_bytes": in_hashes,
        "per_entry_in_hashes": in_hashes / max(1, sum(h["entries"] for h in hashes)),
        "entries": sum(h["entries"] for h in hashes),
        "hashes": hashes,
        "kinds": key_kinds(client, ns),
    }


def measure_pending_memory(
    *,
    client: Any,
    bootstrap: str,
    baseline: Any,
    events: Sequence[dict[str, Any]],
    partitions: int,
    prefix: str,
    ns: str,
    seed: int,
    run_stage: Callable[[str, list[str]], dict[str, Any]],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The figures above for ``events``; ``run_stage(topic, args)`` runs one worker child."""
    from agents.registry import BaselineRegistry

    n = len(events)
    targets = np.random.default_rng(seed).permutation(n)
    last = max(e["timestamp"] for e in events)
    labels = make_labels(events, targets, [last] * n, seed + 1)
    topics = asyncio.run(
        fill_label_topics(bootstrap, events, targets, labels, n, partitions, prefix)
    )
    # The production default TTL (None: the worker's 30 days): big buckets, as in production.
    baseline = replace(baseline, label_ttl_s=None)
    BaselineRegistry(client, namespace=ns).register(baseline)
    before = used_memory(client)
    common = ["--ns", ns, "--no-register", "--events"]
    bounds = ",".join(map(str, topics.boundaries))
    log(f"pending memory: {n:,} predictions into namespace {ns}")
    warm = run_stage(
        topics.predictions,
        [*common, str(n), "--stage", "warmup", "--messages", str(n), "--boundaries", bounds],
    )
    pending = snapshot(client, ns, before, n)
    log(f"pending memory: {n:,} labels")
    join = run_stage(
        topics.predictions,
        [
            *(*common, "0", "--stage", "resume", "--messages", str(n)),
            *("--volume", str(n), "--label-messages", str(n)),
        ],
    )
    joined = snapshot(client, ns, before, n)
    segments = len(events[0].get("segments") or {})
    return {
        "predictions": n,
        "segment_attributes": segments,
        "partitions": partitions,
        "used_memory_before": before,
        "pending": pending,
        "joined": joined,
        "from_redis": join["join"]["from_redis"],
        "ingest_seconds": {"predictions": warm["seconds"], "labels": join["seconds"]},
        "target": TARGET_PENDING_BYTES,
        "pass": pending["per_prediction"] <= TARGET_PENDING_BYTES,
    }


def print_pending_memory(pm: dict[str, Any]) -> None:
    p, j = pm["pending"], pm["joined"]
    h = p["hashes"]
    sizes = sorted(x["entries"] for x in h)
    enc = sorted({x["encoding"] for x in h})
    print(
        f"\nRedis memory per pending prediction ({pm['predictions']:,} predictions with "
        f"{pm['segment_attributes']} segment attributes, {pm['partitions']} partitions; "
        f"{len(h)} pending hashes of {sizes[0]:,}-{sizes[-1]:,} entries, {'/'.join(enc)}):"
    )
    print(
        f"  INFO used_memory after the predictions  +{p['used_memory_delta']:>12,} B  "
        f"= {p['per_prediction']:6.1f} B per prediction (all the ingest wrote)"
    )
    value = h[0]["value_bytes"] if h else 0
    field = h[0]["field_bytes"] if h else 0
    print(
        f"  MEMORY USAGE of the pending hashes       {p['pending_hash_bytes']:>12,} B  "
        f"= {p['per_entry_in_hashes']:6.1f} B per entry ({field}-B field, {value}-B value)"
    )
    print(
        f"  after every label joined (tombstones)   +{j['used_memory_delta']:>12,} B  "
        f"= {j['per_prediction']:6.1f} B per prediction; pending hashes "
        f"{j['per_entry_in_hashes']:.1f} B per entry ({pm['from_redis']:,} joined from Redis)"
    )
    for name, kinds in (("pending", p["kinds"]), ("joined", j["kinds"])):
        parts = ", ".join(f"{k} {v['bytes'] / 1e6:.2f} MB" for k, v in kinds.items())
        print(f"  keys by kind ({name}): {parts}")
    for x in h[:3]:
        print(
            f"  {x['key']}: {x['entries']:,} entries, {x['bytes']:,} B, "
            f"{x['bytes_per_entry']:.1f} B/entry"
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
