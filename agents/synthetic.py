"""A synthetic credit-scoring model whose world changes on cue, for the demo and tests.

Eight applicant features feed a fixed logistic score. `DriftPlan` says when the inputs
change: one feature's mean shifts (incomes inflate), one feature's spread widens (a new
channel brings more varied loan amounts) and one feature goes partly missing (a broken
upstream join). `ConceptPlan` says when the *concept* changes without the inputs moving:
from then on, in one region, the applicants the model calls risky are the ones who repay
(a local lender changed its terms) — only the ground truth shows it. The score also leans
on age, so the ``age_band`` groups get unequal positive rates (a fairness problem the
baseline already has). Ground truth arrives late (`CreditModel.label_delays`): lognormal,
most within seconds (the demo's scale for days), a tail far later, some never.
Everything is numpy, seeded, so a run is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FEATURES = (
    "income",  # numeric, lognormal: shifts
    "loan_amount",  # numeric, lognormal: spread widens
    "credit_history_months",  # numeric: goes partly missing
    "debt_to_income",
    "num_open_accounts",
    "age",
    "employment_type",  # categorical
    "region",  # categorical
)
EMPLOYMENT = ("salaried", "self_employed", "contractor", "retired")
REGIONS = ("north", "south", "east", "west", "central")


@dataclass(frozen=True)
class DriftPlan:
    """What changes once event time passes ``starts_at`` (epoch seconds)."""

    starts_at: float
    income_shift: float = 0.6  # in log units: about 1.8x higher incomes
    loan_spread: float = 2.0  # loan_amount's log-sd multiplied by this
    history_missing: float = 0.3  # share of credit_history_months missing

    def active(self, t: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        return t >= self.starts_at


@dataclass(frozen=True)
class ConceptPlan:
    """From ``starts_at`` (epoch seconds), in ``region``, default risk is the score reversed."""

    starts_at: float
    region: str = "south"

    def active(
        self, t: npt.NDArray[np.float64], region: npt.NDArray[np.str_]
    ) -> npt.NDArray[np.bool_]:
        return (t >= self.starts_at) & (region == self.region)


def age_band(age: npt.NDArray[np.float64]) -> npt.NDArray[np.str_]:
    return np.where(age < 30, "18-29", np.where(age < 50, "30-49", "50+"))


class CreditModel:
    """Generates applications, scores them, and draws the (delayed) ground truth."""

    def __init__(self, seed: int = 0, version: str = "v1") -> None:
        self.rng = np.random.default_rng(seed)
        self.version = version

    def applications(
        self, n: int, timestamps: npt.NDArray[np.float64], plan: DriftPlan | None = None
    ) -> dict[str, np.ndarray]:
        rng = self.rng
        drifted = plan.active(timestamps) if plan else np.zeros(n, dtype=bool)
        income = rng.lognormal(10.8, 0.45, n)
        if plan:
            income[drifted] *= np.exp(plan.income_shift)
        log_sd = np.where(drifted, 0.5 * (plan.loan_spread if plan else 1.0), 0.5)
        loan = np.exp(9.6 + log_sd * rng.standard_normal(n))  # same median, wider spread
        history = rng.gamma(4.0, 18.0, n).round()
        if plan:
            gone = drifted & (rng.uniform(size=n) < plan.history_missing)
            history[gone] = np.nan
        return {
            "income": income.round(2),
            "loan_amount": loan.round(2),
            "credit_history_months": history,
            "debt_to_income": np.clip(rng.beta(2.0, 5.0, n), 0, 1).round(4),
            "num_open_accounts": rng.poisson(4.0, n).astype(float),
            "age": rng.integers(21, 75, n).astype(float),
            "employment_type": rng.choice(EMPLOYMENT, n, p=[0.6, 0.2, 0.15, 0.05]),
            "region": rng.choice(REGIONS, n),
        }

    def score(self, apps: dict[str, np.ndarray]) -> npt.NDArray[np.float64]:
        """Probability of default, from a fixed logistic model (missing history = 0)."""
        history = np.nan_to_num(apps["credit_history_months"], nan=0.0)
        z = (
            -1.2
            - 0.9 * (np.log(apps["income"]) - 10.8)
            + 0.6 * (np.log(apps["loan_amount"]) - 9.6)
            - 0.012 * (history - 72)
            + 3.0 * (apps["debt_to_income"] - 0.28)
            + 0.05 * (apps["num_open_accounts"] - 4)
            + 0.5 * (apps["employment_type"] == "contractor")
            + 1.0 * (apps["age"] < 30)
        )
        return 1.0 / (1.0 + np.exp(-z))

    def outcomes(
        self,
        apps: dict[str, np.ndarray],
        scores: npt.NDArray[np.float64],
        timestamps: npt.NDArray[np.float64],
        concept: ConceptPlan | None = None,
    ) -> npt.NDArray[np.int64]:
        """Whether each applicant defaults: drawn from the score, reversed where the
        concept changed."""
        risk = scores.copy()
        if concept is not None:
            flipped = concept.active(timestamps, apps["region"])
            risk[flipped] = 1.0 - risk[flipped]
        return (self.rng.uniform(size=len(scores)) < risk).astype(np.int64)

    def label_delays(
        self, n: int, median_s: float = 4.0, never: float = 0.1
    ) -> npt.NDArray[np.float64]:
        """Seconds from prediction to ground truth: lognormal around ``median_s`` with a long
        tail (σ = 1: one in six takes 2.7× the median or more); ``never`` of them: inf."""
        delays = median_s * self.rng.lognormal(0.0, 1.0, n)
        delays[self.rng.uniform(size=n) < never] = np.inf
        return delays

    def events(
        self,
        n: int,
        timestamps: npt.NDArray[np.float64],
        plan: DriftPlan | None = None,
        id_prefix: str = "",
        concept: ConceptPlan | None = None,
        labels: list[tuple[float, dict[str, object]]] | None = None,
    ) -> list[dict[str, object]]:
        """Prediction events in the wire format, one per timestamp. With ``labels``, the
        ground truth of each is appended to it as (delay in seconds, label event), for
        those that ever get one."""
        apps = self.applications(n, timestamps, plan)
        scores = self.score(apps)
        bands = age_band(apps["age"])
        if labels is not None:
            actual = self.outcomes(apps, scores, timestamps, concept)
            delays = self.label_delays(n)
        latency = self.rng.gamma(2.0, 12.0, n)
        out: list[dict[str, object]] = []
        for i in range(n):
            features: dict[str, object] = {}
            for name in FEATURES:
                v = apps[name][i]
                if isinstance(v, str | np.str_):
                    features[name] = str(v)
                else:
                    features[name] = None if np.isnan(v) else float(v)
            out.append(
                {
                    "prediction_id": f"{id_prefix}{timestamps[i]:.6f}-{i}",
                    "model": "credit",
                    "model_version": self.version,
                    "timestamp": float(timestamps[i]),
                    "features": features,
                    "prediction": round(float(scores[i]), 6),
                    "latency_ms": round(float(latency[i]), 2),
                    "segments": {"region": str(apps["region"][i]), "age_band": str(bands[i])},
                }
            )
            if labels is not None and np.isfinite(delays[i]):
                label: dict[str, object] = {
                    "prediction_id": out[-1]["prediction_id"],
                    "model": "credit",
                    "actual": int(actual[i]),
                    "timestamp": float(timestamps[i] + delays[i]),
                }
                labels.append((float(delays[i]), label))
        return out

    def reference_rows(self, n: int) -> list[dict[str, object]]:
        """Rows for `undertow baseline create`: features, prediction and label."""
        apps = self.applications(n, np.zeros(n))
        scores = self.score(apps)
        labels = (self.rng.uniform(size=n) < scores).astype(int)
        rows = []
        for i in range(n):
            row: dict[str, object] = {
                name: (
                    str(apps[name][i])
                    if apps[name].dtype.kind in "UO"
                    else (None if np.isnan(apps[name][i]) else float(apps[name][i]))
                )
                for name in FEATURES
            }
            row["prediction"] = round(float(scores[i]), 6)
            row["label"] = int(labels[i])
            row["age_band"] = str(age_band(np.array([apps["age"][i]]))[0])
            rows.append(row)
        return rows
