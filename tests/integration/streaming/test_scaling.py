"""Scaling and failover on one machine: 1 → 3 workers, kill -9, replace, SIGTERM → 2.

One deployment (its own topic prefix, consumer group and Redis namespace) under a steady
stream stamped with the wall clock (~370 events/s over the four partitions, event times
spanning ~45 windows of 10 s sliding by 2 s), while its workers change:

1. one worker owns every partition;
2. scale out: two more workers start and join (→ 3);
3. crash: the worker that evaluates the model (owner of its home partition) is killed with
   ``kill -9`` (→ 2); its partitions wait for the session timeout;
4. replace: a new worker starts, as a supervisor would restart the crashed one (→ 3);
5. scale in: the evaluating worker is stopped cleanly with SIGTERM (→ 2).

Then the stream stops and the last windows close. Every window holding events must have
exactly one final snapshot on the metrics topic whose count equals the events published in
it (nothing lost, nothing counted twice), and nothing may be dead-lettered.

Timings (printed, so ``pytest -s`` shows them, and written to ``scaling-timings.json`` in
the test's tmp dir and appended to ``.undertow/scaling-timings.jsonl``), each measured from
the step's action (spawn, SIGKILL, SIGTERM):

- ``settled_s``: the live workers' ``/readyz`` together own every partition exactly once,
  each of them at least one (polled every 0.25 s);
- ``progressing_s``: every partition's offset in Redis has advanced past where it stood when
  the settled assignment was seen: the new owners resumed and counted new events;
- ``longest_stall_s``: the longest time any partition's Redis offset stood still across the
  step (a steady partition advances once per flush, every ~1 s);
- for the kill, ``owned_s`` (a survivor wrote the heartbeat of each of the dead worker's
  partitions: it loaded their state and seeked to the Redis offset) and ``recovered_s``
  (each of them also advanced its offset): the failover time.

Redis is sampled every 0.1 s (`PartitionProgress`), so those are ±0.1 s, plus up to one
flush interval (1 s) for the offsets. docs/scaling.md explains the figures.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agents.evaluator import home_partition

from .harness import (
    BASE_SETTINGS,
    MODEL,
    PARTITIONS,
    REPO_ROOT,
    Fleet,
    PartitionProgress,
    ProgressSample,
    Windows,
    WorkerProcess,
    final_snapshots,
    read_topic,
    register_baseline,
    wait_assignment,
)
from .test_end_to_end import data_windows, wait_for_last_window
from .test_failover import SteadyPublisher

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

#: Seconds of steady stream before and after each step (the windows keep closing).
STEADY_S = 4.0
#: The publisher's own bound; the test stops it well before (the scenario takes ~95 s).
MAX_PUBLISH_S = 170.0
#: Spawn → every worker owns its share (~16 s on Tansu: start-up, the Faust app's group
#: join, then the ingest group's join; docs/scaling.md).
JOIN_TIMEOUT_S = 60.0
#: SIGKILL → the survivors own everything (~16 s: session timeout 10 s + a rebalance).
TAKEOVER_TIMEOUT_S = 45.0
#: SIGTERM → the remaining workers own everything (a clean exit leaves the group at once).
LEAVE_TIMEOUT_S = 30.0
#: Settled → every partition's offset advanced (one flush interval, normally).
PROGRESS_TIMEOUT_S = 20.0

HOME = home_partition(MODEL, PARTITIONS)
TIMINGS_LOG = REPO_ROOT / ".undertow" / "scaling-timings.jsonl"


class Scenario:
    """The steps of the test and what was measured at each."""

    def __init__(self, fleet: Fleet, probe: PartitionProgress, publisher: SteadyPublisher) -> None:
        self.fleet, self.probe, self.publisher = fleet, probe, publisher
        self.steps: list[dict[str, Any]] = []
        self.owned: dict[str, set[int]] = {}

    def hold(self, seconds: float) -> None:
        """Let the stream run; fail at once if the publisher or a live worker died."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.publisher.error is None, self.publisher.error
            assert self.publisher.is_alive(), "the publisher stopped before the scenario ended"
            for w in self.fleet.live():
                w.check_alive()
            time.sleep(0.2)

    def evaluator(self) -> WorkerProcess:
        """The live worker owning the model's home partition (so evaluating its windows)."""
        live = {w.name: w for w in self.fleet.live()}
        owners = [live[name] for name, parts in self.owned.items() if HOME in parts]
        assert len(owners) == 1, f"partition {HOME} is owned by {owners} ({self.owned})"
        return owners[0]

    def settle(
        self, step: str, action_at: float, workers: list[WorkerProcess], timeout: float
    ) -> dict[str, Any]:
        """Wait for the settled assignment and for every partition to progress after it."""
        self.owned = wait_assignment(workers, PARTITIONS, timeout=timeout)
        settled = self.probe.read()
        moved = self.probe.wait_for(
            lambda s: s.advanced(settled, range(PARTITIONS)),
            since=settled.at,
            timeout=PROGRESS_TIMEOUT_S,
            what=f"every partition's offset to advance after {step}",
        )
        stalls = self.probe.stalls(action_at, moved.at)
        worst = max(stalls, key=lambda p: stalls[p])
        timing = {
            "step": step,
            "workers": len(workers),
            "settled_s": round(settled.at - action_at, 2),
            "progressing_s": round(moved.at - action_at, 2),
            "longest_stall_s": round(stalls[worst], 2),
            "stalled_partition": worst,
            "assignment": {name: sorted(parts) for name, parts in self.owned.items()},
        }
        self.steps.append(timing)
        return timing

    def scale_out(self, step: str, count: int) -> dict[str, Any]:
        start = time.monotonic()
        self.fleet.add(count)
        return self.settle(step, start, self.fleet.live(), JOIN_TIMEOUT_S)

    def kill(self, step: str) -> dict[str, Any]:
        victim = self.evaluator()
        lost = sorted(self.owned[victim.name])
        start = time.monotonic()
        victim.kill()  # SIGKILL to its process group, and reaped
        killed_ms = round(time.time() * 1000)  # any flush of the victim is stamped earlier
        time.sleep(0.5)  # a transaction it had in flight has landed by now
        at_kill = self.probe.read()

        def owned(s: ProgressSample) -> bool:
            return all(s.heartbeats.get(p, 0) >= killed_ms for p in lost)

        def recovered(s: ProgressSample) -> bool:
            return owned(s) and s.advanced(at_kill, lost)

        timing = self.settle(step, start, self.fleet.live(), TAKEOVER_TIMEOUT_S)
        what = f"a survivor to take over partitions {lost}"
        took = self.probe.wait_for(owned, since=start, timeout=5.0, what=what)
        back = self.probe.wait_for(recovered, since=start, timeout=PROGRESS_TIMEOUT_S, what=what)
        timing.update(
            victim=victim.name,
            victim_partitions=lost,
            owned_s=round(took.at - start, 2),
            recovered_s=round(back.at - start, 2),
        )
        return timing

    def stop(self, step: str) -> dict[str, Any]:
        leaver = self.evaluator()
        start = time.monotonic()
        leaver.terminate()  # SIGTERM: it flushes, leaves the group and exits
        timing = self.settle(
            step, start, [w for w in self.fleet.live() if w is not leaver], LEAVE_TIMEOUT_S
        )
        status = leaver.stop(timeout=LEAVE_TIMEOUT_S)
        timing.update(leaver=leaver.name, exit_status=status)
        return timing


def report(steps: list[dict[str, Any]], path: Path) -> str:
    lines = [f"{'step':<28} {'workers':>7} {'settled':>8} {'progress':>9} {'stall':>6}  note"]
    for t in steps:
        note = ""
        if "recovered_s" in t:
            note = (
                f"failover of {t['victim_partitions']}: owned {t['owned_s']:.1f} s, "
                f"recovered {t['recovered_s']:.1f} s after kill -9"
            )
        elif "exit_status" in t:
            note = f"{t['leaver']} exited with status {t['exit_status']}"
        lines.append(
            f"{t['step']:<28} {t['workers']:>7} {t['settled_s']:>7.1f}s "
            f"{t['progressing_s']:>8.1f}s {t['longest_stall_s']:>5.1f}s  {note}"
        )
    lines.append(f"(written to {path})")
    return "\n".join(lines)


def write_timings(timings: dict[str, Any], path: Path) -> None:
    """Print the timings (``pytest -s`` shows them), write them to ``path`` and append them
    as one line to ``.undertow/scaling-timings.jsonl`` (a history across runs)."""
    path.write_text(json.dumps(timings, indent=2) + "\n")
    TIMINGS_LOG.parent.mkdir(parents=True, exist_ok=True)
    with open(TIMINGS_LOG, "a") as log:
        log.write(json.dumps(timings) + "\n")
    print()
    print(
        f"{timings['events']} events over {timings['windows']} windows; the scenario took "
        f"{timings['scenario_s']:.0f} s; in steady state a partition's offset stood still at "
        f"most {timings['steady_stall_s']:.1f} s"
    )
    print(report(timings["steps"], path))
    print(f"(also appended to {TIMINGS_LOG})")


def test_scale_out_crash_replace_and_scale_in_lose_nothing_and_count_nothing_twice(
    kafka_bootstrap: str,
    redis_url: str,
    unique_name: Callable[[str], str],
    reference: tuple[Any, dict[str, list[Any]]],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    baseline, _ = reference
    prefix = unique_name("scaling") + "."
    register_baseline(redis_url, prefix, baseline)
    fleet = Fleet(kafka=kafka_bootstrap, redis_url=redis_url, prefix=prefix, log_dir=tmp_path)
    publisher = SteadyPublisher(kafka_bootstrap, prefix, MAX_PUBLISH_S)
    with fleet, PartitionProgress(redis_url, prefix) as probe:
        run = Scenario(fleet, probe, publisher)
        started = time.monotonic()
        fleet.add(1)
        run.owned = wait_assignment(fleet.live(), PARTITIONS, timeout=JOIN_TIMEOUT_S)
        publisher.start()
        try:
            run.hold(STEADY_S)
            steady = probe.stalls(time.monotonic() - STEADY_S + 1.0, time.monotonic())
            run.scale_out("scale out 1 -> 3", 2)
            run.hold(STEADY_S)
            run.kill("kill -9 the evaluator 3 -> 2")
            run.hold(STEADY_S)
            run.scale_out("replace it 2 -> 3", 1)
            run.hold(STEADY_S)
            run.stop("SIGTERM the evaluator 3 -> 2")
            run.hold(STEADY_S)
        finally:
            publisher.stop.set()
            publisher.join(timeout=30)
        assert not publisher.is_alive() and publisher.error is None, publisher.error
        scenario_s = time.monotonic() - started

        members = Windows().members(publisher.timestamps)
        records = wait_for_last_window(kafka_bootstrap, prefix, max(members))
        dead = [r.json() for r in read_topic(kafka_bootstrap, prefix + "deadletter", quiet_s=1.0)]
        for w in fleet.live():
            w.check_alive()
        timings = {
            "run_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "events": len(publisher.timestamps),
            "windows": len(members),
            "scenario_s": round(scenario_s, 1),
            "steady_stall_s": round(max(steady.values(), default=0.0), 2),
            "steps": run.steps,
            "final_evaluations_by_worker": {
                w.name: w.log_text().count("(final)") for w in fleet.members
            },
            "settings": BASE_SETTINGS,
        }
        write_timings(timings, tmp_path / "scaling-timings.json")
        kill = next(t for t in run.steps if "recovered_s" in t)
        record_property("failover_recovered_s", kill["recovered_s"])
        record_property("steps", json.dumps(run.steps))

        # Exactly one final snapshot per window, and each window holds exactly its events.
        per_window = Counter(round(s["window_start"] * 1000) for s in final_snapshots(records))
        assert max(per_window.values()) == 1, {w: n for w, n in per_window.items() if n > 1}
        snapshots = data_windows(records)
        expected = {w: len(ix) for w, ix in members.items()}
        got = {w: s["count"] for w, s in snapshots.items()}
        missing = sorted(set(expected) - set(got))
        assert not missing, f"{len(missing)} window(s) never evaluated, the first {missing[:5]}"
        wrong = {w: (got[w], expected[w]) for w in expected if got[w] != expected[w]}
        assert not wrong, f"(got, published) per window start: {wrong}"
        assert got == expected
        assert not dead, Counter(d["reason"] for d in dead)
        # A clean stop is a clean exit, and leaves the group at once: well inside the session
        # timeout a crash has to wait for.
        stop = run.steps[-1]
        assert stop["exit_status"] == 0, stop
        assert stop["settled_s"] < kill["settled_s"], (stop, kill)
