"""The streaming benchmark's events: a credit-scoring model's predictions, its reference
data and its baseline (`bench_stream.py`).

30 features (24 numeric of various shapes, with a sprinkle of nulls, 4 categorical, 2
booleans), a binary score, a latency and 2 segment attributes; ~786 bytes of JSON each.
Event time runs at the single-event target rate, so a micro-batch spans as much event time
as it would in production; the stream starts 6 s before a pane boundary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

MODEL, VERSION = "bench", "v1"
REFERENCE_ROWS = 50_000
EVENT_SPACING_S = 1 / 25_000
T0 = 1_764_151_254.0  # 2025-11-26T10:00:54Z


# ---------------------------------------------------------------------------------------------
# the events: 30 features of a credit-scoring model, a binary score, latency and segments

COUNTRIES = ["DE", "FR", "GB", "ES", "IT", "NL", "PL", "SE", "US", "CA", "BR", "IN"]
CHANNELS = ["web", "app", "branch", "partner"]
DEVICES = ["ios", "android", "windows", "mac", "linux"]
PURPOSES = ["car", "home", "education", "travel", "debt", "business", "medical", "other"]
CATEGORIES = {"country": COUNTRIES, "channel": CHANNELS, "device": DEVICES, "purpose": PURPOSES}
BOOLEANS = ["has_guarantor", "is_returning"]
#: 24 numeric features: (name, kind, a, b, rounding); kinds drawn by `_numeric`.
NUMERIC = [
    ("income", "lognormal", 10.5, 0.6, 0),
    ("loan_amount", "lognormal", 9.2, 0.9, 2),
    ("term_months", "choice", 0, 0, 0),
    ("age", "int", 18, 90, 0),
    ("credit_score", "normal", 680, 70, 0),
    ("debt_to_income", "beta", 2.0, 5.0, 4),
    ("utilization", "beta", 1.5, 3.0, 4),
    ("open_accounts", "poisson", 6, 0, 0),
    ("delinquencies", "poisson", 0.3, 0, 0),
    ("inquiries_6m", "poisson", 1.2, 0, 0),
    ("months_employed", "gamma", 2.0, 30.0, 0),
    ("months_at_address", "gamma", 1.5, 40.0, 0),
    ("savings", "lognormal", 8.0, 1.5, 2),
    ("monthly_expenses", "lognormal", 7.5, 0.5, 2),
    ("avg_balance_3m", "normal", 2500, 1800, 2),
    ("max_overdraft", "gamma", 1.2, 300.0, 2),
    ("txn_count_30d", "poisson", 45, 0, 0),
    ("txn_amount_30d", "lognormal", 7.8, 0.8, 2),
    ("late_payments_12m", "poisson", 0.5, 0, 0),
    ("oldest_account_years", "gamma", 3.0, 3.0, 1),
    ("rate_offered", "normal", 7.5, 2.0, 3),
    ("ltv", "beta", 5.0, 3.0, 4),
    ("session_seconds", "lognormal", 5.0, 0.9, 1),
    ("pages_viewed", "poisson", 9, 0, 0),
]
#: Share of nulls in the features that have some (a realistic sprinkle of missing data).
NULLS = {"months_employed": 0.02, "savings": 0.05, "max_overdraft": 0.01}
FEATURE_NAMES = [n for n, *_ in NUMERIC] + list(CATEGORIES) + BOOLEANS
assert len(FEATURE_NAMES) == 30


def _numeric(rng: np.random.Generator, kind: str, a: float, b: float, n: int) -> np.ndarray:
    if kind == "lognormal":
        return rng.lognormal(a, b, n)
    if kind == "normal":
        return rng.normal(a, b, n)
    if kind == "beta":
        return rng.beta(a, b, n)
    if kind == "gamma":
        return rng.gamma(a, b, n)
    if kind == "poisson":
        return rng.poisson(a, n).astype(np.float64)
    if kind == "int":
        return rng.integers(int(a), int(b), n).astype(np.float64)
    if kind == "choice":
        return rng.choice([12.0, 24.0, 36.0, 48.0, 60.0], n)
    raise ValueError(kind)


def draw_columns(n: int, seed: int) -> dict[str, list[Any]]:
    """``n`` events as columns of Python values, as a model service would send them."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list[Any]] = {}
    for name, kind, a, b, digits in NUMERIC:
        x = _numeric(rng, kind, a, b, n)
        if digits == 0:
            values: list[Any] = x.astype(np.int64).tolist()  # JSON integers, as services send
        else:
            values = x.round(digits).tolist()
        share = NULLS.get(name)
        if share:
            for i in np.flatnonzero(rng.random(n) < share).tolist():
                values[i] = None
        cols[name] = values
    for name, cats in CATEGORIES.items():
        p = rng.dirichlet(np.ones(len(cats)) * 2.0)
        cols[name] = rng.choice(cats, n, p=p).tolist()
    for name in BOOLEANS:
        cols[name] = (rng.random(n) < 0.3).tolist()
    cols["prediction"] = rng.beta(1.2, 6.0, n).round(4).tolist()
    cols["latency_ms"] = rng.gamma(2.0, 12.0, n).round(1).tolist()
    cols["region"] = rng.choice(["eu", "na", "latam", "apac"], n).tolist()
    cols["tier"] = rng.choice(["gold", "silver", "bronze"], n).tolist()
    return cols


def make_events(n: int, seed: int) -> list[dict[str, Any]]:
    """Prediction events in wire form, in event-time order (with a little jitter)."""
    cols = draw_columns(n, seed)
    rng = np.random.default_rng(seed + 1)
    jitter = rng.uniform(0, 0.5, n)  # a little out of order, as clocks of many replicas are
    times = (T0 + np.arange(n) * EVENT_SPACING_S + jitter).round(3).tolist()
    features = [
        dict(zip(FEATURE_NAMES, row, strict=True))
        for row in zip(*(cols[name] for name in FEATURE_NAMES), strict=True)
    ]
    return [
        {
            "prediction_id": f"p{seed}-{i:09d}",
            "model": MODEL,
            "model_version": VERSION,
            "timestamp": times[i],
            "features": features[i],
            "prediction": cols["prediction"][i],
            "latency_ms": cols["latency_ms"][i],
            "segments": {"region": cols["region"][i], "tier": cols["tier"][i]},
        }
        for i in range(n)
    ]


def write_reference_csv(path: Path, rows: int, seed: int) -> None:
    """The model version's reference data, drawn from the same generator as the events."""
    cols = draw_columns(rows, seed)
    names = [*FEATURE_NAMES, "prediction"]
    with path.open("w", encoding="ascii") as fh:
        fh.write(",".join(names) + "\n")
        for row in zip(*(cols[c] for c in names), strict=True):
            fh.write(
                ",".join(
                    "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
                    for v in row
                )
                + "\n"
            )


def build_baseline_json(workdir: Path, seed: int, label_ttl_s: float | None = None) -> bytes:
    """A binary model's baseline: its predictions leave pending entries for their labels."""
    from streams.baseline_builder import BuildOptions, build_baseline
    from streams.tabular import TableFile

    ref = workdir / "reference.csv"
    write_reference_csv(ref, REFERENCE_ROWS, seed)
    options = BuildOptions(
        model=MODEL,
        version=VERSION,
        prediction="prediction",
        task="binary",
        categorical=[*CATEGORIES, *BOOLEANS],
        label_ttl_s=label_ttl_s,
    )
    baseline, _ = build_baseline(TableFile(ref), options)
    return baseline.to_json()


def label_ttl_for(events: int) -> float:
    """A label TTL as long as ``events`` of the stream's event time (whole seconds).

    Pending buckets are ``label_ttl / 8`` wide, so predictions spanning the TTL fill 8-9
    buckets, as any model's stream keeps live in the steady state, and a label is looked up
    in as many buckets as in production; with the default 30 days the benchmark's seconds of
    event time would sit in one bucket. Nothing expires during a run: a bucket expires
    once the watermark, which trails the stream by the 60 s grace, is a TTL past its end.

    >>> label_ttl_for(300_000)
    13.0
    """
    return float(np.ceil(round(events * EVENT_SPACING_S, 6) + 1.0))
