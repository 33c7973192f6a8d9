"""The runtime's small pieces that need no broker: settings, metrics, dead letters, producer."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from kafka.partitioner import DefaultPartitioner
from prometheus_client import CollectorRegistry, generate_latest

from agents.deadletter import dead_letters
from agents.metrics import OTHER, LabelGuard, WorkerMetrics
from agents.producer import PredictionPublisher
from agents.settings import Settings, SettingsError
from agents.synthetic import CreditModel, DriftPlan
from streams.events import Rejection, decode_predictions


def test_settings_defaults_and_overrides():
    s = Settings.from_env({})
    assert (s.window_s, s.slide_s, s.partitions, s.metrics_port) == (300, 60, 8, 8000)
    assert s.topics.predictions == "undertow.predictions"
    s = Settings.from_env(
        {
            "UNDERTOW_WINDOW": "10s",
            "UNDERTOW_SLIDE": "2s",
            "UNDERTOW_TOPIC_PREFIX": "t1.",
            "UNDERTOW_PARTITIONS": "4",
            "UNDERTOW_GRACE": "500ms",
        }
    )
    assert (s.window_ms, s.slide_ms, s.grace_ms, s.partitions) == (10_000, 2_000, 500, 4)
    assert s.topics.alerts == "t1.alerts"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"UNDERTOW_WINDOW": "5x"}, "UNDERTOW_WINDOW: invalid duration '5x'"),
        ({"UNDERTOW_WINDOW": "90s", "UNDERTOW_SLIDE": "1m"}, "whole multiple"),
        ({"UNDERTOW_PARTITIONS": "eight"}, "UNDERTOW_PARTITIONS='eight': expected a whole"),
        ({"UNDERTOW_METRICS_PORT": "70000"}, "expected 0..65535"),
    ],
)
def test_settings_errors_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_label_guard_caps_cardinality(caplog):
    guard = LabelGuard("model_name", 2)
    assert [guard(m) for m in ("a", "b", "a", "c", "d")] == ["a", "b", "a", OTHER, OTHER]
    assert sum("distinct model_name" in r.message for r in caplog.records) == 1


def test_worker_metrics_on_a_fresh_registry():
    registry = CollectorRegistry()
    m = WorkerMetrics(registry, max_models=1)
    m.traffic.record("fraud", "v1", 3, np.array([0.005, 0.03, 0.3]))
    m.traffic.record("other", "v1", 2, np.array([0.2, np.nan]))
    m.drift.update(
        {
            "model": "fraud",
            "model_version": "v1",
            "window_end": 10.0,
            "count": 3,
            "features": {"amount": {"psi": 0.31, "ks": 0.2}},
            "prediction": {"psi": 0.1},
        }
    )
    m.drift.update(
        {
            "model": "fraud",
            "model_version": "v1",
            "window_end": 20.0,
            "count": 0,
            "features": {"amount": {"psi": float("nan")}},
            "prediction": {},
        }
    )
    m.invalid.labels("not_json").inc()
    get = registry.get_sample_value
    assert get("ml_predictions_total", {"model_name": "fraud", "model_version": "v1"}) == 3
    assert get("ml_predictions_total", {"model_name": OTHER, "model_version": "v1"}) == 2
    buckets = {
        le: get("ml_prediction_latency_seconds_bucket", {"model_name": "fraud", "le": le})
        for le in ("0.01", "0.025", "0.05", "0.25", "0.5", "+Inf")
    }
    assert buckets == {"0.01": 1, "0.025": 1, "0.05": 2, "0.25": 2, "0.5": 3, "+Inf": 3}
    assert get("ml_prediction_latency_seconds_sum", {"model_name": "fraud"}) == pytest.approx(0.335)
    # The empty window is the latest, but drift keeps the latest window that had data.
    assert get("ml_drift_score", {"model_name": "fraud", "feature_name": "amount"}) == 0.31
    assert get("ml_window_events", {"model_name": "fraud", "model_version": "v1"}) == 0
    assert get("ml_invalid_events_total", {"reason": "not_json"}) == 1
    assert b"ml_feature_ks_statistic" in generate_latest(registry)


def test_dead_letters_keep_the_original_bytes_or_the_bad_element():
    raw = b'{"predictions": [{"prediction_id": "a"}, 7]}'
    good, bad = decode_predictions(raw)
    letters = [
        json.loads(x)
        for x in dead_letters(
            raw, bad, topic="t", partition=2, offset=9, envelope="predictions", received_at=1.0
        )
    ]
    assert not good and [x["reason"] for x in letters] == ["missing_field", "not_object"]
    assert json.loads(base64.b64decode(letters[0]["payload_b64"])) == {"prediction_id": "a"}
    assert base64.b64decode(letters[1]["payload_b64"]) == b"7"
    assert {x["partition"] for x in letters} == {2} and letters[0]["index"] == 0
    whole = dead_letters(
        b"nope",
        [Rejection("not_json", "x")],
        topic="t",
        partition=0,
        offset=1,
        envelope="predictions",
    )
    assert base64.b64decode(json.loads(whole[0])["payload_b64"]) == b"nope"


class _FakeProducer:
    def __init__(self, partitions: int):
        self.sent: list[tuple[str, bytes, bytes, int]] = []
        self.n = partitions

    def partitions_for(self, topic):
        return set(range(self.n))

    def send(self, topic, key, value, partition):
        self.sent.append((topic, key, value, partition))

    def flush(self, timeout=None):
        pass

    def close(self):
        pass


class _Cluster:
    def __init__(self, n):
        self.n = n

    def topics(self):
        return {"undertow.predictions"}

    def partitions_for_topic(self, topic):
        return set(range(self.n))

    def available_partitions_for_topic(self, topic):
        return set(range(self.n))


def test_publisher_batches_per_partition_as_kafka_would_place_single_events():
    fake = _FakeProducer(8)
    pub = PredictionPublisher("unused:1", producer=fake, batch_size=1000, linger_s=60)
    ids = [f"id-{i}" for i in range(200)]
    for i in ids:
        pub.prediction(
            prediction_id=i,
            model="m",
            model_version="v",
            features={"x": 1.0},
            prediction=0.5,
            timestamp=1_764_151_200.0,
        )
    pub.close()
    partitioner = DefaultPartitioner()
    seen = 0
    for topic, _key, value, partition in fake.sent:
        events = json.loads(value)["predictions"]
        seen += len(events)
        for e in events:
            expected = partitioner.partition(
                topic, None, e["prediction_id"].encode(), None, None, _Cluster(8)
            )
            assert partition == expected
    assert seen == 200 and len(fake.sent) <= 8


def test_publisher_refuses_what_would_be_dead_lettered():
    pub = PredictionPublisher("unused:1", producer=_FakeProducer(1))
    with pytest.raises(ValueError, match="bad_timestamp"):
        pub.prediction(model="m", model_version="v", features={}, prediction=0.1, timestamp=1e13)
    pub.close()


def test_synthetic_drift_plan_moves_what_it_says():
    model = CreditModel(seed=3)
    t = np.linspace(0, 100, 20_000)
    apps = model.applications(t.size, t, DriftPlan(starts_at=50))
    before, after = t < 50, t >= 50
    log_income = np.log(apps["income"])
    assert log_income[after].mean() - log_income[before].mean() == pytest.approx(0.6, abs=0.03)
    log_loan = np.log(apps["loan_amount"])
    assert log_loan[after].std() / log_loan[before].std() == pytest.approx(2.0, rel=0.05)
    missing = np.isnan(apps["credit_history_months"])
    assert missing[before].mean() == 0 and missing[after].mean() == pytest.approx(0.3, abs=0.02)
    assert np.median(log_loan[after]) == pytest.approx(np.median(log_loan[before]), abs=0.05)


def test_drift_gauges_one_series_per_feature_and_forgotten_on_handover():
    registry = CollectorRegistry()
    m = WorkerMetrics(registry)
    for version, end, psi in (("v1", 10.0, 0.2), ("v2", 20.0, 0.05)):
        m.drift.update(
            {
                "model": "fraud",
                "model_version": version,
                "window_end": end,
                "count": 5,
                "features": {"amount": {"psi": psi}},
                "prediction": {},
            }
        )
    text = generate_latest(registry).decode()
    assert text.count('ml_drift_score{feature_name="amount",model_name="fraud"}') == 1
    assert (
        registry.get_sample_value(
            "ml_drift_score", {"model_name": "fraud", "feature_name": "amount"}
        )
        == 0.05
    )  # the version with the newest window
    m.drift.forget(lambda model: model != "fraud")
    assert (
        registry.get_sample_value(
            "ml_drift_score", {"model_name": "fraud", "feature_name": "amount"}
        )
        is None
    )


def test_feature_cap_is_per_model_and_overflow_reports_the_worst():
    registry = CollectorRegistry()
    m = WorkerMetrics(registry, max_models=5, max_features=2)
    wide = {f"f{i}": {"psi": 0.01 * (i + 1)} for i in range(4)}
    m.drift.update(
        {
            "model": "wide",
            "model_version": "v1",
            "window_end": 1.0,
            "count": 5,
            "features": wide,
            "prediction": {},
        }
    )
    m.drift.update(
        {
            "model": "narrow",
            "model_version": "v1",
            "window_end": 1.0,
            "count": 5,
            "features": {"a": {"psi": 0.3}},
            "prediction": {},
        }
    )
    get = registry.get_sample_value
    assert get("ml_drift_score", {"model_name": "narrow", "feature_name": "a"}) == 0.3
    assert get("ml_drift_score", {"model_name": "wide", "feature_name": "f1"}) == 0.02
    assert get("ml_drift_score", {"model_name": "wide", "feature_name": OTHER}) == 0.04
    text = generate_latest(registry).decode()
    assert text.count(f'ml_drift_score{{feature_name="{OTHER}",model_name="wide"}}') == 1


def test_worker_without_a_broker_says_how_to_get_one(tmp_path, monkeypatch, capsys):
    from agents.cli import main

    monkeypatch.chdir(tmp_path)  # no .undertow/stack.json here
    monkeypatch.delenv("UNDERTOW_KAFKA", raising=False)
    monkeypatch.delenv("UNDERTOW_REDIS_URL", raising=False)
    assert main(["worker"]) == 2
    err = capsys.readouterr().err
    assert "no broker" in err and "undertow dev up" in err and len(err.splitlines()) == 1
