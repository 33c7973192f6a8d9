"""A worker paused past the session timeout must not overwrite its successor's state.

A worker that stops answering (a long GC, a starved CPU, a stopped VM) is evicted from the
group, and another takes its partitions over from the offsets in Redis. When the paused one
wakes up it still holds unflushed window state and flushes it — unless the flush is fenced:
the new owner's token in ``{ns}:owner:{p}`` makes the old owner's transaction fail
(`agents.pane_store.OwnershipLost`). Without fencing this test lost hundreds of events per
window (a stale pane partial written over a newer one).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agents.evaluator import home_partition

from .harness import (
    MODEL,
    PARTITIONS,
    Fleet,
    Windows,
    read_topic,
    register_baseline,
    wait_assignment,
)
from .test_end_to_end import data_windows, wait_for_last_window
from .test_failover import SteadyPublisher

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

WINDOW_S, SLIDE_S = 20, 4
PUBLISH_S = 40.0


def test_a_worker_evicted_while_paused_cannot_overwrite_its_successor(
    kafka_bootstrap: str,
    redis_url: str,
    unique_name: Callable[[str], str],
    reference: tuple[Any, dict[str, list[Any]]],
    tmp_path: Path,
) -> None:
    baseline, _ = reference
    prefix = unique_name("fencing") + "."
    register_baseline(redis_url, prefix, baseline)
    settings = {"UNDERTOW_WINDOW": f"{WINDOW_S}s", "UNDERTOW_SLIDE": f"{SLIDE_S}s"}
    with Fleet(
        kafka=kafka_bootstrap,
        redis_url=redis_url,
        prefix=prefix,
        log_dir=tmp_path,
        settings=settings,
    ) as fleet:
        fleet.add(2)
        owned = wait_assignment(fleet.live())
        home = home_partition(MODEL, PARTITIONS)
        live = {w.name: w for w in fleet.live()}
        # Pause the worker that does not evaluate: the evaluation goes on meanwhile.
        victim = next(live[n] for n, p in owned.items() if home not in p)
        other = next(w for w in fleet.live() if w is not victim)
        publisher = SteadyPublisher(kafka_bootstrap, prefix, PUBLISH_S)
        publisher.start()
        try:
            time.sleep(4)
            os.killpg(victim.pid, signal.SIGSTOP)
            try:
                wait_assignment([other], timeout=60)  # evicted and taken over
                time.sleep(3)  # the successor flushes what it re-read
            finally:
                os.killpg(victim.pid, signal.SIGCONT)
            wait_assignment(fleet.live(), timeout=60)
        finally:
            publisher.join(timeout=PUBLISH_S + 30)
            publisher.stop.set()
        assert publisher.error is None, publisher.error
        members = Windows(WINDOW_S * 1000, SLIDE_S * 1000).members(publisher.timestamps)
        records = wait_for_last_window(kafka_bootstrap, prefix, max(members))
        log = victim.log_text()
    got = {w: s["count"] for w, s in data_windows(records).items()}
    expected = {w: len(ix) for w, ix in members.items()}
    wrong = {w: (got.get(w), n) for w, n in expected.items() if got.get(w) != n}
    assert not wrong, f"windows whose count is not what was published: {wrong}"
    assert "belongs to another worker now" in log  # the fence was what stopped it
    dead = [r.json() for r in read_topic(kafka_bootstrap, prefix + "deadletter", quiet_s=1.0)]
    assert not dead
