"""Write the bundled example: a card-fraud classifier's reference and current traffic.

    python examples/make_examples.py            # rewrites examples/reference.csv, current.csv

Deterministic (fixed numpy seed): running it again gives byte-identical files. The current
file carries the drift described in examples/README.md; the summary printed at the end is
this script's own rough PSI (reference deciles / categories), for orientation only.
"""

from __future__ import annotations

import argparse
import csv
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

SEED = 20251126
ROWS = 5_000
HERE = Path(__file__).resolve().parent

# A week of history for the reference, then two days of "today" for the current window.
REFERENCE_START = datetime(2025, 11, 3, tzinfo=UTC).timestamp()
REFERENCE_DAYS = 7
CURRENT_START = datetime(2025, 11, 24, tzinfo=UTC).timestamp()
CURRENT_DAYS = 2

COUNTRIES = {"US": 0.52, "GB": 0.12, "DE": 0.10, "FR": 0.08, "CA": 0.08, "BR": 0.06, "IN": 0.04}

# Card traffic by hour (UTC): quiet at night, peaks at lunch and in the evening.
HOUR_WEIGHTS = np.array([
    1.0, 0.6, 0.4, 0.3, 0.3, 0.5, 1.0, 2.0, 3.0, 3.5, 4.0, 4.5,  # 00-11
    5.0, 4.5, 4.0, 4.0, 4.2, 4.6, 5.0, 5.0, 4.5, 3.5, 2.5, 1.5,  # 12-23
])  # fmt: skip

# Merchant mix, and the log-amount centre per category (travel tickets cost more than bread).
REFERENCE_MERCHANTS = {
    "grocery": 0.30, "restaurants": 0.18, "gas": 0.12, "fashion": 0.12,
    "electronics": 0.10, "travel": 0.08, "online_services": 0.10,
}  # fmt: skip
# Current: a crypto-exchange partner went live (a category the model has never seen), and
# electronics and travel grew with a holiday sale.
CURRENT_MERCHANTS = {
    "grocery": 0.20, "restaurants": 0.13, "gas": 0.09, "fashion": 0.10,
    "electronics": 0.17, "travel": 0.13, "online_services": 0.10, "crypto": 0.08,
}  # fmt: skip
AMOUNT_LOG_MEAN = {
    "grocery": 3.3, "restaurants": 3.4, "gas": 3.7, "fashion": 4.1,
    "electronics": 5.0, "travel": 5.5, "online_services": 3.0, "crypto": 5.8,
}  # fmt: skip

# Current: a new mobile app release moved traffic to phones (a moderate, warning-level shift).
REFERENCE_DEVICES = {"mobile": 0.55, "desktop": 0.35, "tablet": 0.10}
CURRENT_DEVICES = {"mobile": 0.74, "desktop": 0.20, "tablet": 0.06}

# Current: the new sign-up flow made date of birth optional, so `age` goes missing far more.
REFERENCE_AGE_MISSING = 0.01
CURRENT_AGE_MISSING = 0.15

# The deployed model's coefficients (log-odds). It never saw "crypto", so that category gets
# no term, while the true fraud rate there is high: concept drift the labels reveal later.
MODEL_COEF = {
    "intercept": -5.6,
    "age": -0.015,
    "log_amount": 0.75,
    "electronics": 0.8,
    "travel": 0.6,
    "online_services": 0.5,
    "mobile": 0.3,
    "log_account_age": -0.35,
    "num_transactions_24h": 0.22,
    "night": 0.7,
    "foreign": 0.4,
}
TRUE_CRYPTO_EFFECT = 2.0
AGE_MEDIAN = 41.0

COLUMNS = [
    "prediction_id", "timestamp", "amount", "age", "account_age_days", "num_transactions_24h",
    "merchant_category", "device_type", "country", "hour_of_day", "prediction", "label",
]  # fmt: skip


def _choice(rng: np.random.Generator, probs: dict[str, float], n: int) -> np.ndarray:
    keys = list(probs)
    p = np.array([probs[k] for k in keys])
    return np.array(keys, dtype=object)[rng.choice(len(keys), size=n, p=p / p.sum())]


def _timestamps(rng: np.random.Generator, n: int, start: float, days: int) -> np.ndarray:
    # Draw day and hour separately so the diurnal profile shows up in hour_of_day.
    day = rng.integers(0, days, size=n)
    hour = rng.choice(24, size=n, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    return np.sort(start + day * 86_400.0 + hour * 3_600.0 + rng.uniform(0, 3_600, size=n))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _model_logit(cols: dict[str, np.ndarray]) -> np.ndarray:
    c = MODEL_COEF
    merchant, hour = cols["merchant_category"], cols["hour_of_day"]
    return (
        c["intercept"]
        + c["log_amount"] * np.log1p(cols["amount"])
        + c["age"] * (np.nan_to_num(cols["age"], nan=AGE_MEDIAN) - AGE_MEDIAN)
        + c["electronics"] * (merchant == "electronics")
        + c["travel"] * (merchant == "travel")
        + c["online_services"] * (merchant == "online_services")
        + c["mobile"] * (cols["device_type"] == "mobile")
        + c["log_account_age"] * np.log1p(cols["account_age_days"])
        + c["num_transactions_24h"] * cols["num_transactions_24h"]
        + c["night"] * (hour < 6)
        + c["foreign"] * ~np.isin(cols["country"], ["US", "GB", "DE", "FR", "CA"])
    )


def make_window(
    rng: np.random.Generator,
    *,
    n: int,
    start: float,
    days: int,
    merchants: dict[str, float],
    devices: dict[str, float],
    age_missing: float,
    amount_inflation: float,
) -> dict[str, np.ndarray]:
    ts = _timestamps(rng, n, start, days)
    merchant = _choice(rng, merchants, n)
    log_mean = np.array([AMOUNT_LOG_MEAN[m] for m in merchant]) + amount_inflation
    cols: dict[str, np.ndarray] = {
        "prediction_id": np.array([str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in ts]),
        "timestamp": ts,
        "amount": np.round(rng.lognormal(log_mean, 0.8), 2),
        "age": np.clip(np.round(rng.normal(41, 13, size=n)), 18, 90),
        "account_age_days": np.minimum(np.floor(rng.lognormal(6.0, 1.1, size=n)), 7_300),
        "num_transactions_24h": rng.poisson(2.0, size=n),
        "merchant_category": merchant,
        "device_type": _choice(rng, devices, n),
        "country": _choice(rng, COUNTRIES, n),
        "hour_of_day": ((ts % 86_400) // 3_600).astype(int),
    }
    # Blank out ages before scoring: the model imputes the median, as in production.
    cols["age"][rng.uniform(size=n) < age_missing] = np.nan
    logit = _model_logit(cols)
    cols["prediction"] = np.round(_sigmoid(logit), 4)
    # Truth = the model's view plus what it cannot see: unobserved noise and the crypto effect.
    true_logit = logit + rng.normal(0, 0.5, size=n) + TRUE_CRYPTO_EFFECT * (merchant == "crypto")
    cols["label"] = (rng.uniform(size=n) < _sigmoid(true_logit)).astype(int)
    return cols


def _cell(value: object) -> str:
    if isinstance(value, float | np.floating):
        if np.isnan(value):
            return ""  # missing: an empty CSV field
        return str(int(value)) if float(value).is_integer() else f"{float(value):.10g}"
    return str(value)


def write_csv(path: Path, cols: dict[str, np.ndarray]) -> None:
    fmt = {"timestamp": "{:.3f}", "amount": "{:.2f}", "prediction": "{:.4f}"}
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        for i in range(len(cols["prediction_id"])):
            writer.writerow(
                fmt[c].format(cols[c][i]) if c in fmt else _cell(cols[c][i]) for c in COLUMNS
            )


# --- a rough summary, so whoever regenerates the data sees the drift it carries -------------


def _psi(ref: np.ndarray, cur: np.ndarray) -> float:
    r, c = np.clip(ref / ref.sum(), 1e-4, 1), np.clip(cur / cur.sum(), 1e-4, 1)
    return float(np.sum((c - r) * np.log(c / r)))


def rough_psi(ref: np.ndarray, cur: np.ndarray) -> float:
    ref_arr, cur_arr = np.asarray(ref), np.asarray(cur)
    if ref_arr.dtype == object:
        cats = sorted(set(ref_arr))
        ref_counts = [np.sum(ref_arr == k) for k in cats] + [0]
        cur_counts = [np.sum(cur_arr == k) for k in cats] + [np.sum(~np.isin(cur_arr, cats))]
        return _psi(np.array(ref_counts, float), np.array(cur_counts, float))
    ref_f, cur_f = ref_arr.astype(float), cur_arr.astype(float)
    ref_f, cur_f = ref_f[~np.isnan(ref_f)], cur_f[~np.isnan(cur_f)]
    edges = np.unique(np.quantile(ref_f, np.linspace(0, 1, 11))[1:-1])
    edges = np.concatenate([[-np.inf], edges, [np.inf]])
    return _psi(np.histogram(ref_f, edges)[0] * 1.0, np.histogram(cur_f, edges)[0] * 1.0)


def _missing(values: np.ndarray) -> float:
    return float(np.mean(np.isnan(values))) if values.dtype.kind == "f" else 0.0


def summary(ref: dict[str, np.ndarray], cur: dict[str, np.ndarray]) -> str:
    lines = [f"{'column':<22} {'rough PSI':>9} {'missing ref':>11} {'missing cur':>11}"]
    for col in COLUMNS[2:-1]:
        miss_r, miss_c = _missing(ref[col]), _missing(cur[col])
        psi = rough_psi(ref[col], cur[col])
        lines.append(f"{col:<22} {psi:>9.3f} {miss_r:>11.1%} {miss_c:>11.1%}")
    lines.append(
        f"fraud rate: reference {ref['label'].mean():.1%}, current {cur['label'].mean():.1%}; "
        f"mean score: reference {ref['prediction'].mean():.3f}, "
        f"current {cur['prediction'].mean():.3f}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=HERE)
    parser.add_argument("--rows", type=int, default=ROWS, help="rows per file")
    args = parser.parse_args(argv)
    # Independent streams per file, so changing one window's recipe leaves the other alone.
    ref = make_window(
        np.random.default_rng([SEED, 0]), n=args.rows, start=REFERENCE_START,
        days=REFERENCE_DAYS, merchants=REFERENCE_MERCHANTS, devices=REFERENCE_DEVICES,
        age_missing=REFERENCE_AGE_MISSING, amount_inflation=0.0,
    )  # fmt: skip
    # amount_inflation on top of the mix change: basket sizes grew in the sale too.
    cur = make_window(
        np.random.default_rng([SEED, 1]), n=args.rows, start=CURRENT_START,
        days=CURRENT_DAYS, merchants=CURRENT_MERCHANTS, devices=CURRENT_DEVICES,
        age_missing=CURRENT_AGE_MISSING, amount_inflation=0.4,
    )  # fmt: skip
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, cols in (("reference.csv", ref), ("current.csv", cur)):
        write_csv(args.out_dir / name, cols)
        print(f"wrote {args.out_dir / name} ({(args.out_dir / name).stat().st_size:,} bytes)")
    print(summary(ref, cur))


if __name__ == "__main__":
    main()
