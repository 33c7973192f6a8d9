"""A model version's reference: what its inputs and outputs looked like when it was trusted.

A baseline is plain, versioned JSON so that it can be reviewed, diffed, stored in Redis and
read by any worker. Each column keeps a histogram whose bins are fixed here, so a window of
live traffic is counted into the same bins and compared bin for bin.

The label side (performance, segments, fairness) adds settings that baselines written
before it lack; each has a default, so those still read (see `Baseline`). A baseline may
also carry the model version's alert policy (``"alert_policy"``,
`streams.alert_policy.AlertPolicy`); without one the workers use the policy's defaults.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import orjson

from streams.cohorts import MAX_ATTRIBUTES, MAX_VALUES
from streams.errors import BaselineFormatError
from streams.histogram import CategoricalHistogram, NumericHistogram
from streams.severity import Thresholds

if TYPE_CHECKING:
    from streams.alert_policy import AlertPolicy

FORMAT = "undertow.baseline/1"
Task = Literal["binary", "multiclass", "regression"]
TASKS: tuple[Task, ...] = ("binary", "multiclass", "regression")


@dataclass
class NumericReference:
    """Reference for a numeric column: fine histogram, PSI edges and summary statistics."""

    name: str
    histogram: NumericHistogram
    coarse_edges: npt.NDArray[np.float64]
    summary: dict[str, float | None]
    kind: Literal["numeric"] = "numeric"

    @property
    def missing_rate(self) -> float:
        return _rate(self.histogram.missing, self.histogram.total)

    def empty_histogram(self) -> NumericHistogram:
        return self.histogram.empty_like()

    def coarse_counts(self, histogram: NumericHistogram) -> npt.NDArray[np.int64]:
        return histogram.coarsen(self.coarse_edges)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "coarse_edges": self.coarse_edges.tolist(),
            "histogram": self.histogram.to_state(),
            "summary": self.summary,
            "missing_rate": self.missing_rate,
        }

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> NumericReference:
        return cls(
            name=name,
            histogram=NumericHistogram.from_state(data["histogram"]),
            coarse_edges=np.asarray(data["coarse_edges"], dtype=np.float64),
            summary=dict(data["summary"]),
        )


@dataclass
class CategoricalReference:
    """Reference for a categorical column: its categories (plus unseen) and their counts."""

    name: str
    histogram: CategoricalHistogram
    summary: dict[str, Any]
    kind: Literal["categorical"] = "categorical"

    @property
    def missing_rate(self) -> float:
        return _rate(self.histogram.missing, self.histogram.total)

    def empty_histogram(self) -> CategoricalHistogram:
        return self.histogram.empty_like()

    def coarse_counts(self, histogram: CategoricalHistogram) -> npt.NDArray[np.int64]:
        return histogram.counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "histogram": self.histogram.to_state(),
            "summary": self.summary,
            "missing_rate": self.missing_rate,
        }

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> CategoricalReference:
        return cls(
            name=name,
            histogram=CategoricalHistogram.from_state(data["histogram"]),
            summary=dict(data["summary"]),
        )


Reference = NumericReference | CategoricalReference


def reference_from_dict(name: str, data: dict[str, Any]) -> Reference:
    kind = data.get("type")
    if kind == "numeric":
        return NumericReference.from_dict(name, data)
    if kind == "categorical":
        return CategoricalReference.from_dict(name, data)
    raise ValueError(f"column {name!r} has unknown type {kind!r}")


#: Group statistics of the training data per protected attribute and group:
#: ``{"positive_rate", "tpr", "fpr"}`` (None when undefined) and ``"n"`` (rows).
FairnessReference = dict[str, dict[str, dict[str, Any]]]


@dataclass
class Baseline:
    """Everything a worker or the batch check needs to judge a window of one model version.

    Label-side settings (all optional in the JSON, with these defaults):

    * ``protected``: segment attributes whose groups are compared for fairness; they are
      segment attributes of the events, never drift features.
    * ``fairness_reference``: per protected attribute and group, the training data's
      positive rate, TPR, FPR and row count (`FairnessReference`).
    * ``fairness_bounds`` (0.8, 1.25): the demographic parity ratio must stay inside.
    * ``min_group_size`` (30): a group's rate is compared only when it rests on at least
      this many rows.
    * ``min_labelled`` (100): fewer labels in a window make performance "insufficient".
    * ``label_ttl_s`` (None: the worker's default): how long a prediction waits for its
      label; ``expected_label_delay_s`` (None: unknown): the usual wait.
    * ``max_segment_attributes`` (10), ``max_segment_values`` (20): cohort caps.
    """

    model: str
    version: str
    features: dict[str, Reference]
    prediction: Reference | None = None
    target: Reference | None = None
    task: Task | None = None
    threshold: float = 0.5
    binning: str = "quantile"
    bins: int = 10
    thresholds: Thresholds = field(default_factory=Thresholds)
    performance: dict[str, float] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    protected: list[str] = field(default_factory=list)
    fairness_reference: FairnessReference = field(default_factory=dict)
    fairness_bounds: tuple[float, float] = (0.8, 1.25)
    min_group_size: int = 30
    min_labelled: int = 100
    label_ttl_s: float | None = None
    expected_label_delay_s: float | None = None
    max_segment_attributes: int = MAX_ATTRIBUTES
    max_segment_values: int = MAX_VALUES
    alert_policy: AlertPolicy | None = None

    def __post_init__(self) -> None:
        lo, hi = (float(b) for b in self.fairness_bounds)
        if not (0.0 < lo <= hi < math.inf):
            raise ValueError(f"fairness bounds must be 0 < lo <= hi, not {[lo, hi]}")
        self.fairness_bounds = (lo, hi)
        if len(set(self.protected)) != len(self.protected):
            raise ValueError("protected attributes must be distinct")
        for name, value in (
            ("label_ttl_s", self.label_ttl_s),
            ("expected_label_delay_s", self.expected_label_delay_s),
        ):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number of seconds, not {value}")
        for name, count in (
            ("min_group_size", self.min_group_size),
            ("min_labelled", self.min_labelled),
            ("max_segment_attributes", self.max_segment_attributes),
            ("max_segment_values", self.max_segment_values),
        ):
            if count < 0:
                raise ValueError(f"{name} must not be negative, not {count}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "model": self.model,
            "version": self.version,
            "created_at": self.created_at,
            "task": self.task,
            "threshold": self.threshold,
            "binning": self.binning,
            "bins": self.bins,
            "thresholds": self.thresholds.to_dict(),
            "source": self.source,
            "performance": self.performance,
            "features": {n: r.to_dict() for n, r in self.features.items()},
            "prediction": None if self.prediction is None else self.prediction.to_dict(),
            "target": None if self.target is None else self.target.to_dict(),
            "protected": list(self.protected),
            "fairness_reference": self.fairness_reference,
            "fairness_bounds": list(self.fairness_bounds),
            "min_group_size": self.min_group_size,
            "min_labelled": self.min_labelled,
            "label_ttl_s": self.label_ttl_s,
            "expected_label_delay_s": self.expected_label_delay_s,
            "max_segment_attributes": self.max_segment_attributes,
            "max_segment_values": self.max_segment_values,
            "alert_policy": None if self.alert_policy is None else self.alert_policy.to_dict(),
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Baseline:
        fmt = data.get("format")
        if fmt != FORMAT:
            raise BaselineFormatError(
                f"baseline format {fmt!r} is not supported by this version "
                f"(it reads {FORMAT!r}); recreate it with `undertow baseline create`"
            )
        try:
            return cls(
                model=str(data["model"]),
                version=str(data["version"]),
                created_at=float(data["created_at"]),
                task=data.get("task"),
                threshold=float(data.get("threshold", 0.5)),
                binning=str(data.get("binning", "quantile")),
                bins=int(data.get("bins", 10)),
                thresholds=Thresholds.from_dict(data.get("thresholds", {})),
                source=dict(data.get("source", {})),
                performance=dict(data.get("performance", {})),
                features={n: reference_from_dict(n, d) for n, d in data["features"].items()},
                prediction=_optional_reference("prediction", data.get("prediction")),
                target=_optional_reference("target", data.get("target")),
                protected=[str(a) for a in data.get("protected", [])],
                fairness_reference=_fairness_reference(data.get("fairness_reference", {})),
                fairness_bounds=_bounds(data.get("fairness_bounds", (0.8, 1.25))),
                min_group_size=int(data.get("min_group_size", 30)),
                min_labelled=int(data.get("min_labelled", 100)),
                label_ttl_s=_optional_float(data.get("label_ttl_s")),
                expected_label_delay_s=_optional_float(data.get("expected_label_delay_s")),
                max_segment_attributes=int(data.get("max_segment_attributes", MAX_ATTRIBUTES)),
                max_segment_values=int(data.get("max_segment_values", MAX_VALUES)),
                alert_policy=_optional_policy(data.get("alert_policy")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BaselineFormatError(f"baseline is malformed: {exc}") from None

    @classmethod
    def from_json(cls, raw: bytes | str) -> Baseline:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BaselineFormatError(f"baseline is not valid JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise BaselineFormatError("baseline is not a JSON object")
        return cls.from_dict(data)


def _optional_reference(name: str, data: dict[str, Any] | None) -> Reference | None:
    return None if data is None else reference_from_dict(name, data)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _bounds(value: Any) -> tuple[float, float]:
    lo, hi = value  # exactly two
    return float(lo), float(hi)


def _optional_policy(data: Any) -> AlertPolicy | None:
    """The baseline's alert policy, checked now so a bad one fails at registration."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ValueError("alert_policy must be an object")
    # Imported here: the alert modules import this module's types (Task) themselves.
    from streams.alert_policy import AlertPolicy

    return AlertPolicy.from_dict(data)


def _fairness_reference(data: Any) -> FairnessReference:
    return {
        str(attr): {str(group): dict(stats) for group, stats in groups.items()}
        for attr, groups in data.items()
    }


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else math.nan
