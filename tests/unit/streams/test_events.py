from __future__ import annotations

import dataclasses
import math
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.events import (
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    REASONS,
    Label,
    Prediction,
    Rejection,
    decode_labels,
    decode_predictions,
    encode_label,
    encode_prediction,
    validate_label,
    validate_prediction,
)

TS = 1_764_151_200.25


def prediction(**fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "prediction_id": "9f1c",
        "model": "fraud",
        "model_version": "v2.1.0",
        "timestamp": TS,
        "features": {"amount": 129.5, "merchant_category": "grocery", "age": None},
        "prediction": 0.83,
        "latency_ms": 41.7,
        "segments": {"device_type": "mobile", "gender": "f"},
    }
    event.update(fields)
    return {k: v for k, v in event.items() if v is not ...}


def label(**fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "prediction_id": "9f1c",
        "model": "fraud",
        "actual": 1,
        "timestamp": 1_766_743_200.0,
    }
    event.update(fields)
    return {k: v for k, v in event.items() if v is not ...}


def one(event: dict[str, Any]) -> Prediction:
    good, bad = decode_predictions(orjson.dumps(event))
    assert bad == [] and len(good) == 1
    return good[0]


def refused(event: Any, decode: Any = decode_predictions) -> Rejection:
    raw = event if isinstance(event, bytes) else orjson.dumps(event)
    good, bad = decode(raw)
    assert good == [] and len(bad) == 1
    return bad[0]  # type: ignore[no-any-return]


# --- the happy path ---------------------------------------------------------------------------


def test_design_example_decodes_field_by_field() -> None:
    p = one(prediction())
    assert p == Prediction(
        prediction_id="9f1c",
        model="fraud",
        model_version="v2.1.0",
        timestamp=TS,
        features={"amount": 129.5, "merchant_category": "grocery", "age": None},
        prediction=0.83,
        latency_ms=41.7,
        segments={"device_type": "mobile", "gender": "f"},
    )


def test_events_are_frozen_dataclasses_with_slots() -> None:
    p = one(prediction())
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.model = "other"  # type: ignore[misc]
    assert not hasattr(p, "__dict__")
    assert type(p) is Prediction and dataclasses.fields(p)[0].name == "prediction_id"
    assert repr(p).startswith("Prediction(prediction_id='9f1c', model='fraud'")


def test_optional_fields_and_unknown_fields() -> None:
    p = one(prediction(prediction=..., latency_ms=..., segments=..., extra={"x": [1]}))
    assert p.prediction is None and p.latency_ms is None and p.segments == {}
    p = one(prediction(prediction=None, latency_ms=None, segments=None))
    assert p.prediction is None and p.latency_ms is None and p.segments == {}


def test_numbers_and_booleans() -> None:
    p = one(
        prediction(
            timestamp=1_764_151_200,
            features={"n": 3, "x": 1.5, "flag": True, "off": False, "s": "NaN", "big": 2**64 - 1},
            prediction=1,
            latency_ms=0,
        )
    )
    assert p.timestamp == 1_764_151_200.0 and type(p.timestamp) is float
    # JSON integers stay int in features; booleans are categories, never numbers.
    assert p.features == {
        "n": 3,
        "x": 1.5,
        "flag": "true",
        "off": "false",
        "s": "NaN",
        "big": 2**64 - 1,
    }
    assert type(p.features["n"]) is int
    assert p.prediction == 1.0 and type(p.prediction) is float
    assert p.latency_ms == 0.0 and type(p.latency_ms) is float
    assert one(prediction(prediction=True)).prediction == 1.0
    assert one(prediction(prediction=False)).prediction == 0.0
    assert one(prediction(prediction="cat")).prediction == "cat"
    assert one(prediction(prediction="NaN")).prediction == "NaN"


def test_segments_are_strings_and_null_segments_are_dropped() -> None:
    p = one(prediction(segments={"age_bucket": 3, "score": 0.5, "vip": True, "gender": None}))
    assert p.segments == {"age_bucket": "3", "score": "0.5", "vip": "true"}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2025-11-26T10:00:00Z", 1_764_151_200.0),
        ("2025-11-26T10:00:00.25Z", 1_764_151_200.25),
        ("2025-11-26T10:00:00+00:00", 1_764_151_200.0),
        ("2025-11-26T11:30:00+01:30", 1_764_151_200.0),
        ("2025-11-26 05:00:00-05:00", 1_764_151_200.0),
    ],
)
def test_iso_timestamps_with_an_offset(text: str, seconds: float) -> None:
    assert one(prediction(timestamp=text)).timestamp == seconds


def test_timestamp_range_is_half_open() -> None:
    assert one(prediction(timestamp=MIN_TIMESTAMP)).timestamp == MIN_TIMESTAMP
    assert one(prediction(timestamp="2000-01-01T00:00:00Z")).timestamp == MIN_TIMESTAMP
    assert refused(prediction(timestamp=MAX_TIMESTAMP)).reason == "bad_timestamp"
    assert refused(prediction(timestamp=MIN_TIMESTAMP - 0.001)).reason == "bad_timestamp"


def test_envelope_keeps_good_elements_and_indexes_bad_ones() -> None:
    items = [
        prediction(prediction_id="a"),
        prediction(timestamp=...),
        7,
        prediction(prediction_id="d"),
    ]
    good, bad = decode_predictions(orjson.dumps({"predictions": items}))
    assert [p.prediction_id for p in good] == ["a", "d"]
    assert bad == [
        Rejection("missing_field", "field 'timestamp' is missing", 1),
        Rejection("not_object", "expected a JSON object, got number", 2),
    ]


def test_single_event_rejections_have_no_index() -> None:
    assert refused(prediction(model=...)).index is None


# --- rejections ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "reason", "detail"),
    [
        ({"timestamp": ...}, "missing_field", "field 'timestamp' is missing"),
        ({"timestamp": None}, "missing_field", "field 'timestamp' is null"),
        ({"prediction_id": ...}, "missing_field", "field 'prediction_id' is missing"),
        ({"features": ...}, "missing_field", "field 'features' is missing"),
        (
            {"prediction_id": 12345},
            "wrong_type",
            "field 'prediction_id': expected a non-empty string, got number 12345; "
            "send it as a JSON string",
        ),
        ({"prediction_id": ""}, "wrong_type", "field 'prediction_id' is an empty string"),
        ({"model": ""}, "wrong_type", "field 'model' is an empty string"),
        (
            {"model_version": 2},
            "wrong_type",
            "field 'model_version': expected a non-empty string, got number 2; "
            "send it as a JSON string",
        ),
        (
            {"model": ["fraud"]},
            "wrong_type",
            "field 'model': expected a non-empty string, got array",
        ),
        (
            {"features": {"amount": [1, 2]}},
            "wrong_type",
            "features.amount: expected a number, string or null, got array",
        ),
        (
            {"features": {"amount": {"v": 1}}},
            "wrong_type",
            "features.amount: expected a number, string or null, got object",
        ),
        ({"features": [1.0]}, "wrong_type", "field 'features': expected an object, got array"),
        ({"features": "a=1"}, "wrong_type", "field 'features': expected an object, got string"),
        (
            {"prediction": [0.2, 0.8]},
            "wrong_type",
            "field 'prediction': expected a number or string, got array",
        ),
        (
            {"latency_ms": -1},
            "wrong_type",
            "field 'latency_ms': expected a non-negative number, got number -1",
        ),
        (
            {"latency_ms": "41ms"},
            "wrong_type",
            "field 'latency_ms': expected a non-negative number, got string",
        ),
        (
            {"latency_ms": True},
            "wrong_type",
            "field 'latency_ms': expected a non-negative number, got boolean",
        ),
        ({"segments": ["mobile"]}, "wrong_type", "field 'segments': expected an object, got array"),
        (
            {"segments": {"device": {"os": "ios"}}},
            "wrong_type",
            "segments.device: expected a string, number or boolean, got object",
        ),
        (
            {"timestamp": True},
            "wrong_type",
            "field 'timestamp': expected epoch seconds or an ISO-8601 string, got boolean",
        ),
        (
            {"timestamp": [TS]},
            "wrong_type",
            "field 'timestamp': expected epoch seconds or an ISO-8601 string, got array",
        ),
        (
            {"timestamp": "2025-11-26T10:00:00"},
            "bad_timestamp",
            "field 'timestamp': '2025-11-26T10:00:00' has no UTC offset; "
            "add 'Z' or '+00:00' (naive times are ambiguous)",
        ),
        (
            {"timestamp": "2025-11-26"},
            "bad_timestamp",
            "field 'timestamp': '2025-11-26' has no UTC offset; "
            "add 'Z' or '+00:00' (naive times are ambiguous)",
        ),
        (
            {"timestamp": "yesterday"},
            "bad_timestamp",
            "field 'timestamp': 'yesterday' is not an ISO-8601 date-time",
        ),
        (
            {"timestamp": "1764151200"},
            "bad_timestamp",
            "field 'timestamp': '1764151200' is not an ISO-8601 date-time",
        ),
        (
            {"timestamp": 1_764_151_200_250},
            "bad_timestamp",
            "field 'timestamp': 1764151200250 is outside [2000-01-01, 2100-01-01); "
            "it looks like epoch milliseconds, send seconds",
        ),
        (
            {"timestamp": 0},
            "bad_timestamp",
            "field 'timestamp': 0 is outside [2000-01-01, 2100-01-01)",
        ),
        (
            {"timestamp": "1970-01-01T00:00:00Z"},
            "bad_timestamp",
            "field 'timestamp': '1970-01-01T00:00:00Z' is outside [2000-01-01, 2100-01-01)",
        ),
    ],
)
def test_rejection_reason_and_detail(fields: dict[str, Any], reason: str, detail: str) -> None:
    assert refused(prediction(**fields)) == Rejection(reason, detail, None)


def test_long_values_are_not_quoted_whole() -> None:
    detail = refused(prediction(timestamp="x" * 10_000)).detail
    assert len(detail) < 150 and "..." in detail


@pytest.mark.parametrize(
    "raw",
    [
        b'{"prediction_id": "a", "prediction": NaN}',
        b'{"prediction_id": "a", "prediction": Infinity}',
        b'{"prediction_id": "a", "prediction": 1e400}',
        b'{"predictions": [{"prediction_id": "a", "prediction": NaN}]}',
        b"",
        b"{",
        b'{"a": 1,}',
        b'{"a": "\xff"}',
        b"\x00\x01binary",
    ],
)
def test_not_json_refuses_the_whole_message(raw: bytes) -> None:
    bad = refused(raw)
    assert bad.reason == "not_json" and bad.index is None
    assert bad.detail.startswith("not valid JSON: ")


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"[]", "expected a JSON object, got array"),
        (b'[{"prediction_id": "a"}]', "expected a JSON object, got array"),
        (b"17", "expected a JSON object, got number"),
        (b'"x"', "expected a JSON object, got string"),
        (b"null", "expected a JSON object, got null"),
    ],
)
def test_not_object(raw: bytes, detail: str) -> None:
    assert refused(raw) == Rejection("not_object", detail)


def test_too_large_is_checked_before_parsing() -> None:
    raw = orjson.dumps(prediction())
    assert decode_predictions(raw, max_bytes=len(raw))[0]
    assert refused(raw + b" ", lambda r: decode_predictions(r, max_bytes=len(raw))) == Rejection(
        "too_large", f"message is {len(raw) + 1} bytes, above the limit of {len(raw)}"
    )
    # Not even looked at: garbage above the limit is too large, not malformed.
    assert refused(b"x" * 11, lambda r: decode_predictions(r, max_bytes=10)).reason == "too_large"


def test_envelope_shape() -> None:
    assert refused({"predictions": []}) == Rejection(
        "empty_envelope", "field 'predictions' is an empty list"
    )
    assert refused({"predictions": {"a": 1}}) == Rejection(
        "wrong_type", "field 'predictions': expected a list of events, got object"
    )
    assert refused({"predictions": None}).reason == "wrong_type"
    # The labels envelope is its own key: a predictions envelope is not a label.
    assert refused({"predictions": [label()]}, decode_labels).reason == "missing_field"


def test_nan_score_guards_events_built_in_code() -> None:
    for bad in (math.nan, math.inf, -math.inf):
        rejection = validate_prediction(prediction(prediction=bad))
        assert isinstance(rejection, Rejection) and rejection.reason == "nan_score"
        assert rejection.detail == f"field 'prediction' is {bad!r}"
        refusal = validate_label(label(actual=bad))
        assert isinstance(refusal, Rejection) and refusal.reason == "nan_score"


def test_validate_never_raises_on_huge_python_ints() -> None:
    for event in (prediction(prediction=10**400), prediction(timestamp=10**400)):
        assert validate_prediction(event) == Rejection(
            "wrong_type", "a number is too large for a float", None
        )
    assert isinstance(validate_label(label(actual=10**400)), Rejection)


def test_validate_does_not_touch_the_callers_dicts() -> None:
    event = prediction(features={"flag": True, "x": 1.0}, segments={"n": 3, "gone": None})
    before = orjson.dumps(event)
    p = validate_prediction(event, index=4)
    assert isinstance(p, Prediction)
    assert p.features == {"flag": "true", "x": 1.0} and p.segments == {"n": "3"}
    assert orjson.dumps(event) == before


def test_subclasses_from_code_are_accepted() -> None:
    class Score(float):
        pass

    class Country(str):
        pass

    p = validate_prediction(
        prediction(features={"x": Score(2.5), "c": Country("FR")}, prediction=Score(0.1))
    )
    assert isinstance(p, Prediction)
    assert p.features == {"x": 2.5, "c": "FR"} and type(p.features["c"]) is str
    assert p.prediction == 0.1 and type(p.prediction) is float


def test_rejection_reasons() -> None:
    assert REASONS == (
        "not_json",
        "not_object",
        "too_large",
        "missing_field",
        "wrong_type",
        "bad_timestamp",
        "nan_score",
        "empty_envelope",
        "unknown_model",
        "late",
        "unknown_prediction",
        "label_type",
    )
    assert Rejection("late", "window closed", 3).index == 3
    with pytest.raises(ValueError, match="unknown rejection reason 'oops'"):
        Rejection("oops", "no such reason")


# --- labels ---------------------------------------------------------------------------------------


def test_labels() -> None:
    good, bad = decode_labels(orjson.dumps(label()))
    assert bad == [] and good == [Label("9f1c", "fraud", 1.0, 1_766_743_200.0)]
    assert type(good[0].actual) is float
    batch = {"labels": [label(actual=True), label(actual="fraud"), label(actual=None), 3]}
    good, bad = decode_labels(orjson.dumps(batch))
    assert [lb.actual for lb in good] == [1.0, "fraud"]
    assert bad == [
        Rejection("missing_field", "field 'actual' is null", 2),
        Rejection("not_object", "expected a JSON object, got number", 3),
    ]


@pytest.mark.parametrize(
    ("fields", "reason", "detail"),
    [
        ({"actual": ...}, "missing_field", "field 'actual' is missing"),
        ({"actual": [1]}, "wrong_type", "field 'actual': expected a number or string, got array"),
        ({"model": ...}, "missing_field", "field 'model' is missing"),
        (
            {"prediction_id": 7},
            "wrong_type",
            "field 'prediction_id': expected a non-empty string, got number 7; "
            "send it as a JSON string",
        ),
        (
            {"timestamp": "2025-12-26T10:00:00"},
            "bad_timestamp",
            "field 'timestamp': '2025-12-26T10:00:00' has no UTC offset; "
            "add 'Z' or '+00:00' (naive times are ambiguous)",
        ),
        (
            {"actual": False, "timestamp": False},
            "wrong_type",
            "field 'timestamp': expected epoch seconds or an ISO-8601 string, got boolean",
        ),
    ],
)
def test_label_rejections(fields: dict[str, Any], reason: str, detail: str) -> None:
    assert refused(label(**fields), decode_labels) == Rejection(reason, detail, None)


def test_label_actual_false_is_zero() -> None:
    assert decode_labels(orjson.dumps(label(actual=False)))[0][0].actual == 0.0


# --- properties ---------------------------------------------------------------------------------

names = st.text(min_size=1, max_size=12)
finite = st.floats(allow_nan=False, allow_infinity=False)
feature_values = st.one_of(finite, st.integers(-(2**63), 2**64 - 1), st.text(max_size=8), st.none())
predictions = st.builds(
    Prediction,
    prediction_id=names,
    model=names,
    model_version=names,
    timestamp=st.floats(MIN_TIMESTAMP, MAX_TIMESTAMP, exclude_max=True),
    features=st.dictionaries(st.text(max_size=12), feature_values, max_size=8),
    prediction=st.one_of(finite, st.text(max_size=8), st.none()),
    latency_ms=st.one_of(st.none(), st.floats(0, 1e9)),
    segments=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4),
)
labels = st.builds(
    Label,
    prediction_id=names,
    model=names,
    actual=st.one_of(finite, st.text(max_size=8)),
    timestamp=st.floats(MIN_TIMESTAMP, MAX_TIMESTAMP, exclude_max=True),
)


@given(st.lists(predictions, min_size=1, max_size=5))
def test_encode_then_decode_is_the_identity(events: list[Prediction]) -> None:
    assert decode_predictions(orjson.dumps(encode_prediction(events[0]))) == ([events[0]], [])
    envelope = {"predictions": [encode_prediction(p) for p in events]}
    assert decode_predictions(orjson.dumps(envelope)) == (events, [])


@given(st.lists(labels, min_size=1, max_size=5))
def test_labels_round_trip(events: list[Label]) -> None:
    envelope = {"labels": [encode_label(lb) for lb in events]}
    assert decode_labels(orjson.dumps(envelope)) == (events, [])


json_values = st.recursive(
    st.none() | st.booleans() | finite | st.integers(-(2**63), 2**63) | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
fields = st.sampled_from(
    [
        "prediction_id",
        "model",
        "model_version",
        "timestamp",
        "features",
        "prediction",
        "latency_ms",
        "segments",
        "actual",
        "other",
    ]
)
objects = st.dictionaries(fields, json_values, max_size=10)


@given(st.binary(max_size=64) | st.builds(orjson.dumps, json_values))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    for decode in (decode_predictions, decode_labels):
        good, bad = decode(raw)
        assert len(good) + len(bad) >= 1
        assert all(r.reason in REASONS for r in bad)


@given(st.lists(objects | json_values, min_size=1, max_size=6))
def test_every_envelope_element_is_kept_or_rejected_with_its_index(items: list[Any]) -> None:
    good, bad = decode_predictions(orjson.dumps({"predictions": items}))
    assert len(good) + len(bad) == len(items)
    assert sorted(r.index for r in bad if r.index is not None) == [r.index for r in bad]
    for r in bad:
        assert r.reason in REASONS and r.detail


@given(objects)
def test_a_good_event_is_well_typed(obj: dict[str, Any]) -> None:
    result = validate_prediction(obj)
    if isinstance(result, Rejection):
        return
    assert isinstance(result.prediction_id, str) and result.prediction_id
    assert MIN_TIMESTAMP <= result.timestamp < MAX_TIMESTAMP
    assert all(type(v) in (int, float, str, type(None)) for v in result.features.values())
    assert all(type(v) is str for v in result.segments.values())
    assert result.prediction is None or type(result.prediction) in (float, str)
