"""The loop end to end: a baseline, a drifting stream, alert events and window figures.

Real ``undertow worker`` processes, a real broker and a real Redis. Each test has its own
topic prefix (so its own topics, consumer groups and Redis namespace) and its own workers.
Event times span the last ~50 s up to the wall clock: once publishing stops, the idle rule
lets the watermark follow the wall clock and the last windows close without more traffic.
The alerts expected are the default alert policy's, derived in `expected_alerts` with
numpy / scipy from the rows of each window (not from the library's alert code).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import Launch
from .expected_alerts import FDR, MIN_COUNT, PolicyKey, bh_significant, chi2_pvalue, ks_pvalue
from .harness import (
    CATEGORICAL,
    MODEL,
    NUMERIC,
    VERSION,
    Record,
    Stream,
    TopicTail,
    Windows,
    drift_stream,
    final_snapshots,
    numpy_counts,
    numpy_psi,
    publish,
    read_topic,
    register_baseline,
    rows_of,
    sample,
    scrape,
    wait_assignment,
    write_csv,
)

pytestmark = pytest.mark.integration

#: Bound on waiting for the last window of a stream to close (normally ~12 s after the
#: last event: idle timeout, then window end + grace by the wall clock).
CLOSE_TIMEOUT_S = 90.0


def wait_for_last_window(kafka: str, prefix: str, last_start_ms: int) -> list[Record]:
    """Every metrics snapshot, once the final one of the window starting at ``last_start_ms``
    is on the topic."""

    def closed(records: list[Record]) -> bool:
        return any(
            s["final"] and round(s["window_start"] * 1000) == last_start_ms
            for s in (r.json() for r in records)
        )

    with TopicTail(kafka, prefix + "metrics") as tail:
        tail.wait_for(closed, CLOSE_TIMEOUT_S, "the final snapshot of the last window")
        return list(tail.drain(quiet_s=1.0, max_s=10.0))


def data_windows(records: list[Record]) -> dict[int, dict[str, Any]]:
    """Final snapshots of the windows holding events, by window start (ms); each window
    must have exactly one final snapshot."""
    finals = final_snapshots(records)
    per_window = Counter(round(s["window_start"] * 1000) for s in finals)
    repeated = {w: n for w, n in per_window.items() if n > 1}
    assert not repeated, f"windows with more than one final snapshot: {repeated}"
    return {round(s["window_start"] * 1000): s for s in finals if s["count"]}


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if a is None and isinstance(b, float) and math.isnan(b):
        return True  # JSON has no NaN: the snapshot on the wire carries null
    return bool(a == b)


def test_drift_alerts_fire_and_resolve_and_window_figures_match_a_direct_computation(
    kafka_bootstrap: str,
    redis_url: str,
    unique_name: Callable[[str], str],
    launch: Launch,
    reference: tuple[Any, dict[str, list[Any]]],
    tmp_path: Path,
) -> None:
    baseline, ref = reference
    prefix = unique_name("e2e") + "."
    register_baseline(redis_url, prefix, baseline)
    [worker] = launch(1, prefix)
    wait_assignment([worker])

    # amount (×2.5: a mean shift) and merchant (travel booms, an unseen category appears)
    # drift from t0+16 s to t0+30 s of a 44 s stream, then return to normal.
    stream = drift_stream()
    assert publish(kafka_bootstrap, prefix, stream) == len(stream.events)
    windows = Windows()
    members = windows.members(stream.timestamps)
    snapshots = data_windows(wait_for_last_window(kafka_bootstrap, prefix, max(members)))
    alerts = [r.json() for r in read_topic(kafka_bootstrap, prefix + "alerts")]
    dead = read_topic(kafka_bootstrap, prefix + "deadletter", quiet_s=1.0)
    prometheus = scrape(worker)

    # Every window holding events was evaluated once, final, with exactly its events.
    assert not dead, [r.json()["reason"] for r in dead[:5]]
    assert sorted(snapshots) == sorted(members)
    assert {w: s["count"] for w, s in snapshots.items()} == {
        w: len(ix) for w, ix in members.items()
    }
    for s in snapshots.values():
        assert (s["model"], s["model_version"]) == (MODEL, VERSION)
        assert s["window_end"] - s["window_start"] == pytest.approx(10.0)

    # PSI of every column in every window equals a plain numpy PSI on the same rows; the
    # policy's verdict on it follows from that PSI and scipy's p-values on the same rows.
    columns = {name: ref[name] for name in (*NUMERIC, *CATEGORICAL)}
    keys: dict[tuple[str, str | None], PolicyKey] = {}
    expected_events: dict[tuple[str, str | None], list[tuple[str, str, float]]] = {}
    # Where static bands would have fired a warning: a PSI from under 0.1 into [0.1, 0.25].
    static_warnings: set[tuple[tuple[str, str | None], float]] = set()
    previous: dict[tuple[str, str | None], float] = {}
    for start, snap in sorted(snapshots.items()):
        rows = rows_of(stream.events, members[start])
        psi: dict[tuple[str, str | None], float] = {}
        pvalues: dict[str, float] = {}
        for name, ref_values in columns.items():
            expected = numpy_psi(baseline.features[name], ref_values, rows[name])
            got = snap["features"][name]["psi"]
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), (name, start, got)
            assert len(rows[name]) >= MIN_COUNT  # every data window is evidence
            psi["data_drift", name] = expected
            if name in NUMERIC:
                pvalues[name] = ks_pvalue(ref_values, rows[name])
            else:
                reference = baseline.features[name]
                counts = numpy_counts(reference, rows[name])
                pvalues[name] = chi2_pvalue(numpy_counts(reference, ref_values), counts)
        expected = numpy_psi(baseline.prediction, ref["prediction"], rows["prediction"])
        assert snap["prediction"]["psi"] == pytest.approx(expected, rel=1e-9, abs=1e-12)
        psi["prediction_drift", None] = expected
        significant = {("data_drift", n): ok for n, ok in bh_significant(pvalues).items()}
        significant["prediction_drift", None] = (
            ks_pvalue(ref["prediction"], rows["prediction"]) <= FDR
        )
        for key, value in psi.items():
            if 0.1 <= value <= 0.25 and previous.get(key, 0.0) < 0.1:
                static_warnings.add((key, start / 1000))
            previous[key] = value
            event = keys.setdefault(key, PolicyKey()).observe(
                start / 1000, start / 1000 + 10.0, value, significant[key]
            )
            if event is not None:
                expected_events.setdefault(key, []).append(event)

    # Alert events: exactly the policy's transitions, window after window.
    got_events: dict[tuple[str, str | None], list[tuple[str, str, float]]] = {}
    for a in alerts:
        key = (a["type"], a["feature"])
        got_events.setdefault(key, []).append((a["status"], a["severity"], a["window_start"]))
    assert got_events == expected_events

    # What the policy changed over static bands, on this stream: a PSI entering the warning
    # band (the prediction's, on its way to critical) pages nobody in that window — the
    # minimum duration; and a PSI back under 0.1 but not under 0.08 keeps amount's alert at
    # warning one window longer — the hysteresis.
    alerted = {(key, start) for key, events in got_events.items() for *_, start in events}
    assert static_warnings - alerted, "a warning must wait for a second window of data"
    amount = got_events["data_drift", "amount"]
    [(_, _, step_down)] = [e for e in amount if e[:2] == ("firing", "warning")]
    step_psi = snapshots[round(step_down * 1000)]["features"]["amount"]["psi"]
    assert 0.08 <= step_psi < 0.1, step_psi

    # In words: the two drifted features fire critical and resolve; the others never fire.
    fired = {a["feature"] for a in alerts if a["type"] == "data_drift"}
    assert fired == {"amount", "merchant"}
    assert not [a for a in alerts if a["type"] == "data_quality"]
    for feature in ("amount", "merchant"):
        events = [a for a in alerts if a["type"] == "data_drift" and a["feature"] == feature]
        assert "critical" in {a["severity"] for a in events if a["status"] == "firing"}
        first, last = events[0], events[-1]
        assert first["status"] == "firing" and last["status"] == "resolved"
        # Fired by a window overlapping the drift; resolved by one that ends after it.
        assert first["window_start"] < stream.drift_to and first["window_end"] > stream.drift_from
        assert last["window_end"] > stream.drift_to
        assert last["alert_id"] == events[-2]["alert_id"]  # resolves the alert that fired
        for a in events:
            snap = snapshots[round(a["window_start"] * 1000)]
            assert a["value"] == snap["features"][feature]["psi"]
            assert a["metric"] == "psi" and a["model"] == MODEL and a["model_version"] == VERSION
            assert a["runbook_url"] == "docs/runbooks/data-drift.md"

    # Two windows, one inside the drift and one after it, figure for figure against the
    # batch check (`undertow check`) on exactly their rows: same numbers to the last digit.
    t0_ms = round(stream.t0 * 1000)
    for offset_s in (20, 32):
        start = t0_ms + offset_s * 1000
        path = write_csv(
            tmp_path / f"window-{offset_s}.csv", rows_of(stream.events, members[start])
        )
        from streams.check import check
        from streams.tabular import TableFile

        batch = check(baseline, TableFile(path))
        snap = snapshots[start]
        assert snap["count"] == batch.rows
        assert snap["alert_level"] == str(batch.alert_level)
        for name, figures in batch.features.items():
            for figure, value in figures.items():
                assert same(snap["features"][name][figure], value), (offset_s, name, figure)
        for figure, value in batch.prediction.items():
            assert same(snap["prediction"][figure], value), (offset_s, "prediction", figure)
    assert snapshots[t0_ms + 20_000]["features"]["amount"]["drift_status"] == "critical"
    assert snapshots[t0_ms + 32_000]["alert_level"] == "none"

    # Prometheus: every event counted once; drift gauges from the latest window with data.
    total = sample(prometheus, "ml_predictions_total", model_name=MODEL, model_version=VERSION)
    assert total == len(stream.events)
    latest = snapshots[max(snapshots)]
    for name in ("amount", "merchant"):
        psi = sample(prometheus, "ml_drift_score", model_name=MODEL, feature_name=name)
        assert psi == latest["features"][name]["psi"]


def test_one_worker_and_three_workers_give_identical_windows(
    kafka_bootstrap: str,
    redis_url: str,
    unique_name: Callable[[str], str],
    launch: Launch,
    reference: tuple[Any, dict[str, list[Any]]],
) -> None:
    baseline, _ = reference
    one, three = unique_name("one") + ".", unique_name("three") + "."
    for prefix in (one, three):
        register_baseline(redis_url, prefix, baseline)
    # Both deployments start together and receive the very same events (same timestamps).
    group_one, group_three = launch(1, one), launch(3, three)
    wait_assignment(group_one)
    owned = wait_assignment(group_three)
    assert all(owned.values()), owned  # each of the three workers owns partitions

    stream: Stream = drift_stream(seed=11)
    publish(kafka_bootstrap, [one, three], stream)
    members = Windows().members(stream.timestamps)
    last = max(members)
    results = {}
    for prefix in (one, three):
        snapshots = data_windows(wait_for_last_window(kafka_bootstrap, prefix, last))
        alerts = [r.json() for r in read_topic(kafka_bootstrap, prefix + "alerts")]
        dead = read_topic(kafka_bootstrap, prefix + "deadletter", quiet_s=1.0)
        assert not dead, (prefix, Counter(r.json()["reason"] for r in dead))
        results[prefix] = (snapshots, alerts)

    (snap_one, alerts_one), (snap_three, alerts_three) = results[one], results[three]
    assert sorted(snap_one) == sorted(snap_three) == sorted(members)
    assert {w: s["count"] for w, s in snap_one.items()} == {w: len(ix) for w, ix in members.items()}
    for start in sorted(members):
        a, b = dict(snap_one[start]), dict(snap_three[start])
        a.pop("emitted_at")
        b.pop("emitted_at")
        assert a == b, f"window {start / 1000} differs between 1 and 3 workers"

    def strip(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in a.items() if k != "emitted_at"} for a in alerts]

    assert alerts_one, "the drift must raise alerts"
    assert strip(alerts_one) == strip(alerts_three)
