from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.durations import format_duration, parse_duration, parse_duration_ms


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("1.5s", 1.5),
        ("500ms", 0.5),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("30d", 2_592_000.0),
        ("0", 0.0),
        ("0.25", 0.25),
        (".5s", 0.5),
        ("2.", 2.0),
        ("  5M ", 300.0),
        ("5 m", 300.0),
        ("7MS", 0.007),
        ("1H", 3600.0),
        (90, 90.0),
        (1.5, 1.5),
        (0, 0.0),
    ],
)
def test_accepted_forms(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "-5",
        "-5s",
        "+5s",
        "5x",
        "5 mins",
        "m",
        "1e3",
        "nan",
        "inf",
        "1h30m",
        "5,5s",
        "9" * 400,
        -1,
        -0.5,
        math.nan,
        math.inf,
        True,
        None,
        [5],
    ],
)
def test_refused_forms_quote_the_input_and_list_the_accepted_ones(text: object) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)  # type: ignore[arg-type]
    message = str(info.value)
    assert repr(text) in message
    assert "90, 90s, 1.5s, 500ms, 5m, 1h, 30d" in message


def test_milliseconds() -> None:
    assert parse_duration_ms("5m") == 300_000
    assert parse_duration_ms("1.1s") == 1_100
    assert parse_duration_ms("250ms") == 250
    assert parse_duration_ms(2) == 2_000


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (300, "5m"),
        (90, "90s"),
        (3600, "1h"),
        (5400, "90m"),
        (86400, "1d"),
        (2_592_000, "30d"),
        (0, "0s"),
        (0.5, "500ms"),
        (1.5, "1500ms"),
        (0.007, "7ms"),
        (0.0001, "0.0001s"),
    ],
)
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf, 10**400])
def test_format_refuses_what_is_not_a_duration(bad: float) -> None:
    with pytest.raises(ValueError):
        format_duration(bad)


@given(st.floats(min_value=0, max_value=1e18, allow_nan=False) | st.integers(0, 10**12))
def test_format_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(0, 10**9), st.sampled_from(["ms", "s", "m", "h", "d"]))
def test_whole_units_round_trip_to_the_same_seconds(n: int, unit: str) -> None:
    seconds = parse_duration(f"{n}{unit}")
    assert parse_duration(format_duration(seconds)) == seconds
