"""Durations as people write them in flags and environment variables: ``90``, ``5m``, ``1h``.

One grammar for the whole project, so that ``--window 5m`` on the command line and
``UNDERTOW_GRACE=30s`` in a deployment mean the same thing: a non-negative number, then an
optional unit. A bare number is seconds. Exponents, signs, ``nan`` and ``inf`` are refused:
a duration that is not plainly written is more likely a typo than an intent.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

#: Seconds per unit. ``ms`` is divided rather than multiplied (see `parse_duration`).
UNITS: dict[str, int] = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}

ACCEPTED_FORMS = "90, 90s, 1.5s, 500ms, 5m, 1h, 30d"

_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*", re.IGNORECASE)

# Largest millisecond count whose ratios to the units stay exact in a float.
_EXACT_MS = 2**53


def _invalid(text: object) -> ValueError:
    return ValueError(
        f"invalid duration {text!r}: expected a non-negative number of seconds, optionally "
        f"followed by a unit (ms, s, m, h, d), e.g. {ACCEPTED_FORMS}"
    )


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``text``: a non-negative number with an optional unit.

    Parameters
    ----------
    text
        A number of seconds, or a string ``<number>[unit]`` with unit one of ``ms``, ``s``,
        ``m``, ``h``, ``d`` (any case; blanks around and between are ignored).

    Raises
    ------
    ValueError
        For anything else (negative, empty, unknown unit, NaN, infinity), quoting the input.

    Examples
    --------
    >>> parse_duration("90"), parse_duration("1.5s"), parse_duration(" 500 MS ")
    (90.0, 1.5, 0.5)
    >>> parse_duration("5m"), parse_duration("1h"), parse_duration("30d")
    (300.0, 3600.0, 2592000.0)
    >>> parse_duration("5x")
    Traceback (most recent call last):
    ...
    ValueError: invalid duration '5x': expected a non-negative number of seconds, optionally \
followed by a unit (ms, s, m, h, d), e.g. 90, 90s, 1.5s, 500ms, 5m, 1h, 30d
    """
    # bool is an int, but `--grace True` is a mistake, not one second.
    if isinstance(text, bool):
        raise _invalid(text)
    if isinstance(text, int | float):
        try:
            seconds = float(text)
        except OverflowError:  # an int too large for a float
            raise _invalid(text) from None
    elif isinstance(text, str):
        match = _DURATION.fullmatch(text)
        if match is None:
            raise _invalid(text)
        number, unit = match.groups()
        unit = (unit or "s").lower()
        # Dividing keeps "7ms" == 0.007 exactly, where 7 * 0.001 would not be.
        seconds = float(number) / 1000 if unit == "ms" else float(number) * UNITS[unit]
    else:
        raise _invalid(text)
    if not (math.isfinite(seconds) and seconds >= 0):
        raise _invalid(text)
    return seconds


def parse_duration_ms(text: str | float | int) -> int:
    """`parse_duration` rounded to whole milliseconds, the unit event-time windows use.

    Examples
    --------
    >>> parse_duration_ms("5m"), parse_duration_ms("1.1s"), parse_duration_ms(30)
    (300000, 1100, 30000)
    """
    return round(parse_duration(text) * 1000)


def format_duration(seconds: float) -> str:
    """The shortest string `parse_duration` reads back as exactly ``seconds``.

    Whole milliseconds use the largest unit that divides them; anything finer falls back to
    plain decimal seconds.

    Examples
    --------
    >>> format_duration(300), format_duration(90), format_duration(3600), format_duration(0.25)
    ('5m', '90s', '1h', '250ms')
    >>> format_duration(0), format_duration(172800), format_duration(0.0001)
    ('0s', '2d', '0.0001s')
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"format_duration expects seconds as a number, got {seconds!r}")
    try:
        value = float(seconds)
    except OverflowError:  # an int too large for a float
        value = math.inf
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"cannot format {seconds!r} as a duration: it must be finite and >= 0")
    ms = round(value * 1000)
    if ms < _EXACT_MS and ms / 1000 == value:
        if ms == 0:
            return "0s"
        for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)):
            if ms % size == 0:
                return f"{ms // size}{unit}"
        return f"{ms}ms"
    # repr() digits are the shortest that round-trip; Decimal prints them without exponent,
    # which the grammar does not accept.
    return f"{Decimal(repr(value)):f}s"
