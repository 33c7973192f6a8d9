"""The streaming benchmark's labels stream (bench/stream_labels.py): one label per measured
prediction, each for a different prediction, valid, and in its prediction's partition."""

from __future__ import annotations

import doctest
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest
from kafka.partitioner import DefaultPartitioner

from streams.events import decode_labels

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

import stream_events
import stream_labels
from stream_labels import make_labels, partition_of, plan_labels

WARMUP, MEASURED = 3_000, 2_000


class _Cluster:
    """The metadata Kafka's default partitioner asks of a topic with ``n`` partitions."""

    def __init__(self, n: int) -> None:
        self.n = n

    def topics(self) -> set[str]:
        return {"labels"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.n))

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.n))


@pytest.fixture(scope="module")
def stream() -> tuple[list[dict], np.ndarray, list[dict]]:
    events = stream_events.make_events(WARMUP + MEASURED, seed=5)
    targets = plan_labels(WARMUP, MEASURED, short_share=0.2, max_lag=300, seed=6)
    arrivals = [events[WARMUP + k]["timestamp"] for k in range(MEASURED)]
    return events, targets, make_labels(events, targets, arrivals, seed=7)


def test_one_label_per_measured_prediction_each_for_another_prediction(stream):
    _, targets, labels = stream
    assert len(labels) == len(targets) == MEASURED
    assert len(set(targets.tolist())) == MEASURED
    assert targets.min() >= 0 and targets.max() < WARMUP + MEASURED


def test_most_labels_are_for_warmup_predictions_the_rest_for_recent_ones(stream):
    _, targets, _ = stream
    short = targets >= WARMUP
    assert 0.15 < short.mean() < 0.25  # short_share=0.2
    # A short-delay label comes after its prediction, by about max_lag at most (a taken
    # target moves to the nearest free one, so a few land a little further or later).
    lag = WARMUP + np.flatnonzero(short) - targets[short]
    assert np.mean((lag >= 0) & (lag < 300)) > 0.9
    assert np.abs(lag).max() < 2_000


def test_labels_are_valid_and_keyed_like_their_predictions(stream):
    events, targets, labels = stream
    partitioner = DefaultPartitioner()
    for j, label in zip(targets.tolist(), labels, strict=True):
        prediction = events[j]
        assert label["prediction_id"] == prediction["prediction_id"]
        assert label["model"] == prediction["model"]
        assert label["timestamp"] >= prediction["timestamp"]
        decoded, rejections = decode_labels(orjson.dumps(label))
        assert not rejections and decoded[0].actual in (0.0, 1.0)
        key = label["prediction_id"].encode()
        kafka = partitioner.partition("labels", None, key, None, None, _Cluster(8))
        assert partition_of(label["prediction_id"], 8) == kafka


def test_ground_truth_follows_the_scores(stream):
    events, targets, labels = stream
    scores = np.array([events[j]["prediction"] for j in targets.tolist()])
    actual = np.array([label["actual"] for label in labels])
    assert abs(actual.mean() - scores.mean()) < 0.03


def test_more_long_delay_labels_than_warmup_predictions_is_an_error():
    with pytest.raises(ValueError, match="warm-up"):
        plan_labels(100, 1_000, short_share=0.0)


@pytest.mark.parametrize("module", [stream_labels, stream_events])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0
