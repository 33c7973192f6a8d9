"""Prediction and label events: the wire schema of the two input topics, and its validation.

Every message is decoded here, so this is the hot path. Validation is straight-line
``type(x) is ...`` checks on what orjson returns (exact ``dict``, ``list``, ``str``, ``int``,
``float``, ``bool``, ``None``); the slower ``isinstance`` reasoning and the message building run
only once a value has already failed. Nothing raises on a good event.

A message is one event object, or a batch envelope ``{"predictions": [...]}`` /
``{"labels": [...]}`` whose elements are validated one by one: a bad element becomes a
`Rejection` carrying its index, the good ones are kept.

Rules worth knowing:

- Required fields that are absent or ``null`` are ``missing_field``; present with the wrong
  type (an integer ``prediction_id``, an empty ``model``) are ``wrong_type``.
- ``timestamp`` is epoch seconds (a number, not a boolean) or an ISO-8601 string with an
  explicit offset or ``Z``; naive strings, unparseable strings, non-finite numbers and
  instants outside [2000-01-01, 2100-01-01) are ``bad_timestamp``.
- Booleans are never numbers. In features and segments they become ``"true"`` /
  ``"false"``; as a prediction or an actual, ``1.0`` / ``0.0``.
- Feature numbers stay as JSON wrote them, ``int`` or ``float`` (tell categories from numbers
  with ``isinstance(v, str)``); every other number (timestamp, prediction, actual, latency)
  becomes ``float``.
- ``segments`` values are stringified; a ``null`` segment value is dropped (unknown cohort).
- JSON has no NaN: orjson refuses ``NaN`` and ``Infinity`` tokens (and ``1e400``), so such a
  message is ``not_json`` as a whole. ``nan_score`` guards dicts built in code
  (`validate_prediction`). A string ``"NaN"`` is a string, like any other.
- Unknown fields are ignored, so producers can add fields before undertow reads them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

import orjson

FeatureValue = float | str | None

#: Every reason a message or an event can be refused for: a bounded Prometheus label set and
#: the dead-letter ``reason``. The runtime assigns the last four (model registry, watermark,
#: the label join: a label with no prediction, a label that does not fit the model's task).
REASONS = (
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
_REASON_SET = frozenset(REASONS)

#: Accepted event times, epoch seconds: [2000-01-01T00:00:00Z, 2100-01-01T00:00:00Z).
MIN_TIMESTAMP = 946_684_800.0
MAX_TIMESTAMP = 4_102_444_800.0

DEFAULT_MAX_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Prediction:
    """One prediction as the model service made it; ``timestamp`` is epoch seconds."""

    prediction_id: str
    model: str
    model_version: str
    timestamp: float
    features: dict[str, FeatureValue]
    prediction: float | str | None
    latency_ms: float | None
    segments: dict[str, str]


@dataclass(frozen=True, slots=True)
class Label:
    """Ground truth for an earlier prediction, joined on ``prediction_id``."""

    prediction_id: str
    model: str
    actual: float | str
    timestamp: float


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message, or one element of an envelope (``index``), was refused.

    Examples
    --------
    >>> decode_predictions(b'{"prediction_id": "a", "model": "m"}')[1]
    [Rejection(reason='missing_field', detail="field 'model_version' is missing", index=None)]
    """

    reason: str
    detail: str
    index: int | None = None

    def __post_init__(self) -> None:
        # The reason is a metric label: an unbounded set would explode the series count.
        if self.reason not in _REASON_SET:
            raise ValueError(f"unknown rejection reason {self.reason!r}; expected one of {REASONS}")


Event = TypeVar("Event", Prediction, Label)

# A frozen dataclass assigns each field through object.__setattr__, which costs as much as all
# the validation of an event. Instead an event is built as an instance of a plain class with
# the same slots, by plain attribute assignment (the fastest there is), then given its class:
# same layout, so CPython allows the switch, and from then on it is a frozen Prediction.
# test_events checks that the result equals the dataclass constructor's.
_new = object.__new__


class _PredictionDraft:
    __slots__ = tuple(field.name for field in fields(Prediction))


def decode_predictions(
    raw: bytes, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[list[Prediction], list[Rejection]]:
    """Predictions in one message, and the rejections of whatever was not a valid prediction.

    Examples
    --------
    >>> raw = (b'{"predictions": [{"prediction_id": "p1", "model": "fraud", '
    ...        b'"model_version": "v2", "timestamp": "2025-11-26T10:00:00Z", '
    ...        b'"features": {"amount": 129, "new": true}, "prediction": 0.83}, 17]}')
    >>> good, bad = decode_predictions(raw)
    >>> good[0].timestamp, good[0].features, good[0].segments
    (1764151200.0, {'amount': 129, 'new': 'true'}, {})
    >>> bad
    [Rejection(reason='not_object', detail='expected a JSON object, got number', index=1)]
    """
    return _decode(raw, max_bytes, "predictions", _prediction)


def decode_labels(
    raw: bytes, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[list[Label], list[Rejection]]:
    """Labels in one message (an object or ``{"labels": [...]}``), and the rejections.

    Examples
    --------
    >>> decode_labels(b'{"prediction_id": "p1", "model": "fraud", "actual": true, '
    ...               b'"timestamp": 1766743200}')[0]
    [Label(prediction_id='p1', model='fraud', actual=1.0, timestamp=1766743200.0)]
    """
    return _decode(raw, max_bytes, "labels", _label)


def _decode(
    raw: bytes,
    max_bytes: int,
    envelope: str,
    validate: Callable[[dict[str, Any], int | None, bool], Event | Rejection],
) -> tuple[list[Event], list[Rejection]]:
    if len(raw) > max_bytes:
        size = f"message is {len(raw)} bytes, above the limit of {max_bytes}"
        return [], [Rejection("too_large", size)]
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return [], [Rejection("not_json", f"not valid JSON: {exc}")]
    if type(message) is not dict:
        return [], [Rejection("not_object", f"expected a JSON object, got {json_kind(message)}")]
    if envelope not in message:
        one = validate(message, None, True)
        return ([], [one]) if isinstance(one, Rejection) else ([one], [])
    items = message[envelope]
    if type(items) is not list:
        return [], [_wrong_type(f"field {envelope!r}", "a list of events", items, None)]
    if not items:
        return [], [Rejection("empty_envelope", f"field {envelope!r} is an empty list")]
    good: list[Event] = []
    bad: list[Rejection] = []
    for index, item in enumerate(items):
        if type(item) is not dict:
            bad.append(
                Rejection("not_object", f"expected a JSON object, got {json_kind(item)}", index)
            )
            continue
        event = validate(item, index, True)
        if isinstance(event, Rejection):
            bad.append(event)
        else:
            good.append(event)
    return good, bad


def validate_prediction(obj: dict[str, Any], index: int | None = None) -> Prediction | Rejection:
    """A `Prediction` from one JSON-like object, or the `Rejection` saying why not.

    For events built in code (an SDK, a test). ``obj`` is not modified; the event may share
    its ``features`` / ``segments`` dicts when they needed no conversion.

    Examples
    --------
    >>> validate_prediction({"prediction_id": "p1", "model": "m", "model_version": "1",
    ...                      "timestamp": 1764151200, "features": {}, "prediction": float("nan")})
    Rejection(reason='nan_score', detail="field 'prediction' is nan", index=None)
    """
    try:
        return _prediction(obj, index, False)
    except OverflowError:  # only a Python int beyond float range gets here, never JSON
        return Rejection("wrong_type", "a number is too large for a float", index)


def validate_label(obj: dict[str, Any], index: int | None = None) -> Label | Rejection:
    """A `Label` from one JSON-like object, or the `Rejection` saying why not."""
    try:
        return _label(obj, index, False)
    except OverflowError:
        return Rejection("wrong_type", "a number is too large for a float", index)


def _prediction(obj: dict[str, Any], index: int | None, owned: bool) -> Prediction | Rejection:
    # ``owned``: obj came out of orjson here, so its features can be normalised in place.
    prediction_id: Any = obj.get("prediction_id")
    if type(prediction_id) is not str or not prediction_id:
        return _bad_name(obj, "prediction_id", index)
    model: Any = obj.get("model")
    if type(model) is not str or not model:
        return _bad_name(obj, "model", index)
    model_version: Any = obj.get("model_version")
    if type(model_version) is not str or not model_version:
        return _bad_name(obj, "model_version", index)

    timestamp: Any = obj.get("timestamp")
    kind = type(timestamp)
    if not ((kind is float or kind is int) and MIN_TIMESTAMP <= timestamp < MAX_TIMESTAMP):
        timestamp = _timestamp(obj, index)
        if isinstance(timestamp, Rejection):
            return timestamp

    features: Any = obj.get("features")
    if type(features) is not dict:
        return _bad_field(obj, "features", "an object", index)
    clean = features
    for name, value in features.items():
        kind = type(value)
        # JSON integers stay int (a float to the type checker): converting every one would
        # cost more than all the checks together.
        if kind is float or kind is str or kind is int or value is None:
            continue
        if kind is bool:
            value = "true" if value else "false"
        else:
            value = _slow_feature(value)
            if value is _INVALID:
                wanted = "a number, string or null"
                return _wrong_type(f"features.{name}", wanted, features[name], index)
        # Copy on first write, unless the dict is ours: the caller's dict stays as it was.
        if clean is features and not owned:
            clean = dict(features)
        clean[name] = value

    score: Any = obj.get("prediction")
    kind = type(score)
    if kind is float:
        if not math.isfinite(score):
            return Rejection("nan_score", f"field 'prediction' is {score!r}", index)
    elif kind is int:
        score = float(score)
    elif kind is bool:
        score = 1.0 if score else 0.0
    elif score is not None and kind is not str:
        score = _slow_score(obj, "prediction", index)
        if isinstance(score, Rejection):
            return score

    latency: Any = obj.get("latency_ms")
    if latency is not None:
        kind = type(latency)
        if (kind is float or kind is int) and 0.0 <= latency < math.inf:
            latency = float(latency)
        else:
            return _bad_field(obj, "latency_ms", "a non-negative number", index)

    segments: Any = obj.get("segments")
    if segments is None:
        segments = {}
    elif type(segments) is not dict:
        return _bad_field(obj, "segments", "an object", index)
    else:
        segments = _segments(segments, index)
        if isinstance(segments, Rejection):
            return segments

    event: Any = _new(_PredictionDraft)
    event.prediction_id = prediction_id
    event.model = model
    event.model_version = model_version
    event.timestamp = float(timestamp)
    event.features = clean
    event.prediction = score
    event.latency_ms = latency
    event.segments = segments
    event.__class__ = Prediction
    return event  # type: ignore[no-any-return]


def _label(obj: dict[str, Any], index: int | None, owned: bool) -> Label | Rejection:
    # ``owned`` is unused: a label has no dict to normalise. It keeps _decode's one signature.
    prediction_id: Any = obj.get("prediction_id")
    if type(prediction_id) is not str or not prediction_id:
        return _bad_name(obj, "prediction_id", index)
    model: Any = obj.get("model")
    if type(model) is not str or not model:
        return _bad_name(obj, "model", index)
    actual: Any = obj.get("actual")
    kind = type(actual)
    if kind is int:
        actual = float(actual)
    elif kind is bool:
        actual = 1.0 if actual else 0.0
    elif not (kind is str or (kind is float and math.isfinite(actual))):
        if actual is None:
            return _missing(obj, "actual", index)
        actual = _slow_score(obj, "actual", index)
        if isinstance(actual, Rejection):
            return actual
    timestamp: Any = obj.get("timestamp")
    kind = type(timestamp)
    if not ((kind is float or kind is int) and MIN_TIMESTAMP <= timestamp < MAX_TIMESTAMP):
        timestamp = _timestamp(obj, index)
        if isinstance(timestamp, Rejection):
            return timestamp
    return Label(prediction_id, model, actual, float(timestamp))


def encode_prediction(p: Prediction) -> dict[str, Any]:
    """The JSON-ready wire form of ``p``; `decode_predictions` reads it back as ``p``."""
    return {
        "prediction_id": p.prediction_id,
        "model": p.model,
        "model_version": p.model_version,
        "timestamp": p.timestamp,
        "features": dict(p.features),
        "prediction": p.prediction,
        "latency_ms": p.latency_ms,
        "segments": dict(p.segments),
    }


def encode_label(label: Label) -> dict[str, Any]:
    """The JSON-ready wire form of ``label``; `decode_labels` reads it back as ``label``."""
    return {
        "prediction_id": label.prediction_id,
        "model": label.model,
        "actual": label.actual,
        "timestamp": label.timestamp,
    }


# --- the slow paths: only reached once a value is not what a good event carries -------------


class _Invalid(Enum):
    TOKEN = 0


_INVALID = _Invalid.TOKEN


def _slow_feature(value: object) -> FeatureValue | _Invalid:
    # Subclasses (numpy.float64, str enums) reach here from dicts built in code.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return _INVALID


def _segments(segments: dict[str, Any], index: int | None) -> dict[str, str] | Rejection:
    clean = segments
    for name, value in segments.items():
        if type(value) is str:
            continue
        if value is None:
            text = None
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float | str):
            text = str(value)
        else:
            return _wrong_type(f"segments.{name}", "a string, number or boolean", value, index)
        if clean is segments:
            clean = dict(segments)
        if text is None:
            del clean[name]
        else:
            clean[name] = text
    return clean


def _slow_score(obj: dict[str, Any], field: str, index: int | None) -> float | str | Rejection:
    value = obj[field]
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        score = float(value)
        if not math.isfinite(score):
            return Rejection("nan_score", f"field {field!r} is {score!r}", index)
        return score
    if isinstance(value, str):
        return str(value)
    return _wrong_type(f"field {field!r}", "a number or string", value, index)


def _timestamp(obj: dict[str, Any], index: int | None) -> float | Rejection:
    value = obj.get("timestamp")
    if value is None:
        return _missing(obj, "timestamp", index)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        wanted = "epoch seconds or an ISO-8601 string"
        return _wrong_type("field 'timestamp'", wanted, value, index)
    if isinstance(value, str):
        try:
            instant = datetime.fromisoformat(value)
        except ValueError:
            detail = f"field 'timestamp': {_preview(value)} is not an ISO-8601 date-time"
            return Rejection("bad_timestamp", detail, index)
        if instant.utcoffset() is None:
            detail = (
                f"field 'timestamp': {_preview(value)} has no UTC offset; "
                "add 'Z' or '+00:00' (naive times are ambiguous)"
            )
            return Rejection("bad_timestamp", detail, index)
        seconds = instant.timestamp()
    else:
        seconds = float(value)
    if MIN_TIMESTAMP <= seconds < MAX_TIMESTAMP:
        return seconds
    detail = f"field 'timestamp': {_preview(value)} is outside [2000-01-01, 2100-01-01)"
    if MIN_TIMESTAMP <= seconds / 1000 < MAX_TIMESTAMP:
        detail += "; it looks like epoch milliseconds, send seconds"
    return Rejection("bad_timestamp", detail, index)


def _bad_name(obj: dict[str, Any], field: str, index: int | None) -> Rejection:
    value = obj.get(field)
    if value is None:
        return _missing(obj, field, index)
    if value == "":
        return Rejection("wrong_type", f"field {field!r} is an empty string", index)
    rejection = _wrong_type(f"field {field!r}", "a non-empty string", value, index)
    if isinstance(value, int) and not isinstance(value, bool):
        # Ids are compared as strings downstream; converting here would hide "007" vs 7.
        return Rejection("wrong_type", rejection.detail + "; send it as a JSON string", index)
    return rejection


def _bad_field(obj: dict[str, Any], field: str, wanted: str, index: int | None) -> Rejection:
    value = obj.get(field)
    if value is None:
        return _missing(obj, field, index)
    return _wrong_type(f"field {field!r}", wanted, value, index)


def _missing(obj: dict[str, Any], field: str, index: int | None) -> Rejection:
    how = "null" if field in obj else "missing"
    return Rejection("missing_field", f"field {field!r} is {how}", index)


def _wrong_type(where: str, wanted: str, value: object, index: int | None) -> Rejection:
    got = json_kind(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        got = f"{got} {_preview(value)}"
    return Rejection("wrong_type", f"{where}: expected {wanted}, got {got}", index)


def json_kind(value: object) -> str:
    """The JSON name of a value's type, as a producer would say it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _preview(value: object, limit: int = 60) -> str:
    # Details end up in logs and dead letters: quote enough to recognise, not a whole blob.
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
