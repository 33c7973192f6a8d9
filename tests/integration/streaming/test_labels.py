"""Delayed ground truth on a real broker and a real Redis: the join, counted exactly.

Predictions and their labels are published side by side, the labels 0–3 s late, some twice,
some before their prediction, some for predictions that never existed, some with a value a
binary model cannot take. Every performance window's final snapshot must equal a direct
scikit-learn computation over the predictions made in it and the first label of each, and
the worker's counts of joined / duplicate / orphan / wrong-type / expired labels must be
exact — also when the worker that owns the model's home partition is killed mid-stream.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import redis
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_score, recall_score

from .conftest import Launch
from .harness import (
    BASE_SETTINGS,
    MODEL,
    PARTITIONS,
    TopicTail,
    read_topic,
    register_baseline,
    wait_assignment,
    wait_until,
)
from .labels import LABEL_SETTINGS, LabelledStream, Truth

pytestmark = pytest.mark.integration

SETTINGS = {**BASE_SETTINGS, **LABEL_SETTINGS}
PUBLISH_S = 16.0


def performance_finals(
    bootstrap: str, prefix: str, windows: set[int], timeout: float
) -> dict[int, dict[str, Any]]:
    """The final performance snapshot of every window in ``windows`` (waits, bounded)."""
    finals: dict[int, list[dict[str, Any]]] = {}

    def collect(records: list[Any]) -> None:
        finals.clear()
        for r in records:
            s = r.json()
            if s.get("kind") == "performance" and s.get("final"):
                finals.setdefault(round(s["window_start"] * 1000), []).append(s)

    with TopicTail(bootstrap, prefix + "metrics") as tail:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not windows <= set(finals):
            tail.poll(0.5)
            collect(tail.records)
        collect(tail.drain(quiet_s=2.0, max_s=10.0))  # a late duplicate would show here
    missing = windows - set(finals)
    assert not missing, f"no final performance snapshot for windows {sorted(missing)}"
    twice = {w: len(v) for w, v in finals.items() if len(v) > 1}
    assert not twice, f"windows with more than one final snapshot: {twice}"
    return {w: v[0] for w, v in finals.items()}


def expected_performance(truths: list[Truth]) -> dict[str, float]:
    joined = [t for t in truths if t.actual is not None]
    y = np.array([t.actual for t in joined])
    score = np.array([t.score for t in joined])
    pred = (score >= 0.5).astype(float)
    out = {"labelled": float(len(joined)), "coverage": len(joined) / len(truths)}
    if len(joined):
        out["accuracy"] = accuracy_score(y, pred)
        out["f1"] = f1_score(y, pred, zero_division=np.nan)
        if pred.sum():
            out["precision"] = precision_score(y, pred)
        if y.sum():
            out["recall"] = recall_score(y, pred)
        if 0 < y.sum() < len(y):
            out["log_loss"] = log_loss(y, np.clip(score, 1e-15, 1 - 1e-15), labels=[0, 1])
    return out


def check_windows(stream: LabelledStream, finals: dict[int, dict[str, Any]]) -> None:
    for start, truths in stream.windows().items():
        got = finals[start]
        assert got["count"] == len(truths), start
        perf = got["performance"]
        for name, value in expected_performance(truths).items():
            assert perf[name] == pytest.approx(value, rel=1e-9, abs=1e-12), (start, name)
        # Cohorts: accuracy per gender, directly.
        for gender in ("f", "m"):
            members = [t for t in truths if t.segments["gender"] == gender]
            joined = [t for t in members if t.actual is not None]
            entry = got["segments"]["gender"][gender]
            assert entry["predictions"] == len(members)
            assert entry["labelled"] == len(joined)
            if joined:
                right = sum((t.score >= 0.5) == (t.actual == 1.0) for t in joined)
                assert entry["accuracy"] == pytest.approx(right / len(joined))


def check_counts(redis_url: str, prefix: str, stream: LabelledStream) -> None:
    """The worker's label counts, exact (they settle within a flush or two of the end)."""
    ns = prefix.rstrip(".")
    predictions = len(stream.truth)
    expected = {
        "joined": stream.joined,
        "duplicate": stream.duplicates,
        "orphan": stream.orphans,
        "wrong_type": stream.misfits,
        "expired": predictions - stream.joined,
    }
    client = redis.Redis.from_url(redis_url)

    def counts() -> dict[str, int]:
        raw = client.hgetall(f"{ns}:label-counts")
        got = {k.decode().split("\x1f")[1]: int(v) for k, v in raw.items()}
        return {name: got.get(name, 0) for name in expected}

    try:
        with contextlib.suppress(AssertionError):
            wait_until(lambda: counts() == expected, 20.0, what="the label counts to settle")
        held = {p: client.hlen(f"{ns}:held:{p}") for p in range(PARTITIONS)}
        assert counts() == expected, f"still held: {held}"
    finally:
        client.close()


def dead_letter_reasons(bootstrap: str, prefix: str) -> Counter[str]:
    letters = read_topic(bootstrap, prefix + "deadletter", quiet_s=1.0)
    return Counter(r.json()["reason"] for r in letters)


def run_stream(bootstrap: str, prefix: str) -> LabelledStream:
    stream = LabelledStream(bootstrap, [prefix], PUBLISH_S)
    stream.start()
    return stream


def finish(stream: LabelledStream) -> None:
    stream.join(timeout=PUBLISH_S + 30)
    stream.stop.set()
    assert not stream.is_alive() and stream.error is None, stream.error


def test_delayed_labels_are_joined_and_scored_exactly(
    kafka_bootstrap: str,
    redis_url: str,
    unique_name: Callable[[str], str],
    launch: Launch,
    reference: tuple[Any, dict[str, list[Any]]],
) -> None:
    baseline, _ = reference
    prefix = unique_name("labels") + "."
    register_baseline(redis_url, prefix, baseline)
    workers = launch(1, prefix, SETTINGS)
    wait_assignment(workers)
    stream = run_stream(kafka_bootstrap, prefix)
    finish(stream)
    windows = set(stream.windows())
    finals = performance_finals(kafka_bootstrap, prefix, windows, timeout=60.0)
    check_windows(stream, finals)
    check_counts(redis_url, prefix, stream)
    reasons = dead_letter_reasons(kafka_bootstrap, prefix)
    assert reasons == Counter({"unknown_prediction": stream.orphans, "label_type": stream.misfits})
    total = sum(len(t) for t in stream.windows().values())
    assert sum(f["count"] for f in finals.values()) == total


def test_a_worker_killed_mid_stream_loses_no_join(
    kafka_bootstrap: str,
    redis_url: str,
    unique_name: Callable[[str], str],
    launch: Launch,
    reference: tuple[Any, dict[str, list[Any]]],
) -> None:
    baseline, _ = reference
    prefix = unique_name("labelkill") + "."
    register_baseline(redis_url, prefix, baseline)
    pair = launch(2, prefix, SETTINGS)
    owned = wait_assignment(pair)
    home = zlib.crc32(MODEL.encode()) % PARTITIONS
    victim = next(w for w in pair if home in owned[w.name])
    survivor = next(w for w in pair if w is not victim)
    stream = run_stream(kafka_bootstrap, prefix)
    try:
        time.sleep(PUBLISH_S / 2)
        victim.kill()
        wait_until(
            lambda: survivor.partitions() == set(range(PARTITIONS)),
            60.0,
            what="the survivor to own every partition",
        )
    finally:
        finish(stream)
    finals = performance_finals(kafka_bootstrap, prefix, set(stream.windows()), timeout=90.0)
    check_windows(stream, finals)
    check_counts(redis_url, prefix, stream)
    assert not math.isnan(finals[min(finals)]["performance"]["accuracy"])


def comparable(snapshot: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on how many workers shared the partitions.

    The error-stream detector's signals are left out: each partition's detector sees its
    labels in the order they were joined, and a held label joins when its prediction comes,
    which depends on how the two topics' fetches interleaved.
    """
    perf = {k: v for k, v in snapshot["performance"].items() if k != "detections"}
    return {
        "count": snapshot["count"],
        "performance": perf,
        "segments": snapshot["segments"],
        "fairness": snapshot["fairness"],
    }


def test_one_worker_and_three_give_the_same_performance_windows(
    kafka_bootstrap: str,
    redis_url: str,
    unique_name: Callable[[str], str],
    launch: Launch,
    reference: tuple[Any, dict[str, list[Any]]],
) -> None:
    baseline, _ = reference
    one, three = unique_name("labels1") + ".", unique_name("labels3") + "."
    for prefix in (one, three):
        register_baseline(redis_url, prefix, baseline)
    wait_assignment(launch(1, one, SETTINGS))
    wait_assignment(launch(3, three, SETTINGS))
    stream = LabelledStream(kafka_bootstrap, [one, three], PUBLISH_S)
    stream.start()
    finish(stream)
    windows = set(stream.windows())
    single = performance_finals(kafka_bootstrap, one, windows, timeout=60.0)
    shared = performance_finals(kafka_bootstrap, three, windows, timeout=60.0)
    check_windows(stream, single)
    check_counts(redis_url, one, stream)
    check_counts(redis_url, three, stream)
    assert {w: comparable(shared[w]) for w in windows} == {
        w: comparable(single[w]) for w in windows
    }


def test_a_collapsing_cohort_and_an_unfair_model_raise_their_alerts(
    kafka_bootstrap: str,
    redis_url: str,
    unique_name: Callable[[str], str],
    launch: Launch,
    reference: tuple[Any, dict[str, list[Any]]],
) -> None:
    """One region (6 % of traffic) gets the opposite of what the model predicts, and women's
    scores sit lower (parity ratio ~0.65): the cohort alert and the fairness alert fire,
    while the model as a whole stays above its baseline accuracy."""
    from streams.alert_policy import AlertPolicy

    baseline, columns = reference
    scores = np.array(columns["prediction"])
    accuracy = float(np.maximum(scores, 1 - scores).mean())  # calibrated scores' accuracy
    # Women's positive rate at 0.65 of men's: shift their scores down to that quantile.
    men_rate = float((scores >= 0.5).mean())
    shift = float(np.quantile(scores, 1 - 0.65 * men_rate)) - 0.5
    judged = dataclasses.replace(
        baseline,
        performance={"accuracy": accuracy - 0.04},  # the model as a whole beats it
        protected=["gender"],
        alert_policy=AlertPolicy(min_labelled=50),
    )
    prefix = unique_name("cohorts") + "."
    register_baseline(redis_url, prefix, judged)
    wait_assignment(launch(1, prefix, SETTINGS))
    stream = LabelledStream(
        kafka_bootstrap, [prefix], PUBLISH_S, flip_region="west", female_shift=shift
    )
    stream.start()
    finish(stream)

    truths = list(stream.truth.values())
    rate = {g: np.mean([t.score >= 0.5 for t in truths if t.segments["gender"] == g]) for g in "fm"}
    ratio = min(rate.values()) / max(rate.values())
    assert 0.5 < ratio < 0.8, ratio  # the stream is what the test says it is

    def fired(records: list[Any]) -> bool:
        alerts = [r.json() for r in records]
        kinds = {(a["type"], a["segment"]) for a in alerts if a["status"] == "firing"}
        return {("accuracy_drop", "region=west"), ("fairness", "gender")} <= kinds

    with TopicTail(kafka_bootstrap, prefix + "alerts") as tail:
        records = tail.wait_for(fired, 90.0, "the cohort and fairness alerts")
    alerts = [r.json() for r in records if r.json()["status"] == "firing"]
    cohort = next(a for a in alerts if a["segment"] == "region=west")
    assert cohort["severity"] == "critical" and cohort["value"] > 10
    fairness = next(a for a in alerts if a["type"] == "fairness")
    assert fairness["severity"] == "warning" and 0.5 < fairness["value"] < 0.8
    overall = [a for a in alerts if a["type"] == "accuracy_drop" and a["segment"] is None]
    assert not overall, overall
