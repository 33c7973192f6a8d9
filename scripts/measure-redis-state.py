#!/usr/bin/env python3
"""Measure the Redis memory of undertow's window state, for docs/operations.md.

What a worker keeps in Redis per model version is one pane partial per (partition, pane):
``{ns}:panes:{partition}`` → field ``model␟version␟pane_start_ms`` → ``PaneState.to_state()``
as JSON (agents/pane_store.py). This script measures that with the worker's own code:

1. a reference CSV with ``--numeric`` numeric and ``--categorical`` categorical features
   (lognormal / normal / uniform shapes, 20 categories each), baseline made by
   ``undertow baseline create`` (default quantile binning: the fine KS grid is what makes a
   numeric histogram large);
2. for each events-per-pane figure, a pane filled through ``PaneState.update`` with events
   drawn from the reference distribution (so bins fill as they would without drift);
3. ``--panes`` such panes written with ``PaneStore.flush`` (the worker's MULTI/EXEC) into a
   throw-away ``redis-server`` (agents.devstack.RedisServer), then ``MEMORY USAGE`` of the
   hash divided by the number of panes; the baseline is registered with
   ``BaselineRegistry.register`` and measured the same way;
4. the evaluator's claims: one key per evaluated (window, kind), kept for
   ``agents.evaluator.CLAIM_KEEP_S`` (7 days): a week of one model version's claims (two per
   slide: due and final) written as the evaluator writes them, measured by ``used_memory``.

Run: ``.venv/bin/python scripts/measure-redis-state.py`` (needs redis-server on PATH).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
import tempfile
from pathlib import Path

import numpy as np
import orjson
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.cli import main as undertow  # noqa: E402
from agents.devstack import RedisServer  # noqa: E402
from agents.evaluator import CLAIM_KEEP_S  # noqa: E402
from agents.pane_store import PaneStore, PartitionFlush  # noqa: E402
from agents.registry import BaselineRegistry  # noqa: E402
from streams.baseline import Baseline  # noqa: E402
from streams.pane import PaneState, columns_from_records  # noqa: E402

CATEGORIES = [f"c{i:02d}" for i in range(20)]


def draw(rng: np.random.Generator, n: int, numeric: int, categorical: int) -> list[dict]:
    columns: dict[str, np.ndarray] = {}
    for i in range(numeric):
        shape = i % 3
        if shape == 0:
            columns[f"f{i:02d}"] = rng.lognormal(3.0 + i % 5, 0.6, n).round(4)
        elif shape == 1:
            columns[f"f{i:02d}"] = rng.normal(100.0 * (i + 1), 15.0, n).round(4)
        else:
            columns[f"f{i:02d}"] = rng.uniform(0.0, 1.0, n).round(6)
    for j in range(categorical):
        columns[f"k{j:02d}"] = rng.choice(CATEGORIES, n)
    score = rng.uniform(0.0, 1.0, n).round(6)
    rows = []
    for r in range(n):
        row = {
            name: (str(col[r]) if col.dtype.kind in "UO" else float(col[r]))
            for name, col in columns.items()
        }
        row["prediction"] = float(score[r])
        rows.append(row)
    return rows


def make_baseline(workdir: Path, numeric: int, categorical: int, rows: int) -> Baseline:
    rng = np.random.default_rng(0)
    reference = workdir / "reference.csv"
    data = draw(rng, rows, numeric, categorical)
    with reference.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(data[0]))
        writer.writeheader()
        writer.writerows(data)
    out = workdir / "baseline.json"
    argv = [
        "baseline",
        "create",
        "--data",
        str(reference),
        "--model",
        "measure",
        "--version",
        "v1",
        "--prediction",
        "prediction",
        "--out",
        str(out),
    ]
    with contextlib.redirect_stdout(sys.stderr):
        if undertow(argv) != 0:
            raise SystemExit("undertow baseline create failed")
    return Baseline.from_json(out.read_bytes())


def filled_pane(baseline: Baseline, events: int, numeric: int, categorical: int) -> PaneState:
    rng = np.random.default_rng(events)
    pane = PaneState.empty(baseline)
    t0 = 1_764_151_200.0
    for start in range(0, events, 5_000):
        n = min(5_000, events - start)
        records = [
            {
                "features": {k: v for k, v in row.items() if k != "prediction"},
                "prediction": row["prediction"],
                "latency_ms": float(rng.gamma(2.0, 12.0)),
                "timestamp": t0 + (start + i) * 60.0 / events,
            }
            for i, row in enumerate(draw(rng, n, numeric, categorical))
        ]
        pane.update(columns_from_records(baseline, records))
    return pane


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--numeric", type=int, default=20)
    parser.add_argument("--categorical", type=int, default=0)
    parser.add_argument("--reference-rows", type=int, default=50_000)
    parser.add_argument("--events", type=int, nargs="+", default=[100, 1_000, 10_000, 100_000])
    parser.add_argument("--panes", type=int, default=16, help="panes written per measurement")
    args = parser.parse_args()
    features = args.numeric + args.categorical

    with tempfile.TemporaryDirectory() as tmp:
        baseline = make_baseline(Path(tmp), args.numeric, args.categorical, args.reference_rows)
        server = RedisServer()
        server.start()
        try:
            client = redis.Redis.from_url(server.url)
            registry = BaselineRegistry(client, namespace="measure")
            key = registry.register(baseline)
            baseline_bytes = client.memory_usage(key, samples=0)
            print(
                f"features: {args.numeric} numeric + {args.categorical} categorical; "
                f"baseline JSON {len(baseline.to_json()):,} B, "
                f"in Redis {baseline_bytes:,} B (MEMORY USAGE {key})"
            )
            print(
                f"{'events/pane':>12} {'JSON B/pane':>12} {'Redis B/pane':>13} "
                f"{'Redis B/feature/pane':>21}"
            )
            store = PaneStore(client, namespace="measure")
            for events in args.events:
                pane = filled_pane(baseline, events, args.numeric, args.categorical)
                raw = orjson.dumps(pane.to_state())
                client.delete("measure:panes:0")
                slide = 60_000
                panes = {
                    ("measure", "v1", 1_764_151_200_000 + i * slide): raw for i in range(args.panes)
                }
                store.flush(
                    PartitionFlush(
                        partition=0,
                        next_offset=events,
                        watermark={"frontier_ms": None},
                        panes=panes,
                    )
                )
                used = client.memory_usage("measure:panes:0", samples=0) / args.panes
                print(f"{events:>12,} {len(raw):>12,} {used:>13,.0f} {used / features:>21,.0f}")
            slides = int(CLAIM_KEEP_S // 60)
            before = client.info("memory")["used_memory"]
            pipe = client.pipeline(transaction=False)
            for i in range(slides):
                start = 1_764_151_200_000 + i * 60_000
                for kind in ("due", "final"):
                    claim = f"measure:claim:measure\x1fv1\x1f{start}\x1f{kind}"
                    pipe.set(claim, "done worker-7d9f8c6b5-x2x9q-1", ex=CLAIM_KEEP_S)
            pipe.execute()
            claims = client.info("memory")["used_memory"] - before
            print(
                f"claims: {2 * slides:,} keys (7 days of due + final at a 1-minute slide, "
                f"one model version) use {claims:,} B, {claims / (2 * slides):.0f} B each"
            )
            client.close()
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
