"""The drift table people read: aligned, worst first, coloured on a terminal."""

from __future__ import annotations

import math
import os
from typing import Any, TextIO

from streams.baseline import Baseline
from streams.check import CheckResult
from streams.severity import Severity

_COLOURS = {
    Severity.CRITICAL: "\033[1;31m",
    Severity.WARNING: "\033[33m",
    Severity.INFO: "\033[36m",
    Severity.NONE: "\033[32m",
}
_RESET = "\033[0m"
_HEADER = (
    "column",
    "type",
    "status",
    "psi",
    "ks",
    "js",
    "wass/chi2",
    "missing",
    "oor/unseen",
    "why",
)


def use_colour(stream: TextIO) -> bool:
    """Colour only for a person at a terminal, and never when NO_COLOR is set."""
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def render_table(result: CheckResult, baseline: Baseline, colour: bool = False) -> str:
    rows = [_row(name, r) for name, r in _worst_first(result.features)]
    if result.prediction:
        name = f"{baseline.source.get('prediction_column', 'prediction')} (prediction)"
        rows.append(_row(name, result.prediction))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(_HEADER)]

    def line(cells: tuple[str, ...] | list[str], status: Severity | None = None) -> str:
        out = []
        for i, (cell, w) in enumerate(zip(cells, widths, strict=True)):
            text = cell.ljust(w) if i < 3 or i == len(widths) - 1 else cell.rjust(w)
            if colour and status is not None and i == 2:
                text = f"{_COLOURS[status]}{text}{_RESET}"
            out.append(text)
        return "  ".join(out).rstrip()

    level = result.alert_level
    title = (
        f"{baseline.model} {baseline.version}: {result.rows:,} rows checked against "
        f"{baseline.source.get('rows', 0):,} reference rows"
    )
    summary = f"alert level: {level}"
    if colour:
        summary = f"alert level: {_COLOURS[level]}{level}{_RESET}"
    counts = _status_counts(result)
    out = [title, line(_HEADER), line(["-" * w for w in widths])]
    for cells in rows:
        out.append(line(cells, Severity.parse(cells[2])))
    out.append("")
    out.append(f"{summary}  ({counts})")
    if result.prediction.get("positive_rate") is not None:
        ref_rate = baseline.performance.get("positive_rate")
        ref = f" (reference {_pct(ref_rate)})" if ref_rate is not None else ""
        out.append(f"positive rate: {_pct(result.prediction['positive_rate'])}{ref}")
    return "\n".join(out) + "\n"


def _worst_first(features: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    def key(item: tuple[str, dict[str, Any]]) -> tuple[int, float]:
        r = item[1]
        psi = r.get("psi")
        return (-int(Severity.parse(r["status"])), -(psi if _finite(psi) else -1.0))

    return sorted(features.items(), key=key)


def _row(name: str, r: dict[str, Any]) -> list[str]:
    numeric = r["type"] == "numeric"
    return [
        name,
        r["type"],
        r["status"],
        _num(r.get("psi")),
        _num(r.get("ks")) if numeric else "",
        _num(r.get("js")),
        _num(r.get("wasserstein") if numeric else r.get("chi2")),
        _pct(r.get("missing_rate")),
        _pct(r.get("out_of_range_rate") if numeric else r.get("unseen_rate")),
        _why(r),
    ]


def _why(r: dict[str, Any]) -> str:
    reasons = []
    if r.get("drift_status", "none") != "none":
        reasons.append("distribution moved")
    if r.get("quality_status", "none") != "none":
        reasons.append("all missing" if r.get("missing_rate") == 1.0 else "more missing")
    return ", ".join(reasons)


def _status_counts(result: CheckResult) -> str:
    counts = {s: 0 for s in Severity}
    for r in result.features.values():
        counts[Severity.parse(r["status"])] += 1
    parts = [f"{counts[s]} {s}" for s in reversed(Severity) if counts[s]]
    return f"{len(result.features)} features: " + ", ".join(parts)


def _finite(x: Any) -> bool:
    return isinstance(x, float | int) and math.isfinite(x)


def _num(x: Any) -> str:
    if not _finite(x):
        return "-"
    if x != 0 and (abs(x) >= 1e4 or abs(x) < 1e-3):
        return f"{x:.2e}"
    return f"{x:.4f}"


def _pct(x: Any) -> str:
    return f"{100 * x:.1f}%" if _finite(x) else "-"
