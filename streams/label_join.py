"""The label join's pure parts: what a pending prediction keeps, where it is kept, and
what a label is allowed to be.

A prediction whose model expects ground truth leaves a *pending entry* behind, keyed by a
16-byte digest of its ``prediction_id``: the model version, the event time, the prediction
and the segment values — everything the label needs to be counted into the pane of the
prediction's event time, nothing more (the features are not kept). The runtime keeps these
entries in Redis hashes, one per (partition, model, *bucket*), a bucket being a slice of
prediction event time ``label_ttl / 8`` long: a whole bucket expires at once, with one
``DEL``, once its youngest prediction is older than ``label_ttl``, so a prediction waits for
its label between ``label_ttl`` and ``1.125 × label_ttl``.

A joined entry is overwritten with an empty value, a *tombstone*, rather than deleted: a
second label for the same prediction then reads as a duplicate, not as an orphan, until the
bucket expires.

Why a digest and a binary layout: Redis spends ~100 bytes of bookkeeping per hash field in a
large hash; a 36-character UUID field and a JSON value would double the ~110 bytes an entry
costs this way (`bench/bench_stream.py --pending-memory` measures it).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import blake2b

from streams.baseline import Task
from streams.performance.common import _label as class_name

#: Bytes of the ``prediction_id`` digest used as the pending entry's hash field. 128 bits:
#: a collision among 10^12 pending predictions has a probability below 10^-14.
DIGEST_BYTES = 16
#: A joined prediction's value: the entry is spent, and a second label is a duplicate.
TOMBSTONE = b""
#: Buckets per ``label_ttl``: more buckets expire entries closer to the TTL, fewer make each
#: label lookup cheaper (a label is looked up in every live bucket of its model).
BUCKETS_PER_TTL = 8

_HEAD = struct.Struct("<Bq")  # kind, event time (ms)
_FLOAT = struct.Struct("<d")
_HEAD_FLOAT = struct.Struct("<Bqd")  # the usual case in one pack: kind, time, score
_KIND_FLOAT, _KIND_TEXT, _KIND_NONE = 0, 1, 2
_MAX_TEXT = 255  # one length byte; segment values and versions are short by contract


def digest(prediction_id: str) -> bytes:
    """The pending entry's hash field for ``prediction_id``."""
    return blake2b(prediction_id.encode(), digest_size=DIGEST_BYTES).digest()


@dataclass(frozen=True, slots=True)
class PendingEntry:
    """What a prediction leaves behind for its label."""

    version: str
    timestamp_ms: int
    predicted: float | str | None
    segments: Mapping[str, str]

    def encode(self) -> bytes:
        """A compact binary form (~30–60 bytes); `decode` reads it back.

        >>> e = PendingEntry("v1", 1764151200250, 0.83, {"gender": "f"})
        >>> PendingEntry.decode(e.encode()) == e, len(e.encode())
        (True, 30)
        """
        return encode_entry(self.timestamp_ms, self.predicted, entry_suffix(self))

    @classmethod
    def decode(cls, raw: bytes) -> PendingEntry:
        kind, ts = _HEAD.unpack_from(raw, 0)
        at = _HEAD.size
        predicted: float | str | None
        if kind == _KIND_FLOAT:
            (predicted,) = _FLOAT.unpack_from(raw, at)
            at += _FLOAT.size
        elif kind == _KIND_TEXT:
            predicted, at = _read_text(raw, at)
        elif kind == _KIND_NONE:
            predicted = None
        else:
            raise ValueError(f"pending entry has unknown prediction kind {kind}")
        version, at = _read_text(raw, at)
        count = raw[at]
        at += 1
        segments: dict[str, str] = {}
        for _ in range(count):
            name, at = _read_text(raw, at)
            value, at = _read_text(raw, at)
            segments[name] = value
        if at != len(raw):
            raise ValueError("pending entry has trailing bytes")
        return cls(version, ts, predicted, segments)


def entry_suffix(entry: PendingEntry) -> bytes:
    """The version and segments part of an entry's bytes: the same for most predictions of
    a model, so the ingest encodes it once per distinct value (`encode_entry`)."""
    parts = [_text(entry.version), bytes((min(len(entry.segments), 255),))]
    for i, (name, value) in enumerate(entry.segments.items()):
        if i == 255:
            break
        parts.append(_text(name))
        parts.append(_text(value))
    return b"".join(parts)


def encode_entry(timestamp_ms: int, predicted: float | str | None, suffix: bytes) -> bytes:
    """`PendingEntry.encode` with the suffix (`entry_suffix`) already encoded."""
    if isinstance(predicted, str):
        return _HEAD.pack(_KIND_TEXT, timestamp_ms) + _text(predicted) + suffix
    if predicted is None:
        return _HEAD.pack(_KIND_NONE, timestamp_ms) + suffix
    return _HEAD_FLOAT.pack(_KIND_FLOAT, timestamp_ms, predicted) + suffix


def _text(s: str) -> bytes:
    b = s.encode()
    if len(b) > _MAX_TEXT:
        # Cut on a character boundary: the value only labels a cohort, and a 255-byte
        # prefix still tells cohorts apart.
        b = b[:_MAX_TEXT].decode(errors="ignore").encode()
    return bytes((len(b),)) + b


def _read_text(raw: bytes, at: int) -> tuple[str, int]:
    n = raw[at]
    end = at + 1 + n
    if end > len(raw):
        raise ValueError("pending entry is truncated")
    return raw[at + 1 : end].decode(), end


# --- buckets: when pending entries expire ------------------------------------------------


def bucket_width_ms(label_ttl_ms: int) -> int:
    """Width of a pending bucket for a model whose labels may take ``label_ttl_ms``."""
    return max(1_000, label_ttl_ms // BUCKETS_PER_TTL)


def bucket_of(timestamp_ms: int, width_ms: int) -> int:
    """The start of the bucket holding a prediction made at ``timestamp_ms``."""
    return timestamp_ms - timestamp_ms % width_ms


def bucket_expired(start_ms: int, width_ms: int, label_ttl_ms: int, watermark_ms: int) -> bool:
    """Whether every prediction of the bucket is older than the TTL at ``watermark_ms``.

    Event time, not wall time: a replay of last month's stream must not expire its own
    predictions before their labels are read.

    >>> bucket_expired(0, 1_000, 10_000, 11_000), bucket_expired(0, 1_000, 10_000, 10_999)
    (True, False)
    """
    return start_ms + width_ms + label_ttl_ms <= watermark_ms


# --- labels: whether one fits the model's task -------------------------------------------


def label_misfit(task: Task | None, actual: float | str) -> str | None:
    """Why ``actual`` cannot be ground truth for a ``task`` model (None: it can).

    >>> label_misfit("binary", 1.0), label_misfit("binary", 0.7)
    (None, 'a binary model takes 0 or 1 (or true/false) as actual, got 0.7')
    >>> label_misfit("regression", "high")
    "a regression model takes a number as actual, got the string 'high'"
    """
    if task == "binary":
        if isinstance(actual, float) and actual in (0.0, 1.0):
            return None
        shown = f"the string {actual!r}" if isinstance(actual, str) else f"{actual:g}"
        return f"a binary model takes 0 or 1 (or true/false) as actual, got {shown}"
    if task == "regression":
        if isinstance(actual, float) and math.isfinite(actual):
            return None
        return f"a regression model takes a number as actual, got the string {actual!r}"
    if task == "multiclass":
        return None  # a class is a string or a number; both name a class
    return "the model's baseline declares no task, so its labels cannot be scored"


def error_of(
    task: Task | None, predicted: float | str | None, actual: float | str, threshold: float
) -> float:
    """The per-prediction error fed to the concept-drift detector.

    Classification: 0 when right, 1 when wrong (the error rate's stream). Regression: the
    absolute error. NaN when the prediction is missing.

    >>> error_of("binary", 0.83, 1.0, 0.5), error_of("binary", 0.2, 1.0, 0.5)
    (0.0, 1.0)
    >>> error_of("regression", 2.5, 4.0, 0.5)
    1.5
    """
    if predicted is None:
        return math.nan
    if task == "binary":
        if isinstance(predicted, str):
            return math.nan
        return 0.0 if (predicted >= threshold) == (actual == 1.0) else 1.0
    if task == "multiclass":
        return 0.0 if class_name(predicted) == class_name(actual) else 1.0
    if isinstance(predicted, str) or isinstance(actual, str):
        return math.nan
    return abs(float(predicted) - float(actual))
