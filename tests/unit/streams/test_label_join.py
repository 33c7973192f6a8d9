"""The label join's pure parts: pending entries, buckets, label checks, per-prediction errors."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.label_join import (
    DIGEST_BYTES,
    TOMBSTONE,
    PendingEntry,
    bucket_expired,
    bucket_of,
    bucket_width_ms,
    digest,
    error_of,
    label_misfit,
)

short_text = st.text(min_size=0, max_size=40)


@given(
    version=short_text,
    ts=st.integers(min_value=946_684_800_000, max_value=4_102_444_799_999),
    predicted=st.one_of(st.none(), st.floats(allow_nan=False), short_text),
    segments=st.dictionaries(short_text, short_text, max_size=6),
)
def test_pending_entry_round_trip(version, ts, predicted, segments) -> None:
    entry = PendingEntry(version, ts, predicted, segments)
    raw = entry.encode()
    assert raw != TOMBSTONE  # a live entry can never read as a spent one
    assert PendingEntry.decode(raw) == entry


def test_pending_entry_is_compact() -> None:
    # What the Redis memory budget (<= 150 bytes per pending prediction) is built on.
    entry = PendingEntry("v2.1.0", 1_764_151_200_250, 0.83, {"device": "mobile", "gender": "f"})
    assert len(entry.encode()) <= 48


def test_long_texts_are_cut_on_a_character_boundary() -> None:
    entry = PendingEntry("v1", 0, "é" * 200, {"k": "x" * 300})
    back = PendingEntry.decode(entry.encode())
    assert back.predicted == "é" * 127  # 254 bytes: the 128th é would need 256
    assert back.segments == {"k": "x" * 255}


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x07" + bytes(8), "unknown prediction kind"),
        (b"\x02" + bytes(8) + b"\x05v1", "truncated"),
    ],
)
def test_corrupt_entries_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PendingEntry.decode(raw)


def test_digest_is_stable_and_fixed_size() -> None:
    assert digest("9f1c") == digest("9f1c") != digest("9f1d")
    assert len(digest("x" * 1000)) == DIGEST_BYTES


def test_buckets_tile_event_time_and_expire_after_the_ttl() -> None:
    ttl = 30 * 86_400_000
    width = bucket_width_ms(ttl)
    assert width == ttl // 8
    ts = 1_764_151_200_250
    start = bucket_of(ts, width)
    assert start <= ts < start + width and start % width == 0
    # The youngest prediction of the bucket (start + width - 1 ms) must be a full TTL old.
    assert not bucket_expired(start, width, ttl, start + width + ttl - 1)
    assert bucket_expired(start, width, ttl, start + width + ttl)
    assert bucket_width_ms(10) == 1_000  # never sub-second buckets


@pytest.mark.parametrize(
    "task, actual, ok",
    [
        ("binary", 1.0, True),
        ("binary", 0.0, True),
        ("binary", 0.7, False),
        ("binary", "1", False),
        ("regression", 3.5, True),
        ("regression", "high", False),
        ("multiclass", "cat", True),
        ("multiclass", 2.0, True),
        (None, 1.0, False),
    ],
)
def test_label_misfit(task, actual, ok) -> None:
    reason = label_misfit(task, actual)
    assert (reason is None) is ok
    if not ok:
        assert reason and ("takes" in reason or "declares no task" in reason)


def test_errors_are_the_detectors_stream() -> None:
    assert error_of("binary", 0.5, 1.0, 0.5) == 0.0  # score >= threshold is positive
    assert error_of("binary", 0.49, 1.0, 0.5) == 1.0
    assert error_of("binary", 0.9, 0.0, 0.5) == 1.0
    assert error_of("multiclass", 1.0, "1", 0.5) == 0.0  # 1, 1.0 and "1" are one class
    assert error_of("multiclass", "cat", "dog", 0.5) == 1.0
    assert error_of("regression", 2.0, -1.5, 0.5) == 3.5
    assert math.isnan(error_of("binary", None, 1.0, 0.5))
