"""A worker killed with SIGKILL mid-stream: nothing lost, nothing counted twice.

Two workers share the four partitions. Predictions are published steadily, stamped with the
wall clock, from a background thread; part-way through, the worker that owns the model's
home partition (so the one evaluating it, too) is killed with ``kill -9``. The survivor must
take over its partitions after the session timeout, resume them from the offsets Redis
holds, and evaluate every window: each final window's count must equal what was published
in it, and each window must have exactly one final snapshot.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from .conftest import Launch
from .harness import (
    MODEL,
    PARTITIONS,
    Windows,
    final_snapshots,
    make_events,
    read_topic,
    register_baseline,
    wait_assignment,
    wait_until,
)
from .test_end_to_end import data_windows, wait_for_last_window

pytestmark = pytest.mark.integration

PUBLISH_S = 24.0  # how long the stream runs
KILL_AT_S = 8.0  # when, after the stream starts, the worker dies
CHUNK = 20  # events per tick of the publisher, one tick every 50 ms: ~400 events/s
#: The survivor normally owns everything ~15 s after the kill (session timeout 10 s plus a
#: rebalance); the bound is generous so a slow machine fails with a clear message instead.
TAKEOVER_TIMEOUT_S = 60.0


class SteadyPublisher(threading.Thread):
    """Publishes ``CHUNK`` events every 50 ms, stamped with the wall clock, for ``seconds``."""

    def __init__(self, bootstrap: str, prefix: str, seconds: float) -> None:
        super().__init__(name="steady-publisher", daemon=True)
        self.bootstrap, self.prefix, self.seconds = bootstrap, prefix, seconds
        self.timestamps: list[float] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        from agents.producer import PredictionPublisher
        from agents.settings import Topics

        try:
            with PredictionPublisher(
                self.bootstrap, topics=Topics(self.prefix), batch_size=50, linger_s=0.05
            ) as publisher:
                start = time.monotonic()
                for tick in range(int(self.seconds / 0.05) + 1):
                    if self.stop.is_set() or time.monotonic() - start >= self.seconds:
                        break
                    now_ms = round(time.time() * 1000)
                    for event in make_events([now_ms] * CHUNK, seed=tick, id_prefix=f"t{tick}-"):
                        publisher.send_raw("predictions", event)
                        self.timestamps.append(event["timestamp"])
                    time.sleep(0.05)
        except BaseException as exc:  # reported by the test
            self.error = exc


def test_kill_9_of_one_of_two_workers_loses_nothing_and_counts_nothing_twice(
    kafka_bootstrap: str,
    redis_url: str,
    unique_name: Callable[[str], str],
    launch: Launch,
    reference: tuple[Any, dict[str, list[Any]]],
    record_property: Callable[[str, object], None],
) -> None:
    baseline, _ = reference
    prefix = unique_name("failover") + "."
    register_baseline(redis_url, prefix, baseline)
    pair = launch(2, prefix)
    owned = wait_assignment(pair)
    home = zlib.crc32(MODEL.encode()) % PARTITIONS
    victim = next(w for w in pair if home in owned[w.name])
    survivor = next(w for w in pair if w is not victim)
    assert owned[victim.name] and owned[survivor.name]

    publisher = SteadyPublisher(kafka_bootstrap, prefix, PUBLISH_S)
    publisher.start()
    try:
        time.sleep(KILL_AT_S)
        assert publisher.is_alive() and publisher.error is None
        victim.kill()
        takeover_s = wait_until(
            lambda: survivor.partitions() == set(range(PARTITIONS)),
            TAKEOVER_TIMEOUT_S,
            interval=0.25,
            what="the survivor to own every partition",
        )
        survivor.check_alive()
    finally:
        publisher.join(timeout=PUBLISH_S + 30)
        publisher.stop.set()
    assert not publisher.is_alive() and publisher.error is None, publisher.error
    print(f"failover: the survivor owned all partitions {takeover_s:.1f} s after kill -9")
    record_property("failover_s", round(takeover_s, 1))

    members = Windows().members(publisher.timestamps)
    records = wait_for_last_window(kafka_bootstrap, prefix, max(members))
    snapshots = data_windows(records)  # also: no window has two final snapshots
    per_window = Counter(round(s["window_start"] * 1000) for s in final_snapshots(records))
    assert max(per_window.values()) == 1

    expected = {w: len(ix) for w, ix in members.items()}
    got = {w: s["count"] for w, s in snapshots.items()}
    assert got == expected
    dead = [r.json() for r in read_topic(kafka_bootstrap, prefix + "deadletter", quiet_s=1.0)]
    assert not dead, Counter(d["reason"] for d in dead)
    # The windows evaluated after the kill were evaluated by the survivor.
    assert "evaluated credit v1" in survivor.log_text()
