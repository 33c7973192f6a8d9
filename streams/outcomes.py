"""The label side of one pane of one model version: what the model got right, and for whom.

Panes are slices of prediction event time. The ingest updates a pane twice per prediction:
when the prediction arrives (`OutcomePane.count_predictions`: volume, per-cohort volume
and predicted positives) and when its label is joined (`OutcomePane.join`: the task's
performance counter, label delay, outcome by delay bucket, per-cohort outcomes). The
evaluator merges the panes of a window over every partition (`merge_outcomes`) and turns
them into the snapshot's ``performance``, ``segments`` and ``fairness`` sections
(`outcome_sections`).

Everything in a pane is a count, an extreme or an exact sum (`streams.exact_sum`), and the
cohort caps do not depend on counts (`streams.cohorts`), so panes merged in any grouping
and order give the same state, to the last bit. `OutcomePane.to_state` is compact JSON: a
binary pane with two segment attributes of five values each is about 1.0 KB with 100
predictions and 30 labels, 1.6 KB with 1,000 and 300, 1.9 KB with 10,000 and 3,000; over
half of it is the AUC score cells of the binary counter (see
``tests/unit/streams/test_outcomes.py::test_state_size``).

A joined label is *labelled* when the task's counter can score it (binary: a finite score
and a 0/1 label; multiclass: both present; regression: both finite), and *unscorable*
otherwise (a label of 2 for a binary model, a prediction that was null); unscorable labels
count in the label delay and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from streams.baseline import Baseline, CategoricalReference, Task
from streams.cohorts import COLUMNS, OTHER_SEGMENT, Cohorts
from streams.exact_sum import decode_counts, encode_counts, exact_add, exact_sum
from streams.label_delay import DELAY_BUCKETS_S, N_BUCKETS, LabelDelay, clean_delays, delay_buckets
from streams.outcome_rows import binary_prediction_rows, judge, scores_of
from streams.outcome_sections import outcome_sections
from streams.performance import BinaryPerformance, MulticlassPerformance, RegressionPerformance
from streams.performance.common import OTHER, _label

__all__ = [
    "DELAY_BUCKETS_S",
    "OTHER_SEGMENT",
    "OutcomePane",
    "merge_outcomes",
    "outcome_sections",
]

FORMAT = "undertow.outcomes/1"
FloatArray = npt.NDArray[np.float64]
CountArray = npt.NDArray[np.int64]
Counter = BinaryPerformance | MulticlassPerformance | RegressionPerformance

#: A multiclass counter's fixed label set holds at most this many of the baseline's classes.
MAX_CLASSES = 50


class OutcomePane:
    """Label-side state of one pane of one model version; mergeable, JSON state.

    Examples
    --------
    >>> from streams.baseline import Baseline
    >>> b = Baseline("fraud", "v1", {}, task="binary", protected=["gender"])
    >>> pane = OutcomePane.empty(b)
    >>> seg = [{"gender": "f"}, {"gender": "m"}, {"gender": "f"}]
    >>> pane.count_predictions([0.9, 0.2, 0.6], seg)
    >>> pane.join([0.9, 0.2], [1, 1], np.array([30.0, 7200.0]), seg[:2])
    >>> pane.predictions, pane.labelled, pane.performance.tp, pane.performance.fn
    (3, 2, 1, 1)
    >>> sections = outcome_sections(b, pane, min_labelled=1)
    >>> sections["performance"]["coverage"], sections["performance"]["recall"]
    (0.6666666666666666, 0.5)
    >>> sections["segments"]["gender"]["f"]["positive_rate"]
    1.0
    """

    __slots__ = (
        "by_delay_correct",
        "by_delay_errors",
        "by_delay_labelled",
        "cohorts",
        "delay",
        "detections",
        "labelled",
        "model",
        "model_version",
        "performance",
        "predictions",
        "task",
        "threshold",
        "unscorable",
    )

    def __init__(
        self,
        model: str,
        model_version: str,
        task: Task | None,
        threshold: float,
        performance: Counter | None,
        cohorts: Cohorts,
    ) -> None:
        self.model = model
        self.model_version = model_version
        self.task = task
        self.threshold = float(threshold)
        self.performance = performance
        self.cohorts = cohorts
        self.predictions = 0
        self.labelled = 0
        self.unscorable = 0
        self.detections = 0
        self.delay = LabelDelay()
        # Outcome by delay bucket: labelled rows, and correct ones (classification) or the
        # exact sum of |error| (regression).
        self.by_delay_labelled: CountArray = np.zeros(N_BUCKETS, dtype=np.int64)
        self.by_delay_correct: CountArray = np.zeros(N_BUCKETS, dtype=np.int64)
        self.by_delay_errors: list[list[float]] = [[] for _ in range(N_BUCKETS)]

    @classmethod
    def empty(cls, baseline: Baseline) -> OutcomePane:
        """A pane with nothing counted, for ``baseline``'s task, threshold and caps.

        The protected attributes, and the groups of each in the baseline's fairness
        reference, are pinned: the cohort caps never fold them away.
        """
        pinned = {a: list(baseline.fairness_reference.get(a, {})) for a in baseline.protected}
        cohorts = Cohorts(
            baseline.task,
            max_attributes=baseline.max_segment_attributes,
            max_values=baseline.max_segment_values,
            pinned=pinned,
        )
        return cls(
            baseline.model,
            baseline.version,
            baseline.task,
            baseline.threshold,
            _counter(baseline),
            cohorts,
        )

    # -- counting ---------------------------------------------------------------------------

    def count_predictions(
        self, predicted: Sequence[float | str | None], segments: Sequence[Mapping[str, str]]
    ) -> None:
        """Count a micro-batch of predictions: volume, and per cohort predictions (binary:
        also those with a score, and those predicted positive, ``score >= threshold``)."""
        n = len(predicted)
        _check_length("segments", segments, n)
        self.predictions += n
        if n == 0 or not any(segments):
            return
        if self.task == "binary":
            rows = binary_prediction_rows(scores_of(predicted), self.threshold)
        else:
            rows = np.zeros((n, len(COLUMNS[self.task])), dtype=np.int64)
            rows[:, 0] = 1
        self.cohorts.add(segments, rows)

    def join(
        self,
        predicted: Sequence[float | str | None],
        actual: Sequence[float | str],
        delay_s: FloatArray,
        segments: Sequence[Mapping[str, str]],
    ) -> None:
        """Count a micro-batch of joined labels: ``actual[i]`` is the truth for
        ``predicted[i]``, which the model made ``delay_s[i]`` seconds before it arrived."""
        n = len(predicted)
        _check_length("actual", actual, n)
        _check_length("delay_s", delay_s, n)
        _check_length("segments", segments, n)
        if n == 0:
            return
        self.delay.update_many(delay_s)
        outcome = judge(self.task, self.threshold, predicted, actual)
        scorable = outcome.scorable
        k = int(np.count_nonzero(scorable))
        self.labelled += k
        self.unscorable += n - k
        if self.performance is not None and k:
            self.performance.update_many(outcome.predicted, outcome.actual)
        if outcome.rows is None or k == 0:
            return
        d, finite = clean_delays(delay_s)
        timed = scorable & finite
        bucket = delay_buckets(d[timed])
        self.by_delay_labelled += np.bincount(bucket, minlength=N_BUCKETS)
        if outcome.errors is None:
            self.by_delay_correct += np.bincount(
                bucket, weights=outcome.correct[timed], minlength=N_BUCKETS
            ).astype(np.int64)
        else:
            errors = outcome.errors[timed]
            for b in np.unique(bucket).tolist():
                self.by_delay_errors[b] = exact_add(errors[bucket == b], self.by_delay_errors[b])
        if any(segments):
            self.cohorts.add(segments, outcome.rows, outcome.errors)

    def add_detections(self, n: int) -> None:
        """Record ``n`` concept-drift detector signals (the ingest runs the detectors)."""
        self.detections += int(n)

    # -- merging ----------------------------------------------------------------------------

    def merge(self, other: OutcomePane) -> None:
        """Add another pane (or window) of the same model version into this one."""
        mine = (self.model, self.model_version, self.task, self.threshold)
        theirs = (other.model, other.model_version, other.task, other.threshold)
        if mine != theirs:
            raise ValueError(f"cannot merge outcomes of {theirs} into outcomes of {mine}")
        self.predictions += other.predictions
        self.labelled += other.labelled
        self.unscorable += other.unscorable
        self.detections += other.detections
        if self.performance is not None and other.performance is not None:
            self.performance.merge(other.performance)  # type: ignore[arg-type]
        self.delay.merge(other.delay)
        self.by_delay_labelled += other.by_delay_labelled
        self.by_delay_correct += other.by_delay_correct
        for b, terms in enumerate(other.by_delay_errors):
            if terms:
                self.by_delay_errors[b] = exact_sum(terms, self.by_delay_errors[b])
        self.cohorts.merge(other.cohorts)

    def __iadd__(self, other: OutcomePane) -> OutcomePane:
        self.merge(other)
        return self

    def copy(self) -> OutcomePane:
        performance = None if self.performance is None else _empty_like(self.performance)
        pane = OutcomePane(
            self.model,
            self.model_version,
            self.task,
            self.threshold,
            performance,
            self.cohorts.empty_like(),
        )
        pane.merge(self)
        return pane

    # -- state ------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Compact JSON-ready state; zero parts are left out.

        ``{"format", "model", "model_version", "task", "threshold", "predictions",
        "labelled", "unscorable", "detections", "performance": counter state,
        "delay": `LabelDelay.to_state`, "by_delay": {"n", "ok" | "ae"},
        "cohorts": `Cohorts.to_state`}``.
        """
        state: dict[str, Any] = {
            "format": FORMAT,
            "model": self.model,
            "model_version": self.model_version,
            "task": self.task,
            "threshold": self.threshold,
            "predictions": self.predictions,
        }
        for key in ("labelled", "unscorable", "detections"):
            if getattr(self, key):
                state[key] = getattr(self, key)
        if self.performance is not None and self.labelled:
            state["performance"] = self.performance.to_state()
        if self.delay.count:
            state["delay"] = self.delay.to_state()
        if self.by_delay_labelled.any():
            by_delay: dict[str, Any] = {"n": encode_counts(self.by_delay_labelled)}
            if self.task == "regression":
                by_delay["ae"] = {str(b): t for b, t in enumerate(self.by_delay_errors) if t}
            else:
                by_delay["ok"] = encode_counts(self.by_delay_correct)
            state["by_delay"] = by_delay
        cohorts = self.cohorts.to_state()
        if cohorts:
            state["cohorts"] = cohorts
        return state

    @classmethod
    def from_state(cls, baseline: Baseline, state: Mapping[str, Any]) -> OutcomePane:
        """Rebuild a pane from `to_state`; ``baseline`` supplies task, threshold and caps."""
        if state.get("format") != FORMAT:
            raise ValueError(f"outcome state format {state.get('format')!r} is not {FORMAT!r}")
        pane = cls.empty(baseline)
        stored = (state["model"], state["model_version"], state["task"], state["threshold"])
        if stored != (pane.model, pane.model_version, pane.task, pane.threshold):
            raise ValueError(
                f"outcome state of {stored} does not belong to the baseline of "
                f"{(pane.model, pane.model_version, pane.task, pane.threshold)}"
            )
        pane.predictions = int(state["predictions"])
        pane.labelled = int(state.get("labelled", 0))
        pane.unscorable = int(state.get("unscorable", 0))
        pane.detections = int(state.get("detections", 0))
        if "performance" in state and pane.performance is not None:
            pane.performance = type(pane.performance).from_state(state["performance"])
        if pane.performance is not None and pane.performance.n != pane.labelled:
            raise ValueError("the performance counter does not add up to the labelled count")
        pane.delay = LabelDelay.from_state(state.get("delay", {}))
        by_delay = state.get("by_delay", {})
        pane.by_delay_labelled = decode_counts(by_delay.get("n"), N_BUCKETS)
        pane.by_delay_correct = decode_counts(by_delay.get("ok"), N_BUCKETS)
        for b, terms in by_delay.get("ae", {}).items():
            pane.by_delay_errors[int(b)] = [float(t) for t in terms]
        pane.cohorts.load_state(state.get("cohorts", {}))
        return pane

    def __repr__(self) -> str:
        return (
            f"OutcomePane({self.model} {self.model_version}, predictions={self.predictions}, "
            f"labelled={self.labelled})"
        )


def merge_outcomes(baseline: Baseline, panes: Iterable[OutcomePane]) -> OutcomePane:
    """The window the panes make up: their sum (an empty pane when there are none)."""
    window = OutcomePane.empty(baseline)
    for pane in panes:
        window.merge(pane)
    return window


def _counter(baseline: Baseline) -> Counter | None:
    if baseline.task == "binary":
        return BinaryPerformance(baseline.threshold)
    if baseline.task == "multiclass":
        return MulticlassPerformance(_classes(baseline))
    if baseline.task == "regression":
        return RegressionPerformance()
    return None


def _classes(baseline: Baseline) -> list[str] | None:
    """The baseline's classes, a fixed label set so that partials merge exactly."""
    classes: list[str] = []
    for ref in (baseline.prediction, baseline.target):
        if isinstance(ref, CategoricalReference):
            classes += [c for c in ref.histogram.categories if c not in classes]
    classes = [c for c in classes if c != OTHER][:MAX_CLASSES]
    return [_label(c) for c in classes] or None


def _empty_like(counter: Counter) -> Counter:
    if isinstance(counter, BinaryPerformance):
        return BinaryPerformance(counter.threshold, counter.score_bins)
    if isinstance(counter, MulticlassPerformance):
        if counter.fixed:
            return MulticlassPerformance(counter.labels)
        return MulticlassPerformance(max_classes=counter.max_classes)
    return RegressionPerformance()


def _check_length(name: str, column: Sequence[Any] | FloatArray, n: int) -> None:
    if len(column) != n:
        raise ValueError(f"{name} has {len(column)} values, expected {n}")
